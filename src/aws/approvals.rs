//! Approvals and Slack messages in kanaria's table (same table as [`super::store`]).
//!
//! - `approval#ID` / `approval`: one wait for a person. The Step Functions task token stays
//!   here, server-side; Slack buttons carry only the random approval id. Deciding is one
//!   conditional write (PENDING → APPROVED | REJECTED, only before its `deadline`), so a double
//!   click, a replayed request or a race between Slack and `kanaria approve` decides once.
//! - `push#REPOSITORY@DIGEST` / `pusher`: who pushed an image (the IAM principal ARN from
//!   CloudTrail's PutImage), for `approval.forbidSelfApproval`.
//! - `slack#ROLLOUT_ID` / `message`: the rollout's one Slack message (channel, ts) and the
//!   sequence number of the last state rendered into it, so late notices never overwrite newer
//!   ones.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;

use super::store::{conditional, get_n, get_s, n, s, TaskToken};
use super::AwsError;

pub const PENDING: &str = "PENDING";
pub const APPROVED: &str = "APPROVED";
pub const REJECTED: &str = "REJECTED";

/// Approval records stay a while after they expire, so a late click is told "expired" rather
/// than "unknown" (DynamoDB TTL on `expiresAt`).
const APPROVAL_RETENTION_SECONDS: u64 = 14 * 24 * 3600;
/// Who pushed an image is kept long enough for any approval of a rollout of it.
const PUSHER_RETENTION_SECONDS: u64 = 30 * 24 * 3600;
/// Slack message records outlive any rollout.
const MESSAGE_RETENTION_SECONDS: u64 = 30 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// Random, unguessable (128 bits); the only thing Slack ever sees.
    pub id: String,
    pub rollout_id: String,
    pub service: String,
    /// Never logged (redacted `Debug`), never sent anywhere but Step Functions.
    pub token: TaskToken,
    pub status: String,
    pub created_at: u64,
    pub expires_at: u64,
    /// Percent of traffic on the new task set while waiting.
    pub weight: u32,
    /// "rollback" or "promote": what a timeout does (for the message).
    pub on_timeout: String,
    /// Slack user ids and user group ids that may decide (from the rollout's policy).
    pub approvers: Vec<String>,
    pub approver_groups: Vec<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<u64>,
    /// The person who pushed `repository@digest` may not decide.
    pub forbid_self_approval: bool,
    /// The image being rolled out (who pushed it is looked up by this).
    pub repository: String,
    pub digest: String,
}

impl ApprovalRecord {
    pub fn is_pending(&self, now: u64) -> bool {
        self.status == PENDING && now < self.expires_at
    }
}

/// What a decision attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// This call decided it; the record as written (with the task token to complete).
    Now(ApprovalRecord),
    /// Someone decided it before, or it expired: the record as it is.
    Already(ApprovalRecord),
    Unknown,
}

/// The rollout's Slack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackMessage {
    pub channel: String,
    /// Empty while the first post is in progress (the record is claimed before posting, so two
    /// notices never post two messages).
    pub ts: String,
    pub seq: u64,
    pub claimed_at: u64,
}

pub struct Approvals<'a> {
    pub ddb: &'a Client,
    pub table: &'a str,
}

fn approval_key(id: &str) -> [(String, AttributeValue); 2] {
    [("pk".into(), s(format!("approval#{id}"))), ("sk".into(), s("approval"))]
}

fn pusher_key(repository: &str, digest: &str) -> [(String, AttributeValue); 2] {
    [("pk".into(), s(format!("push#{repository}@{digest}"))), ("sk".into(), s("pusher"))]
}

fn message_key(rollout_id: &str) -> [(String, AttributeValue); 2] {
    [("pk".into(), s(format!("slack#{rollout_id}"))), ("sk".into(), s("message"))]
}

fn list(item: &HashMap<String, AttributeValue>, k: &str) -> Vec<String> {
    item.get(k).and_then(|v| v.as_l().ok()).map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect()).unwrap_or_default()
}

