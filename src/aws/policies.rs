//! Policies live in SSM Parameter Store, one parameter per service under a prefix
//! (`/kanaria/policies/CLUSTER/SERVICE`), so teams change them without redeploying kanaria.

use aws_sdk_ssm::types::ParameterType;
use aws_sdk_ssm::Client;

use super::AwsError;
use crate::policy::{self, Policy, PolicyError};

/// The parameter name of a service's policy.
pub fn parameter_name(prefix: &str, policy: &Policy) -> String {
    format!("{}{}", super::normalize_prefix(prefix), policy.service.key())
}

/// Every policy under the prefix, each parsed and validated. Invalid ones are returned as
/// errors (so the caller can report them) and never start rollouts.
pub async fn load_all(ssm: &Client, prefix: &str) -> Result<Vec<(String, Result<Policy, PolicyError>)>, AwsError> {
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
        for p in page.parameters() {
            let name = p.name().unwrap_or_default().to_string();
            let parsed = policy::parse(&name, p.value().unwrap_or_default());
            found.push((name, parsed));
        }
    }
    Ok(found)
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
