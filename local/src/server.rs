//! The front door of emulated AWS: one HTTP port (the `MOTO_PORT` moto's Step Functions
//! interpreter calls) that answers the Lambda Invoke API with kanaria's real handlers and
//! forwards every other request to moto unchanged.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::call::ApiCall;
use crate::faults::FaultKind;
use crate::{Shared, Target};

type Body = Full<Bytes>;

/// The SDK app id (`AWS_SDK_UA_APP_ID`, `app/...` in the user agent) of kanaria's functions'
/// own AWS clients here: the handlers hosted in-process and the release binaries the benchmarks
/// start. Requests carrying it are the functions' AWS API calls.
pub const FUNCTION_APP_NAME: &str = "kanaria-functions";

/// AWS API calls made by kanaria's functions and forwarded to moto (benchmarks: API calls per
/// rollout). Calls of the local runtime itself (simulator, event bridge, fixtures) are not counted.
pub static FUNCTION_API_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let shared = shared.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let client = client.clone();
                async move {
                    match route(req, &shared, &client).await {
                        Answer::Respond(r) => Ok(r),
                        // An error from the service closes the connection without an answer.
                        Answer::Drop => Err(DroppedConnection),
                    }
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                debug!(error = %e, "connection closed");
            }
        });
    }
}

/// What the front server does with a request.
enum Answer {
    Respond(Response<Body>),
    /// A fault: close the connection without answering.
    Drop,
}

impl From<Response<Body>> for Answer {
    fn from(r: Response<Body>) -> Self {
        Answer::Respond(r)
    }
}

#[derive(Debug)]
struct DroppedConnection;

impl std::fmt::Display for DroppedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for DroppedConnection {}

/// `/2015-03-31/functions/{name or ARN}/invocations` → the function name or ARN.
fn invocation_target(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/2015-03-31/functions/")?;
    let name = rest.strip_suffix("/invocations")?;
    Some(percent_decode(name))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn route(req: Request<Incoming>, shared: &Arc<Shared>, client: &Client<HttpConnector, Body>) -> Answer {
    if req.uri().path().starts_with("/slack/") {
        let path = req.uri().path().to_string();
        let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let (status, reply) = shared.slack.handle(&path, authorization, &body);
        shared.notify_waiters();
        return Response::builder()
            .status(status)
            .header("content-type", "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(reply)))
            .expect("static response")
            .into();
    }
    if req.method() == Method::POST {
        if let Some(name) = req.uri().path().strip_prefix("/function-url/") {
            let name = name.trim_end_matches('/').to_string();
            let headers: Vec<(String, String)> =
                req.headers().iter().map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or_default().to_string())).collect();
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return plain(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}")).into(),
            };
            return function_url(shared, &name, &headers, &body).await.into();
        }
        if let Some(target) = invocation_target(req.uri().path()) {
            let asynchronous = req.headers().get("x-amz-invocation-type").and_then(|v| v.to_str().ok()) == Some("Event");
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return plain(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}")).into(),
            };
            return invoke(shared, &target, body, asynchronous).await;
        }
    }
    forward(req, shared, client).await
}

