//! Requests from Slack: signature verification ([`verify`]) and `block_actions` interaction
//! parsing ([`parse_interaction`]). Both take the raw body bytes exactly as Slack sent them, check
//! the size before anything else, and answer any input with `Ok` or a [`Rejection`], never a
//! panic.
//!
//! The signing scheme (Slack's "Verifying requests from Slack"): Slack sends
//! `X-Slack-Request-Timestamp` (unix seconds) and `X-Slack-Signature`
//! (`v0=` + hex of HMAC-SHA256 keyed with the app's signing secret over
//! `v0:<timestamp>:<raw body>`). A request more than five minutes away from now is refused so a
//! captured request cannot be replayed later.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Larger bodies are refused before anything else is looked at. A `block_actions` payload for
/// our message is a few kilobytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Slack's recommendation: refuse requests whose timestamp is more than five minutes old (and,
/// here, more than five minutes in the future).
pub const MAX_AGE_SECONDS: u64 = 300;

/// The header names, as [`Rejection::MissingHeader`] carries them.
pub const TIMESTAMP_HEADER: &str = "X-Slack-Request-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Slack-Signature";

/// Where Slack's `response_url`s point. Pass it (alone, in production) to [`parse_interaction`].
pub const SLACK_RESPONSE_URL_PREFIX: &str = "https://hooks.slack.com/";

/// `action_id` of the Approve button.
pub const APPROVE_ACTION_ID: &str = "kanaria.approve";
/// `action_id` of the Roll back button.
pub const REJECT_ACTION_ID: &str = "kanaria.reject";

/// What arrived over HTTP: header values as given (`None` when missing) and the raw body bytes
/// exactly as Slack sent them (the caller base64-decodes a Function URL body first). Not `Debug`,
/// so it cannot end up in a log line by accident.
#[derive(Clone, Copy)]
pub struct SignedRequest<'a> {
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// Why a request is refused. `Display` is a short reason a log line can carry: it never echoes
/// the signature, the secret or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("request body too large ({len} bytes, at most {MAX_BODY_BYTES})")]
    BodyTooLarge { len: usize },
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("{TIMESTAMP_HEADER} is not a unix time in seconds")]
    BadTimestamp,
    #[error("request timestamp is {age_seconds} s from now (at most {MAX_AGE_SECONDS} s either way)")]
    StaleTimestamp { age_seconds: i64 },
    #[error("bad request signature")]
    BadSignature,
    #[error("malformed Slack request: {0}")]
    Malformed(String),
    #[error("request from another Slack workspace")]
    WrongTeam,
    #[error("request for another Slack app")]
    WrongApp,
    #[error("user may not approve this rollout")]
    NotAnApprover,
    #[error("approval expired")]
    Expired,
    #[error("already {decision} by {by}")]
    AlreadyDecided { decision: String, by: String },
    #[error("unknown approval")]
    UnknownApproval,
    #[error("Slack approvals are not configured")]
    NotConfigured,
    #[error("the user pushed the image and the policy forbids self-approval")]
    OwnPush,
    #[error("self-approval cannot be ruled out: {0}")]
    SelfApprovalUnknown(String),
}

impl Rejection {
    /// The HTTP status to answer with: 401 when the request cannot be shown to come from Slack,
    /// 400 when it does not look like what Slack sends, 403 when it is authentic but not allowed.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BodyTooLarge { .. } | Rejection::Malformed(_) => 400,
            Rejection::MissingHeader(_) | Rejection::BadTimestamp | Rejection::StaleTimestamp { .. } | Rejection::BadSignature => 401,
            Rejection::WrongTeam
            | Rejection::WrongApp
            | Rejection::NotAnApprover
            | Rejection::Expired
            | Rejection::AlreadyDecided { .. }
            | Rejection::UnknownApproval
            | Rejection::NotConfigured
            | Rejection::OwnPush
            | Rejection::SelfApprovalUnknown(_) => 403,
        }
    }
}

