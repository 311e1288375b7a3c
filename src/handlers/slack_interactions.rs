//! `slack-interactions`: the Slack app's interactivity endpoint, behind a Lambda Function URL.
//! A click on Approve / Roll back arrives here; the answer must reach Slack within 3 seconds.
//!
//! In order, each failing check answering with its status and changing nothing:
//! 1. size (400); both Slack headers present, the timestamp within 5 minutes and the signature
//!    shaped as Slack's (401) — all before any AWS call, so the public URL refuses unsigned,
//!    stale and replayed requests in microseconds; then Slack's signature over the raw body
//!    with the signing secret from Secrets Manager (read once per container and cached, 401);
//! 2. the body is a `block_actions` click on one of our buttons (400);
//! 3. it comes from our workspace and app (403), the approval exists and is open (403), and the
//!    user is one of the policy's approvers (403);
//! 4. then the decision goes to the decision queue (SQS) and Slack gets its 200 at once: Slack
//!    wants an answer within 3 seconds, and a rollback may take longer. The same function takes
//!    the decision off the queue: the one conditional write that decides, SendTaskSuccess or the
//!    circuit breaker, and the message replaced through `response_url` to say who decided and
//!    when (a refusal found only then, such as approving one's own push, is an ephemeral note).
//!    A failed decision is retried from the queue, and one that broke off half way (decided,
//!    rollback not finished) is finished by the retry.
//!
//! Authentic but refused clicks get an ephemeral note saying why; unauthenticated requests get
//! nothing but the status. Logs carry the reason, never the body, signature, secret or token.

use base64::Engine;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::approval::{self, Outcome, Refusal};
use super::{circuit_breaker, progress, HandlerError};
use crate::aws::approvals::{ApprovalRecord, Approvals, REJECTED};
use crate::aws::store::Store;
use crate::aws::{now_unix, Context};
use crate::identity::Decider;
use crate::rollout::Rollout;
use crate::slack::message::{self, Phase};
use crate::slack::request::{self, Choice, Interaction, Rejection, SignedRequest, MAX_BODY_BYTES};

/// Lambda Function URL in, Function URL response out. Never an error for anything a request
/// contains: those are HTTP statuses.
pub async fn handle(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    // A Function URL request always has requestContext; an SQS batch never has: nothing a caller
    // of the public URL sends can make it look like a decision from the queue.
    if event.get("requestContext").is_none() && event.get("Records").is_some() {
        return decide_queued(ctx, event).await;
    }
    let (status, body) = match answer(ctx, &event).await {
        Ok(()) => (200, String::new()),
        Err(Answer { status, note }) => (status, note),
    };
    Ok(json!({
        "statusCode": status,
        "headers": { "content-type": "text/plain; charset=utf-8" },
        "body": body,
        "isBase64Encoded": false,
    }))
}

/// A refusal: the HTTP status and a short reason for the response body (never echoing input).
struct Answer {
    status: u16,
    note: String,
}

impl From<Rejection> for Answer {
    fn from(r: Rejection) -> Self {
        Answer { status: r.status(), note: r.to_string() }
    }
}

fn header<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    // Function URLs deliver header names in lower case; accept any case anyway.
    event.get("headers")?.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str())
}

