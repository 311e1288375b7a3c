//! Slack, locally: a recording stand-in for the Slack Web API and for interaction
//! `response_url`s (served on the front port under `/slack/`), the Slack app's secret in Secrets
//! Manager, and the SNS → `slack-notify` subscription.
//!
//! Tests read what kanaria sent ([`SlackRecorder::calls`]), set user group members, and can take
//! "Slack" down to show a rollout does not depend on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use aws_config::SdkConfig;
use kanaria::handlers::Function;
use serde_json::{json, Value};
use tracing::warn;

use crate::Shared;

pub const TEAM_ID: &str = "T0LOCAL01";
pub const APP_ID: &str = "A0LOCAL01";
pub const CHANNEL: &str = "C0LOCAL01";
pub const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5-local";
pub const BOT_TOKEN: &str = "xoxb-0000000000-local-bot-token";
pub const SECRET_NAME: &str = "kanaria/slack";

/// One request kanaria made to "Slack".
#[derive(Debug, Clone)]
pub struct SlackCall {
    /// `chat.postMessage`, `chat.update`, `usergroups.users.list`, `users.info`, or `response_url`.
    pub method: String,
    /// The response_url path after `/slack/response/` (for `response_url` calls).
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

impl SlackCall {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
pub struct SlackRecorder {
    calls: Mutex<Vec<SlackCall>>,
    next_ts: AtomicU64,
    groups: Mutex<HashMap<String, Vec<String>>>,
    emails: Mutex<HashMap<String, String>>,
    down: AtomicBool,
}

impl SlackRecorder {
    pub fn calls(&self) -> Vec<SlackCall> {
        self.calls.lock().expect("slack calls").clone()
    }

    pub fn set_group_members(&self, group: &str, users: &[&str]) {
        self.groups.lock().expect("slack groups").insert(group.into(), users.iter().map(|u| u.to_string()).collect());
    }

    /// The email `users.info` gives for `user` (users without one have no email in Slack).
    pub fn set_user_email(&self, user: &str, email: &str) {
        self.emails.lock().expect("slack emails").insert(user.into(), email.into());
    }

    /// While down, every call answers HTTP 503.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Answer a request under `/slack/`: (status, JSON body).
    pub fn handle(&self, path: &str, authorization: Option<String>, body: &[u8]) -> (u16, String) {
        let body = String::from_utf8_lossy(body).into_owned();
        let (method, rest) = match path.strip_prefix("/slack/api/") {
            Some(m) => (m.to_string(), String::new()),
            None => ("response_url".to_string(), path.strip_prefix("/slack/response/").unwrap_or(path).to_string()),
        };
        self.calls.lock().expect("slack calls").push(SlackCall {
            method: method.clone(),
            path: rest,
            authorization: authorization.clone(),
            body: body.clone(),
        });
        if self.down.load(Ordering::SeqCst) {
            return (503, "{\"ok\":false,\"error\":\"service_unavailable\"}".into());
        }
        if method == "response_url" {
            return (200, "ok".into());
        }
        if authorization.as_deref() != Some(&format!("Bearer {BOT_TOKEN}")) {
            return (200, json!({"ok": false, "error": "invalid_auth"}).to_string());
        }
        let reply = match method.as_str() {
            "chat.postMessage" => {
                let n = self.next_ts.fetch_add(1, Ordering::SeqCst) + 1;
                let channel = serde_json::from_str::<Value>(&body).ok().and_then(|v| v["channel"].as_str().map(str::to_string));
                json!({"ok": true, "channel": channel, "ts": format!("1700000000.{n:06}")})
            }
            "chat.update" => json!({"ok": true}),
            "usergroups.users.list" => {
                let group = form_urlencoded::parse(body.as_bytes())
                    .find(|(k, _)| k == "usergroup")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                match self.groups.lock().expect("slack groups").get(&group) {
                    Some(users) => json!({"ok": true, "users": users}),
                    None => json!({"ok": false, "error": "no_such_subteam"}),
                }
            }
            "users.info" => {
                let user =
                    form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "user").map(|(_, v)| v.into_owned()).unwrap_or_default();
                let profile = match self.emails.lock().expect("slack emails").get(&user) {
                    Some(email) => json!({"real_name": user, "email": email}),
                    None => json!({"real_name": user}),
                };
                json!({"ok": true, "user": {"id": user, "name": user, "profile": profile}})
            }
            _ => json!({"ok": false, "error": "unknown_method"}),
        };
        (200, reply.to_string())
    }
}

/// The Slack app's secret, as an operator stores it.
pub async fn create_secret(config: &SdkConfig) -> Result<String> {
    let sm = aws_sdk_secretsmanager::Client::new(config);
    let secret = json!({"signingSecret": SIGNING_SECRET, "botToken": BOT_TOKEN}).to_string();
    let out = sm.create_secret().name(SECRET_NAME).secret_string(secret).send().await.context("creating the Slack secret")?;
    Ok(out.arn().unwrap_or_default().to_string())
}

/// Subscribe a queue to `topic_arn` and return its URL (SNS → Lambda, the local way).
pub async fn subscribe_queue(config: &SdkConfig, topic_arn: &str, queue_name: &str) -> Result<String> {
    let sns = aws_sdk_sns::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let (queue_url, queue_arn) = crate::bridge::create_queue(&sqs, queue_name, Some(2)).await?;
    sns.subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .with_context(|| format!("subscribing {queue_name}"))?;
    Ok(queue_url)
}

/// Forever: deliver each notification in the queue to `function` as an SNS Lambda event, one
/// at a time (the function's reserved concurrency is 1 in the template).
pub async fn drain_sns(shared: Arc<Shared>, sqs: aws_sdk_sqs::Client, queue_url: String, function: Function) {
    loop {
        let received = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).wait_time_seconds(1).send().await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                warn!(queue = %queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receiving notifications failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for m in messages {
            let envelope: Value = serde_json::from_str(m.body().unwrap_or_default()).unwrap_or(Value::Null);
            let event = json!({ "Records": [{ "EventSource": "aws:sns", "EventVersion": "1.0", "Sns": envelope }] });
            let _ = shared.invoke(function, event).await;
            if let Some(handle) = m.receipt_handle() {
                let _ = sqs.delete_message().queue_url(&queue_url).receipt_handle(handle).send().await;
            }
        }
    }
}

/// A Lambda Function URL request event (payload format 2.0) for an HTTP POST, the way Function
/// URLs deliver it: header names in lower case, a non-text body base64-encoded.
pub fn function_url_event(headers: &[(String, String)], body: &[u8]) -> Value {
    use base64::Engine;
    let content_type = headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str()).unwrap_or("");
    let text = content_type.starts_with("text/") || content_type.starts_with("application/json");
    let (body, encoded) = if text {
        (String::from_utf8_lossy(body).into_owned(), false)
    } else {
        (base64::engine::general_purpose::STANDARD.encode(body), true)
    };
    let headers: serde_json::Map<String, Value> = headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": { "http": { "method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "Slackbot 1.0" } },
        "body": body,
        "isBase64Encoded": encoded,
    })
}
