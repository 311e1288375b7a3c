//! Which IAM actions each function's AWS calls need, seen at the front server.
//!
//! Each hosted function's SDK clients carry its crate name in the SDK app id
//! (`kanaria-functions.on-image-push`), so every request they send says which function sent it.
//! The front server turns the request into the IAM actions it needs (the signing name is the
//! service, the operation comes from `X-Amz-Target`, the query protocol's `Action`, or the REST
//! path; a DynamoDB transaction needs the actions of its items) and appends
//! `function<TAB>action` lines to the file named by `KANARIA_IAM_CALL_LOG`, when set.
//! `scripts/test` sets it for the whole test run, then `tests/template.rs`
//! (`calls_made_on_emulated_aws_are_granted`) checks every line against the function's role in
//! template.yaml: a call the role does not allow would be AccessDenied in AWS.

use std::io::Write;

use hyper::http::request::Parts;
use hyper::Method;

use crate::server::FUNCTION_APP_NAME;

/// The environment variable naming the log file.
pub const LOG_ENV: &str = "KANARIA_IAM_CALL_LOG";

/// The SDK app id of one hosted function's clients.
pub fn app_name(crate_name: &str) -> String {
    format!("{FUNCTION_APP_NAME}.{crate_name}")
}

/// The function (crate name) whose client sent this request, from `app/...` in the user agent.
pub fn function_of(parts: &Parts) -> Option<String> {
    let prefix = format!("app/{FUNCTION_APP_NAME}.");
    ["x-amz-user-agent", "user-agent"].iter().find_map(|h| {
        let ua = parts.headers.get(*h)?.to_str().ok()?;
        let start = ua.find(&prefix)? + prefix.len();
        let name: String = ua[start..].chars().take_while(|c| !c.is_whitespace()).collect();
        (!name.is_empty()).then_some(name)
    })
}

/// The IAM actions a request needs (`service:Action`); empty when it cannot tell.
pub fn actions(parts: &Parts, body: &[u8]) -> Vec<String> {
    let header = |h: &str| parts.headers.get(h).and_then(|v| v.to_str().ok());
    // SigV4: Credential=KEY/DATE/REGION/SERVICE/aws4_request. The signing name is the IAM
    // service prefix, except CloudWatch's.
    let Some(service) = header("authorization").and_then(|a| a.split("Credential=").nth(1)).and_then(|c| c.split('/').nth(3)) else {
        return vec![];
    };
    let prefix = match service {
        "monitoring" => "cloudwatch",
        other => other,
    };
    let operation = if let Some(target) = header("x-amz-target") {
        target.rsplit('.').next().map(str::to_string)
    } else if let Some(op) = parts.uri.path().split("/operation/").nth(1) {
        // Smithy RPC v2 CBOR: /service/SERVICE/operation/OPERATION.
        Some(op.to_string())
    } else if header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
        // The query protocol (ELBv2, SNS, CloudWatch until RPC v2): Action=OPERATION&...
        std::str::from_utf8(body).ok().and_then(|b| b.split('&').find_map(|kv| kv.strip_prefix("Action=").map(str::to_string)))
    } else {
        rest_operation(prefix, &parts.method, parts.uri.path())
    };
    let Some(operation) = operation else { return vec![] };
    if prefix == "dynamodb" && operation == "TransactWriteItems" {
        return transact_write_actions(body);
    }
    vec![format!("{prefix}:{operation}")]
}

/// REST-JSON services kanaria's functions call: EventBridge Scheduler.
fn rest_operation(prefix: &str, method: &Method, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let op = match (prefix, method.as_str(), segments.as_slice()) {
        ("scheduler", "GET", ["schedules"]) => "ListSchedules",
        ("scheduler", "GET", ["schedules", _]) => "GetSchedule",
        ("scheduler", "POST", ["schedules", _]) => "CreateSchedule",
        ("scheduler", "PUT", ["schedules", _]) => "UpdateSchedule",
        ("scheduler", "DELETE", ["schedules", _]) => "DeleteSchedule",
        ("scheduler", "GET", ["schedule-groups"]) => "ListScheduleGroups",
        ("scheduler", "GET", ["schedule-groups", _]) => "GetScheduleGroup",
        _ => return Some(format!("<{method} {path}>")),
    };
    Some(op.to_string())
}

/// TransactWriteItems is authorized per item: PutItem, UpdateItem, DeleteItem, ConditionCheckItem.
fn transact_write_actions(body: &[u8]) -> Vec<String> {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else { return vec!["dynamodb:TransactWriteItems".into()] };
    let mut found: Vec<String> = request
        .get("TransactItems")
        .and_then(|items| items.as_array())
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_object()?.keys().next().cloned())
        .map(|kind| match kind.as_str() {
            "Put" => "dynamodb:PutItem".to_string(),
            "Update" => "dynamodb:UpdateItem".to_string(),
            "Delete" => "dynamodb:DeleteItem".to_string(),
            "ConditionCheck" => "dynamodb:ConditionCheckItem".to_string(),
            other => format!("dynamodb:<TransactWriteItems {other}>"),
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Append what this request needed to the log, if one is configured. Lines are short and
/// written with one `write` on an append-mode file, so concurrent test processes do not mix them.
pub fn record(parts: &Parts, body: &[u8]) {
    let Some(path) = std::env::var_os(LOG_ENV) else { return };
    let Some(function) = function_of(parts) else { return };
    let lines: String = actions(parts, body).into_iter().map(|a| format!("{function}\t{a}\n")).collect();
    if lines.is_empty() {
        return;
    }
    let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(lines.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(error = %e, path = %std::path::Path::new(&path).display(), "could not record the IAM actions of a call");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, path: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = hyper::Request::builder().method(method).uri(format!("http://127.0.0.1{path}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn auth(service: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential=test/20261122/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00")
    }

    #[test]
    fn requests_become_iam_actions() {
        let ua = format!("aws-sdk-rust/1.3 app/{} md/x", app_name("on-image-push"));
        let p = parts(
            "POST",
            "/",
            &[
                ("authorization", &auth("ecs")),
                ("x-amz-target", "AmazonEC2ContainerServiceV20141113.DescribeServices"),
                ("x-amz-user-agent", &ua),
            ],
        );
        assert_eq!(function_of(&p).as_deref(), Some("on-image-push"));
        assert_eq!(actions(&p, b"{}"), ["ecs:DescribeServices"]);

        let p =
            parts("POST", "/", &[("authorization", &auth("elasticloadbalancing")), ("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(actions(&p, b"Action=ModifyListener&Version=2015-12-01"), ["elasticloadbalancing:ModifyListener"]);
        assert_eq!(function_of(&p), None, "no app id: not a function's call");

        let p = parts("POST", "/", &[("authorization", &auth("monitoring")), ("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(actions(&p, b"Action=DescribeAlarms"), ["cloudwatch:DescribeAlarms"]);

        let p = parts("PUT", "/schedules/kanaria.prod.web.night", &[("authorization", &auth("scheduler"))]);
        assert_eq!(actions(&p, b"{}"), ["scheduler:UpdateSchedule"]);

        let p = parts("POST", "/", &[("authorization", &auth("dynamodb")), ("x-amz-target", "DynamoDB_20120810.TransactWriteItems")]);
        let body = br#"{"TransactItems":[{"Delete":{}},{"Delete":{}},{"Put":{}}]}"#;
        assert_eq!(actions(&p, body), ["dynamodb:DeleteItem", "dynamodb:PutItem"]);
    }
}
