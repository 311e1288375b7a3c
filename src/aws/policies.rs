//! Policies live in SSM Parameter Store, one parameter per service under a prefix
//! (`/kanaria/policies/CLUSTER/SERVICE`), so teams change them without redeploying kanaria.

use aws_sdk_ssm::types::ParameterType;
use aws_sdk_ssm::Client;

use super::AwsError;
use crate::policy::{self, Policy, PolicyError, Problem};

/// The parameter name of a service's policy.
pub fn parameter_name(prefix: &str, policy: &Policy) -> String {
    format!("{}{}", super::normalize_prefix(prefix), policy.service.key())
}

/// Parse and validate the policy stored in `parameter`, and check that the parameter is the one
/// of the service the policy names (`PREFIX/CLUSTER/SERVICE`). Who may write a parameter is
/// decided by IAM on its name, so a team allowed to write under its own prefix must not be able
/// to deploy into another team's service (with that service's task role) by naming it in the
/// document: a policy stored under another service's parameter is invalid.
pub fn parse_stored(prefix: &str, parameter: &str, text: &str) -> Result<Policy, PolicyError> {
    let policy = policy::parse(parameter, text)?;
    let expected = parameter_name(prefix, &policy);
    if parameter == expected {
        return Ok(policy);
    }
    let stored_for = parameter.strip_prefix(super::normalize_prefix(prefix).as_str()).unwrap_or(parameter);
    Err(PolicyError::Invalid {
        source_name: parameter.to_string(),
        problems: vec![Problem {
            path: "service".into(),
            message: format!(
                "parameter {parameter} holds a policy for {}, which must be stored in {expected}: a policy applies only to the \
                 service of the parameter it is stored in, so it was skipped and nothing is deployed with it",
                policy.service.key()
            ),
            fix: format!(
                "if the policy is for {service}, store it in {expected} (`kanaria policy apply` does) and delete {parameter}; if it \
                 is for {stored_for}, set `service:` to that service",
                service = policy.service.key()
            ),
        }],
    })
}

/// Every policy under the prefix, each parsed, validated and checked against its parameter name
/// ([`parse_stored`]). Invalid ones are returned as errors (so the caller can report them) and
/// never start rollouts. This pages through every policy: for the CLI and the policy index's
/// daily sweep, never per event (the functions look policies up in the index).
pub async fn load_all(ssm: &Client, prefix: &str) -> Result<Vec<(String, Result<Policy, PolicyError>)>, AwsError> {
    Ok(load_all_stored(ssm, prefix).await?.into_iter().map(|s| (s.parameter, s.policy)).collect())
}

/// [`load_all`] with each parameter's version and time of change.
pub async fn load_all_stored(ssm: &Client, prefix: &str) -> Result<Vec<StoredPolicy>, AwsError> {
    let mut found = Vec::new();
    let mut pages = ssm
        .get_parameters_by_path()
        .path(super::normalize_prefix(prefix).trim_end_matches('/'))
        .recursive(true)
        .with_decryption(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::new("SSM", "GetParametersByPath", prefix, e))?;
        found.extend(page.parameters().iter().map(|p| stored(prefix, p)));
    }
    Ok(found)
}

fn stored(prefix: &str, p: &aws_sdk_ssm::types::Parameter) -> StoredPolicy {
    let name = p.name().unwrap_or_default().to_string();
    let modified_at = p.last_modified_date().map(|d| d.to_millis().unwrap_or(0).max(0) as u64).unwrap_or(0);
    let policy = parse_stored(prefix, &name, p.value().unwrap_or_default());
    StoredPolicy { parameter: name, version: p.version(), modified_at, policy }
}

/// A policy parameter as it is now: its name, its version (SSM counts every change of a
/// parameter; the policy index records which version it was built from) and its policy, parsed
/// and checked with [`parse_stored`].
#[derive(Debug)]
pub struct StoredPolicy {
    pub parameter: String,
    pub version: i64,
    /// When the parameter last changed (Unix milliseconds): orders index updates, also across a
    /// delete and re-create (which starts the version at 1 again).
    pub modified_at: u64,
    pub policy: Result<Policy, PolicyError>,
}

