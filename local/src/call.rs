//! One AWS API call as the front server sees it: which service and operation, which kanaria
//! function made it (if any), its parameters, and how that service's protocol spells an error.
//!
//! Each hosted function's SDK clients carry its crate name in the SDK app id
//! (`kanaria-functions.on-image-push`), so every request says which function sent it. Calls of
//! the local runtime itself, of tests and of the `kanaria` CLI carry none.

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};

use crate::server::FUNCTION_APP_NAME;

/// How a service's API is spoken (Smithy protocols), which decides the shape of its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// awsJson1_0 / awsJson1_1: `X-Amz-Target`, JSON in and out (ECS, DynamoDB, Step Functions,
    /// SSM, Secrets Manager, Logs, Application Auto Scaling, EventBridge, SQS).
    Json,
    /// awsQuery: form-encoded `Action=...`, XML out (ELBv2, SNS, CloudWatch, IAM, EC2).
    Query,
    /// restJson1: the operation is in the method and path (Scheduler, Lambda).
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    /// The SigV4 signing name (`ecs`, `elasticloadbalancing`, `monitoring`, …).
    pub service: String,
    /// The API operation (`CreateTaskSet`).
    pub operation: String,
    /// The kanaria function whose client made the call (its crate name), if any.
    pub caller: Option<String>,
    pub protocol: Protocol,
}

impl ApiCall {
    /// `None` when the request is not a signed AWS API call (moto's own API, say).
    pub fn parse(parts: &Parts, body: &[u8]) -> Option<ApiCall> {
        let header = |h: &str| parts.headers.get(h).and_then(|v| v.to_str().ok());
        // SigV4: Credential=KEY/DATE/REGION/SERVICE/aws4_request.
        let service = header("authorization")?.split("Credential=").nth(1)?.split('/').nth(3)?.to_string();
        let (operation, protocol) = if let Some(target) = header("x-amz-target") {
            (target.rsplit('.').next()?.to_string(), Protocol::Json)
        } else if let Some(op) = parts.uri.path().split("/operation/").nth(1) {
            // Smithy RPC v2 CBOR: /service/SERVICE/operation/OPERATION.
            (op.to_string(), Protocol::Json)
        } else if header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
            let op = form(body).into_iter().find(|(k, _)| k == "Action").map(|(_, v)| v)?;
            (op, Protocol::Query)
        } else {
            (rest_operation(&service, parts.method.as_str(), parts.uri.path())?, Protocol::Rest)
        };
        Some(ApiCall { service, operation, caller: caller_of(parts), protocol })
    }

    /// The IAM service prefix: the signing name, except CloudWatch's.
    pub fn iam_prefix(&self) -> &str {
        match self.service.as_str() {
            "monitoring" => "cloudwatch",
            other => other,
        }
    }

    /// `service:Operation` as IAM and fault rules name it (`ecs:CreateTaskSet`).
    pub fn action(&self) -> String {
        format!("{}:{}", self.iam_prefix(), self.operation)
    }

    /// An error in this service's own shape (what the SDK parses into an error code).
    pub fn error(&self, status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
        self.error_with(status, code, message, serde_json::Map::new())
    }

    /// An error with extra JSON members (DynamoDB's `CancellationReasons`, say).
    pub fn error_with(
        &self,
        status: StatusCode,
        code: &str,
        message: &str,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Response<Full<Bytes>> {
        match self.protocol {
            Protocol::Query => {
                let kind = if status.is_server_error() { "Receiver" } else { "Sender" };
                let body = format!(
                    "<ErrorResponse xmlns=\"http://{}.amazonaws.com/doc/\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                    self.service,
                    xml_escape(code),
                    xml_escape(message),
                    request_id()
                );
                Response::builder()
                    .status(status)
                    .header("content-type", "text/xml")
                    .header("x-amzn-requestid", request_id())
                    .body(Full::new(Bytes::from(body)))
                    .expect("static response")
            }
            Protocol::Json | Protocol::Rest => {
                let mut body = serde_json::Map::new();
                body.insert("__type".into(), code.into());
                body.insert("message".into(), message.into());
                body.extend(extra);
                let content_type = if self.protocol == Protocol::Json { "application/x-amz-json-1.1" } else { "application/json" };
                Response::builder()
                    .status(status)
                    .header("content-type", content_type)
                    .header("x-amzn-errortype", code)
                    .header("x-amzn-requestid", request_id())
                    .body(Full::new(Bytes::from(serde_json::Value::Object(body).to_string())))
                    .expect("static response")
            }
        }
    }

    /// The error code AWS uses for throttling on this service (what the SDK retries as such).
    pub fn throttling_code(&self) -> &'static str {
        match (self.protocol, self.service.as_str()) {
            // ELBv2 and CloudWatch answer `Throttling` on the wire; SNS `Throttled`, which the
            // Rust SDK does not classify as throttling (so it is not retried).
            (_, "sns") => "Throttled",
            (Protocol::Query, _) => "Throttling",
            (_, "dynamodb") => "ProvisionedThroughputExceededException",
            (_, "lambda") => "TooManyRequestsException",
            _ => "ThrottlingException",
        }
    }
}

