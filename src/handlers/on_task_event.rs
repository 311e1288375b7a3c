//! `on-task-event`: the circuit breaker's ECS `Task State Change` events. A task of the new task
//! set of an in-flight rollout that stops for a failure (failed to start, essential container
//! exited non-zero — also after RUNNING —, out of memory, failed ELB health checks) is recorded
//! once against the rollout, keyed by task ARN and kept at the highest `detail.version`
//! (EventBridge delivers at least once and out of order). When the policy's threshold is
//! reached, the circuit breaker rolls back at once, from here.
//!
//! It shares nothing with restart-loop detection, which has its own function (`restart-loop`,
//! [`super::restart_loop`]), concurrency and queue: a flood of other services' failures cannot
//! keep a canary's failure waiting. EventBridge invokes it only for stops of service tasks that
//! may be failures (template.yaml, the pattern [`triage`] agrees with); a failed task of a service
//! with no rollout in flight costs one read.

use serde_json::{json, Value};
use tracing::{info, warn};

use super::{circuit_breaker, HandlerError};
use crate::aws::store::{LockRecord, Store};
use crate::aws::{elb, now_unix, Context};
use crate::events::{EcsTaskStateChange, Envelope, TaskFailure};
use crate::rollout::Rollout;

/// What an event asks of this function, decided before any AWS call. Most ECS Task State Change
/// events end here (`benches/task_event.rs` measures this against the benchmark's event stream).
#[derive(Debug)]
pub enum Triage {
    /// Not a failed stop of a service's task: answered with the reason, no read, no write.
    Ignored(&'static str),
    /// A service's task stopped for a failure.
    Failed(FailedTask),
}

#[derive(Debug)]
pub struct FailedTask {
    pub event: Envelope<EcsTaskStateChange>,
    pub failure: TaskFailure,
    /// `cluster/service`, the key of the service's lock and restart-loop records.
    pub service_key: String,
}

/// Is this event a failed stop of a service's task? Shared by the circuit breaker and
/// restart-loop detection.
pub fn triage(event: Value) -> Result<Triage, HandlerError> {
    let event = Envelope::<EcsTaskStateChange>::parse(event, "aws.ecs", "ECS Task State Change")
        .map_err(|e| HandlerError::invalid_input("ECS Task State Change event", e))?;
    let task = &event.detail;
    if task.task_arn.is_empty() || task.cluster_arn.is_empty() {
        return Err(HandlerError::invalid_input("ECS Task State Change event", "detail.taskArn and detail.clusterArn are required"));
    }
    let Some(failure) = task.failure() else {
        return Ok(Triage::Ignored("not a failed task"));
    };
    let Some(service) = task.service_name() else {
        return Ok(Triage::Ignored("not a service task"));
    };
    let service_key = format!("{}/{service}", task.cluster_name());
    Ok(Triage::Failed(FailedTask { event, failure, service_key }))
}

pub async fn handle(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    match triage(event)? {
        Triage::Ignored(why) => Ok(json!({ "ignored": why })),
        Triage::Failed(failed) => failed_task(ctx, failed).await,
    }
}

/// Was `task` started by the new task set of the rollout holding `lock`?
pub fn is_green_task(lock: &LockRecord, task: &EcsTaskStateChange) -> bool {
    lock.green_task_set_id.is_some() && lock.green_task_set_id.as_deref() == task.started_by.as_deref()
}

async fn failed_task(ctx: &Context, failed: FailedTask) -> Result<Value, HandlerError> {
    let FailedTask { event, failure, service_key } = failed;
    let task = &event.detail;
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let lock = store.lock(&service_key).await?;
    let Some(lock) = lock.filter(|l| is_green_task(l, task)) else {
        // Restart-loop detection's business, on its own function.
        return Ok(json!({ "ignored": "not a task of a rollout's new task set" }));
    };
    // Counted once per task (its several stop events and redeliveries record nothing new), but
    // never returned early on: a trip that broke off must be finished by whichever delivery
    // comes next, until it has completed (the lost-reply case: the record written, the reply lost,
    // the SDK's retry finding it recorded).
    if store.record_failure(&lock.rollout_id, &failure, now_unix()).await? {
        warn!(service = %service_key, rollout = %lock.rollout_id, failure = %failure.describe(), "a task of the new task set failed");
    } else {
        info!(service = %service_key, task = %failure.task_arn, version = failure.version, "failed task recorded already; counted once");
    }
    if lock.trip_completed {
        return Ok(json!({ "recorded": true, "rollout": lock.rollout_id, "circuitBreaker": "tripped already" }));
    }

    let snapshot = lock.rollout_json.as_deref().and_then(|j| serde_json::from_str::<Rollout>(j).ok());
    let threshold = snapshot.as_ref().map(|r| r.policy.failure_threshold).unwrap_or(1);
    let failures = store.failures(&lock.rollout_id).await?;
    if (failures.len() as u32) < threshold {
        return Ok(json!({ "recorded": true, "rollout": lock.rollout_id, "failures": failures.len(), "threshold": threshold }));
    }
    let lines: Vec<String> = failures.iter().map(|f| f.describe()).collect();
    // The weight as the ALB has it now (the lock's figure lags while a shift is under way).
    let weight = match snapshot.as_ref().and_then(|r| Some((r.policy.traffic.route()?, r.green.as_ref()?.target_group_arn.clone()))) {
        Some((route, green_tg)) => elb::read_weights(&ctx.clients.elb, &route)
            .await
            .map(|w| w.iter().find(|(tg, _)| *tg == green_tg).map(|(_, w)| *w).unwrap_or(0))
            .unwrap_or(lock.weight),
        None => lock.weight,
    };
    let cause = format!("{} task(s) of the new task set failed at {weight}% traffic: {}", failures.len(), lines.join("; "));
    let outcome = circuit_breaker::trip(ctx, &service_key, &lock.rollout_id, &cause, circuit_breaker::Pace::Now).await?;
    Ok(json!({ "recorded": true, "rollout": lock.rollout_id, "failures": failures.len(), "circuitBreaker": format!("{outcome:?}") }))
}