/// GetParameters takes at most this many names per call (SSM API reference).
const GET_PARAMETERS_MAX_NAMES: usize = 10;

/// The policy parameters named, as they are now, one GetParameters call per ten names (so a
/// push costs reads for the services it matches, not for every policy). Names SSM does not know
/// are left out.
pub async fn get_many(ssm: &Client, prefix: &str, parameters: &[String]) -> Result<Vec<StoredPolicy>, AwsError> {
    let mut found = Vec::new();
    for names in parameters.chunks(GET_PARAMETERS_MAX_NAMES) {
        let out = ssm
            .get_parameters()
            .set_names(Some(names.to_vec()))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| AwsError::new("SSM", "GetParameters", names.join(", "), e))?;
        found.extend(out.parameters().iter().map(|p| stored(prefix, p)));
    }
    Ok(found)
}

/// The policy stored for one service (`CLUSTER/SERVICE`), from its own parameter: one read,
/// whatever the number of policies. `None` when there is none.
pub async fn get_for_service(ssm: &Client, prefix: &str, service_key: &str) -> Result<Option<StoredPolicy>, AwsError> {
    let parameter = format!("{}{service_key}", super::normalize_prefix(prefix));
    Ok(get_many(ssm, prefix, &[parameter]).await?.pop())
}

/// Store a policy (already validated) under its service's parameter name.
pub async fn put(ssm: &Client, prefix: &str, policy: &Policy) -> Result<String, AwsError> {
    let name = parameter_name(prefix, policy);
    let text = serde_json::to_string_pretty(policy).expect("a policy serialises");
    ssm.put_parameter()
        .name(&name)
        .value(text)
        .r#type(ParameterType::String)
        .overwrite(true)
        .description(format!("kanaria rollout policy for {}", policy.service))
        .send()
        .await
        .map_err(|e| AwsError::new("SSM", "PutParameter", &name, e))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example policy of the `policy` tests, for the demo cluster's web service.
    fn web() -> String {
        crate::policy::tests::EXAMPLE.replace("cluster: prod", "cluster: demo")
    }

    #[test]
    fn a_policy_in_its_own_services_parameter_is_valid() {
        for prefix in ["/kanaria/policies", "/kanaria/policies/", "kanaria/policies"] {
            let p = parse_stored(prefix, "/kanaria/policies/demo/web", &web()).unwrap_or_else(|e| panic!("{prefix}: {e}"));
            assert_eq!(p.service.key(), "demo/web");
        }
    }

    #[test]
    fn a_policy_in_another_services_parameter_is_invalid() {
        for parameter in ["/kanaria/policies/team-b/api", "/kanaria/policies/demo/web/extra", "/kanaria/policies/demo/webx"] {
            let e = parse_stored("/kanaria/policies/", parameter, &web()).expect_err(parameter);
            let text = e.to_string();
            assert!(text.starts_with(&format!("policy {parameter} is invalid")), "{text}");
            let problem = &e.problems()[0];
            assert_eq!(problem.path, "service");
            assert!(
                problem.message.starts_with(&format!(
                    "parameter {parameter} holds a policy for demo/web, which must be stored in /kanaria/policies/demo/web"
                )),
                "{problem}"
            );
            assert!(problem.message.contains("nothing is deployed with it"), "{problem}");
            assert!(problem.fix.contains("store it in /kanaria/policies/demo/web"), "{problem}");
            assert!(problem.fix.contains(&format!("delete {parameter}")), "{problem}");
        }
        let e = parse_stored("/kanaria/policies", "/kanaria/policies/team-b/api", &web()).unwrap_err();
        assert!(e.problems()[0].fix.ends_with("if it is for team-b/api, set `service:` to that service"), "{e}");
    }

    #[test]
    fn an_invalid_document_reports_its_own_problems_first() {
        let e = parse_stored("/kanaria/policies", "/kanaria/policies/team-b/api", &web().replace("weight: 1,", "weight: 0,")).unwrap_err();
        assert!(e.problems().iter().any(|p| p.path == "strategy.canary.steps[0].weight"), "{e}");
    }
}
