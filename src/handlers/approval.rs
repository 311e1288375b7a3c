//! Waiting for a person: the approval step's request (from the state machine) and its decision
//! (a Slack button or `kanaria approve`/`reject`), through one conditional write.
//!
//! The Step Functions task token never leaves the server: it is stored under a random approval
//! id, and only that id is shown in Slack. Approving completes the waiting state
//! (SendTaskSuccess); rejecting trips the circuit breaker, which puts all traffic back on the
//! stable task set at once and then fails the waiting state.

use serde_json::{json, Value};
use tracing::{info, warn};

use super::{circuit_breaker, progress, HandlerError};
use crate::aws::approvals::{ApprovalRecord, Approvals, Decided, APPROVED, PENDING, REJECTED};
use crate::aws::store::{Store, TaskToken};
use crate::aws::{cloudwatch, now_unix, Context};
use crate::identity::{self, Decider, Principal, SelfApproval};
use crate::rollout::Rollout;
use crate::slack::message::Phase;

/// The approval step: keep the task token under a new approval id, fenced like a bake (a
/// rollout being rolled back fails the state instead), and show the buttons.
pub async fn request(ctx: &Context, rollout: &Rollout, token: TaskToken) -> Result<Value, HandlerError> {
    let pending =
        rollout.approval.clone().ok_or_else(|| HandlerError::invalid_input("rollout-step approval", "the rollout asks for no approval"))?;
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let approvals = Approvals::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let service_key = rollout.service.key();
    let now = now_unix();
    let slack = rollout.policy.slack.clone().unwrap_or_default();
    let record = ApprovalRecord {
        id: random_id()?,
        rollout_id: rollout.id.clone(),
        service: service_key.clone(),
        token: token.clone(),
        status: PENDING.into(),
        created_at: now,
        expires_at: now + pending.timeout_seconds,
        weight: pending.weight,
        on_timeout: pending.on_timeout.as_str().into(),
        approvers: slack.approvers,
        approver_groups: slack.approver_groups,
        decided_by: None,
        decided_at: None,
        forbid_self_approval: pending.forbid_self_approval,
        repository: rollout.image.repository.clone(),
        digest: rollout.image.digest.clone(),
    };
    approvals.put(&record).await?;
    let lease_until = now + pending.timeout_seconds + super::lease::MARGIN_SECONDS;
    if !store.set_approval_wait(&service_key, &rollout.id, &token, &record.id, lease_until).await? {
        let cause = store.abort_cause(&rollout.id).await?.unwrap_or_else(|| "the rollout no longer holds the service".into());
        return Err(HandlerError::new("Kanaria.RolledBack", cause));
    }
    let lock = store.lock(&service_key).await?;
    if lock.is_some_and(|l| l.promote_requested) {
        // `kanaria promote` is a person's go-ahead already.
        circuit_breaker::continue_wait(&ctx.clients.sfn, &token).await?;
        return Ok(json!({ "approval": record.id, "skipped": "promote requested" }));
    }
    info!(rollout = %rollout.id, service = %service_key, approval = %record.id, timeout = pending.timeout_seconds, "waiting for approval");
    // What the canary has shown so far, for whoever decides.
    let failed: Vec<String> = store.failures(&rollout.id).await?.iter().map(|f| f.describe()).collect();
    let firing = match cloudwatch::alarms_in_alarm(&ctx.clients.cloudwatch, &rollout.policy.alarms).await {
        Ok(firing) => firing,
        Err(e) => {
            warn!(error = %e, "alarm states not read for the approval message");
            Vec::new()
        }
    };
    let mut card = progress::card(
        rollout,
        Phase::AwaitingApproval { approval_id: record.id.clone(), expires_at: record.expires_at, on_timeout: record.on_timeout.clone() },
    );
    card.failed_tasks = failed;
    card.alarms = rollout
        .policy
        .alarms
        .iter()
        .map(|a| (a.clone(), if firing.contains(a) { "ALARM".to_string() } else { "OK".to_string() }))
        .collect();
    progress::publish(ctx, rollout, card).await;
    Ok(json!({ "approval": record.id }))
}

/// What a decision did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rollout goes on.
    Approved(ApprovalRecord),
    /// All traffic is back on the stable task set; the rollout ends rolled back.
    RolledBack(ApprovalRecord),
    /// Recorded, but the wait had already ended (timed out, or rolled back meanwhile).
    TooLate(ApprovalRecord),
}

/// Why a decision was not taken. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired(ApprovalRecord),
    AlreadyDecided(ApprovalRecord),
    /// The decider pushed the image, and the policy forbids self-approval.
    OwnPush(ApprovalRecord),
    /// The policy forbids self-approval and it cannot be ruled out (why).
    SelfApprovalUnknown(ApprovalRecord, String),
}

