//! The record of scheduled scaling: one item per run of the scale function, in kanaria's table,
//! `service#CLUSTER/SERVICE` / `scale#UNIX_SECONDS#SCHEDULE` (kept 90 days), so
//! `kanaria schedules` can show when each schedule last ran and what it did.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::AwsError;

/// Records expire after this long (DynamoDB TTL on `expiresAt`).
const TTL_SECONDS: u64 = 90 * 24 * 3600;

pub const APPLIED: &str = "APPLIED";
pub const FAILED: &str = "FAILED";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleRecord {
    /// `CLUSTER/SERVICE`
    pub service: String,
    pub schedule: String,
    /// Unix seconds.
    pub at: u64,
    /// [`APPLIED`] or [`FAILED`].
    pub outcome: String,
    /// What was done (or what went wrong), one line.
    pub summary: String,
}

fn pk(service: &str) -> String {
    format!("service#{service}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn get_s(item: &HashMap<String, AttributeValue>, k: &str) -> String {
    item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
}

pub async fn record(ddb: &Client, table: &str, r: &ScaleRecord) -> Result<(), AwsError> {
    let sk = format!("scale#{}#{}", r.at, r.schedule);
    ddb.put_item()
        .table_name(table)
        .item("pk", s(pk(&r.service)))
        .item("sk", s(&sk))
        .item("service", s(&r.service))
        .item("schedule", s(&r.schedule))
        .item("at", AttributeValue::N(r.at.to_string()))
        .item("outcome", s(&r.outcome))
        .item("summary", s(&r.summary))
        .item("expiresAt", AttributeValue::N((r.at + TTL_SECONDS).to_string()))
        .send()
        .await
        .map_err(|e| AwsError::new("DynamoDB", "PutItem", format!("{table} {sk} of {}", r.service), e))?;
    Ok(())
}

/// The service's most recent scheduled-scaling runs, newest first.
pub async fn recent(ddb: &Client, table: &str, service: &str, limit: i32) -> Result<Vec<ScaleRecord>, AwsError> {
    let out = ddb
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :scale)")
        .expression_attribute_values(":pk", s(pk(service)))
        .expression_attribute_values(":scale", s("scale#"))
        .scan_index_forward(false)
        .limit(limit)
        .send()
        .await
        .map_err(|e| AwsError::new("DynamoDB", "Query", format!("{table} scheduled scaling of {service}"), e))?;
    Ok(out
        .items()
        .iter()
        .map(|item| ScaleRecord {
            service: get_s(item, "service"),
            schedule: get_s(item, "schedule"),
            at: item.get("at").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0),
            outcome: get_s(item, "outcome"),
            summary: get_s(item, "summary"),
        })
        .collect())
}
