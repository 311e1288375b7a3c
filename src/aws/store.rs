//! kanaria's own records in DynamoDB. They coordinate (one rollout per service, failed tasks
//! counted once); ECS and the ALB remain the truth about what runs and where traffic goes.
//!
//! One table, keys `pk`/`sk`:
//! - `service#CLUSTER/SERVICE` / `lock`: the in-flight rollout (the lock): its status (the fence
//!   every forward step checks), progress, a snapshot of the rollout, the current bake's task
//!   token, a promote request, and its lease (`leaseUntil`: by when the rollout's next step must
//!   have run; DynamoDB's TTL removes a lock a day past it, should everything else fail);
//! - `service#CLUSTER/SERVICE` / `queued`: the newest push waiting for the rollout in flight to
//!   end (`onNewerPush: queue`), started when the lock is released;
//! - `service#CLUSTER/SERVICE` / `history#ENDED#ID`: how each rollout ended;
//! - `inflight` / `CLUSTER/SERVICE`: an index of in-flight rollouts and their alarms;
//! - `rollout#ID` / `failure#TASK_ARN`: a failed task of the rollout's new task set;
//! - `rollout#ID` / `abort`: why the rollout is being rolled back (the first reason wins);
//! - `loop#CLUSTER/SERVICE` / `stop#TASK_ARN`: a task of the service that stopped for a failure
//!   (restart-loop detection; expires after the window);
//! - `episodes` / `CLUSTER/SERVICE#TASK_DEFINITION`: a restart-loop episode (one alert each).

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::{TransactWriteItemsError, TransactWriteItemsOutput};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValue, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::result::SdkError;

use super::{AwsError, HttpResponse};
use crate::events::{FailureKind, TaskFailure};

/// Failure records outlive their rollout by this long (DynamoDB TTL on `expiresAt`).
const FAILURE_TTL_SECONDS: u64 = 30 * 24 * 3600;

/// A lock whose rollout stopped renewing its lease is removed by DynamoDB's TTL this long after
/// the lease ran out: the backstop when neither the rollout nor the execution-status event nor a
/// newer push released it.
const LOCK_TTL_AFTER_LEASE_SECONDS: u64 = 24 * 3600;

/// A queued push waits at most this long for the rollout in flight to end.
const QUEUED_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// Who fenced a rollout for rollback, and why (`rollout#<id>` / `abort`).
#[derive(Debug, Clone, PartialEq)]
pub struct AbortRecord {
    pub cause: String,
    /// The policy's `shiftBack` may pace the way back.
    pub paced: bool,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LockRecord {
    pub service: String,
    pub rollout_id: String,
    pub digest: String,
    pub image: String,
    pub execution_name: String,
    pub execution_arn: Option<String>,
    pub started_at: u64,
    /// Which state the rollout is in (the action last completed), for people.
    pub phase: String,
    pub step: u32,
    pub weight: u32,
    pub green_task_set_id: Option<String>,
    pub updated_at: u64,
    /// IN_FLIGHT, or ABORTING once the circuit breaker, an alarm, a newer push or a person has
    /// decided to roll back: no forward step may move traffic after that.
    pub status: String,
    /// When the image was pushed (the ECR event's time, Unix seconds): orders pushes.
    pub pushed_at: u64,
    pub alarms: Vec<String>,
    /// The rollout as of its last completed step (JSON), so event handlers can act on it.
    #[serde(skip)]
    pub rollout_json: Option<String>,
    /// The task token of the bake in progress. Never logged, never serialised.
    #[serde(skip)]
    pub bake_token: Option<TaskToken>,
    pub promote_requested: bool,
    /// The approval the rollout waits for now, if it waits for a person.
    pub approval_id: Option<String>,
    /// By when the rollout's next step must have run (Unix seconds): each step of the rollout
    /// extends it past the wait that follows. Past it, whoever finds the lock asks Step Functions
    /// whether the execution still runs before acting on it.
    pub lease_until: u64,
    /// The circuit breaker's trip of this rollout completed (fenced, traffic restored or left to
    /// the RollBack state, its wait ended): later deliveries of the event need do nothing.
    pub trip_completed: bool,
}

pub const IN_FLIGHT: &str = "IN_FLIGHT";
pub const ABORTING: &str = "ABORTING";

/// A Step Functions task token: a bearer credential for completing a state. Its `Debug` is
/// redacted so it cannot end up in a log line by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TaskToken(pub String);

impl std::fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskToken(<redacted>)")
    }
}

/// How a rollout ended (one per rollout, newest first in `kanaria history`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRollout {
    pub service: String,
    pub rollout_id: String,
    pub image: String,
    pub outcome: String,
    pub cause: Option<String>,
    pub ended_at: u64,
    pub digest: String,
    pub started_at: u64,
}

/// Which rollout of a digest a service is on: the Nth push of it, and the push that made it so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestAttempt {
    pub attempt: u32,
    /// The EventBridge id of the push event (a redelivery has the same), or `deploy-…`.
    pub push_id: String,
    pub pushed_at: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Acquire {
    Acquired,
    /// The lock is this rollout's already (a duplicate delivery or a retry).
    AlreadyOurs(LockRecord),
    HeldBy(LockRecord),
}

