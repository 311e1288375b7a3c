//! Rollout progress for people: after each state a rollout's whole current picture (a
//! [`RolloutCard`]) is published to the events topic. The `slack-notify` function renders it
//! into the rollout's one Slack message, updated in place; anything else may subscribe too.
//!
//! Publishing never fails a rollout: a notice that cannot be sent is logged and dropped (the
//! next one carries the whole picture again).

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::aws::{now_unix, Context};
use crate::policy::Strategy;
use crate::rollout::Rollout;
pub use crate::slack::message::{Phase, RolloutCard};

/// SNS message attribute `kind` of a rollout card.
pub const CARD_KIND: &str = "rollout-card";

/// What goes over the events topic: the card, where it should be shown, and its order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardEvent {
    /// Milliseconds since the epoch when it was published: later states win.
    pub seq: u64,
    /// The policy's Slack channel, if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub card: RolloutCard,
}

/// The card of `rollout` in `phase`, from what the rollout knows (callers add failures and
/// alarm states when they have read them).
pub fn card(rollout: &Rollout, phase: Phase) -> RolloutCard {
    let strategy = match &rollout.policy.strategy {
        Strategy::Canary(_) => "canary",
        Strategy::Linear(_) => "linear",
        Strategy::BlueGreen(_) => "blue/green",
    };
    let region = rollout.image.uri.split('.').nth(3).map(str::to_string);
    RolloutCard {
        rollout_id: rollout.id.clone(),
        service: rollout.service.key(),
        old_image: rollout.stable_image.clone(),
        new_image: rollout.image.uri.clone(),
        new_tag: rollout.image.tag.clone(),
        digest: rollout.image.digest.clone(),
        strategy: strategy.into(),
        steps: rollout.policy.steps().iter().map(|s| s.weight).collect(),
        step: rollout.step,
        weight: rollout.weight,
        phase,
        failed_tasks: Vec::new(),
        alarms: Vec::new(),
        analysis: rollout.analysis.clone(),
        cause: rollout.cause.clone(),
        console_url: region.map(|r| {
            format!(
                "https://{r}.console.aws.amazon.com/ecs/v2/clusters/{}/services/{}/deployments?region={r}",
                rollout.service.cluster, rollout.service.name
            )
        }),
        updated_at: now_unix(),
    }
}

/// Publish the card (when an events topic is configured).
pub async fn publish(ctx: &Context, rollout: &Rollout, card: RolloutCard) {
    let Some(topic) = ctx.settings.events_topic_arn.as_deref() else { return };
    let seq = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let channel = rollout.policy.slack.as_ref().and_then(|s| s.channel.clone());
    let event = CardEvent { seq, channel, card };
    let body = serde_json::to_string(&event).expect("a card serialises");
    let attribute = |v: &str| {
        aws_sdk_sns::types::MessageAttributeValue::builder().data_type("String").string_value(v).build().expect("data type is set")
    };
    let sent = ctx
        .clients
        .sns
        .publish()
        .topic_arn(topic)
        .message(body)
        .message_attributes("kind", attribute(CARD_KIND))
        .message_attributes("service", attribute(&rollout.service.key()))
        .message_attributes("rollout", attribute(&rollout.id))
        .send()
        .await;
    if let Err(e) = sent {
        warn!(error = %aws_sdk_sns::error::DisplayErrorContext(&e), rollout = %rollout.id, "rollout progress not published");
    }
}