async fn answer(ctx: &Context, event: &Value) -> Result<(), Answer> {
    let method = event.pointer("/requestContext/http/method").and_then(Value::as_str).unwrap_or("POST");
    if !method.eq_ignore_ascii_case("POST") {
        return Err(Rejection::Malformed(format!("{method} is not POST")).into());
    }
    let raw = event.get("body").and_then(Value::as_str).unwrap_or("");
    // Reject before decoding or parsing anything: base64 of MAX_BODY_BYTES is 4/3 as long.
    if raw.len() > MAX_BODY_BYTES / 3 * 4 + 4 {
        return Err(Rejection::BodyTooLarge { len: raw.len() }.into());
    }
    let body: Vec<u8> = if event.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
        base64::engine::general_purpose::STANDARD.decode(raw).map_err(|_| Rejection::Malformed("body is not base64".into()))?
    } else {
        raw.as_bytes().to_vec()
    };
    let chatops = &ctx.chatops;
    let config = &chatops.config;
    let secret_arn = match &config.secret_arn {
        Some(arn) if !config.team_id.is_empty() && !config.app_id.is_empty() => arn,
        _ => {
            warn!("Slack interaction refused: KANARIA_SLACK_SECRET_ARN, KANARIA_SLACK_TEAM_ID and KANARIA_SLACK_APP_ID must all be set");
            return Err(Rejection::NotConfigured.into());
        }
    };
    let signed = SignedRequest {
        timestamp: header(event, request::TIMESTAMP_HEADER),
        signature: header(event, request::SIGNATURE_HEADER),
        body: &body,
    };
    let now = now_unix();
    // Everything that needs no secret first: a request that cannot be Slack's costs no Secrets
    // Manager call (nor its latency) while it holds one of the function's few executions.
    if let Err(r) = request::precheck(&signed, now) {
        warn!(reason = %r, "Slack interaction refused before reading the signing secret");
        return Err(r.into());
    }
    let credentials = chatops.credentials.get(&ctx.clients.secrets, secret_arn).await.map_err(|e| {
        warn!(error = %e, "Slack signing secret not available");
        Answer { status: 500, note: "signing secret not available".into() }
    })?;
    if let Err(r) = request::verify(credentials.signing_secret.expose().as_bytes(), &signed, now) {
        warn!(reason = %r, "Slack interaction refused");
        return Err(r.into());
    }
    let prefixes: Vec<&str> = config.response_url_prefixes.iter().map(String::as_str).collect();
    let click = request::parse_interaction(&body, &prefixes).inspect_err(|r| warn!(reason = %r, "Slack interaction refused"))?;
    request::check_workspace(&click, &config.team_id, &config.app_id)
        .inspect_err(|r| warn!(reason = %r, user = %click.user_id, "Slack interaction refused"))?;

    // From here on the request is authentic: a refusal also tells the person why.
    let approvals = Approvals::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let record = match approvals.get(&click.approval_id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return refuse(ctx, &click, Rejection::UnknownApproval, "kanaria does not know this approval (it may have been cleaned up).")
                .await
        }
        Err(e) => return Err(internal(e.into())),
    };
    if !record.is_pending(now_unix()) {
        let (r, note) = closed(&record);
        return refuse(ctx, &click, r, &note).await;
    }
    if !may_decide(ctx, &record, &click.user_id, &credentials).await {
        let note = format!("You are not an approver of {}. Approvers: {}.", record.service, approvers_text(&record));
        return refuse(ctx, &click, Rejection::NotAnApprover, &note).await;
    }
    // Approving one's own push is refused before Slack gets its answer, like the checks above
    // (one Slack and one DynamoDB read); the decision checks it again.
    if click.choice == Choice::Approve && record.forbid_self_approval {
        let decider = Decider::Slack { user_id: click.user_id.clone(), email: user_email(ctx, &click.user_id, &credentials).await };
        let approvals = Approvals::new(&ctx.clients.dynamodb, &ctx.settings.table);
        if let Some(refusal) =
            approval::self_approval_refusal(&approvals, &click.approval_id, Some(&record), &decider).await.map_err(internal)?
        {
            return refuse_decision(ctx, &click, refusal).await;
        }
    }
    match &ctx.settings.decision_queue_url {
        Some(queue_url) => {
            let job = serde_json::to_string(&click).map_err(|e| internal(HandlerError::new("Kanaria.Internal", e.to_string())))?;
            ctx.clients
                .sqs
                .send_message()
                .queue_url(queue_url)
                .message_body(job)
                .send()
                .await
                .map_err(|e| internal(crate::aws::AwsError::new("SQS", "SendMessage", queue_url.as_str(), e).into()))?;
            info!(approval = %click.approval_id, user = %click.user_id, choice = ?click.choice, "Slack decision queued");
            Ok(())
        }
        // Not deployed this way (template.yaml sets the queue): decide before answering.
        None => decide_click(ctx, &click, &credentials, Some(record)).await,
    }
}

