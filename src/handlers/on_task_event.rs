//! `on-task-event`: ECS `Task State Change` events. A task of the new task set of an in-flight
//! rollout that stops for a failure is recorded once against the rollout (EventBridge delivers
//! at least once and out of order; the record is keyed by task ARN, so a duplicate or a late
//! delivery never counts twice). The rollout's next check rolls back on it.
//!
//! Events that are not failures cost no read and no write.

use serde_json::{json, Value};
use tracing::{info, warn};

use super::HandlerError;
use crate::aws::store::Store;
use crate::aws::{now_unix, Context};
use crate::events::{EcsTaskStateChange, Envelope};

pub async fn handle(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    let event: Envelope<EcsTaskStateChange> =
        serde_json::from_value(event).map_err(|e| HandlerError::invalid_input("not an ECS Task State Change event", e))?;
    if event.source != "aws.ecs" || event.detail_type != "ECS Task State Change" {
        return Err(HandlerError::invalid_input(
            "not an ECS Task State Change event",
            format!("source {:?}, detail-type {:?}", event.source, event.detail_type),
        ));
    }
    let task = &event.detail;
    if task.task_arn.is_empty() || task.cluster_arn.is_empty() {
        return Err(HandlerError::invalid_input("ECS Task State Change event", "detail.taskArn and detail.clusterArn are required"));
    }
    let Some(failure) = task.failure() else {
        return Ok(json!({ "ignored": "not a failed task" }));
    };
    let Some(service) = task.service_name() else {
        return Ok(json!({ "ignored": "not a service task" }));
    };
    let service_key = format!("{}/{service}", task.cluster_name());
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let Some(lock) = store.lock(&service_key).await? else {
        return Ok(json!({ "ignored": "no rollout in flight" }));
    };
    if lock.green_task_set_id.is_none() || lock.green_task_set_id.as_deref() != task.started_by.as_deref() {
        return Ok(json!({ "ignored": "not a task of the new task set" }));
    }
    let first_time = store.record_failure(&lock.rollout_id, &failure, now_unix()).await?;
    if first_time {
        warn!(service = %service_key, rollout = %lock.rollout_id, failure = %failure.describe(), "a task of the new task set failed");
    } else {
        info!(service = %service_key, task = %failure.task_arn, "duplicate delivery of a failed task; counted once");
    }
    Ok(json!({ "recorded": first_time, "rollout": lock.rollout_id, "task": failure.task_arn }))
}