fn mac(signing_secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length (longer ones are hashed first): this cannot fail.
    let mut mac = HmacSha256::new_from_slice(signing_secret).expect("HMAC accepts keys of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// v0 signature of Slack's signing scheme: `"v0=" + hex(HMAC-SHA256(secret, "v0:" + timestamp + ":" + body))`.
pub fn sign(signing_secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!("v0={}", hex::encode(mac(signing_secret, timestamp, body).finalize().into_bytes()))
}

/// Checks, in this order: body size, headers present (timestamp, then signature), timestamp an
/// integer within [`MAX_AGE_SECONDS`] of `now` (either direction), signature (constant-time).
pub fn verify(signing_secret: &[u8], req: &SignedRequest<'_>, now: u64) -> Result<(), Rejection> {
    let Prechecked { timestamp, expected } = precheck(req, now)?;
    mac(signing_secret, timestamp, req.body).verify_slice(&expected).map_err(|_| Rejection::BadSignature)
}

/// What [`precheck`] read from a request that may be Slack's: the timestamp as sent (it is part
/// of the signed text) and the signature's 32 bytes.
pub struct Prechecked<'a> {
    timestamp: &'a str,
    expected: Vec<u8>,
}

/// Every check of [`verify`] that needs no signing secret: body size, both headers present, the
/// timestamp within [`MAX_AGE_SECONDS`] of `now`, and the signature shaped as Slack's (`v0=` and
/// 64 hex digits). The public Function URL runs this before it reads the secret, so unsigned,
/// stale or replayed requests are refused in microseconds, with no AWS call: a flood of them
/// holds the function's few concurrent executions as briefly as possible.
pub fn precheck<'a>(req: &SignedRequest<'a>, now: u64) -> Result<Prechecked<'a>, Rejection> {
    check_size(req.body)?;
    let timestamp = req.timestamp.ok_or(Rejection::MissingHeader(TIMESTAMP_HEADER))?;
    let signature = req.signature.ok_or(Rejection::MissingHeader(SIGNATURE_HEADER))?;
    let sent_at = parse_timestamp(timestamp)?;
    let age = i128::from(now) - i128::from(sent_at);
    if age.unsigned_abs() > u128::from(MAX_AGE_SECONDS) {
        let age_seconds = i64::try_from(age).unwrap_or(if age < 0 { i64::MIN } else { i64::MAX });
        return Err(Rejection::StaleTimestamp { age_seconds });
    }
    let hex_part = signature.strip_prefix("v0=").ok_or(Rejection::BadSignature)?;
    // 32 bytes of SHA-256 = 64 hex digits; check the length before decoding anything.
    if hex_part.len() != 64 {
        return Err(Rejection::BadSignature);
    }
    let expected = hex::decode(hex_part).map_err(|_| Rejection::BadSignature)?;
    Ok(Prechecked { timestamp, expected })
}

fn check_size(body: &[u8]) -> Result<(), Rejection> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::BodyTooLarge { len: body.len() });
    }
    Ok(())
}

/// Unix seconds as Slack sends them: ASCII digits only (no sign, no spaces, no fraction).
fn parse_timestamp(timestamp: &str) -> Result<u64, Rejection> {
    if timestamp.is_empty() || timestamp.len() > 20 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::BadTimestamp);
    }
    timestamp.parse().map_err(|_| Rejection::BadTimestamp)
}

/// Which button was clicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Choice {
    Approve,
    Reject,
}

/// A click on one of our buttons, as read from a `block_actions` payload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Interaction {
    /// `team.id` (or `user.team_id` when Slack sends `team: null`, as for org-wide apps).
    pub team_id: String,
    /// `api_app_id`.
    pub app_id: String,
    /// `user.id`: `[A-Za-z0-9]{1,32}`, so it is safe to render as `<@id>`.
    pub user_id: String,
    /// `user.username`, else `user.name`, else the user id.
    pub user_name: String,
    pub choice: Choice,
    /// The clicked button's `value`: `[A-Za-z0-9_-]{1,64}`.
    pub approval_id: String,
    /// Starts with one of the allowed prefixes.
    pub response_url: String,
    /// `channel.id`, else `container.channel_id`.
    pub channel_id: Option<String>,
    /// `container.message_ts`.
    pub message_ts: Option<String>,
}

const MAX_APPROVAL_ID_LEN: usize = 64;
const MAX_SLACK_ID_LEN: usize = 32;
const MAX_URL_LEN: usize = 2048;
const MAX_NAME_LEN: usize = 256;

fn malformed(reason: &str) -> Rejection {
    Rejection::Malformed(reason.to_string())
}

