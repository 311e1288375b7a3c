//! EventBridge → function, the way AWS wires it: a rule with the template's pattern on the
//! default bus, an SQS queue as its target (moto routes PutEvents to SQS targets by pattern),
//! and a drainer that invokes the function with each event. Like Lambda's asynchronous
//! invocation, a failed event is retried (twice) and then dropped to the log.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use kanaria::handlers::Function;
use tracing::warn;

use crate::Shared;

/// Attempts per event, as Lambda's asynchronous invocation (1 + 2 retries).
const MAX_ATTEMPTS: u32 = 3;

/// Create the rule and its queue; returns the queue URL.
/// Create an SQS queue (`visibility_seconds`: how soon an unanswered message is seen again)
/// and return its URL and ARN.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str, visibility_seconds: Option<u32>) -> Result<(String, String)> {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .set_attributes(visibility_seconds.map(|s| [(QueueAttributeName::VisibilityTimeout, s.to_string())].into_iter().collect()))
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("reading the ARN of queue {name}"))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    Ok((url, arn))
}

pub async fn route_rule(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    function_id: &str,
    event_name: &str,
    pattern: &serde_json::Value,
) -> Result<String> {
    let name = format!("{function_id}-{event_name}");
    let (queue_url, queue_arn) = create_queue(sqs, &name, Some(2)).await?;
    events.put_rule().name(&name).event_pattern(pattern.to_string()).send().await.with_context(|| format!("creating rule {name}"))?;
    events
        .put_targets()
        .rule(&name)
        .targets(aws_sdk_eventbridge::types::Target::builder().id(function_id).arn(queue_arn).build()?)
        .send()
        .await
        .with_context(|| format!("targeting rule {name}"))?;
    Ok(queue_url)
}

/// Forever: receive events from the queue and invoke the function with each, concurrently
/// within a batch (Lambda runs concurrent invocations too).
/// Up to `max` messages of the queue (a one-second long poll), with their receive counts; none
/// after an error, which is logged (moto restarting, say) and followed by a short back-off.
async fn receive(sqs: &aws_sdk_sqs::Client, queue_url: &str, max: i32) -> Vec<aws_sdk_sqs::types::Message> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(max)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await;
    match received {
        Ok(out) => out.messages.unwrap_or_default(),
        Err(e) => {
            warn!(queue = %queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receiving messages failed; retrying");
            // Not a synchronisation point: a pause before asking again.
            tokio::time::sleep(Duration::from_millis(200)).await;
            Vec::new()
        }
    }
}

pub async fn drain(shared: Arc<Shared>, sqs: aws_sdk_sqs::Client, queue_url: String, function: Function) {
    loop {
        let messages = receive(&sqs, &queue_url, 10).await;
        let mut batch = tokio::task::JoinSet::new();
        for m in messages {
            let shared = shared.clone();
            let sqs = sqs.clone();
            let queue_url = queue_url.clone();
            batch.spawn(async move {
                let attempts: u32 = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                let mut event: serde_json::Value = serde_json::from_str(m.body().unwrap_or_default()).unwrap_or(serde_json::Value::Null);
                // moto leaves `account` out of events it delivers to SQS; EventBridge always sets it.
                if let Some(envelope) = event.as_object_mut() {
                    envelope.entry("account").or_insert_with(|| crate::ACCOUNT.into());
                }
                let result = shared.invoke(function, event).await;
                let retryable = matches!(&result, Err(e) if e.error_type != "Kanaria.InvalidInput");
                if retryable && attempts < MAX_ATTEMPTS {
                    return; // becomes visible again after the visibility timeout
                }
                if retryable {
                    warn!(
                        function = function.crate_name(),
                        attempts, "event dropped after {MAX_ATTEMPTS} attempts (a dead-letter queue keeps it in AWS)"
                    );
                }
                if let Some(handle) = m.receipt_handle() {
                    let _ = sqs.delete_message().queue_url(&queue_url).receipt_handle(handle).send().await;
                }
            });
        }
        while batch.join_next().await.is_some() {}
    }
}

/// An SQS event source mapping (batch size 1): each message as Lambda's SQS event
/// (`{"Records": [...]}`). A failed invocation leaves the message to become visible again and be
/// retried ([`MAX_ATTEMPTS`] times here; a redrive policy's dead-letter queue keeps it in AWS).
pub async fn drain_event_source(shared: Arc<Shared>, sqs: aws_sdk_sqs::Client, queue: String, queue_url: String, function: Function) {
    let queue_arn = format!("arn:aws:sqs:{}:{}:{queue}", crate::REGION, crate::ACCOUNT);
    loop {
        for m in receive(&sqs, &queue_url, 1).await {
            let attempts: u32 = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            let event = serde_json::json!({"Records": [{
                "messageId": m.message_id().unwrap_or_default(),
                "receiptHandle": m.receipt_handle().unwrap_or_default(),
                "body": m.body().unwrap_or_default(),
                "attributes": {"ApproximateReceiveCount": attempts.to_string()},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": crate::REGION,
            }]});
            let result = shared.invoke(function, event).await;
            if result.is_err() && attempts < MAX_ATTEMPTS {
                continue; // visible again after the visibility timeout
            }
            if result.is_err() {
                warn!(
                    function = function.crate_name(),
                    attempts, "message dropped after {MAX_ATTEMPTS} attempts (the redrive policy's queue keeps it in AWS)"
                );
            }
            if let Some(handle) = m.receipt_handle() {
                let _ = sqs.delete_message().queue_url(&queue_url).receipt_handle(handle).send().await;
            }
        }
    }
}
