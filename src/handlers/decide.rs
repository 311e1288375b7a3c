//! `decide`: a person's decision on a rollout (`kanaria approve`, `reject`, `promote`, `abort`),
//! behind a Lambda Function URL with `AWS_IAM` auth. Lambda checks the request's SigV4
//! signature and the caller's `lambda:InvokeFunctionUrl` permission before the function runs,
//! and hands it the caller's identity (`requestContext.authorizer.iam`): that is who decided,
//! for the record and for `forbidSelfApproval`, and nothing the caller writes can change it.
//!
//! The decision runs here, with this function's role: the caller needs no access to kanaria's
//! table (where the Step Functions task tokens are) nor to Step Functions, ECS or the ALB.
//!
//! Request: `POST {"service": "CLUSTER/SERVICE", "decision": "approve" | "reject" | "promote" |
//! "abort", "now": true}` (`now`: an abort that skips the policy's `shiftBack` pacing). Answer:
//! 200 `{"decided": true|false, "message": "..."}` (`decided: false` when nothing was done:
//! nothing pending, expired, already decided, one's own push, no rollout in flight), 400 for a
//! malformed request, 403 without a verified caller, 500 (retry) when AWS failed.

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::circuit_breaker::Pace;
use super::{approval, manual, HandlerError};
use crate::aws::store::Store;
use crate::aws::Context;
use crate::identity::Decider;

/// Bodies larger than this are refused before parsing.
const MAX_BODY_BYTES: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    service: String,
    decision: Decision,
    /// `abort` only: at once, not paced by the policy's `shiftBack`.
    #[serde(default)]
    now: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Decision {
    Approve,
    Reject,
    Promote,
    Abort,
}

/// Lambda Function URL in, Function URL response out. Nothing in a request is an error of the
/// function: those are HTTP statuses.
pub async fn handle(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    let (status, body) = match answer(ctx, &event).await {
        Ok(body) => (200, body),
        Err((status, message)) => (status, json!({ "message": message })),
    };
    Ok(json!({
        "statusCode": status,
        "headers": { "content-type": "application/json" },
        "body": body.to_string(),
        "isBase64Encoded": false,
    }))
}

/// The caller as Lambda verified it, when the URL's auth is AWS_IAM.
fn caller(event: &Value) -> Option<&str> {
    event.pointer("/requestContext/authorizer/iam/userArn").and_then(Value::as_str).filter(|arn| arn.starts_with("arn:"))
}

/// `CLUSTER/SERVICE`, each part as ECS names allow (letters, digits, `-` and `_`, up to 255).
fn service_key(text: &str) -> Option<&str> {
    let (cluster, service) = text.split_once('/')?;
    let ok = |p: &str| !p.is_empty() && p.len() <= 255 && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    (ok(cluster) && ok(service)).then_some(text)
}

async fn answer(ctx: &Context, event: &Value) -> Result<Value, (u16, String)> {
    let Some(caller) = caller(event) else {
        // Only a URL whose AuthType is NONE delivers requests without it: refuse them all.
        warn!("decision refused: no IAM caller in the request (the function URL's AuthType must be AWS_IAM)");
        return Err((403, "no verified IAM caller: the function URL must use AWS_IAM auth".into()));
    };
    let method = event.pointer("/requestContext/http/method").and_then(Value::as_str).unwrap_or("POST");
    if !method.eq_ignore_ascii_case("POST") {
        return Err((400, format!("{method} is not POST")));
    }
    let raw = event.get("body").and_then(Value::as_str).unwrap_or("");
    if raw.len() > MAX_BODY_BYTES {
        return Err((400, format!("the body is {} bytes; at most {MAX_BODY_BYTES}", raw.len())));
    }
    let body = if event.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
        base64::engine::general_purpose::STANDARD.decode(raw).map_err(|_| (400, "the body is not base64".to_string()))?
    } else {
        raw.as_bytes().to_vec()
    };
    let request: Request = serde_json::from_slice(&body)
        .map_err(|e| (400, format!("the body must be {{\"service\": \"CLUSTER/SERVICE\", \"decision\": \"approve\"|\"reject\"}}: {e}")))?;
    let Some(key) = service_key(&request.service) else {
        return Err((400, format!("{:?} is not CLUSTER/SERVICE", request.service)));
    };
    let (exit, message) = match request.decision {
        Decision::Approve | Decision::Reject => approval_decision(ctx, key, request.decision == Decision::Approve, caller).await?,
        Decision::Promote => {
            let id =
                manual::promote(ctx, key).await.map_err(|e| (500, format!("requesting the promotion of {key} failed ({e}); try again")))?;
            crate::cli::manual_cmd::promote_outcome(key, id.as_deref())
        }
        Decision::Abort => {
            let pace = if request.now { Pace::Now } else { Pace::Policy };
            let result = manual::abort(ctx, key, &format!("{caller} via kanaria abort"), pace)
                .await
                .map_err(|e| (500, format!("aborting the rollout of {key} failed ({e}); `kanaria status {key}` shows where it stands")))?;
            crate::cli::manual_cmd::abort_outcome(key, result.as_ref())
        }
    };
    let decided = exit == crate::cli::Exit::Success;
    info!(service = %key, by = %caller, decision = ?request.decision, decided, "decision by IAM caller");
    Ok(json!({ "decided": decided, "message": message }))
}

/// Approve or reject the approval the service's rollout waits for.
async fn approval_decision(ctx: &Context, key: &str, approve: bool, caller: &str) -> Result<(crate::cli::Exit, String), (u16, String)> {
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let lock = store.lock(key).await.map_err(|e| (500, format!("reading the rollout of {key} failed ({e}); try again")))?;
    let Some(approval_id) = lock.and_then(|l| l.approval_id) else {
        return Ok(crate::cli::manual_cmd::decision_outcome(key, approve, None));
    };
    let via = if approve { "kanaria approve" } else { "kanaria reject" };
    let decider = Decider::Iam { arn: caller.to_string() };
    let result = approval::decide(ctx, &approval_id, approve, &decider, via, None)
        .await
        .map_err(|e| (500, format!("deciding the approval of {key} failed ({e}); try again")))?;
    Ok(crate::cli::manual_cmd::decision_outcome(key, approve, Some(&result)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cluster_slash_service_names_a_service() {
        assert_eq!(service_key("prod/web"), Some("prod/web"));
        for bad in ["prod", "/web", "prod/", "prod/web/x", "prod/w eb", "prod/web\n", "a/💥"] {
            assert_eq!(service_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_caller_comes_from_lambdas_iam_authorizer_only() {
        let with = json!({"requestContext": {"authorizer": {"iam": {"userArn": "arn:aws:sts::123456789012:assumed-role/dev/alice"}}}});
        assert_eq!(caller(&with), Some("arn:aws:sts::123456789012:assumed-role/dev/alice"));
        for without in [
            json!({}),
            json!({"requestContext": {"authorizer": {"iam": {"userArn": ""}}}}),
            json!({"requestContext": {}}),
            // A body cannot claim it.
            json!({"body": "{\"requestContext\": {\"authorizer\": {\"iam\": {\"userArn\": \"arn:aws:iam::1:user/x\"}}}}"}),
        ] {
            assert_eq!(caller(&without), None, "{without}");
        }
    }
}
