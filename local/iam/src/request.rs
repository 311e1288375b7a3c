//! One AWS API call → the authorization requests AWS makes for it: the IAM action, the resource
//! ARN built from the request's parameters in the reference's ARN format (partition `aws`), the
//! condition keys the request carries, and the implicit authorizations (passing a role, tagging
//! on create) AWS checks besides the operation's own action.
//!
//! Every operation has an explicit mapping here; an operation without one is an error, so a gap
//! in coverage is loud, never silently allowed. For every action the reference lists without
//! resource types the resource is `*`; the one exception is documented at [`TOKEN_ACTIONS`].
//!
//! Approximations (the real ARN is not knowable from the request alone):
//! - a resource being created has no id yet: `task-set/C/S/*`, `task-definition/FAMILY:*`, `task/C/*`;
//! - `RegisterScalableTarget`, `PutScheduledAction`, `DeleteScheduledAction` act on
//!   `scalable-target/*` (a scalable target's ARN carries an id Application Auto Scaling assigns);
//! - Secrets Manager by name: `secret:NAME-*` (the real ARN ends in six random characters);
//! - a log group (DescribeLogStreams) is `log-group:NAME:*`, the form CloudWatch Logs authorizes
//!   most log-group actions against (its API reference: "use this version ... in IAM policies");
//! - `iam:AssociatedResourceArn` is not set on the implicit `iam:PassRole` requests.

mod ecs;
mod services;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::evaluate::AuthzRequest;
use crate::reference::Reference;

/// The parameters of a call, as its protocol carries them.
#[derive(Debug, Clone, PartialEq)]
pub enum Params {
    /// awsJson protocols: ECS, DynamoDB, Step Functions, SSM, Secrets Manager, Logs, Application
    /// Auto Scaling, EventBridge (and SQS's JSON protocol).
    Json(Value),
    /// Form-encoded query protocol (decoded pairs): ELBv2, SNS, CloudWatch, SQS, IAM, EC2.
    Query(Vec<(String, String)>),
    /// REST-JSON (Scheduler, Lambda): the path may carry a `?query`, still percent-encoded.
    Rest { method: String, path: String, body: Value },
}

/// One AWS API call made by a function.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall<'a> {
    /// The SigV4 signing name from the credential scope: `ecs`, `monitoring`, `states`...
    pub signing_service: &'a str,
    /// The operation, e.g. `CreateTaskSet` (for REST APIs see [`rest_operation`]).
    pub operation: &'a str,
    pub params: Params,
    pub account: &'a str,
    pub region: &'a str,
    /// For `SendTaskSuccess`/`SendTaskFailure`/`SendTaskHeartbeat`: the ARN of the state machine
    /// whose execution issued the task token, when the caller knows it (see [`TOKEN_ACTIONS`]).
    pub task_token_state_machine: Option<&'a str>,
    /// The partition key attribute of the DynamoDB tables called (from the table's key schema),
    /// so item operations carry `dynamodb:LeadingKeys`: the partition key values they touch.
    pub partition_key: Option<&'a str>,
}