pub struct Store<'a> {
    pub ddb: &'a Client,
    pub table: &'a str,
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
pub(crate) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
pub(crate) fn get_s(item: &HashMap<String, AttributeValue>, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}
pub(crate) fn get_n(item: &HashMap<String, AttributeValue>, k: &str) -> u64 {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

pub fn service_pk(service_key: &str) -> String {
    format!("service#{service_key}")
}

pub(crate) fn lock_from(item: &HashMap<String, AttributeValue>) -> LockRecord {
    LockRecord {
        service: get_s(item, "service").unwrap_or_default(),
        rollout_id: get_s(item, "rolloutId").unwrap_or_default(),
        digest: get_s(item, "digest").unwrap_or_default(),
        image: get_s(item, "image").unwrap_or_default(),
        execution_name: get_s(item, "executionName").unwrap_or_default(),
        execution_arn: get_s(item, "executionArn"),
        started_at: get_n(item, "startedAt"),
        phase: get_s(item, "phase").unwrap_or_default(),
        step: get_n(item, "step") as u32,
        weight: get_n(item, "weight") as u32,
        green_task_set_id: get_s(item, "greenTaskSetId"),
        updated_at: get_n(item, "updatedAt"),
        status: get_s(item, "status").unwrap_or_else(|| IN_FLIGHT.into()),
        pushed_at: get_n(item, "pushedAt"),
        alarms: item.get("alarms").and_then(|v| v.as_ss().ok()).cloned().unwrap_or_default(),
        rollout_json: get_s(item, "rollout"),
        bake_token: get_s(item, "bakeToken").map(TaskToken),
        promote_requested: item.get("promoteRequested").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        lease_until: get_n(item, "leaseUntil"),
        approval_id: get_s(item, "approvalId"),
        trip_completed: item.get("tripCompleted").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
    }
}

fn lock_item(lock: &LockRecord) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("pk".to_string(), s(service_pk(&lock.service))),
        ("sk".to_string(), s("lock")),
        ("service".to_string(), s(&lock.service)),
        ("rolloutId".to_string(), s(&lock.rollout_id)),
        ("digest".to_string(), s(&lock.digest)),
        ("image".to_string(), s(&lock.image)),
        ("executionName".to_string(), s(&lock.execution_name)),
        ("startedAt".to_string(), n(lock.started_at)),
        ("phase".to_string(), s(&lock.phase)),
        ("step".to_string(), n(lock.step as u64)),
        ("weight".to_string(), n(lock.weight as u64)),
        ("updatedAt".to_string(), n(lock.updated_at)),
        ("status".to_string(), s(IN_FLIGHT)),
        ("pushedAt".to_string(), n(lock.pushed_at)),
        ("leaseUntil".to_string(), n(lock.lease_until)),
        ("expiresAt".to_string(), n(lock.lease_until + LOCK_TTL_AFTER_LEASE_SECONDS)),
    ]);
    if let Some(arn) = &lock.execution_arn {
        item.insert("executionArn".into(), s(arn));
    }
    if !lock.alarms.is_empty() {
        item.insert("alarms".into(), AttributeValue::Ss(lock.alarms.clone()));
    }
    item
}

fn history_item(service_key: &str, rollout_id: &str, last: &LastRollout) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("pk".to_string(), s(service_pk(service_key))),
        // One item per rollout (keyed by its start), so the rollout's own release and a superseding
        // push that records it write the same entry.
        ("sk".to_string(), s(format!("history#{:012}#{rollout_id}", last.started_at))),
        ("service".to_string(), s(service_key)),
        ("rolloutId".to_string(), s(rollout_id)),
        ("image".to_string(), s(&last.image)),
        ("digest".to_string(), s(&last.digest)),
        ("outcome".to_string(), s(&last.outcome)),
        ("startedAt".to_string(), n(last.started_at)),
        ("endedAt".to_string(), n(last.ended_at)),
    ]);
    if let Some(c) = &last.cause {
        item.insert("cause".into(), s(c));
    }
    item
}

fn inflight_item(lock: &LockRecord) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("pk".to_string(), s("inflight")),
        ("sk".to_string(), s(&lock.service)),
        ("rolloutId".to_string(), s(&lock.rollout_id)),
        // Goes with its lock, whatever else fails.
        ("expiresAt".to_string(), n(lock.lease_until + LOCK_TTL_AFTER_LEASE_SECONDS)),
    ]);
    if !lock.alarms.is_empty() {
        item.insert("alarms".into(), AttributeValue::Ss(lock.alarms.clone()));
    }
    item
}

/// An in-flight rollout as the index lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    pub service: String,
    pub rollout_id: String,
    pub alarms: Vec<String>,
}

/// A single-item write refused by its condition. Transactions are read by
/// [`conditional_transaction`]: their `TransactionCanceledException` does not by itself say that.
fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

/// Every item a query returns, over all its pages.
async fn query_all(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    what: String,
) -> Result<Vec<HashMap<String, AttributeValue>>, AwsError> {
    let mut items = Vec::new();
    let mut pages = query.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::new("DynamoDB", "Query", what.clone(), e))?;
        items.extend(page.items().iter().cloned());
    }
    Ok(items)
}

/// DynamoDB write requests this process has made (every write here is conditional and goes
/// through [`conditional`] or [`conditional_transaction`]); benchmarks read it.
pub static WRITE_REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A conditional PutItem, UpdateItem or DeleteItem's result: Some(output) when it was written,
/// None when its condition did not hold (`ConditionalCheckFailedException`: another writer got
/// there first, not an error). Not for TransactWriteItems: see [`conditional_transaction`].
pub(crate) fn conditional<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    operation: &'static str,
    resource: impl Into<String>,
) -> Result<Option<T>, AwsError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    WRITE_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(None),
        Err(e) => Err(AwsError::new("DynamoDB", operation, resource, e)),
    }
}

/// One item of a TransactWriteItems request, in request order: what it is (for messages) and
/// whether it carries a condition expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransactItem {
    pub what: String,
    pub conditioned: bool,
}

impl TransactItem {
    pub(crate) fn conditioned(what: impl Into<String>) -> Self {
        TransactItem { what: what.into(), conditioned: true }
    }
    pub(crate) fn unconditioned(what: impl Into<String>) -> Self {
        TransactItem { what: what.into(), conditioned: false }
    }
}

/// What a `TransactionCanceledException`'s `CancellationReasons` say about the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cancellation {
    /// A condition of the request did not hold (and nothing else went wrong): not written, and
    /// sending it again would not write it either.
    ConditionNotMet,
    /// Cancelled for another reason, or for reasons kanaria cannot read: an error.
    Failed { transient: bool, detail: String },
}

