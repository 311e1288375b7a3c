//! `slack-notify`: subscribed to kanaria's SNS topics. Rollout cards (events topic) become each
//! rollout's **one** Slack message, posted once and updated in place; alerts (alert topic:
//! restart loops, schedule failures) are posted as messages of their own.
//!
//! - One message per rollout: the first card claims the rollout's message record with a
//!   conditional write before posting, so two cards never post two messages.
//! - Order: every card carries the whole picture and a sequence number; a card older than what
//!   the message shows is dropped (SNS does not keep order).
//! - Slack being down loses nothing that matters: the next card carries the whole state again,
//!   and this function never fails its invocation over Slack (no retry storms).

use serde_json::Value;
use tracing::{info, warn};

use super::progress::{CardEvent, CARD_KIND};
use super::HandlerError;
use crate::aws::approvals::Approvals;
use crate::aws::secrets::Secret;
use crate::aws::{now_unix, Context};
use crate::slack::message;

/// A claim whose first post never completed (the poster died) is taken over after this long.
const STALE_CLAIM_SECONDS: u64 = 60;

pub async fn handle(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| HandlerError::invalid_input("slack-notify event", "no Records: not an SNS event"))?;
    let config = &ctx.chatops.config;
    let Some(secret_arn) = config.secret_arn.as_deref() else {
        info!("Slack is not configured (KANARIA_SLACK_SECRET_ARN); nothing posted");
        return Ok(serde_json::json!({ "posted": 0 }));
    };
    let token = match ctx.chatops.credentials.get(&ctx.clients.secrets, secret_arn).await {
        Ok(c) => match c.bot_token {
            Some(t) => t,
            None => {
                warn!("the Slack secret has no botToken; nothing posted (docs/slack.md)");
                return Ok(serde_json::json!({ "posted": 0 }));
            }
        },
        // Secrets Manager trouble is worth a retry of the invocation.
        Err(e) => return Err(e.into()),
    };
    let mut posted = 0;
    for record in records {
        let sns = record.get("Sns").unwrap_or(&Value::Null);
        let kind = sns.pointer("/MessageAttributes/kind/Value").and_then(Value::as_str).unwrap_or("");
        let text = sns.get("Message").and_then(Value::as_str).unwrap_or("");
        let outcome = if kind == CARD_KIND {
            match serde_json::from_str::<CardEvent>(text) {
                Ok(card) => show_card(ctx, &token, card).await,
                Err(e) => Err(format!("a rollout card that is not one ({e}); dropped")),
            }
        } else if kind == "rollback" {
            // The rollout's own message shows the rollback (with its cause).
            Ok(false)
        } else {
            let subject = sns.get("Subject").and_then(Value::as_str).unwrap_or("kanaria");
            post_alert(ctx, &token, subject, text).await
        };
        match outcome {
            Ok(true) => posted += 1,
            Ok(false) => {}
            Err(e) => warn!(error = %e, "Slack notice not shown"),
        }
    }
    Ok(serde_json::json!({ "posted": posted }))
}

/// Show a card: post the rollout's message the first time, update it after. Ok(true) when
/// Slack was called.
async fn show_card(ctx: &Context, token: &Secret, event: CardEvent) -> Result<bool, String> {
    let Some(channel) = event.channel.clone().or_else(|| ctx.chatops.config.default_channel.clone()) else {
        return Err(format!("no Slack channel for {} (set KANARIA_SLACK_CHANNEL or the policy's slack.channel)", event.card.service));
    };
    let approvals = Approvals::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let rollout_id = event.card.rollout_id.clone();
    let text = message::fallback_text(&event.card);
    let blocks = message::blocks(&event.card);
    let api = ctx.chatops.api();
    let now = now_unix();
    let existing = approvals.message(&rollout_id).await.map_err(|e| e.to_string())?;
    match existing {
        Some(m) if !m.ts.is_empty() => {
            if m.seq >= event.seq {
                return Ok(false);
            }
            api.update_message(token, &m.channel, &m.ts, &text, &blocks).await.map_err(|e| e.to_string())?;
            approvals.record_message(&rollout_id, &m.ts, event.seq).await.map_err(|e| e.to_string())?;
            Ok(true)
        }
        _ => {
            if !approvals
                .claim_message(&rollout_id, &channel, now, now.saturating_sub(STALE_CLAIM_SECONDS))
                .await
                .map_err(|e| e.to_string())?
            {
                // Another invocation is posting the first message right now: give it a moment,
                // then update that message (never post a second one).
                for _ in 0..10 {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    if let Some(m) = approvals.message(&rollout_id).await.map_err(|e| e.to_string())?.filter(|m| !m.ts.is_empty()) {
                        if m.seq >= event.seq {
                            return Ok(false);
                        }
                        api.update_message(token, &m.channel, &m.ts, &text, &blocks).await.map_err(|e| e.to_string())?;
                        approvals.record_message(&rollout_id, &m.ts, event.seq).await.map_err(|e| e.to_string())?;
                        return Ok(true);
                    }
                }
                return Err(format!("the first message of rollout {rollout_id} is still being posted; this update is dropped"));
            }
            let ts = api.post_message(token, &channel, &text, &blocks).await.map_err(|e| e.to_string())?;
            approvals.record_message(&rollout_id, &ts, event.seq).await.map_err(|e| e.to_string())?;
            Ok(true)
        }
    }
}

async fn post_alert(ctx: &Context, token: &Secret, subject: &str, body: &str) -> Result<bool, String> {
    let Some(channel) = ctx.chatops.config.default_channel.clone() else {
        return Err("no Slack channel for alerts (set KANARIA_SLACK_CHANNEL)".into());
    };
    let subject = message::escape(subject);
    let body = message::escape(body);
    let text = format!("*{subject}*\n{body}");
    let text: String = text.chars().take(2900).collect();
    let blocks = serde_json::json!([{ "type": "section", "text": { "type": "mrkdwn", "text": text } }]);
    ctx.chatops.api().post_message(token, &channel, &text, &blocks).await.map_err(|e| e.to_string())?;
    Ok(true)
}