/// Parses Slack's `application/x-www-form-urlencoded` body `payload=<JSON>` of a `block_actions`
/// interaction: the first action whose `action_id` is [`APPROVE_ACTION_ID`] or
/// [`REJECT_ACTION_ID`]; its `value` is the approval id.
///
/// Size check first; any bytes in → `Ok` or `Err`, never a panic. The approval id must match
/// `[A-Za-z0-9_-]{1,64}`, the `response_url` must start with one of
/// `allowed_response_url_prefixes` (production: `[SLACK_RESPONSE_URL_PREFIX]`; end the prefix
/// with `/` so `https://hooks.slack.com.example` cannot pass). This does not verify the
/// signature: call [`verify`] first.
pub fn parse_interaction(body: &[u8], allowed_response_url_prefixes: &[&str]) -> Result<Interaction, Rejection> {
    check_size(body)?;
    let mut payload = None;
    for (key, value) in form_urlencoded::parse(body) {
        if key == "payload" {
            if payload.is_some() {
                return Err(malformed("more than one payload field"));
            }
            payload = Some(value);
        }
    }
    let payload = payload.ok_or_else(|| malformed("no payload field in the form body"))?;
    let json: serde_json::Value = serde_json::from_str(&payload).map_err(|_| malformed("payload is not JSON"))?;
    let obj = json.as_object().ok_or_else(|| malformed("payload is not a JSON object"))?;

    match obj.get("type").and_then(|t| t.as_str()) {
        Some("block_actions") => {}
        Some(_) => return Err(malformed("payload type is not block_actions")),
        None => return Err(malformed("payload has no type")),
    }

    let user = obj.get("user").and_then(|u| u.as_object()).ok_or_else(|| malformed("payload has no user"))?;
    let user_id = slack_id(user.get("id"), "user.id")?;
    let team_id = match obj.get("team") {
        Some(serde_json::Value::Null) | None => slack_id(user.get("team_id"), "team.id")?,
        Some(team) => slack_id(team.get("id"), "team.id")?,
    };
    let app_id = slack_id(obj.get("api_app_id"), "api_app_id")?;
    let user_name = ["username", "name"]
        .iter()
        .filter_map(|k| user.get(*k).and_then(|v| v.as_str()))
        .find(|name| !name.is_empty())
        .map(|name| name.chars().take(MAX_NAME_LEN).collect())
        .unwrap_or_else(|| user_id.clone());

    let actions = obj.get("actions").and_then(|a| a.as_array()).ok_or_else(|| malformed("payload has no actions"))?;
    let (choice, action) = actions
        .iter()
        .find_map(|action| match action.get("action_id").and_then(|id| id.as_str()) {
            Some(APPROVE_ACTION_ID) => Some((Choice::Approve, action)),
            Some(REJECT_ACTION_ID) => Some((Choice::Reject, action)),
            _ => None,
        })
        .ok_or_else(|| malformed("no kanaria action in the payload"))?;
    let approval_id = action.get("value").and_then(|v| v.as_str()).ok_or_else(|| malformed("action has no value"))?;
    if !is_approval_id(approval_id) {
        return Err(malformed("action value is not an approval id"));
    }

    let response_url = obj.get("response_url").and_then(|u| u.as_str()).ok_or_else(|| malformed("payload has no response_url"))?;
    if response_url.len() > MAX_URL_LEN
        || response_url.chars().any(|c| c.is_whitespace() || c.is_control())
        || !allowed_response_url_prefixes.iter().any(|prefix| !prefix.is_empty() && response_url.starts_with(prefix))
    {
        return Err(malformed("response_url is not an allowed URL"));
    }

    let container = obj.get("container");
    let channel_id = obj
        .get("channel")
        .and_then(|c| c.get("id"))
        .or_else(|| container.and_then(|c| c.get("channel_id")))
        .and_then(|id| id.as_str())
        .filter(|id| is_slack_id(id))
        .map(str::to_string);
    let message_ts =
        container.and_then(|c| c.get("message_ts")).and_then(|ts| ts.as_str()).filter(|ts| is_message_ts(ts)).map(str::to_string);

    Ok(Interaction {
        team_id,
        app_id,
        user_id,
        user_name,
        choice,
        approval_id: approval_id.to_string(),
        response_url: response_url.to_string(),
        channel_id,
        message_ts,
    })
}

/// `team.id` and `api_app_id` must be the configured ones.
pub fn check_workspace(i: &Interaction, team_id: &str, app_id: &str) -> Result<(), Rejection> {
    if i.team_id != team_id {
        return Err(Rejection::WrongTeam);
    }
    if i.app_id != app_id {
        return Err(Rejection::WrongApp);
    }
    Ok(())
}

/// `[A-Za-z0-9_-]{1,64}`: what [`parse_interaction`] accepts as a button value.
pub fn is_approval_id(s: &str) -> bool {
    (1..=MAX_APPROVAL_ID_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Slack's team, app, user and channel ids (`T…`, `A…`, `U…`/`W…`, `C…`) are ASCII letters and digits.
fn is_slack_id(s: &str) -> bool {
    (1..=MAX_SLACK_ID_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn slack_id(value: Option<&serde_json::Value>, field: &str) -> Result<String, Rejection> {
    match value.and_then(|v| v.as_str()) {
        Some(id) if is_slack_id(id) => Ok(id.to_string()),
        Some(_) => Err(Rejection::Malformed(format!("{field} is not a Slack id"))),
        None => Err(Rejection::Malformed(format!("payload has no {field}"))),
    }
}

/// Message timestamps look like `1548261231.000200`.
fn is_message_ts(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests;