async fn invoke(shared: &Arc<Shared>, target: &str, body: Bytes, asynchronous: bool) -> Answer {
    let fault = shared.faults.check(Some("states"), "lambda:Invoke");
    let lambda_error = |status: StatusCode, code: &str, message: &str| -> Answer {
        Response::builder()
            .status(status)
            .header("x-amzn-errortype", code)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(serde_json::json!({"Type": "User", "message": message}).to_string())))
            .expect("static response")
            .into()
    };
    match &fault {
        Some(FaultKind::DropConnection) => return Answer::Drop,
        Some(FaultKind::LambdaTooManyRequests | FaultKind::Throttle) => {
            return lambda_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", "Rate Exceeded.")
        }
        Some(FaultKind::ServerError) => {
            return lambda_error(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", "Lambda was unable to process the request")
        }
        Some(FaultKind::Unavailable) => return lambda_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceException", "Lambda is unavailable"),
        _ => {}
    }
    let Some(target_fn) = shared.function_for(target) else {
        return lambda_error(StatusCode::NOT_FOUND, "ResourceNotFoundException", &format!("Function not found: {target}"));
    };
    // Only the state machine invokes functions over HTTP here: its role must allow it.
    let arn = if target.starts_with("arn:") { target.to_string() } else { crate::function_arn(target) };
    if let Some(why) = shared.iam.authorize_invoke(&arn) {
        return lambda_error(StatusCode::FORBIDDEN, "AccessDeniedException", &why);
    }
    let payload: serde_json::Value = if body.is_empty() {
        serde_json::Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return lambda_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    &format!("Could not parse request body into json: {e}"),
                )
            }
        }
    };
    let function = match target_fn {
        Target::Kanaria(f) => f,
        Target::Extra(f) => {
            let output = f(payload);
            return Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(output.to_string())))
                .expect("static response")
                .into();
        }
    };
    if asynchronous {
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = shared.invoke(function, payload).await;
        });
        return Response::builder().status(StatusCode::ACCEPTED).body(Full::new(Bytes::new())).expect("static response").into();
    }
    let result = shared.invoke(function, payload).await;
    // Lambda reports a function error as HTTP 200 with X-Amz-Function-Error.
    let function_error = |error_type: &str, message: &str| -> Answer {
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("x-amz-function-error", "Unhandled")
            .body(Full::new(Bytes::from(serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string())))
            .expect("static response")
            .into()
    };
    match (fault, result) {
        // The function ran (its changes were made); the caller hears of a failure only.
        (Some(FaultKind::AppliedThenError), _) => {
            lambda_error(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", "Lambda was unable to return the function's response")
        }
        (Some(FaultKind::LambdaTimeout), _) => function_error("Sandbox.Timedout", "Task timed out after 60.00 seconds"),
        (_, Ok(output)) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("x-amz-executed-version", "$LATEST")
            .body(Full::new(Bytes::from(output.to_string())))
            .expect("static response")
            .into(),
        (_, Err(e)) => function_error(&e.error_type, &e.message),
    }
}

/// A Lambda Function URL: the HTTP request as a Function URL event, the function's answer
/// (`statusCode`, `headers`, `body`, `isBase64Encoded`) as the HTTP response.
async fn function_url(shared: &Arc<Shared>, name: &str, headers: &[(String, String)], body: &[u8]) -> Response<Body> {
    let Some(Target::Kanaria(function)) = shared.function_for(name) else {
        return plain(StatusCode::NOT_FOUND, format!("no function URL for {name}"));
    };
    let mut event = crate::slack::function_url_event(headers, body);
    if shared.url_auth.get(name).map(String::as_str) == Some("AWS_IAM") {
        // Lambda answers 403 itself to a request that is not SigV4-signed for lambda, and hands
        // the function the caller's identity. (Signatures are not verified here: moto knows no
        // secret keys; the identity is what STS says of the request's access key.)
        let authorization = headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.as_str()).unwrap_or("");
        let scope: Vec<&str> = authorization
            .strip_prefix("AWS4-HMAC-SHA256 Credential=")
            .and_then(|rest| rest.split(',').next())
            .map(|c| c.split('/').collect())
            .unwrap_or_default();
        let [access_key, _, _, "lambda", "aws4_request"] = scope[..] else {
            return Response::builder()
                .status(StatusCode::FORBIDDEN)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(r#"{"Message":"Forbidden"}"#)))
                .expect("static response");
        };
        match caller_identity(shared, access_key).await {
            Ok((arn, user_id, account)) => {
                event["requestContext"]["authorizer"] = serde_json::json!({"iam": {
                    "accessKey": access_key, "accountId": account, "callerId": user_id, "userArn": arn, "userId": user_id,
                    "cognitoIdentity": null, "principalOrgId": null}});
            }
            Err(e) => return plain(StatusCode::FORBIDDEN, format!("the caller's identity could not be established: {e}")),
        }
    }
    match shared.invoke(function, event).await {
        Ok(answer) => {
            let status = answer["statusCode"].as_u64().and_then(|s| StatusCode::from_u16(s as u16).ok()).unwrap_or(StatusCode::OK);
            let text = answer["body"].as_str().unwrap_or_default().to_string();
            let mut out = Response::builder().status(status);
            if let Some(h) = answer["headers"].as_object() {
                for (k, v) in h {
                    if let Some(v) = v.as_str() {
                        out = out.header(k.as_str(), v);
                    }
                }
            }
            out.body(Full::new(Bytes::from(text))).unwrap_or_else(|e| plain(StatusCode::BAD_GATEWAY, format!("bad function answer: {e}")))
        }
        // A function error behind a Function URL is an HTTP 502.
        Err(e) => plain(StatusCode::BAD_GATEWAY, format!("{}: {}", e.error_type, e.message)),
    }
}