/// The decisions of the queue (one per record; the event source mapping's batch size is 1). An
/// error leaves the record on the queue to be retried.
async fn decide_queued(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    let records = event["Records"].as_array().cloned().unwrap_or_default();
    let mut decided = Vec::new();
    for record in records {
        let body = record["body"].as_str().unwrap_or_default();
        let Ok(click) = serde_json::from_str::<Interaction>(body) else {
            warn!("a decision on the queue could not be read; dropped (it was not written by slack-interactions)");
            continue;
        };
        let secret_arn = ctx.chatops.config.secret_arn.clone().ok_or_else(|| {
            HandlerError::new("Kanaria.NotConfigured", "KANARIA_SLACK_SECRET_ARN is not set: the queued decision waits on the queue")
        })?;
        let credentials = ctx.chatops.credentials.get(&ctx.clients.secrets, &secret_arn).await.map_err(|e| {
            HandlerError::new("Kanaria.Transient", format!("Slack credentials not available ({e}); the decision is retried from the queue"))
        })?;
        let read = Approvals::new(&ctx.clients.dynamodb, &ctx.settings.table).get(&click.approval_id).await?;
        match decide_click(ctx, &click, &credentials, read).await {
            Ok(()) => {}
            Err(Answer { status, note }) if status >= 500 => {
                return Err(HandlerError::new(
                    "Kanaria.Transient",
                    format!("decision on approval {} failed: {note}; retried from the queue", click.approval_id),
                ))
            }
            // Refused: the person has been told why; nothing to retry.
            Err(_) => {}
        }
        decided.push(click.approval_id);
    }
    Ok(json!({ "decided": decided }))
}

/// Decide an authentic click by an approver: the self-approval check, the conditional write,
/// SendTaskSuccess or the rollback, and the message in Slack.
async fn decide_click(
    ctx: &Context,
    click: &Interaction,
    credentials: &crate::aws::secrets::SlackCredentials,
    read: Option<ApprovalRecord>,
) -> Result<(), Answer> {
    let approve = click.choice == Choice::Approve;
    // Who pushed is matched by email: asked of Slack only when the policy forbids self-approval.
    let email = if approve && read.as_ref().is_some_and(|r| r.forbid_self_approval) {
        user_email(ctx, &click.user_id, credentials).await
    } else {
        None
    };
    let decider = Decider::Slack { user_id: click.user_id.clone(), email };
    // Read before deciding: a rejection ends the rollout and releases its record.
    let rollout = match &read {
        Some(record) => rollout_of(ctx, record).await,
        None => None,
    };
    match approval::decide(ctx, &click.approval_id, approve, &decider, "Slack", read.as_ref()).await {
        Err(e) => Err(internal(e)),
        Ok(Err(Refusal::Unknown)) => refuse(ctx, click, Rejection::UnknownApproval, "kanaria does not know this approval.").await,
        Ok(Err(Refusal::AlreadyDecided(r)))
            if click.choice == Choice::Reject && r.status == REJECTED && r.decided_by.as_deref() == Some(click.user_id.as_str()) =>
        {
            // This person's own rejection again (the queue's retry after the decision was written
            // but the rollback broke off): finish the rollback, which is idempotent.
            let cause =
                format!("rolled back by <@{}> (Slack) at the approval step, {}% traffic on the new task set", click.user_id, r.weight);
            circuit_breaker::trip(ctx, &r.service, &r.rollout_id, &cause, circuit_breaker::Pace::Policy).await.map_err(internal)?;
            replace_message(
                ctx,
                click,
                rollout.as_ref(),
                Phase::Rejected { by: click.user_id.clone(), at: r.decided_at.unwrap_or_else(now_unix) },
            )
            .await;
            Ok(())
        }
        Ok(Err(Refusal::Expired(r) | Refusal::AlreadyDecided(r))) => {
            let (reason, note) = closed(&r);
            refuse(ctx, click, reason, &note).await
        }
        Ok(Err(refusal @ (Refusal::OwnPush(_) | Refusal::SelfApprovalUnknown(..)))) => refuse_decision(ctx, click, refusal).await,
        Ok(Ok(outcome)) => {
            let (record, phase) = match &outcome {
                Outcome::Approved(r) => (r, Phase::Approved { by: click.user_id.clone(), at: now_unix() }),
                Outcome::RolledBack(r) => (r, Phase::Rejected { by: click.user_id.clone(), at: now_unix() }),
                Outcome::TooLate(r) => {
                    info!(approval = %r.id, "decision recorded after the wait had ended");
                    ephemeral(ctx, click, "Recorded, but the rollout had already stopped waiting (it timed out or was rolled back).").await;
                    return Ok(());
                }
            };
            replace_message(ctx, click, rollout.as_ref(), phase).await;
            info!(approval = %record.id, service = %record.service, user = %click.user_id, approve, "Slack decision applied");
            Ok(())
        }
    }
}