/// Read the cancellation reasons of a TransactWriteItems request of `items`. DynamoDB gives one
/// reason per item, in request order, `None` for an item that had no error (API reference,
/// TransactWriteItems, TransactionCanceledException). Only `ConditionalCheckFailed` on items that
/// carry a condition, with `None` on every other item, means "the condition did not hold".
/// `TransactionConflict` (another transaction holds the item), `ThrottlingError` and
/// `ProvisionedThroughputExceeded` pass: transient. `ValidationError` and
/// `ItemCollectionSizeLimitExceeded` come back on every retry of the same request: not transient.
/// A reason list that does not match the items cannot be read as "condition not met".
fn read_cancellation(reasons: &[aws_sdk_dynamodb::types::CancellationReason], items: &[TransactItem]) -> Cancellation {
    if reasons.len() != items.len() {
        return Cancellation::Failed {
            transient: true,
            detail: format!(
                "DynamoDB gave {} cancellation reason(s) for the {} item(s) of the request, so kanaria cannot tell whether a condition failed; retry",
                reasons.len(),
                items.len()
            ),
        };
    }
    let mut condition_failed = false;
    let mut failures = Vec::new();
    let mut transient = true;
    for (i, (reason, item)) in reasons.iter().zip(items).enumerate() {
        let describe = |code: &str| {
            let message = reason.message().map(|m| format!(" ({m})")).unwrap_or_default();
            format!("item {} of {} ({}): {code}{message}", i + 1, items.len(), item.what)
        };
        match reason.code() {
            Some("None") => {}
            Some("ConditionalCheckFailed") if item.conditioned => condition_failed = true,
            Some("ConditionalCheckFailed") => failures.push(format!(
                "{}, but kanaria set no condition on that item; the reasons do not match the request",
                describe("ConditionalCheckFailed")
            )),
            Some(code @ ("ValidationError" | "ItemCollectionSizeLimitExceeded")) => {
                transient = false;
                failures.push(describe(code));
            }
            Some(code) => failures.push(describe(code)),
            None => failures.push(describe("no reason code")),
        }
    }
    if failures.is_empty() && condition_failed {
        return Cancellation::ConditionNotMet;
    }
    if failures.is_empty() {
        failures.push("every item's reason is None".into());
    }
    let next = if transient {
        "nothing was written; retry (the cancellation is transient)"
    } else {
        "nothing was written; retrying the same request fails again: check the item's size and attribute values"
    };
    Cancellation::Failed { transient, detail: format!("{}; {next}", failures.join("; ")) }
}

/// A conditional TransactWriteItems request's result: Some(output) when it was written, None
/// when it was cancelled only because a condition of `items` did not hold. A cancellation for
/// any other reason (a conflicting transaction, throttling, a validation error) is an error
/// naming the item and the reason.
pub(crate) fn conditional_transaction(
    result: Result<TransactWriteItemsOutput, SdkError<TransactWriteItemsError, HttpResponse>>,
    items: &[TransactItem],
    resource: impl Into<String>,
) -> Result<Option<TransactWriteItemsOutput>, AwsError> {
    WRITE_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let err = match result {
        Ok(out) => return Ok(Some(out)),
        Err(err) => err,
    };
    let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() else {
        return Err(AwsError::new("DynamoDB", "TransactWriteItems", resource, err));
    };
    match read_cancellation(cancelled.cancellation_reasons(), items) {
        Cancellation::ConditionNotMet => Ok(None),
        Cancellation::Failed { transient, detail } => Err(AwsError {
            service: "DynamoDB",
            operation: "TransactWriteItems",
            resource: resource.into(),
            message: format!("TransactionCanceledException: {detail}"),
            transient,
        }),
    }
}

impl<'a> Store<'a> {
    pub fn new(ddb: &'a Client, table: &'a str) -> Self {
        Store { ddb, table }
    }

    /// Take the service's lock for a rollout: one conditional write, so of any number of
    /// concurrent deliveries exactly one acquires it.
    pub async fn acquire(&self, lock: &LockRecord) -> Result<Acquire, AwsError> {
        let put = Put::builder()
            .table_name(self.table)
            .set_item(Some(lock_item(lock)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .expect("item and table are set");
        if self.write_lock(put, lock).await? {
            return Ok(Acquire::Acquired);
        }
        let held = self.lock(&lock.service).await?.unwrap_or_default();
        Ok(if held.rollout_id == lock.rollout_id { Acquire::AlreadyOurs(held) } else { Acquire::HeldBy(held) })
    }

    /// Put the lock (with its condition) and its in-flight index entry in one transaction.
    /// Ok(false) when the condition does not hold.
    async fn write_lock(&self, put: Put, lock: &LockRecord) -> Result<bool, AwsError> {
        self.write_lock_and(put, lock, None).await
    }

    async fn write_lock_and(&self, put: Put, lock: &LockRecord, also: Option<HashMap<String, AttributeValue>>) -> Result<bool, AwsError> {
        let index = Put::builder().table_name(self.table).set_item(Some(inflight_item(lock))).build().expect("item and table are set");
        let mut tx = self
            .ddb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().put(index).build());
        let mut items = vec![
            TransactItem::conditioned(format!("lock of {}", lock.service)),
            TransactItem::unconditioned(format!("in-flight index entry of {}", lock.service)),
        ];
        if let Some(item) = also {
            let put = Put::builder().table_name(self.table).set_item(Some(item)).build().expect("item and table are set");
            tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
            items.push(TransactItem::unconditioned(format!("history entry of {}", lock.service)));
        }
        let result = tx.send().await;
        Ok(conditional_transaction(result, &items, format!("{} lock of {}", self.table, lock.service))?.is_some())
    }

    /// Replace a lock whose rollout has ended without releasing it, or that is being rolled back
    /// for a newer push. Conditional on the old holder (or no holder), so two takers cannot both
    /// win.
    /// `old_ended` records how the replaced rollout ended (it no longer holds the lock to do so).
    pub async fn take_over(&self, old_rollout_id: &str, lock: &LockRecord, old_ended: Option<&LastRollout>) -> Result<bool, AwsError> {
        let put = Put::builder()
            .table_name(self.table)
            .set_item(Some(lock_item(lock)))
            // Still the old rollout's, or already released by it (a superseded rollout's own
            // rollback may finish first).
            .condition_expression("attribute_not_exists(pk) OR rolloutId = :old")
            .expression_attribute_values(":old", s(old_rollout_id))
            .build()
            .expect("item and table are set");
        self.write_lock_and(put, lock, old_ended.map(|l| history_item(&lock.service, old_rollout_id, l))).await
    }

    /// Every in-flight rollout (for alarm events).
    pub async fn in_flight(&self) -> Result<Vec<InFlight>, AwsError> {
        let query =
            self.ddb.query().table_name(self.table).key_condition_expression("pk = :pk").expression_attribute_values(":pk", s("inflight"));
        let mut found = Vec::new();
        for item in &query_all(query, format!("{} in-flight index", self.table)).await? {
            found.push(InFlight {
                service: get_s(item, "sk").unwrap_or_default(),
                rollout_id: get_s(item, "rolloutId").unwrap_or_default(),
                alarms: item.get("alarms").and_then(|v| v.as_ss().ok()).cloned().unwrap_or_default(),
            });
        }
        Ok(found)
    }

    /// Fence the rollout: from now on no forward step moves traffic. Records why (the first
    /// reason wins) and returns the lock as it now is, or None when the rollout does not hold
    /// the lock (it has ended or was superseded).
    /// `paced`: the policy's `shiftBack` may pace the way back (a person or a newer push asks);
    /// false for a failure signal (all traffic back at once).
    pub async fn begin_abort(&self, service_key: &str, rollout_id: &str, cause: &str, paced: bool) -> Result<Option<LockRecord>, AwsError> {
        let update = self
            .ddb
            .update_item()
            .table_name(self.table)
            .key("pk", s(service_pk(service_key)))
            .key("sk", s("lock"))
            .update_expression("SET #status = :aborting")
            .condition_expression("rolloutId = :id")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":aborting", s(ABORTING))
            .expression_attribute_values(":id", s(rollout_id))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let Some(lock) = conditional(update, "UpdateItem", format!("{} lock of {service_key}", self.table))? else {
            return Ok(None);
        };
        let lock = lock.attributes().map(lock_from);
        let record = self
            .ddb
            .put_item()
            .table_name(self.table)
            .item("pk", s(format!("rollout#{rollout_id}")))
            .item("sk", s("abort"))
            .item("cause", s(cause))
            .item("paced", AttributeValue::Bool(paced))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional(record, "PutItem", format!("{} abort of {rollout_id}", self.table))?;
        Ok(lock)
    }

