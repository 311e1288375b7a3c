//! The service lock is a lease, and no lock outlives the rollout that took it.
//!
//! Every step of a rollout renews the lease past the wait that follows it (the bake, the
//! approval timeout, the next readiness check) plus [`MARGIN_SECONDS`]. A lock can be left behind
//! only when the execution ends without its own RollBack or promotion releasing it: an operator's
//! StopExecution, a failure Step Functions does not let the state machine catch, a timeout. Two
//! things end such a lock:
//! - the execution's end: EventBridge's `Step Functions Execution Status Change` (SUCCEEDED,
//!   FAILED, ABORTED, TIMED_OUT) reaches rollout-step, which releases the lock of that execution
//!   if it is still there, records how it ended, tells people, and starts a push queued behind
//!   it ([`execution_ended`]);
//! - whoever is about to act on a lock (the circuit breaker, a newer push) first asks Step
//!   Functions whether its execution still runs ([`still_running`]), and releases it if not —
//!   so a failed task of the *current* primary, an alarm or an abort never rolls production back
//!   to an old image because of a rollout that is over.
//!
//! DynamoDB's TTL removes a lock a day after its lease ran out, should all of that fail.

use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::{on_image_push, HandlerError};
use crate::aws::store::{LastRollout, LockRecord, Store};
use crate::aws::{now_unix, sfn, Context};
use crate::events::Envelope;
use crate::rollout::Rollout;

/// Slack past each wait before the lease runs out: Step Functions' retries of a step with
/// back-off, and a slow Lambda start, fit in it many times over.
pub const MARGIN_SECONDS: u64 = 600;

/// The EventBridge detail type of Step Functions' execution status events.
pub const EXECUTION_STATUS_CHANGE: &str = "Step Functions Execution Status Change";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionStatusChange {
    execution_arn: String,
    status: String,
    /// The execution's input: the rollout as on-image-push started it.
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
}

/// A rollout execution ended. If it ended without releasing its lock, release it now.
pub async fn execution_ended(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    let event = Envelope::<ExecutionStatusChange>::parse(event, "aws.states", EXECUTION_STATUS_CHANGE)
        .map_err(|e| HandlerError::invalid_input("rollout-step", e))?;
    let detail = event.detail;
    if !matches!(detail.status.as_str(), "SUCCEEDED" | "FAILED" | "ABORTED" | "TIMED_OUT") {
        return Ok(json!({ "ignored": format!("execution {}", detail.status) }));
    }
    let Some(rollout) = detail.input.as_deref().and_then(|i| serde_json::from_str::<Rollout>(i).ok()) else {
        return Err(HandlerError::invalid_input("Step Functions Execution Status Change", "detail.input is not a kanaria rollout"));
    };
    let service_key = rollout.service.key();
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let lock = store.lock(&service_key).await?;
    let ours = lock.filter(|l| l.rollout_id == rollout.id && l.execution_arn.as_deref().is_none_or(|arn| arn == detail.execution_arn));
    let Some(lock) = ours else {
        // The rollout released the service itself (promoted, or rolled back): nothing left over
        // but, perhaps, a push queued behind it that its own attempts could not start.
        let started = on_image_push::start_queued_push(ctx, &service_key).await?;
        return Ok(
            json!({ "execution": detail.execution_arn, "status": detail.status, "lock": "released by the rollout", "queuedPush": started.map(|o| format!("{o:?}")) }),
        );
    };
    let why = match (detail.error.as_deref(), detail.cause.as_deref()) {
        (Some(e), Some(c)) if !c.is_empty() => format!("{e}: {c}"),
        (Some(e), _) => e.to_string(),
        _ => "no error recorded".into(),
    };
    release_left_over(ctx, &lock, &detail.status, &format!("the rollout execution ended {} ({why})", detail.status)).await?;
    let started = on_image_push::start_queued_push(ctx, &service_key).await?;
    Ok(
        json!({ "execution": detail.execution_arn, "status": detail.status, "lock": "released", "queuedPush": started.map(|o| format!("{o:?}")) }),
    )
}

/// Is the rollout holding `lock` still running? Releases the lock when its execution has ended
/// (or never started and the lease ran out), so the caller leaves the service alone.
pub async fn still_running(ctx: &Context, lock: &LockRecord) -> Result<bool, HandlerError> {
    let now = now_unix();
    let arn = lock.execution_arn.clone().filter(|a| !a.is_empty()).or_else(|| {
        (!ctx.settings.state_machine_arn.is_empty()).then(|| sfn::execution_arn(&ctx.settings.state_machine_arn, &lock.execution_name))
    });
    let status = match &arn {
        Some(arn) => sfn::status(&ctx.clients.sfn, arn).await?,
        None => None,
    };
    match status.as_deref() {
        Some(s) if sfn::is_running(s) => Ok(true),
        Some(ended) => {
            release_left_over(ctx, lock, ended, &format!("the rollout execution had ended ({ended}) without releasing the service"))
                .await?;
            Ok(false)
        }
        // Not started (yet): the lock stands while its lease does.
        None if now <= lock.lease_until => Ok(true),
        None => {
            release_left_over(ctx, lock, "ABANDONED", "the rollout never started its execution and its lease ran out").await?;
            Ok(false)
        }
    }
}

/// Release a lock its rollout left behind, record how it ended, and tell people.
async fn release_left_over(ctx: &Context, lock: &LockRecord, outcome: &str, cause: &str) -> Result<(), HandlerError> {
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let last = LastRollout {
        service: lock.service.clone(),
        rollout_id: lock.rollout_id.clone(),
        image: lock.image.clone(),
        digest: lock.digest.clone(),
        outcome: outcome.to_string(),
        cause: Some(cause.to_string()),
        started_at: lock.started_at,
        ended_at: now_unix(),
    };
    store.release(&lock.service, &lock.rollout_id, Some(&last)).await?;
    warn!(service = %lock.service, rollout = %lock.rollout_id, %outcome, %cause, "released a lock its rollout left behind");
    let notice = crate::aws::notify::Notice {
        subject: format!("kanaria: the rollout of {} ended without cleaning up", lock.service),
        body: format!(
            "The rollout of {} to {} ended {outcome}: {cause}.\nkanaria released the service, so events no longer act on that rollout. Check where traffic is and which task sets run (kanaria status {}), then push a known-good image or run kanaria deploy.",
            lock.image, lock.service, lock.service
        ),
        attributes: vec![("kind".into(), "lock-released".into()), ("service".into(), lock.service.clone())],
    };
    crate::aws::notify::send(ctx, &notice).await;
    info!(service = %lock.service, "left-over lock released");
    Ok(())
}