/// A self-approval refusal: tell the person why, answer 403.
async fn refuse_decision(ctx: &Context, click: &Interaction, refusal: Refusal) -> Result<(), Answer> {
    match refusal {
        Refusal::OwnPush(r) => {
            let note = format!(
                "You pushed this image, and the policy of {} forbids approving your own push. Another approver decides: {}.",
                r.service,
                approvers_text(&r)
            );
            refuse(ctx, click, Rejection::OwnPush, &note).await
        }
        Refusal::SelfApprovalUnknown(r, why) => {
            let note = format!(
                "The policy of {} forbids approving your own push, and kanaria cannot tell who pushed or who you are: {why}. \
                 Nothing was decided; see docs/slack.md (self-approval).",
                r.service
            );
            refuse(ctx, click, Rejection::SelfApprovalUnknown(why), &note).await
        }
        Refusal::Unknown => refuse(ctx, click, Rejection::UnknownApproval, "kanaria does not know this approval.").await,
        Refusal::Expired(r) | Refusal::AlreadyDecided(r) => {
            let (reason, note) = closed(&r);
            refuse(ctx, click, reason, &note).await
        }
    }
}

/// An authentic click that is not allowed: log why, tell the person, answer the status.
async fn refuse(ctx: &Context, click: &Interaction, reason: Rejection, note: &str) -> Result<(), Answer> {
    warn!(reason = %reason, user = %click.user_id, approval = %click.approval_id, "Slack interaction refused");
    ephemeral(ctx, click, note).await;
    Err(Answer::from(reason))
}

/// The clicking user's email from Slack, for the self-approval check (`None` if Slack does not
/// say: the check then refuses).
async fn user_email(ctx: &Context, user: &str, credentials: &crate::aws::secrets::SlackCredentials) -> Option<String> {
    let token = credentials.bot_token.as_ref()?;
    match ctx.chatops.api().user_email(token, user).await {
        Ok(email) => email,
        Err(e) => {
            warn!(error = %e, "user's email not read (self-approval check)");
            None
        }
    }
}

/// Is `user` allowed to decide? One of the policy's approvers, or a member of one of its
/// approver groups (asked of Slack; a failed lookup counts as "no").
async fn may_decide(ctx: &Context, record: &ApprovalRecord, user: &str, credentials: &crate::aws::secrets::SlackCredentials) -> bool {
    if record.approvers.iter().any(|a| a == user) {
        return true;
    }
    let Some(token) = &credentials.bot_token else { return false };
    for group in &record.approver_groups {
        match ctx.chatops.api().user_group_members(token, group).await {
            Ok(members) if members.iter().any(|m| m == user) => return true,
            Ok(_) => {}
            Err(e) => warn!(error = %e, "approver group not read"),
        }
    }
    false
}

fn approvers_text(record: &ApprovalRecord) -> String {
    let mut who: Vec<String> = record.approvers.iter().map(|u| format!("<@{u}>")).collect();
    who.extend(record.approver_groups.iter().map(|g| format!("<!subteam^{g}>")));
    if who.is_empty() {
        "none in Slack (the policy's slack.approvers is empty; use `kanaria approve`)".into()
    } else {
        who.join(", ")
    }
}

fn closed(record: &ApprovalRecord) -> (Rejection, String) {
    match &record.decided_by {
        Some(by) => {
            let decision = record.status.to_lowercase();
            let who = if by.starts_with('U') || by.starts_with('W') { format!("<@{by}>") } else { format!("`{by}`") };
            (Rejection::AlreadyDecided { decision: decision.clone(), by: by.clone() }, format!("Already {decision} by {who}."))
        }
        None => (Rejection::Expired, format!("This approval expired; the policy's timeout applied ({}).", record.on_timeout)),
    }
}

fn internal(e: HandlerError) -> Answer {
    warn!(error = %e, "Slack interaction failed");
    Answer { status: 500, note: "kanaria could not complete the decision; try again".into() }
}

/// A note only the clicking person sees.
async fn ephemeral(ctx: &Context, click: &Interaction, text: &str) {
    let body = json!({ "response_type": "ephemeral", "replace_original": false, "text": text });
    if let Err(e) = ctx.chatops.api().respond(&click.response_url, &body).await {
        warn!(error = %e, "Slack note not sent");
    }
}

/// The rollout as of its last completed step.
async fn rollout_of(ctx: &Context, record: &ApprovalRecord) -> Option<Rollout> {
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    match store.lock(&record.service).await {
        Ok(lock) => {
            lock.filter(|l| l.rollout_id == record.rollout_id).and_then(|l| l.rollout_json).and_then(|j| serde_json::from_str(&j).ok())
        }
        Err(e) => {
            warn!(error = %e, "rollout not read for the Slack message");
            None
        }
    }
}