    /// Record that the circuit breaker's trip of the rollout completed. True only for the one
    /// caller that records it (the one that tells people).
    pub async fn mark_trip_completed(&self, service_key: &str, rollout_id: &str) -> Result<bool, AwsError> {
        self.update_lock_if(
            service_key,
            rollout_id,
            "SET tripCompleted = :yes",
            "rolloutId = :id AND attribute_not_exists(tripCompleted)",
            vec![(":yes", AttributeValue::Bool(true))],
        )
        .await
    }

    /// Why the rollout is being rolled back, if something decided so.
    /// A failure signal during a paced rollback: the rest of the way back goes at once. True when
    /// this call changed the record (it was paced).
    pub async fn hurry_abort(&self, rollout_id: &str) -> Result<bool, AwsError> {
        let update = self
            .ddb
            .update_item()
            .table_name(self.table)
            .key("pk", s(format!("rollout#{rollout_id}")))
            .key("sk", s("abort"))
            .update_expression("SET paced = :no")
            .condition_expression("paced = :yes")
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        Ok(conditional(update, "UpdateItem", format!("{} abort of {rollout_id}", self.table))?.is_some())
    }

    /// Why the rollout was fenced, and whether its way back may be paced.
    pub async fn abort_record(&self, rollout_id: &str) -> Result<Option<AbortRecord>, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(self.table)
            .key("pk", s(format!("rollout#{rollout_id}")))
            .key("sk", s("abort"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::new("DynamoDB", "GetItem", format!("{} abort of {rollout_id}", self.table), e))?;
        Ok(out.item().and_then(|i| {
            Some(AbortRecord { cause: get_s(i, "cause")?, paced: matches!(i.get("paced"), Some(AttributeValue::Bool(true))) })
        }))
    }

    pub async fn abort_cause(&self, rollout_id: &str) -> Result<Option<String>, AwsError> {
        Ok(self.abort_record(rollout_id).await?.map(|a| a.cause))
    }

    /// Keep the current bake's task token (only while the rollout is in flight). Returns false
    /// when the rollout is being rolled back or no longer holds the lock.
    /// The lease runs to `lease_until` (the end of the bake, and some).
    pub async fn set_bake_token(&self, service_key: &str, rollout_id: &str, token: &TaskToken, lease_until: u64) -> Result<bool, AwsError> {
        self.update_lock_in_flight(
            service_key,
            rollout_id,
            "SET bakeToken = :token, leaseUntil = :lease, expiresAt = :expires REMOVE approvalId",
            vec![(":token", s(&token.0)), (":lease", n(lease_until)), (":expires", n(lease_until + LOCK_TTL_AFTER_LEASE_SECONDS))],
        )
        .await
    }

    /// Keep the task token of a wait for a person, and which approval it is (`kanaria approve`
    /// finds it from the service). Same fence as [`Store::set_bake_token`].
    pub async fn set_approval_wait(
        &self,
        service_key: &str,
        rollout_id: &str,
        token: &TaskToken,
        approval_id: &str,
        lease_until: u64,
    ) -> Result<bool, AwsError> {
        self.update_lock_in_flight(
            service_key,
            rollout_id,
            "SET bakeToken = :token, approvalId = :approval, leaseUntil = :lease, expiresAt = :expires",
            vec![
                (":token", s(&token.0)),
                (":approval", s(approval_id)),
                (":lease", n(lease_until)),
                (":expires", n(lease_until + LOCK_TTL_AFTER_LEASE_SECONDS)),
            ],
        )
        .await
    }

