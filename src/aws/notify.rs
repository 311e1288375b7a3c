//! Notifications to people: an SNS topic (email, chat bridges, pagers subscribe to it). Slack
//! messages are added with ChatOps. A notification that cannot be sent is logged, never fatal:
//! a notice must not block a rollout or a scaling action.

use tracing::warn;

use super::{AwsError, Context};

/// One message: a short subject (for email and pagers) and a body a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub subject: String,
    pub body: String,
    /// Filterable message attributes, e.g. ("kind", "restart-loop"), ("service", "prod/web").
    pub attributes: Vec<(String, String)>,
}

/// Publish to the alert topic when one is configured. Returns whether it was sent.
pub async fn send(ctx: &Context, notice: &Notice) -> bool {
    let Some(topic) = ctx.settings.alert_topic_arn.as_deref() else { return false };
    match publish(&ctx.clients.sns, topic, notice).await {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, subject = %notice.subject, "notification not sent");
            false
        }
    }
}

async fn publish(sns: &aws_sdk_sns::Client, topic: &str, notice: &Notice) -> Result<(), AwsError> {
    // SNS subjects: at most 100 printable ASCII characters, no line breaks.
    let subject: String = notice.subject.chars().filter(|c| c.is_ascii() && !c.is_control()).take(100).collect();
    let mut req = sns.publish().topic_arn(topic).subject(subject).message(&notice.body);
    for (k, v) in &notice.attributes {
        req = req.message_attributes(
            k,
            aws_sdk_sns::types::MessageAttributeValue::builder().data_type("String").string_value(v).build().expect("data type is set"),
        );
    }
    req.send().await.map_err(|e| AwsError::new("SNS", "Publish", topic, e))?;
    Ok(())
}