fn approval_from(item: &HashMap<String, AttributeValue>) -> ApprovalRecord {
    ApprovalRecord {
        id: get_s(item, "approvalId").unwrap_or_default(),
        rollout_id: get_s(item, "rolloutId").unwrap_or_default(),
        service: get_s(item, "service").unwrap_or_default(),
        token: TaskToken(get_s(item, "taskToken").unwrap_or_default()),
        status: get_s(item, "status").unwrap_or_default(),
        created_at: get_n(item, "createdAt"),
        expires_at: get_n(item, "deadline"),
        weight: get_n(item, "weight") as u32,
        on_timeout: get_s(item, "onTimeout").unwrap_or_default(),
        approvers: list(item, "approvers"),
        approver_groups: list(item, "approverGroups"),
        decided_by: get_s(item, "decidedBy"),
        decided_at: item.contains_key("decidedAt").then(|| get_n(item, "decidedAt")),
        forbid_self_approval: item.get("forbidSelfApproval").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        repository: get_s(item, "repository").unwrap_or_default(),
        digest: get_s(item, "digest").unwrap_or_default(),
    }
}

impl<'a> Approvals<'a> {
    pub fn new(ddb: &'a Client, table: &'a str) -> Self {
        Approvals { ddb, table }
    }

    /// Record a new wait for a person (ids are random: a clash means a bug, not a race).
    pub async fn put(&self, a: &ApprovalRecord) -> Result<(), AwsError> {
        let strings = |v: &[String]| AttributeValue::L(v.iter().map(|x| s(x)).collect());
        let mut item: HashMap<String, AttributeValue> = approval_key(&a.id).into_iter().collect();
        item.extend([
            ("approvalId".to_string(), s(&a.id)),
            ("rolloutId".to_string(), s(&a.rollout_id)),
            ("service".to_string(), s(&a.service)),
            ("taskToken".to_string(), s(&a.token.0)),
            ("status".to_string(), s(&a.status)),
            ("createdAt".to_string(), n(a.created_at)),
            ("deadline".to_string(), n(a.expires_at)),
            ("weight".to_string(), n(a.weight as u64)),
            ("onTimeout".to_string(), s(&a.on_timeout)),
            ("approvers".to_string(), strings(&a.approvers)),
            ("approverGroups".to_string(), strings(&a.approver_groups)),
            ("forbidSelfApproval".to_string(), AttributeValue::Bool(a.forbid_self_approval)),
            ("repository".to_string(), s(&a.repository)),
            ("digest".to_string(), s(&a.digest)),
            // The table's TTL attribute.
            ("expiresAt".to_string(), n(a.expires_at + APPROVAL_RETENTION_SECONDS)),
        ]);
        let out =
            self.ddb.put_item().table_name(self.table).set_item(Some(item)).condition_expression("attribute_not_exists(pk)").send().await;
        match conditional(out, "PutItem", format!("{} approval {}", self.table, a.id))? {
            Some(_) => Ok(()),
            None => Err(AwsError {
                service: "DynamoDB",
                operation: "PutItem",
                resource: format!("{} approval {}", self.table, a.id),
                message: "an approval with this random id exists already; retry".into(),
                transient: true,
            }),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<ApprovalRecord>, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(self.table)
            .set_key(Some(approval_key(id).into_iter().collect()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::new("DynamoDB", "GetItem", format!("{} approval {id}", self.table), e))?;
        Ok(out.item().map(approval_from))
    }

    /// Decide a pending approval: one conditional write, so exactly one caller ever gets
    /// [`Decided::Now`] (and with it the task token).
    pub async fn decide(&self, id: &str, status: &str, by: &str, now: u64) -> Result<Decided, AwsError> {
        let out = self
            .ddb
            .update_item()
            .table_name(self.table)
            .set_key(Some(approval_key(id).into_iter().collect()))
            .update_expression("SET #status = :decision, decidedBy = :by, decidedAt = :now")
            .condition_expression("#status = :pending AND deadline > :now")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":decision", s(status))
            .expression_attribute_values(":by", s(by))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":pending", s(PENDING))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match conditional(out, "UpdateItem", format!("{} approval {id}", self.table))? {
            Some(out) => Ok(out.attributes().map(approval_from).map(Decided::Now).unwrap_or(Decided::Unknown)),
            None => Ok(self.get(id).await?.map(Decided::Already).unwrap_or(Decided::Unknown)),
        }
    }

