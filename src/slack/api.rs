//! The Slack adapter: Web API calls (`chat.postMessage`, `chat.update`, `usergroups.users.list`)
//! and `response_url` replies. Rendering lives in [`super::message`]; this only sends.
//!
//! Every call has a short timeout, and callers treat failures as non-fatal: Slack being down
//! never blocks or fails a rollout.

use std::time::Duration;

use serde_json::{json, Value};

use crate::aws::secrets::Secret;

/// Where kanaria's Slack app lives, from the function's environment (template.yaml).
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// Secrets Manager secret with the signing secret and bot token (`KANARIA_SLACK_SECRET_ARN`).
    pub secret_arn: Option<String>,
    /// The workspace (`team.id`) and app (`api_app_id`) interactions must come from.
    pub team_id: String,
    pub app_id: String,
    /// Channel for rollout messages when a policy names none (`KANARIA_SLACK_CHANNEL`).
    pub default_channel: Option<String>,
    /// Web API base URL (`KANARIA_SLACK_API_URL`; tests point it at a local recorder).
    pub api_url: String,
    /// Where `response_url`s may point (`KANARIA_SLACK_RESPONSE_URL_PREFIX`): kanaria only ever
    /// posts to Slack's own hooks host, whatever a request claims.
    pub response_url_prefixes: Vec<String>,
}

pub const DEFAULT_API_URL: &str = "https://slack.com/api";
pub const DEFAULT_RESPONSE_URL_PREFIX: &str = "https://hooks.slack.com/";

impl SlackConfig {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        SlackConfig {
            secret_arn: var("KANARIA_SLACK_SECRET_ARN"),
            team_id: var("KANARIA_SLACK_TEAM_ID").unwrap_or_default(),
            app_id: var("KANARIA_SLACK_APP_ID").unwrap_or_default(),
            default_channel: var("KANARIA_SLACK_CHANNEL"),
            api_url: var("KANARIA_SLACK_API_URL").unwrap_or_else(|| DEFAULT_API_URL.into()).trim_end_matches('/').to_string(),
            response_url_prefixes: var("KANARIA_SLACK_RESPONSE_URL_PREFIX")
                .map(|v| v.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
                .unwrap_or_else(|| vec![DEFAULT_RESPONSE_URL_PREFIX.into()]),
        }
    }
}

/// A Slack call that did not work: which method, what Slack said, and what to do.
#[derive(Debug, thiserror::Error)]
#[error("Slack {method}{target}: {error}; {fix}")]
pub struct SlackError {
    pub method: &'static str,
    /// e.g. " on channel C0123" (never a token or a URL with a secret in it).
    pub target: String,
    pub error: String,
    pub fix: &'static str,
}

fn fix_for(error: &str) -> &'static str {
    match error {
        "not_in_channel" | "channel_not_found" => "invite the kanaria app to the channel (`/invite @kanaria`) and check the channel id",
        "invalid_auth" | "not_authed" | "token_revoked" | "account_inactive" => {
            "the bot token in the Slack secret is wrong or revoked; reinstall the app and update the secret"
        }
        "missing_scope" => "add the missing scope to the Slack app (docs/slack.md lists them) and reinstall it",
        "ratelimited" => "Slack is rate limiting; the next update will carry the current state",
        "msg_too_long" | "invalid_blocks" => "this is a kanaria bug: the message did not fit Slack's limits; please report it",
        "expired_url" | "used_url" => "the button's reply window has passed; the rollout message is updated by the next notice",
        _ => "check the Slack app's configuration (docs/slack.md)",
    }
}

#[derive(Clone, Debug)]
pub struct SlackApi {
    http: reqwest::Client,
    base_url: String,
}

