//! The circuit breaker: roll a rollout back **now**, from whichever handler noticed (failed new
//! tasks, an alarm, a newer push, a person), without waiting for the state machine's next step.
//!
//! 1. Fence: one conditional write marks the rollout ABORTING. Every forward step checks the
//!    fence, and a forward shift that raced with it is put back by its own read-back.
//! 2. Restore: the rollout's own decisions ([`Action::Restore`]) put 100% of traffic on the
//!    stable task set (read back from the ALB) and delete the new task set.
//! 3. End the execution promptly: fail the bake it is waiting in (its task token), so its
//!    RollBack state releases the service and the execution ends FAILED with the cause.
//! 4. Record that the trip completed. Until then every delivery of the event that asked for it
//!    runs the trip again: each step is idempotent, so a trip that broke off (a lost reply, a
//!    throttled call) is finished by the retry instead of being skipped as a duplicate.

use aws_sdk_sfn::Client as Sfn;
use tracing::{info, warn};

use super::{progress, rollout_step, HandlerError};
use crate::aws::store::{Store, TaskToken};
use crate::aws::{AwsError, Context};
use crate::rollout::{Action, Rollout, Verdict};
use crate::slack::message::Phase;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tripped {
    /// Traffic is back on the stable task set (read back) and the new task set is gone.
    Restored,
    /// Fenced; the stable task set is not serving yet (its tasks are starting again), so traffic
    /// stays where it is and the rollout's RollBack state moves it once the stable set is healthy;
    /// or the policy's `shiftBack` paces the way back, which the RollBack state goes on with.
    WaitingForStable,
    /// Fenced before the rollout had a new task set; its next step rolls back.
    Fenced,
    /// The rollout no longer holds the service (ended, or superseded): nothing to do.
    NotInFlight,
    /// An earlier trip of this rollout completed: nothing left to do.
    AlreadyTripped,
}

/// How fast a trip puts traffic back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// A failure signal (failed tasks, an alarm): all traffic back at once, also in the middle
    /// of a paced rollback.
    Now,
    /// A person or a newer push asks: the policy's `shiftBack` may pace it (while the new task
    /// set still serves); without one, at once too.
    Policy,
}

pub async fn trip(ctx: &Context, service_key: &str, rollout_id: &str, cause: &str, pace: Pace) -> Result<Tripped, HandlerError> {
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    // A lock whose execution has ended is a leftover: acting on it would roll production back to
    // an old image. `still_running` releases it.
    match store.lock(service_key).await?.filter(|l| l.rollout_id == rollout_id) {
        None => return Ok(Tripped::NotInFlight),
        Some(lock) if !super::lease::still_running(ctx, &lock).await? => return Ok(Tripped::NotInFlight),
        Some(_) => {}
    }
    let Some(lock) = store.begin_abort(service_key, rollout_id, cause, pace == Pace::Policy).await? else {
        info!(service = %service_key, rollout = %rollout_id, "circuit breaker: rollout no longer in flight");
        return Ok(Tripped::NotInFlight);
    };
    if lock.trip_completed {
        // A failure signal while the way back is paced: the rest goes at once.
        if pace == Pace::Now && store.hurry_abort(rollout_id).await? {
            if let Some(rollout) = lock.rollout_json.as_deref().and_then(|j| serde_json::from_str::<Rollout>(j).ok()) {
                warn!(service = %service_key, rollout = %rollout_id, %cause, "circuit breaker: failure during a paced rollback, all traffic back now");
                let restored = rollout_step::run(ctx, Action::Restore, rollout).await?;
                return Ok(if restored.verdict == Some(Verdict::Wait) { Tripped::WaitingForStable } else { Tripped::Restored });
            }
        }
        info!(service = %service_key, rollout = %rollout_id, "circuit breaker: tripped already");
        return Ok(Tripped::AlreadyTripped);
    }
    warn!(service = %service_key, rollout = %rollout_id, %cause, "circuit breaker tripped: rolling back");
    let snapshot: Option<Rollout> = lock.rollout_json.as_deref().and_then(|j| serde_json::from_str(j).ok());
    let outcome = match snapshot {
        Some(rollout) if rollout.stable.is_some() => {
            let restored = rollout_step::run(ctx, Action::Restore, rollout).await?;
            if restored.verdict == Some(Verdict::Wait) {
                let card = progress::card(&restored, Phase::RollingBack);
                progress::publish(ctx, &restored, progress::RolloutCard { cause: Some(cause.to_string()), ..card }).await;
                Tripped::WaitingForStable
            } else {
                let card = progress::card(&restored, Phase::RolledBack);
                progress::publish(ctx, &restored, progress::RolloutCard { cause: Some(cause.to_string()), ..card }).await;
                Tripped::Restored
            }
        }
        _ => Tripped::Fenced,
    };
    if let Some(token) = &lock.bake_token {
        end_wait(&ctx.clients.sfn, token, "Kanaria.RolledBack", cause).await?;
    }
    // Only the first trip to complete tells people (a retry that finishes a trip says nothing twice).
    if !store.mark_trip_completed(service_key, rollout_id).await? {
        return Ok(outcome);
    }
    // The notice for people (a restart-loop alert for these tasks would say the same thing).
    let notice = crate::aws::notify::Notice {
        subject: format!("kanaria: rolled back the rollout of {service_key}"),
        body: match outcome {
            Tripped::Restored => format!(
                "The rollout of {} to {service_key} was rolled back: all traffic is on the stable task set again.\nWhy: {cause}",
                lock.image
            ),
            _ => format!(
                "The rollout of {} to {service_key} is being rolled back: traffic goes back to the stable task set as soon as it serves, or step by step as the policy's shiftBack asks.\nWhy: {cause}",
                lock.image
            ),
        },
        attributes: vec![("kind".into(), "rollback".into()), ("service".into(), service_key.to_string())],
    };
    crate::aws::notify::send(ctx, &notice).await;
    Ok(outcome)
}

/// Step Functions' answers that mean the waiting state has ended already (timed out, or
/// completed by someone else): nothing left to end. Any other error means the state may still
/// be waiting, so it is an error of the caller's, to retry (Step Functions API reference,
/// SendTaskFailure: TaskTimedOut, TaskDoesNotExist, InvalidToken).
fn wait_already_ended(err: &AwsError) -> bool {
    ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"].iter().any(|code| err.is_code(code))
}

/// Fail the state waiting on `token`. A token whose state has already ended is fine.
pub async fn end_wait(sfn: &Sfn, token: &TaskToken, error: &str, cause: &str) -> Result<(), AwsError> {
    match sfn.send_task_failure().task_token(&token.0).error(error).cause(truncate(cause, 32_000)).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let err = AwsError::new("Step Functions", "SendTaskFailure", "the rollout's waiting state", e);
            if wait_already_ended(&err) {
                info!(error = %err, "the waiting state had already ended");
                Ok(())
            } else {
                warn!(error = %err, "could not end the rollout's waiting state; the event will be retried");
                Err(err)
            }
        }
    }
}

/// Let the state waiting on `token` go on (a promote request ends the bake early).
pub async fn continue_wait(sfn: &Sfn, token: &TaskToken) -> Result<(), AwsError> {
    match sfn.send_task_success().task_token(&token.0).output("{\"skipped\":true}").send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let err = AwsError::new("Step Functions", "SendTaskSuccess", "the rollout's waiting state", e);
            if wait_already_ended(&err) {
                info!(error = %err, "the waiting state had already ended");
                Ok(())
            } else {
                Err(err)
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