/// The function (crate name) whose client sent this request, from `app/...` in the user agent.
pub fn caller_of(parts: &Parts) -> Option<String> {
    let prefix = format!("app/{FUNCTION_APP_NAME}.");
    ["x-amz-user-agent", "user-agent"].iter().find_map(|h| {
        let ua = parts.headers.get(*h)?.to_str().ok()?;
        let start = ua.find(&prefix)? + prefix.len();
        let name: String = ua[start..].chars().take_while(|c| !c.is_whitespace()).collect();
        (!name.is_empty()).then_some(name)
    })
}

/// The pairs of a form-encoded body.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// REST-JSON operations kanaria's functions call: EventBridge Scheduler.
fn rest_operation(service: &str, method: &str, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let op = match (service, method, segments.as_slice()) {
        ("scheduler", "GET", ["schedules"]) => "ListSchedules",
        ("scheduler", "GET", ["schedules", _]) => "GetSchedule",
        ("scheduler", "POST", ["schedules", _]) => "CreateSchedule",
        ("scheduler", "PUT", ["schedules", _]) => "UpdateSchedule",
        ("scheduler", "DELETE", ["schedules", _]) => "DeleteSchedule",
        ("scheduler", "GET", ["schedule-groups"]) => "ListScheduleGroups",
        ("scheduler", "GET", ["schedule-groups", _]) => "GetScheduleGroup",
        ("scheduler", "POST", ["schedule-groups", _]) => "CreateScheduleGroup",
        ("lambda", "POST", ["2015-03-31", "functions", _, "invocations"]) => "Invoke",
        _ => return Some(format!("<{method} {path}>")),
    };
    Some(op.to_string())
}

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("00000000-0000-4000-8000-{:012x}", NEXT.fetch_add(1, Ordering::Relaxed))
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
    fn calls_are_named_by_service_operation_and_caller() {
        let ua = format!("aws-sdk-rust/1.3 app/{FUNCTION_APP_NAME}.on-image-push md/x");
        let p = parts(
            "POST",
            "/",
            &[
                ("authorization", &auth("ecs")),
                ("x-amz-target", "AmazonEC2ContainerServiceV20141113.DescribeServices"),
                ("x-amz-user-agent", &ua),
            ],
        );
        let call = ApiCall::parse(&p, b"{}").unwrap();
        assert_eq!(
            (call.action(), call.caller.as_deref(), call.protocol),
            ("ecs:DescribeServices".into(), Some("on-image-push"), Protocol::Json)
        );

        let p = parts("POST", "/", &[("authorization", &auth("monitoring")), ("content-type", "application/x-www-form-urlencoded")]);
        let call = ApiCall::parse(&p, b"Action=DescribeAlarms&Version=2010-08-01").unwrap();
        assert_eq!((call.action(), call.caller, call.protocol), ("cloudwatch:DescribeAlarms".into(), None, Protocol::Query));

        let p = parts("PUT", "/schedules/kanaria.prod.web.night", &[("authorization", &auth("scheduler"))]);
        assert_eq!(ApiCall::parse(&p, b"{}").unwrap().action(), "scheduler:UpdateSchedule");
        assert!(ApiCall::parse(&parts("GET", "/moto-api/", &[]), b"").is_none(), "unsigned: not an AWS call");
    }

    #[test]
    fn errors_take_each_protocols_shape() {
        let json = ApiCall { service: "ecs".into(), operation: "CreateTaskSet".into(), caller: None, protocol: Protocol::Json };
        let r = json.error(StatusCode::BAD_REQUEST, json.throttling_code(), "Rate exceeded");
        assert_eq!(r.headers()["x-amzn-errortype"], "ThrottlingException");
        let query =
            ApiCall { service: "elasticloadbalancing".into(), operation: "ModifyListener".into(), caller: None, protocol: Protocol::Query };
        assert_eq!(query.throttling_code(), "Throttling");
        let r = query.error(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded");
        assert_eq!(r.headers()["content-type"], "text/xml");
    }
}