impl SlackApi {
    /// `timeout` bounds every call (interactions must answer Slack within 3 s in all).
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).build().unwrap_or_default();
        SlackApi { http, base_url: base_url.trim_end_matches('/').to_string() }
    }

    /// Post a message; returns its `ts` (the id to update it by).
    pub async fn post_message(&self, token: &Secret, channel: &str, text: &str, blocks: &Value) -> Result<String, SlackError> {
        let body = json!({ "channel": channel, "text": text, "blocks": blocks, "unfurl_links": false, "unfurl_media": false });
        let reply = self.call("chat.postMessage", format!(" on channel {channel}"), token, &body).await?;
        reply.get("ts").and_then(Value::as_str).map(str::to_string).ok_or_else(|| SlackError {
            method: "chat.postMessage",
            target: format!(" on channel {channel}"),
            error: "the reply has no ts".into(),
            fix: "check KANARIA_SLACK_API_URL points at the Slack Web API",
        })
    }

    pub async fn update_message(&self, token: &Secret, channel: &str, ts: &str, text: &str, blocks: &Value) -> Result<(), SlackError> {
        let body = json!({ "channel": channel, "ts": ts, "text": text, "blocks": blocks });
        self.call("chat.update", format!(" on channel {channel}"), token, &body).await.map(|_| ())
    }

    /// Member ids of a user group (scope `usergroups:read`).
    pub async fn user_group_members(&self, token: &Secret, group: &str) -> Result<Vec<String>, SlackError> {
        let reply = self.call_form("usergroups.users.list", format!(" for user group {group}"), token, ("usergroup", group)).await?;
        Ok(reply
            .get("users")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_string)).collect())
            .unwrap_or_default())
    }

    /// The user's email (`users.info`; scopes `users:read` and `users:read.email`), `None` when
    /// Slack has none for them.
    pub async fn user_email(&self, token: &Secret, user: &str) -> Result<Option<String>, SlackError> {
        let reply = self.call_form("users.info", format!(" for user {user}"), token, ("user", user)).await?;
        Ok(reply.pointer("/user/profile/email").and_then(Value::as_str).filter(|e| !e.is_empty()).map(str::to_string))
    }

    /// A read method: these take form arguments, not JSON.
    async fn call_form(&self, method: &'static str, target: String, token: &Secret, arg: (&str, &str)) -> Result<Value, SlackError> {
        let url = format!("{}/{method}", self.base_url);
        let form: String = form_urlencoded::Serializer::new(String::new()).append_pair(arg.0, arg.1).finish();
        let req = self.http.post(url).bearer_auth(token.expose()).header("content-type", "application/x-www-form-urlencoded").body(form);
        self.send(method, target, req).await
    }

    /// Replace the message a button was clicked on (or add an ephemeral note) through the
    /// interaction's `response_url` (valid 30 minutes, 5 uses; needs no token).
    pub async fn respond(&self, response_url: &str, body: &Value) -> Result<(), SlackError> {
        let req = self.http.post(response_url).header("content-type", "application/json; charset=utf-8").body(body.to_string());
        let resp = req.send().await.map_err(|e| transport_error("response_url", String::new(), &e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            Err(SlackError {
                method: "response_url",
                target: String::new(),
                error: format!("HTTP {status} {}", text.chars().take(100).collect::<String>()),
                fix: fix_for(text.trim()),
            })
        }
    }

    async fn call(&self, method: &'static str, target: String, token: &Secret, body: &Value) -> Result<Value, SlackError> {
        let url = format!("{}/{method}", self.base_url);
        let req = self
            .http
            .post(url)
            .bearer_auth(token.expose())
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string());
        self.send(method, target, req).await
    }

    async fn send(&self, method: &'static str, target: String, req: reqwest::RequestBuilder) -> Result<Value, SlackError> {
        let resp = req.send().await.map_err(|e| transport_error(method, target.clone(), &e))?;
        let status = resp.status();
        if status.as_u16() == 429 {
            return Err(SlackError { method, target, error: "ratelimited (HTTP 429)".into(), fix: fix_for("ratelimited") });
        }
        let bytes = resp.bytes().await.map_err(|e| transport_error(method, target.clone(), &e))?;
        let reply: Value = serde_json::from_slice(&bytes).map_err(|_| SlackError {
            method,
            target: target.clone(),
            error: format!("HTTP {status}, not a Slack API reply"),
            fix: "check KANARIA_SLACK_API_URL points at the Slack Web API",
        })?;
        if reply.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(reply)
        } else {
            let error = reply.get("error").and_then(Value::as_str).unwrap_or("unknown_error").to_string();
            let fix = fix_for(&error);
            Err(SlackError { method, target, error, fix })
        }
    }
}

fn transport_error(method: &'static str, target: String, e: &reqwest::Error) -> SlackError {
    // reqwest's Display can include the URL; a response_url is a bearer capability, so say only
    // what kind of failure it was.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    SlackError { method, target, error: kind.into(), fix: "Slack may be unreachable; the next notice will carry the current state" }
}

/// What the Slack functions share for the life of a container: configuration, the HTTP client
/// (built on first use, so functions that never talk to Slack never build one) and the cached
/// credentials.
#[derive(Debug)]
pub struct ChatOps {
    pub config: SlackConfig,
    api: std::sync::OnceLock<SlackApi>,
    pub credentials: crate::aws::secrets::CredentialsCache,
}

/// Slack calls made while Slack waits for our answer must all fit in its 3 s.
const SLACK_CALL_TIMEOUT: Duration = Duration::from_millis(1500);

impl ChatOps {
    pub fn new(config: SlackConfig) -> Self {
        ChatOps { config, api: std::sync::OnceLock::new(), credentials: Default::default() }
    }

    pub fn from_env() -> Self {
        ChatOps::new(SlackConfig::from_env())
    }

    pub fn api(&self) -> &SlackApi {
        self.api.get_or_init(|| SlackApi::new(&self.config.api_url, SLACK_CALL_TIMEOUT))
    }
}

impl Default for ChatOps {
    /// No Slack (the CLI, tests that do not need it).
    fn default() -> Self {
        ChatOps::new(SlackConfig {
            secret_arn: None,
            team_id: String::new(),
            app_id: String::new(),
            default_channel: None,
            api_url: DEFAULT_API_URL.into(),
            response_url_prefixes: vec![DEFAULT_RESPONSE_URL_PREFIX.into()],
        })
    }
}