/// Approve or reject approval `id` on behalf of `decider` (a Slack user or an IAM caller), `via`
/// ("Slack", "kanaria approve") for the record. Exactly one decision ever wins.
///
/// `read` is the approval as the caller has already read it, if it has (Slack's handler does, to
/// check the approver): the self-approval check needs only its fixed fields, so it is not read
/// again. The decision itself is a conditional write either way.
pub async fn decide(
    ctx: &Context,
    id: &str,
    approve: bool,
    decider: &Decider,
    via: &str,
    read: Option<&ApprovalRecord>,
) -> Result<Result<Outcome, Refusal>, HandlerError> {
    let approvals = Approvals::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let now = now_unix();
    let who = decider.who();
    // Rolling back is the safe direction: anyone allowed to decide may, the pusher included.
    let checked = if approve { self_approval_refusal(&approvals, id, read, decider).await? } else { None };
    if let Some(refusal) = checked {
        warn!(approval = %id, by = %who, via, "decision refused: self-approval is forbidden by the policy");
        return Ok(Err(refusal));
    }
    let status = if approve { APPROVED } else { REJECTED };
    let record = match approvals.decide(id, status, who, now).await? {
        Decided::Unknown => return Ok(Err(Refusal::Unknown)),
        Decided::Already(r) if r.status == PENDING => return Ok(Err(Refusal::Expired(r))),
        Decided::Already(r) => return Ok(Err(Refusal::AlreadyDecided(r))),
        Decided::Now(r) => r,
    };
    info!(approval = %id, rollout = %record.rollout_id, service = %record.service, decision = status, by = %who, via, "approval decided");
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let snapshot: Option<Rollout> = store
        .lock(&record.service)
        .await?
        .filter(|l| l.rollout_id == record.rollout_id)
        .and_then(|l| l.rollout_json)
        .and_then(|j| serde_json::from_str(&j).ok());
    if approve {
        let output = json!({ "approvedBy": who, "via": via, "at": now }).to_string();
        match ctx.clients.sfn.send_task_success().task_token(&record.token.0).output(output).send().await {
            Ok(_) => {}
            Err(e) => {
                let code = e.as_service_error().and_then(|se| aws_sdk_sfn::error::ProvideErrorMetadata::code(se)).unwrap_or("");
                if matches!(code, "TaskTimedOut" | "TaskDoesNotExist" | "InvalidToken") {
                    return Ok(Ok(Outcome::TooLate(record)));
                }
                // Not completed: let someone try again rather than leave an approval that did nothing.
                approvals.undo(id, who).await?;
                return Err(HandlerError::new(
                    "Kanaria.Transient",
                    format!(
                        "Step Functions SendTaskSuccess for approval {id} of {} failed ({code}); the approval is open again, try again",
                        record.service
                    ),
                ));
            }
        }
        if let Some(rollout) = &snapshot {
            let card = progress::card(rollout, Phase::Approved { by: who.to_string(), at: now });
            progress::publish(ctx, rollout, card).await;
        }
        Ok(Ok(Outcome::Approved(record)))
    } else {
        let who_text = match decider {
            Decider::Slack { user_id, .. } => format!("<@{user_id}>"),
            Decider::Iam { arn } => arn.clone(),
        };
        let cause = format!("rolled back by {who_text} ({via}) at the approval step, {}% traffic on the new task set", record.weight);
        if let Some(rollout) = &snapshot {
            let card = progress::card(rollout, Phase::Rejected { by: who.to_string(), at: now });
            progress::publish(ctx, rollout, card).await;
        }
        match circuit_breaker::trip(ctx, &record.service, &record.rollout_id, &cause, circuit_breaker::Pace::Policy).await? {
            circuit_breaker::Tripped::NotInFlight => Ok(Ok(Outcome::TooLate(record))),
            _ => Ok(Ok(Outcome::RolledBack(record))),
        }
    }
}

/// With `forbidSelfApproval`, the person who pushed the image may not approve it; when that
/// cannot be ruled out, nobody may (checked before the decision's conditional write, so a refusal
/// changes nothing). Who pushed and the image are fixed for an approval, so reading them first
/// does not race with the decision.
pub(crate) async fn self_approval_refusal(
    approvals: &Approvals<'_>,
    id: &str,
    read: Option<&ApprovalRecord>,
    decider: &Decider,
) -> Result<Option<Refusal>, HandlerError> {
    let record = match read {
        Some(record) if record.id == id => record.clone(),
        _ => match approvals.get(id).await? {
            Some(record) => record,
            None => return Ok(Some(Refusal::Unknown)),
        },
    };
    if !record.forbid_self_approval {
        return Ok(None);
    }
    let pusher = approvals.pusher(&record.repository, &record.digest).await?.map(|arn| Principal::from_arn(&arn));
    Ok(match identity::check(pusher.as_ref(), decider) {
        SelfApproval::Other => None,
        SelfApproval::Same => Some(Refusal::OwnPush(record)),
        SelfApproval::Unknown(why) => Some(Refusal::SelfApprovalUnknown(record, why)),
    })
}

/// 128 random bits, URL-safe: unguessable, so an approval id is useless without a signed
/// request from an approver.
pub fn random_id() -> Result<String, HandlerError> {
    let mut bytes = [0u8; 16];
    // If the OS RNG ever failed, refusing to wait is safer than a guessable id.
    getrandom::fill(&mut bytes).map_err(|e| HandlerError::new("Kanaria.Transient", format!("no random approval id: {e}; retrying")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