    /// Ask the in-flight rollout to skip its remaining steps. Returns the lock (for its bake
    /// token), or None when no rollout is in flight.
    pub async fn request_promote(&self, service_key: &str) -> Result<Option<LockRecord>, AwsError> {
        let out = self
            .ddb
            .update_item()
            .table_name(self.table)
            .key("pk", s(service_pk(service_key)))
            .key("sk", s("lock"))
            .update_expression("SET promoteRequested = :yes")
            .condition_expression("#status = :in_flight")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":in_flight", s(IN_FLIGHT))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match conditional(out, "UpdateItem", format!("{} lock of {service_key}", self.table))? {
            Some(out) => Ok(out.attributes().map(lock_from)),
            None => Ok(None),
        }
    }

    /// Queue a newer push behind the rollout in flight (the newest push wins). Its own item, so
    /// no release or retry of the rollout loses it. Returns false when a newer one is queued.
    pub async fn queue_push(&self, service_key: &str, push_json: &str, pushed_at: u64) -> Result<bool, AwsError> {
        let out = self
            .ddb
            .put_item()
            .table_name(self.table)
            .item("pk", s(service_pk(service_key)))
            .item("sk", s("queued"))
            .item("push", s(push_json))
            .item("pushedAt", n(pushed_at))
            .item("expiresAt", n(pushed_at + QUEUED_TTL_SECONDS))
            .condition_expression("attribute_not_exists(pk) OR pushedAt <= :at")
            .expression_attribute_values(":at", n(pushed_at))
            .send()
            .await;
        Ok(conditional(out, "PutItem", format!("{} queued push of {service_key}", self.table))?.is_some())
    }

    /// The attempt number of the service's latest rollout of `digest`, and the push that started
    /// it (its event id and time), if the digest was ever pushed for the service.
    pub async fn digest_attempt(&self, service_key: &str, digest: &str) -> Result<Option<DigestAttempt>, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(self.table)
            .key("pk", s(service_pk(service_key)))
            .key("sk", s(format!("digest#{digest}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::new("DynamoDB", "GetItem", format!("{} attempts of {digest} for {service_key}", self.table), e))?;
        Ok(out.item().map(|i| DigestAttempt {
            attempt: get_n(i, "attempt") as u32,
            push_id: get_s(i, "pushId").unwrap_or_default(),
            pushed_at: get_n(i, "pushedAt"),
        }))
    }

    /// Record `next` as the digest's attempt, if the record is still `previous` (None: no record):
    /// of two pushes racing for the next attempt, one wins. Kept as long as Step Functions keeps
    /// execution names (90 days).
    pub async fn record_digest_attempt(
        &self,
        service_key: &str,
        digest: &str,
        previous: Option<&DigestAttempt>,
        next: &DigestAttempt,
    ) -> Result<bool, AwsError> {
        let mut put = self
            .ddb
            .put_item()
            .table_name(self.table)
            .item("pk", s(service_pk(service_key)))
            .item("sk", s(format!("digest#{digest}")))
            .item("attempt", n(next.attempt as u64))
            .item("pushId", s(&next.push_id))
            .item("pushedAt", n(next.pushed_at))
            .item("expiresAt", n(next.pushed_at + 90 * 24 * 3600));
        put = match previous {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(p) => put.condition_expression("attempt = :attempt").expression_attribute_values(":attempt", n(p.attempt as u64)),
        };
        Ok(conditional(put.send().await, "PutItem", format!("{} attempts of {digest} for {service_key}", self.table))?.is_some())
    }

    /// The push queued for the service, if any (its JSON).
    pub async fn queued(&self, service_key: &str) -> Result<Option<String>, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(self.table)
            .key("pk", s(service_pk(service_key)))
            .key("sk", s("queued"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::new("DynamoDB", "GetItem", format!("{} queued push of {service_key}", self.table), e))?;
        Ok(out.item().and_then(|i| get_s(i, "push")))
    }

    /// Remove the queued push once it started (only that push: a newer one queued meanwhile stays).
    pub async fn dequeue(&self, service_key: &str, push_json: &str) -> Result<(), AwsError> {
        let out = self
            .ddb
            .delete_item()
            .table_name(self.table)
            .key("pk", s(service_pk(service_key)))
            .key("sk", s("queued"))
            .condition_expression("push = :push")
            .expression_attribute_values(":push", s(push_json))
            .send()
            .await;
        conditional(out, "DeleteItem", format!("{} queued push of {service_key}", self.table))?;
        Ok(())
    }

    pub async fn lock(&self, service_key: &str) -> Result<Option<LockRecord>, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(self.table)
            .key("pk", s(service_pk(service_key)))
            .key("sk", s("lock"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::new("DynamoDB", "GetItem", format!("{} lock of {service_key}", self.table), e))?;
        Ok(out.item().map(lock_from))
    }

    pub async fn set_execution_arn(&self, service_key: &str, rollout_id: &str, arn: &str) -> Result<(), AwsError> {
        self.update_lock(service_key, rollout_id, "SET executionArn = :arn", vec![(":arn", s(arn))]).await.map(|_| ())
    }

    /// Record progress on the lock (only while this rollout holds it). Returns false when it
    /// does not hold the lock any more.
    #[allow(clippy::too_many_arguments)]
    pub async fn progress(
        &self,
        service_key: &str,
        rollout_id: &str,
        phase: &str,
        step: u32,
        weight: u32,
        green: Option<&str>,
        rollout_json: &str,
        now: u64,
        lease_until: u64,
    ) -> Result<bool, AwsError> {
        let mut values = vec![
            (":phase", s(phase)),
            (":step", n(step as u64)),
            (":weight", n(weight as u64)),
            (":now", n(now)),
            (":rollout", s(rollout_json)),
            (":lease", n(lease_until)),
            (":expires", n(lease_until + LOCK_TTL_AFTER_LEASE_SECONDS)),
        ];
        let mut expr =
            "SET phase = :phase, step = :step, weight = :weight, updatedAt = :now, rollout = :rollout, leaseUntil = :lease, expiresAt = :expires"
                .to_string();
        if let Some(g) = green {
            expr.push_str(", greenTaskSetId = :green");
            values.push((":green", s(g)));
        }
        self.update_lock(service_key, rollout_id, &expr, values).await
    }

    async fn update_lock_in_flight(
        &self,
        service_key: &str,
        rollout_id: &str,
        expr: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, AwsError> {
        let mut values = values;
        values.push((":in_flight", s(IN_FLIGHT)));
        self.update_lock_if(service_key, rollout_id, expr, "rolloutId = :id AND #status = :in_flight", values).await
    }

    async fn update_lock(
        &self,
        service_key: &str,
        rollout_id: &str,
        expr: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, AwsError> {
        self.update_lock_if(service_key, rollout_id, expr, "rolloutId = :id", values).await
    }

    async fn update_lock_if(
        &self,
        service_key: &str,
        rollout_id: &str,
        expr: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, AwsError> {
        let mut req = self
            .ddb
            .update_item()
            .table_name(self.table)
            .key("pk", s(service_pk(service_key)))
            .key("sk", s("lock"))
            .update_expression(expr)
            .condition_expression(condition)
            .expression_attribute_values(":id", s(rollout_id));
        if condition.contains("#status") {
            req = req.expression_attribute_names("#status", "status");
        }
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        Ok(conditional(req.send().await, "UpdateItem", format!("{} lock of {service_key}", self.table))?.is_some())
    }

    /// Release the lock, drop it from the in-flight index and record how the rollout ended
    /// (when `last` is given), in one transaction. Releasing a lock this rollout no longer holds
    /// changes nothing.
    pub async fn release(&self, service_key: &str, rollout_id: &str, last: Option<&LastRollout>) -> Result<(), AwsError> {
        let pk = service_pk(service_key);
        let delete = Delete::builder()
            .table_name(self.table)
            .key("pk", s(&pk))
            .key("sk", s("lock"))
            .condition_expression("rolloutId = :id")
            .expression_attribute_values(":id", s(rollout_id))
            .build()
            .expect("key and table are set");
        let index = Delete::builder()
            .table_name(self.table)
            .key("pk", s("inflight"))
            .key("sk", s(service_key))
            .condition_expression("attribute_not_exists(pk) OR rolloutId = :id")
            .expression_attribute_values(":id", s(rollout_id))
            .build()
            .expect("key and table are set");
        let mut tx = self
            .ddb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(TransactWriteItem::builder().delete(index).build());
        let mut items = vec![
            TransactItem::conditioned(format!("lock of {service_key}")),
            TransactItem::conditioned(format!("in-flight index entry of {service_key}")),
        ];
        if let Some(last) = last {
            let item = history_item(service_key, rollout_id, last);
            let put = Put::builder().table_name(self.table).set_item(Some(item)).build().expect("item and table are set");
            tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
            items.push(TransactItem::unconditioned(format!("history entry of rollout {rollout_id}")));
        }
        conditional_transaction(tx.send().await, &items, format!("{} lock of {service_key}", self.table))?;
        Ok(())
    }

    /// How the most recent rollouts of a service ended, newest first.
    pub async fn history(&self, service_key: &str, limit: i32) -> Result<Vec<LastRollout>, AwsError> {
        let out = self
            .ddb
            .query()
            .table_name(self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :h)")
            .expression_attribute_values(":pk", s(service_pk(service_key)))
            .expression_attribute_values(":h", s("history#"))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(|e| AwsError::new("DynamoDB", "Query", format!("{} history of {service_key}", self.table), e))?;
        Ok(out
            .items()
            .iter()
            .map(|item| LastRollout {
                service: get_s(item, "service").unwrap_or_default(),
                rollout_id: get_s(item, "rolloutId").unwrap_or_default(),
                image: get_s(item, "image").unwrap_or_default(),
                digest: get_s(item, "digest").unwrap_or_default(),
                outcome: get_s(item, "outcome").unwrap_or_default(),
                cause: get_s(item, "cause"),
                started_at: get_n(item, "startedAt"),
                ended_at: get_n(item, "endedAt"),
            })
            .collect())
    }

    pub async fn last(&self, service_key: &str) -> Result<Option<LastRollout>, AwsError> {
        Ok(self.history(service_key, 1).await?.into_iter().next())
    }

    /// Every service kanaria has a lock or a last rollout for (for `kanaria status`).
    pub async fn services(&self) -> Result<Vec<String>, AwsError> {
        let mut keys = std::collections::BTreeSet::new();
        let mut pages = self.ddb.scan().table_name(self.table).projection_expression("pk").into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::new("DynamoDB", "Scan", self.table, e))?;
            for item in page.items() {
                if let Some(key) = get_s(item, "pk").and_then(|pk| pk.strip_prefix("service#").map(str::to_string)) {
                    keys.insert(key);
                }
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Record a failed task once. Returns true the first time this task is recorded, false for
    /// a duplicate (EventBridge delivers at least once).
    pub async fn record_failure(&self, rollout_id: &str, failure: &TaskFailure, now: u64) -> Result<bool, AwsError> {
        let item = HashMap::from([
            ("pk".to_string(), s(format!("rollout#{rollout_id}"))),
            ("sk".to_string(), s(format!("failure#{}", failure.task_arn))),
            ("taskArn".to_string(), s(&failure.task_arn)),
            ("kind".to_string(), s(format!("{:?}", failure.kind))),
            ("stoppedReason".to_string(), s(&failure.stopped_reason)),
            ("exitCodes".to_string(), s(serde_json::to_string(&failure.exit_codes).unwrap_or_default())),
            ("version".to_string(), n(failure.version)),
            ("recordedAt".to_string(), n(now)),
            ("expiresAt".to_string(), n(now + FAILURE_TTL_SECONDS)),
        ]);
        let put = self
            .ddb
            .put_item()
            .table_name(self.table)
            .set_item(Some(item))
            // A later delivery with a higher `detail.version` replaces the record; an older or
            // repeated one changes nothing. Either way the task counts once.
            .condition_expression("attribute_not_exists(sk) OR version < :v")
            .expression_attribute_values(":v", n(failure.version))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match conditional(put, "PutItem", format!("{} failure of {}", self.table, failure.task_arn))? {
            Some(out) => Ok(out.attributes().is_none_or(|a| a.is_empty())),
            None => Ok(false),
        }
    }

    pub async fn failures(&self, rollout_id: &str) -> Result<Vec<TaskFailure>, AwsError> {
        let query = self
            .ddb
            .query()
            .table_name(self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :f)")
            .expression_attribute_values(":pk", s(format!("rollout#{rollout_id}")))
            .expression_attribute_values(":f", s("failure#"))
            .consistent_read(true);
        let mut failures = Vec::new();
        for item in &query_all(query, format!("{} failures of {rollout_id}", self.table)).await? {
            failures.push(TaskFailure {
                task_arn: get_s(item, "taskArn").unwrap_or_default(),
                kind: match get_s(item, "kind").as_deref() {
                    Some("FailedToStart") => FailureKind::FailedToStart,
                    Some("OutOfMemory") => FailureKind::OutOfMemory,
                    Some("HealthCheck") => FailureKind::HealthCheck,
                    _ => FailureKind::ContainerExited,
                },
                stopped_reason: get_s(item, "stoppedReason").unwrap_or_default(),
                exit_codes: get_s(item, "exitCodes").and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default(),
                version: get_n(item, "version"),
            });
        }
        Ok(failures)
    }

    /// Record a task of the service that stopped for a failure (restart-loop detection). Keyed
    /// by task ARN and kept at the highest `detail.version`: returns true only the first time
    /// this task is recorded, so duplicates and late deliveries never count twice.
    pub async fn record_stop(&self, service_key: &str, stop: &StopRecord, expires_at: u64) -> Result<bool, AwsError> {
        let put = self
            .ddb
            .put_item()
            .table_name(self.table)
            .item("pk", s(format!("loop#{service_key}")))
            .item("sk", s(format!("stop#{}", stop.task_arn)))
            .item("taskArn", s(&stop.task_arn))
            .item("taskDefinitionArn", s(&stop.task_definition_arn))
            .item("version", n(stop.version))
            .item("stoppedAt", n(stop.stopped_at))
            .item("expiresAt", n(expires_at))
            .condition_expression("attribute_not_exists(sk) OR version < :v")
            .expression_attribute_values(":v", n(stop.version))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match conditional(put, "PutItem", format!("{} stop of {}", self.table, stop.task_arn))? {
            Some(out) => Ok(out.attributes().is_none_or(|a| a.is_empty())),
            None => Ok(false),
        }
    }

    /// The service's failed stops at or after `since` (Unix seconds).
    pub async fn recent_stops(&self, service_key: &str, since: u64) -> Result<Vec<StopRecord>, AwsError> {
        let query = self
            .ddb
            .query()
            .table_name(self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :stop)")
            .filter_expression("stoppedAt >= :since")
            .expression_attribute_values(":pk", s(format!("loop#{service_key}")))
            .expression_attribute_values(":stop", s("stop#"))
            .expression_attribute_values(":since", n(since))
            .consistent_read(true);
        let mut stops = Vec::new();
        for item in &query_all(query, format!("{} stops of {service_key}", self.table)).await? {
            stops.push(StopRecord {
                task_arn: get_s(item, "taskArn").unwrap_or_default(),
                task_definition_arn: get_s(item, "taskDefinitionArn").unwrap_or_default(),
                version: get_n(item, "version"),
                stopped_at: get_n(item, "stoppedAt"),
            });
        }
        Ok(stops)
    }

    /// Open a restart-loop episode for the service and task-definition revision. Returns true
    /// only for the one caller that opens it (the one that sends the alert); an episode that is
    /// open already, or that recovered after `failed_at`, is left as it is.
    pub async fn open_episode(&self, episode: &Episode) -> Result<bool, AwsError> {
        let put = self
            .ddb
            .put_item()
            .table_name(self.table)
            .item("pk", s("episodes"))
            .item("sk", s(format!("{}#{}", episode.service, episode.task_definition_arn)))
            .item("service", s(&episode.service))
            .item("taskDefinitionArn", s(&episode.task_definition_arn))
            .item("status", s("OPEN"))
            .item("openedAt", n(episode.opened_at))
            .item("windowSeconds", n(episode.window_seconds))
            .item("summary", s(&episode.summary))
            .item("expiresAt", n(episode.opened_at + 30 * 24 * 3600))
            .condition_expression("attribute_not_exists(sk) OR (#status = :recovered AND recoveredAt < :at)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":recovered", s("RECOVERED"))
            .expression_attribute_values(":at", n(episode.opened_at))
            .send()
            .await;
        Ok(conditional(put, "PutItem", format!("{} episode of {}", self.table, episode.service))?.is_some())
    }

    /// Every open restart-loop episode.
    pub async fn open_episodes(&self) -> Result<Vec<Episode>, AwsError> {
        let query = self
            .ddb
            .query()
            .table_name(self.table)
            .key_condition_expression("pk = :pk")
            .filter_expression("#status = :open")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pk", s("episodes"))
            .expression_attribute_values(":open", s("OPEN"))
            .consistent_read(true);
        let mut found = Vec::new();
        for item in &query_all(query, format!("{} episodes", self.table)).await? {
            found.push(Episode {
                service: get_s(item, "service").unwrap_or_default(),
                task_definition_arn: get_s(item, "taskDefinitionArn").unwrap_or_default(),
                opened_at: get_n(item, "openedAt"),
                window_seconds: get_n(item, "windowSeconds"),
                summary: get_s(item, "summary").unwrap_or_default(),
            });
        }
        Ok(found)
    }

    /// Close an open episode. Returns true only for the one caller that closes it (the one that
    /// sends the "recovered" message).
    pub async fn close_episode(&self, episode: &Episode, recovered_at: u64) -> Result<bool, AwsError> {
        let update = self
            .ddb
            .update_item()
            .table_name(self.table)
            .key("pk", s("episodes"))
            .key("sk", s(format!("{}#{}", episode.service, episode.task_definition_arn)))
            .update_expression("SET #status = :recovered, recoveredAt = :at")
            .condition_expression("#status = :open")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":recovered", s("RECOVERED"))
            .expression_attribute_values(":open", s("OPEN"))
            .expression_attribute_values(":at", n(recovered_at))
            .send()
            .await;
        Ok(conditional(update, "UpdateItem", format!("{} episode of {}", self.table, episode.service))?.is_some())
    }
}

/// A task of a service that stopped for a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRecord {
    pub task_arn: String,
    pub task_definition_arn: String,
    pub version: u64,
    pub stopped_at: u64,
}

/// A restart loop of one service and task-definition revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub service: String,
    pub task_definition_arn: String,
    pub opened_at: u64,
    pub window_seconds: u64,
    /// The alert's one-line summary, repeated in the "recovered" message.
    pub summary: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_smithy_mocks::{mock, MockResponseInterceptor, Rule, RuleMode};
    use aws_smithy_types::body::SdkBody;

    /// A DynamoDB client whose requests the rules answer (no network, no retries: each test sees
    /// what one attempt returns).
    fn mocked(rules: &[&Rule]) -> Client {
        let interceptor = rules.iter().fold(MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny), |i, r| i.with_rule(r));
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"))
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .build();
        Client::from_conf(config)
    }

    /// DynamoDB's answer to a cancelled TransactWriteItems, as it is on the wire (awsJson 1.0): one
    /// reason per item, in request order.
    fn cancelled(codes: &[&str]) -> HttpResponse {
        let reasons: Vec<serde_json::Value> = codes
            .iter()
            .map(|c| match *c {
                "None" => serde_json::json!({ "Code": "None" }),
                code => serde_json::json!({ "Code": code, "Message": format!("{code} message") }),
            })
            .collect();
        let body = serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "CancellationReasons": reasons,
            "Message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{}]", codes.join(", ")),
        });
        HttpResponse::new(400.try_into().unwrap(), SdkBody::from(body.to_string()))
    }

    fn lock(rollout_id: &str) -> LockRecord {
        LockRecord { service: "prod/web".into(), rollout_id: rollout_id.into(), ..Default::default() }
    }

    fn reasons(codes: &[Option<&str>]) -> Vec<CancellationReason> {
        codes.iter().map(|c| CancellationReason::builder().set_code(c.map(str::to_string)).build()).collect()
    }

    fn lock_and_index() -> Vec<TransactItem> {
        vec![TransactItem::conditioned("lock of prod/web"), TransactItem::unconditioned("in-flight index entry of prod/web")]
    }

    #[test]
    fn a_failed_condition_on_a_conditioned_item_is_condition_not_met() {
        assert_eq!(
            read_cancellation(&reasons(&[Some("ConditionalCheckFailed"), Some("None")]), &lock_and_index()),
            Cancellation::ConditionNotMet
        );
        let release = [
            TransactItem::conditioned("lock of prod/web"),
            TransactItem::conditioned("in-flight index entry of prod/web"),
            TransactItem::unconditioned("history entry of rollout r1"),
        ];
        assert_eq!(
            read_cancellation(&reasons(&[Some("ConditionalCheckFailed"), Some("ConditionalCheckFailed"), Some("None")]), &release),
            Cancellation::ConditionNotMet
        );
    }

    #[test]
    fn a_transaction_cancelled_by_conflict_or_throttling_is_transient() {
        for code in ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"] {
            match read_cancellation(&reasons(&[Some("None"), Some(code)]), &lock_and_index()) {
                Cancellation::Failed { transient: true, detail } => {
                    assert!(detail.contains(&format!("item 2 of 2 (in-flight index entry of prod/web): {code}")), "{detail}")
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        // The condition failed and another item conflicted: retrying gives a clear answer.
        let mixed = read_cancellation(&reasons(&[Some("ConditionalCheckFailed"), Some("TransactionConflict")]), &lock_and_index());
        assert!(matches!(mixed, Cancellation::Failed { transient: true, .. }), "{mixed:?}");
    }

    #[test]
    fn a_validation_error_is_not_transient() {
        match read_cancellation(&reasons(&[Some("ValidationError"), Some("None")]), &lock_and_index()) {
            Cancellation::Failed { transient: false, detail } => {
                assert!(detail.contains("item 1 of 2 (lock of prod/web): ValidationError"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reasons_that_do_not_match_the_request_are_never_success() {
        let items = lock_and_index();
        for codes in [
            vec![],
            vec![Some("ConditionalCheckFailed")],
            vec![Some("ConditionalCheckFailed"), Some("None"), Some("None")],
            vec![Some("None"), Some("ConditionalCheckFailed")],
            vec![Some("None"), Some("None")],
            vec![None, Some("ConditionalCheckFailed")],
            vec![Some("ConditionalCheckFailed"), None],
        ] {
            let read = read_cancellation(&reasons(&codes), &items);
            assert!(matches!(read, Cancellation::Failed { .. }), "{codes:?} read as {read:?}");
        }
    }

    #[tokio::test]
    async fn acquire_reads_a_conflict_as_a_transient_error_not_as_a_held_lock() {
        let tx = mock!(Client::transact_write_items).then_http_response(|| cancelled(&["TransactionConflict", "None"]));
        let get = mock!(Client::get_item).then_output(|| GetItemOutput::builder().build());
        let ddb = mocked(&[&tx, &get]);
        let err = Store::new(&ddb, "kanaria").acquire(&lock("r1")).await.unwrap_err();
        assert!(err.transient, "{err}");
        assert!(err.message.contains("item 1 of 2 (lock of prod/web): TransactionConflict"), "{err}");
        assert_eq!(get.num_calls(), 0, "a cancelled transaction was read as a lock held by someone else");
    }

    #[tokio::test]
    async fn acquire_reads_a_failed_condition_as_the_lock_held() {
        let tx = mock!(Client::transact_write_items).then_http_response(|| cancelled(&["ConditionalCheckFailed", "None"]));
        let get = mock!(Client::get_item).then_output(|| GetItemOutput::builder().set_item(Some(lock_item(&lock("r0")))).build());
        let ddb = mocked(&[&tx, &get]);
        let acquired = Store::new(&ddb, "kanaria").acquire(&lock("r1")).await.unwrap();
        assert!(matches!(&acquired, Acquire::HeldBy(held) if held.rollout_id == "r0"), "{acquired:?}");
    }

    #[tokio::test]
    async fn release_surfaces_a_throttled_item_as_transient() {
        let tx = mock!(Client::transact_write_items).then_http_response(|| cancelled(&["None", "None", "ThrottlingError"]));
        let ddb = mocked(&[&tx]);
        let last = LastRollout { outcome: "PROMOTED".into(), ..Default::default() };
        let err = Store::new(&ddb, "kanaria").release("prod/web", "r1", Some(&last)).await.unwrap_err();
        assert!(err.transient, "{err}");
        assert!(err.message.contains("item 3 of 3 (history entry of rollout r1): ThrottlingError"), "{err}");

        // The lock is another rollout's already: nothing to release, not an error.
        let tx =
            mock!(Client::transact_write_items).then_http_response(|| cancelled(&["ConditionalCheckFailed", "ConditionalCheckFailed"]));
        let ddb = mocked(&[&tx]);
        Store::new(&ddb, "kanaria").release("prod/web", "r1", None).await.unwrap();
    }

    #[tokio::test]
    async fn a_plain_conditional_check_failure_is_still_condition_not_met() {
        let update = mock!(Client::update_item).then_http_response(|| {
            let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#;
            HttpResponse::new(400.try_into().unwrap(), SdkBody::from(body))
        });
        let ddb = mocked(&[&update]);
        Store::new(&ddb, "kanaria").set_execution_arn("prod/web", "r1", "arn:x").await.unwrap();
        assert_eq!(Store::new(&ddb, "kanaria").request_promote("prod/web").await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_unreadable_success_response_is_transient() {
        let get = mock!(Client::get_item).then_http_response(|| HttpResponse::new(200.try_into().unwrap(), SdkBody::from("<html>")));
        let ddb = mocked(&[&get]);
        let err = Store::new(&ddb, "kanaria").lock("prod/web").await.unwrap_err();
        assert!(err.transient, "{err}");
        assert!(err.message.starts_with("unreadable response (HTTP 200"), "{err}");
    }
}