impl<'a> ApiCall<'a> {
    pub fn new(signing_service: &'a str, operation: &'a str, params: Params, account: &'a str, region: &'a str) -> ApiCall<'a> {
        ApiCall { signing_service, operation, params, account, region, task_token_state_machine: None, partition_key: None }
    }

    /// The IAM service prefix of the signing name (they differ for CloudWatch only).
    pub fn iam_prefix(&self) -> &'a str {
        match self.signing_service {
            "monitoring" => "cloudwatch",
            other => other,
        }
    }

    /// `arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE`.
    fn arn(&self, service: &str, resource: &str) -> String {
        format!("arn:aws:{service}:{}:{}:{resource}", self.region, self.account)
    }

    /// A request for `prefix:Action` on a resource.
    fn request(&self, action: &str, resource: &str) -> AuthzRequest {
        AuthzRequest { action: format!("{}:{action}", self.iam_prefix()), resource: resource.to_string(), context: BTreeMap::new() }
    }

    /// A string parameter (JSON member, query pair, REST body member or query parameter).
    fn param(&self, name: &str) -> Option<String> {
        match &self.params {
            Params::Json(v) => scalar(v.get(name)?),
            Params::Query(pairs) => pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            Params::Rest { path, body, .. } => {
                body.get(name).and_then(scalar).or_else(|| rest_query(path).into_iter().find(|(k, _)| k == name).map(|(_, v)| v))
            }
        }
    }

    /// A required string parameter, or an error naming it.
    fn required(&self, name: &str) -> Result<String, String> {
        self.param(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            format!(
                "{}:{} without {name}: cannot tell which resource it acts on (local/iam/src/request.rs)",
                self.iam_prefix(),
                self.operation
            )
        })
    }

    /// A list of strings: a JSON array, or query members `Name.member.N` (or `Name.N`) in order.
    fn list(&self, name: &str) -> Vec<String> {
        match &self.params {
            Params::Json(v) | Params::Rest { body: v, .. } => {
                v.get(name).and_then(Value::as_array).map(|a| a.iter().filter_map(scalar).collect()).unwrap_or_default()
            }
            Params::Query(pairs) => {
                let mut members: Vec<(u32, String)> = pairs
                    .iter()
                    .filter_map(|(k, v)| {
                        let rest = k.strip_prefix(name)?.strip_prefix('.')?;
                        let index = rest.strip_prefix("member.").unwrap_or(rest);
                        Some((index.parse().ok()?, v.clone()))
                    })
                    .collect();
                members.sort_by_key(|(i, _)| *i);
                members.into_iter().map(|(_, v)| v).collect()
            }
        }
    }

    /// The JSON body (awsJson or REST), if any.
    fn json(&self) -> Option<&Value> {
        match &self.params {
            Params::Json(v) | Params::Rest { body: v, .. } => Some(v),
            Params::Query(_) => None,
        }
    }

    fn unmapped(&self) -> String {
        format!("no authorization mapping for {}:{}; add one in local/iam/src/request.rs", self.iam_prefix(), self.operation)
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Percent-decoding of a path segment or query value (`+` is a space in query values).
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded `?query` pairs of a REST path.
fn rest_query(path: &str) -> Vec<(String, String)> {
    let Some((_, query)) = path.split_once('?') else { return vec![] };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// The decoded segments of a REST path, without its query.
fn rest_segments(path: &str) -> Vec<String> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    path.split('/').filter(|s| !s.is_empty()).map(|s| percent_decode(s, false)).collect()
}

/// The operation of a REST call of a service kanaria's functions call over REST-JSON
/// (EventBridge Scheduler, Lambda Invoke); `None` when it is not one of those.
pub fn rest_operation(signing_service: &str, method: &str, path: &str) -> Option<&'static str> {
    let segments = rest_segments(path);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    Some(match (signing_service, method.to_ascii_uppercase().as_str(), segments.as_slice()) {
        ("scheduler", "GET", ["schedules"]) => "ListSchedules",
        ("scheduler", "GET", ["schedules", _]) => "GetSchedule",
        ("scheduler", "POST", ["schedules", _]) => "CreateSchedule",
        ("scheduler", "PUT", ["schedules", _]) => "UpdateSchedule",
        ("scheduler", "DELETE", ["schedules", _]) => "DeleteSchedule",
        ("lambda", "POST", [_, "functions", _, "invocations"]) => "Invoke",
        _ => return None,
    })
}

/// Step Functions' task-token actions. The Service Authorization Reference lists no resource
/// type for them, yet Step Functions authorizes them against the state machine of the token's
/// execution (its AccessDenied names that ARN; SAM's StepFunctionsCallbackPolicy scopes them so).
/// The token is opaque, so the caller says which state machine issued it
/// ([`ApiCall::task_token_state_machine`]); without that the resource is `*`.
pub const TOKEN_ACTIONS: &[&str] = &["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"];

/// The authorization requests AWS makes for one call. An empty list means none is needed
/// (`sts:GetCallerIdentity`); an error means this crate has no mapping for the operation, or
/// the request lacks what names its resource.
pub fn authorization_requests(reference: &Reference, call: &ApiCall) -> Result<Vec<AuthzRequest>, String> {
    let mut requests = match call.iam_prefix() {
        "ecs" => ecs::requests(call)?,
        "sts" if call.operation == "GetCallerIdentity" => vec![],
        _ => services::requests(call)?,
    };
    for request in &mut requests {
        // Every request carries the region it is sent to.
        request.context.entry("aws:requestedregion".into()).or_insert_with(|| vec![call.region.to_string()]);
        let no_resource_types = reference.action(&request.action).is_some_and(|info| !info.has_resource_types());
        let token_exception = TOKEN_ACTIONS.iter().any(|a| a.eq_ignore_ascii_case(&request.action)) && request.resource != "*";
        if no_resource_types && !token_exception {
            request.resource = "*".to_string();
        }
    }
    Ok(requests)
}

/// Adds the request tags of a create or tag call: `aws:RequestTag/KEY` and `aws:TagKeys`.
fn with_request_tags(mut request: AuthzRequest, tags: &[(String, String)]) -> AuthzRequest {
    if tags.is_empty() {
        return request;
    }
    for (key, value) in tags {
        request.context.insert(format!("aws:requesttag/{}", key.to_ascii_lowercase()), vec![value.clone()]);
    }
    request.context.insert("aws:tagkeys".into(), tags.iter().map(|(k, _)| k.clone()).collect());
    request
}

/// `iam:PassRole` on a role (an ARN, or a name in the caller's account) passed to a service.
fn pass_role(call: &ApiCall, role: &str, service: &str) -> AuthzRequest {
    let arn = if role.starts_with("arn:") { role.to_string() } else { format!("arn:aws:iam::{}:role/{role}", call.account) };
    AuthzRequest::new("iam:PassRole", &arn).with("iam:PassedToService", &[service])
}

#[cfg(test)]
mod tests;