/// What STS says of an access key: (ARN, user id, account).
async fn caller_identity(shared: &Arc<Shared>, access_key: &str) -> anyhow::Result<(String, String, String)> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://{}", shared.moto_addr))
        .region(aws_config::Region::new(crate::REGION))
        .credentials_provider(aws_credential_types::Credentials::new(access_key, "test", None, None, "function-url-caller"))
        .load()
        .await;
    let id = aws_sdk_sts::Client::new(&config).get_caller_identity().send().await?;
    Ok((id.arn().unwrap_or_default().into(), id.user_id().unwrap_or_default().into(), id.account().unwrap_or_default().into()))
}

/// An AWS API call for moto: answered here where AWS would answer differently (the strict
/// front, [`crate::ecs::front`]), else forwarded to moto and its answer adjusted.
async fn forward(req: Request<Incoming>, shared: &Arc<Shared>, client: &Client<HttpConnector, Body>) -> Answer {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}")).into(),
    };
    let ua = |h: &str| parts.headers.get(h).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains(FUNCTION_APP_NAME));
    if ua("x-amz-user-agent") || ua("user-agent") {
        FUNCTION_API_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let call = ApiCall::parse(&parts, &body);
    let mut applied_then_error = false;
    if let Some(call) = &call {
        if let Some(caller) = &call.caller {
            shared.count_call(caller, call.action());
        }
        if let Some(denied) = shared.iam.authorize(shared, call, &parts, &body).await {
            return denied.into();
        }
        match shared.faults.check(call.caller.as_deref(), &call.action()) {
            None => {}
            Some(FaultKind::AppliedThenError) => applied_then_error = true,
            Some(FaultKind::DropConnection) => return Answer::Drop,
            Some(fault) => return fault_answer(call, &fault, &body).into(),
        }
        if let Some(answer) = crate::ecs::front::before(shared, call, &body).await {
            return if applied_then_error { internal_error(call).into() } else { answer.into() };
        }
    }
    let (status, head, answer) = match to_moto(&parts, body.clone(), shared.moto_addr, client).await {
        Ok(r) => r,
        Err(resp) => return resp.into(),
    };
    let answer = match &call {
        Some(call) => {
            shared.ssm_events.after(call, &body, status, &answer);
            crate::ecs::front::after(shared, call, &body, status, answer)
        }
        None => answer,
    };
    if let (true, Some(call)) = (applied_then_error, &call) {
        // The call took effect; the caller never learns it did.
        return internal_error(call).into();
    }
    let mut out = Response::builder().status(status);
    for (k, v) in head.iter().filter(|(k, _)| *k != "content-length") {
        out = out.header(k, v);
    }
    out.body(Full::new(answer)).unwrap_or_else(|e| plain(StatusCode::BAD_GATEWAY, format!("bad answer from moto: {e}"))).into()
}