    /// Reopen an approval whose decision could not be delivered (Step Functions failed), so the
    /// person can try again. Only the decider's own decision is undone.
    pub async fn undo(&self, id: &str, by: &str) -> Result<bool, AwsError> {
        let out = self
            .ddb
            .update_item()
            .table_name(self.table)
            .set_key(Some(approval_key(id).into_iter().collect()))
            .update_expression("SET #status = :pending REMOVE decidedBy, decidedAt")
            .condition_expression("#status = :approved AND decidedBy = :by")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(PENDING))
            .expression_attribute_values(":approved", s(APPROVED))
            .expression_attribute_values(":by", s(by))
            .send()
            .await;
        Ok(conditional(out, "UpdateItem", format!("{} approval {id}", self.table))?.is_some())
    }

    /// Record who pushed `repository@digest` (CloudTrail's PutImage). A digest pushed again (a
    /// new tag for the same image) keeps its first pusher: the person who built it.
    pub async fn record_pusher(&self, repository: &str, digest: &str, arn: &str, at: u64) -> Result<bool, AwsError> {
        let mut item: HashMap<String, AttributeValue> = pusher_key(repository, digest).into_iter().collect();
        item.extend([
            ("pusherArn".to_string(), s(arn)),
            ("pushedAt".to_string(), n(at)),
            ("expiresAt".to_string(), n(at + PUSHER_RETENTION_SECONDS)),
        ]);
        let out =
            self.ddb.put_item().table_name(self.table).set_item(Some(item)).condition_expression("attribute_not_exists(pk)").send().await;
        Ok(conditional(out, "PutItem", format!("{} pusher of {repository}@{digest}", self.table))?.is_some())
    }

    /// Who pushed `repository@digest`, if CloudTrail told kanaria.
    pub async fn pusher(&self, repository: &str, digest: &str) -> Result<Option<String>, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(self.table)
            .set_key(Some(pusher_key(repository, digest).into_iter().collect()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::new("DynamoDB", "GetItem", format!("{} pusher of {repository}@{digest}", self.table), e))?;
        Ok(out.item().and_then(|i| get_s(i, "pusherArn")))
    }

    pub async fn message(&self, rollout_id: &str) -> Result<Option<SlackMessage>, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(self.table)
            .set_key(Some(message_key(rollout_id).into_iter().collect()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::new("DynamoDB", "GetItem", format!("{} Slack message of {rollout_id}", self.table), e))?;
        Ok(out.item().map(|i| SlackMessage {
            channel: get_s(i, "channel").unwrap_or_default(),
            ts: get_s(i, "ts").unwrap_or_default(),
            seq: get_n(i, "seq"),
            claimed_at: get_n(i, "claimedAt"),
        }))
    }

    /// Claim the right to post the rollout's first message. `stale_before`: a claim older than
    /// this whose post never completed (the poster crashed) may be taken over.
    pub async fn claim_message(&self, rollout_id: &str, channel: &str, now: u64, stale_before: u64) -> Result<bool, AwsError> {
        let mut item: HashMap<String, AttributeValue> = message_key(rollout_id).into_iter().collect();
        item.extend([
            ("channel".to_string(), s(channel)),
            ("ts".to_string(), s("")),
            ("seq".to_string(), n(0)),
            ("claimedAt".to_string(), n(now)),
            ("expiresAt".to_string(), n(now + MESSAGE_RETENTION_SECONDS)),
        ]);
        let out = self
            .ddb
            .put_item()
            .table_name(self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR (ts = :empty AND claimedAt < :stale)")
            .expression_attribute_values(":empty", s(""))
            .expression_attribute_values(":stale", n(stale_before))
            .send()
            .await;
        Ok(conditional(out, "PutItem", format!("{} Slack message of {rollout_id}", self.table))?.is_some())
    }

    /// Record what the message shows now: its ts (once posted) and the sequence number of the
    /// state it renders. Only moves forward: returns false when a newer state is there already.
    pub async fn record_message(&self, rollout_id: &str, ts: &str, seq: u64) -> Result<bool, AwsError> {
        let out = self
            .ddb
            .update_item()
            .table_name(self.table)
            .set_key(Some(message_key(rollout_id).into_iter().collect()))
            .update_expression("SET ts = :ts, seq = :seq")
            .condition_expression("attribute_exists(pk) AND seq < :seq")
            .expression_attribute_values(":ts", s(ts))
            .expression_attribute_values(":seq", n(seq))
            .send()
            .await;
        Ok(conditional(out, "UpdateItem", format!("{} Slack message of {rollout_id}", self.table))?.is_some())
    }
}