/// The message the button was on now says who decided and when (no more buttons).
async fn replace_message(ctx: &Context, click: &Interaction, rollout: Option<&Rollout>, phase: Phase) {
    let body = match rollout {
        Some(rollout) => {
            let card = progress::card(rollout, phase);
            json!({ "replace_original": true, "text": message::fallback_text(&card), "blocks": message::blocks(&card) })
        }
        None => json!({ "replace_original": false, "response_type": "ephemeral", "text": "Decision recorded." }),
    };
    if let Err(e) = ctx.chatops.api().respond(&click.response_url, &body).await {
        warn!(error = %e, "Slack message not updated after the decision");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{Clients, Settings};
    use crate::slack::api::{ChatOps, SlackConfig};

    const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kanaria/slack-AbCdEf";

    /// Slack configured, AWS clients pointing at a port nothing listens on, without retries: a
    /// call would fail fast (500), and `is_built` tells whether any client was even touched.
    fn context() -> Context {
        let config = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .credentials_provider(aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(
                aws_sdk_secretsmanager::config::Credentials::new("test", "test", None, None, "test"),
            ))
            .build();
        let mut settings = Settings::from_env();
        settings.table = "kanaria".into();
        let slack = SlackConfig {
            secret_arn: Some(SECRET_ARN.into()),
            team_id: "T0LOCAL01".into(),
            app_id: "A0LOCAL01".into(),
            ..ChatOps::default().config
        };
        Context { clients: Clients::new(&config), settings, chatops: std::sync::Arc::new(ChatOps::new(slack)), metrics: Default::default() }
    }

    fn function_url_event(headers: Value) -> Value {
        json!({
            "requestContext": {"http": {"method": "POST"}},
            "headers": headers,
            "body": "payload=%7B%7D",
            "isBase64Encoded": false,
        })
    }

    fn no_client_built(ctx: &Context) -> bool {
        let c = &ctx.clients;
        !(c.secrets.is_built() || c.dynamodb.is_built() || c.sfn.is_built() || c.ecs.is_built() || c.elb.is_built() || c.sns.is_built())
    }

    #[tokio::test]
    async fn unsigned_stale_and_malformed_requests_are_refused_before_any_aws_call() {
        let now = now_unix();
        let well_formed = format!("v0={}", "ab".repeat(32));
        let cases = [
            ("no Slack headers", json!({"content-type": "application/x-www-form-urlencoded"})),
            ("no signature", json!({"x-slack-request-timestamp": now.to_string()})),
            ("no timestamp", json!({"x-slack-signature": well_formed})),
            ("a replay from an hour ago", json!({"x-slack-request-timestamp": (now - 3600).to_string(), "x-slack-signature": well_formed})),
            (
                "a timestamp from the future",
                json!({"x-slack-request-timestamp": (now + 3600).to_string(), "x-slack-signature": well_formed}),
            ),
            ("a timestamp that is not a number", json!({"x-slack-request-timestamp": "yesterday", "x-slack-signature": well_formed})),
            ("a signature of another scheme", json!({"x-slack-request-timestamp": now.to_string(), "x-slack-signature": "v1=abc"})),
            ("a signature too short", json!({"x-slack-request-timestamp": now.to_string(), "x-slack-signature": "v0=abcd"})),
            (
                "a signature not hex",
                json!({"x-slack-request-timestamp": now.to_string(), "x-slack-signature": format!("v0={}", "zz".repeat(32))}),
            ),
        ];
        for (what, headers) in cases {
            let ctx = context();
            let out = handle(&ctx, function_url_event(headers)).await.unwrap();
            assert_eq!(out["statusCode"], 401, "{what}: {out}");
            assert!(no_client_built(&ctx), "{what}: an AWS client was used before the request was shown to be Slack's");
        }
    }

    /// The control: a request shaped like Slack's, in time, does read the secret (here it cannot,
    /// so 500) — the cases above are refused by the precheck, not by an AWS call failing.
    #[tokio::test]
    async fn a_request_shaped_like_slacks_reads_the_signing_secret() {
        let ctx = context();
        let headers = json!({"x-slack-request-timestamp": now_unix().to_string(), "x-slack-signature": format!("v0={}", "ab".repeat(32))});
        let out = handle(&ctx, function_url_event(headers)).await.unwrap();
        assert_eq!(out["statusCode"], 500, "{out}");
        assert!(ctx.clients.secrets.is_built(), "the signing secret was read");
    }
}