/// An injected fault, answered as the service would answer it.
fn fault_answer(call: &ApiCall, fault: &FaultKind, request: &Bytes) -> Response<Body> {
    match fault {
        FaultKind::Throttle => {
            let status = if call.protocol == crate::call::Protocol::Rest { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::BAD_REQUEST };
            call.error(status, call.throttling_code(), "Rate exceeded")
        }
        FaultKind::Unavailable => {
            call.error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "Service is unavailable. Please try again.")
        }
        FaultKind::TransactionCanceled(reason) if call.operation == "TransactWriteItems" => {
            // One reason per item, in order (DynamoDB API reference, TransactWriteItems).
            let items = serde_json::from_slice::<serde_json::Value>(request)
                .ok()
                .and_then(|v| v["TransactItems"].as_array().map(|a| a.len()))
                .unwrap_or(1)
                .max(1);
            let codes: Vec<&str> = (0..items).map(|i| if i == 0 { reason.as_str() } else { "None" }).collect();
            let reasons: Vec<serde_json::Value> = codes
                .iter()
                .map(|c| {
                    if *c == "None" {
                        serde_json::json!({"Code": "None"})
                    } else {
                        serde_json::json!({"Code": c, "Message": "Transaction is ongoing for the item."})
                    }
                })
                .collect();
            let mut extra = serde_json::Map::new();
            extra.insert("CancellationReasons".into(), reasons.into());
            let message = format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{}]", codes.join(", "));
            call.error_with(StatusCode::BAD_REQUEST, "TransactionCanceledException", &message, extra)
        }
        _ => internal_error(call),
    }
}

/// HTTP 500 with the service's internal-error code (the SDK retries it).
fn internal_error(call: &ApiCall) -> Response<Body> {
    let code = match call.service.as_str() {
        "ecs" => "ServerException",
        "dynamodb" => "InternalServerError",
        _ => "InternalFailure",
    };
    call.error(StatusCode::INTERNAL_SERVER_ERROR, code, "We encountered an internal error. Please try again.")
}

/// Send the request to moto as it came; its status, headers and body.
async fn to_moto(
    parts: &hyper::http::request::Parts,
    body: Bytes,
    moto: SocketAddr,
    client: &Client<HttpConnector, Body>,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), Response<Body>> {
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let uri: hyper::Uri = match format!("http://{moto}{path}").parse() {
        Ok(u) => u,
        Err(e) => return Err(plain(StatusCode::BAD_REQUEST, format!("bad path: {e}"))),
    };
    let mut out = Request::builder().method(parts.method.clone()).uri(uri);
    for (k, v) in parts.headers.iter() {
        out = out.header(k, v);
    }
    let out = match out.body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => return Err(plain(StatusCode::BAD_REQUEST, format!("bad request: {e}"))),
    };
    match client.request(out).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Ok((parts.status, parts.headers, bytes))
        }
        Err(e) => {
            warn!(error = %e, "moto did not answer");
            Err(plain(StatusCode::BAD_GATEWAY, format!("emulated AWS (moto at {moto}) did not answer: {e}")))
        }
    }
}

fn plain(status: StatusCode, msg: String) -> Response<Body> {
    Response::builder().status(status).body(Full::new(Bytes::from(msg))).expect("static response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_paths_decode_names_and_arns() {
        assert_eq!(invocation_target("/2015-03-31/functions/RolloutStepFunction/invocations").as_deref(), Some("RolloutStepFunction"));
        assert_eq!(
            invocation_target(
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3ARolloutStepFunction/invocations"
            )
            .as_deref(),
            Some("arn:aws:lambda:us-east-1:123456789012:function:RolloutStepFunction")
        );
        assert_eq!(invocation_target("/2015-03-31/functions/x"), None);
    }
}
