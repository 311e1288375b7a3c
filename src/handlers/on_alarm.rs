//! `on-alarm`: a CloudWatch alarm that a policy lists went to ALARM while that service's
//! rollout is in flight: the circuit breaker rolls it back at once.

use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::{circuit_breaker, HandlerError};
use crate::aws::store::Store;
use crate::aws::Context;
use crate::events::Envelope;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmStateChange {
    pub alarm_name: String,
    pub state: AlarmState,
}

#[derive(Debug, Deserialize)]
pub struct AlarmState {
    pub value: String,
    #[serde(default)]
    pub reason: String,
}

pub async fn handle(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    let event = Envelope::<AlarmStateChange>::parse(event, "aws.cloudwatch", "CloudWatch Alarm State Change")
        .map_err(|e| HandlerError::invalid_input("on-alarm", e))?;
    let alarm = &event.detail;
    if alarm.state.value != "ALARM" {
        return Ok(json!({ "ignored": format!("alarm state {}", alarm.state.value) }));
    }
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let mut rolled_back = Vec::new();
    for rollout in store.in_flight().await?.into_iter().filter(|r| r.alarms.contains(&alarm.alarm_name)) {
        let cause = format!("alarm {} went to ALARM: {}", alarm.alarm_name, alarm.state.reason);
        let outcome = circuit_breaker::trip(ctx, &rollout.service, &rollout.rollout_id, &cause, circuit_breaker::Pace::Now).await?;
        info!(service = %rollout.service, rollout = %rollout.rollout_id, alarm = %alarm.alarm_name, ?outcome, "alarm rollback");
        rolled_back.push(json!({ "service": rollout.service, "rollout": rollout.rollout_id, "outcome": format!("{outcome:?}") }));
    }
    Ok(json!({ "alarm": alarm.alarm_name, "rolledBack": rolled_back }))
}
