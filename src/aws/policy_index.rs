//! The policy index: which services a repository's pushes may roll out to, and each service's
//! restart-loop thresholds, in kanaria's DynamoDB table. A push or a failed task then costs a
//! fixed number of reads, however many policies the account has; without it each one paged
//! through every policy in SSM Parameter Store (about 50 GetParametersByPath calls with 500
//! policies, against Parameter Store's 40 requests per second shared with ECS's secret injection
//! at task start).
//!
//! **Items** (keys `pk`/`sk`, next to the rollout records, see [`super::store`]):
//! - `policies` / `service#CLUSTER/SERVICE`: the service's policy parameter, the version and time
//!   of change it was indexed from, whether it is valid, its repository and its `restartLoop`;
//! - `repo#REPOSITORY` / `CLUSTER/SERVICE`: a valid policy of the service names the repository;
//! - `policies` / `built`: a full sweep has indexed every policy (when, how many).
//!
//! **Maintained by** `policy-sync`: on each `Parameter Store Change` event of a policy parameter
//! it indexes the parameter as it is *now* (so redeliveries and out-of-order events converge),
//! and the daily sweep rebuilds the whole index (missed events, deleted parameters) and writes
//! `built`. `kanaria policy apply` indexes the policy it stores too.
//!
//! **Only a pointer.** A push reads the parameters the index points to (GetParameters) and acts on
//! the policies as they are now, so a stale entry can never start a rollout a policy no longer
//! asks for; it is reported, and the next sync repairs it. Until the first sweep has built the
//! index, pushes fall back to reading every policy, and say so.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use super::policies::StoredPolicy;
use super::store::{conditional_transaction, get_n, get_s, lock_from, n, s, service_pk, LockRecord, TransactItem};
use super::AwsError;

const PK_POLICIES: &str = "policies";
const SK_BUILT: &str = "built";

fn service_sk(service_key: &str) -> String {
    format!("service#{service_key}")
}

fn repository_pk(repository: &str) -> String {
    format!("repo#{repository}")
}

/// What the index knows of one service's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// `CLUSTER/SERVICE`.
    pub service: String,
    pub parameter: String,
    pub version: i64,
    /// When the parameter last changed (Unix milliseconds): a change is indexed only over an
    /// older one.
    pub modified_at: u64,
    /// The policy validated: only a valid policy starts rollouts or sets thresholds.
    pub valid: bool,
    /// The repository whose pushes the policy rolls out (valid policies).
    pub repository: Option<String>,
    /// `restartLoop`: failures within seconds (valid policies that set it).
    pub restart_loop: Option<(u32, u64)>,
}

impl ServiceEntry {
    /// The entry for a policy parameter as it is now, or `None` when the parameter is not a
    /// policy parameter (`PREFIX/CLUSTER/SERVICE`).
    pub fn from_stored(prefix: &str, stored: &StoredPolicy) -> Option<ServiceEntry> {
        let service = service_of_parameter(prefix, &stored.parameter)?;
        let valid = stored.policy.as_ref().ok();
        Some(ServiceEntry {
            service,
            parameter: stored.parameter.clone(),
            version: stored.version,
            modified_at: stored.modified_at,
            valid: valid.is_some(),
            repository: valid.map(|p| p.trigger.repository.clone()),
            restart_loop: valid.and_then(|p| p.restart_loop.as_ref()).map(|r| (r.failures, r.window.secs())),
        })
    }

    /// Does this entry describe the parameter as `stored` has it?
    pub fn is_of(&self, stored: &StoredPolicy) -> bool {
        self.parameter == stored.parameter && self.version == stored.version && self.modified_at == stored.modified_at
    }

    fn item(&self, at: u64) -> HashMap<String, AttributeValue> {
        let mut item: HashMap<String, AttributeValue> = [
            ("pk".to_string(), s(PK_POLICIES)),
            ("sk".to_string(), s(service_sk(&self.service))),
            ("service".to_string(), s(&self.service)),
            ("parameter".to_string(), s(&self.parameter)),
            ("version".to_string(), AttributeValue::N(self.version.to_string())),
            ("modifiedAt".to_string(), n(self.modified_at)),
            ("valid".to_string(), AttributeValue::Bool(self.valid)),
            ("indexedAt".to_string(), n(at)),
        ]
        .into_iter()
        .collect();
        if let Some(repository) = &self.repository {
            item.insert("repository".into(), s(repository));
        }
        if let Some((failures, window)) = self.restart_loop {
            item.insert("restartFailures".into(), n(failures.into()));
            item.insert("restartWindowSeconds".into(), n(window));
        }
        item
    }

    fn from_item(item: &HashMap<String, AttributeValue>) -> ServiceEntry {
        let restart_failures = get_n(item, "restartFailures");
        ServiceEntry {
            service: get_s(item, "service").unwrap_or_default(),
            parameter: get_s(item, "parameter").unwrap_or_default(),
            version: item.get("version").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0),
            modified_at: get_n(item, "modifiedAt"),
            valid: item.get("valid").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
            repository: get_s(item, "repository"),
            restart_loop: (restart_failures > 0).then(|| (restart_failures as u32, get_n(item, "restartWindowSeconds"))),
        }
    }
}

/// `CLUSTER/SERVICE` of a policy parameter (`PREFIX/CLUSTER/SERVICE`), when it is one.
pub fn service_of_parameter(prefix: &str, parameter: &str) -> Option<String> {
    let key = parameter.strip_prefix(super::normalize_prefix(prefix).as_str())?;
    match key.split('/').collect::<Vec<_>>().as_slice() {
        [cluster, service] if !cluster.is_empty() && !service.is_empty() => Some(key.to_string()),
        _ => None,
    }
}

/// An answer of the index, or word that no sweep has built it yet (the caller falls back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    Indexed(T),
    NotBuilt,
}

/// What an index write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexed {
    Written,
    /// The index has this version already.
    Unchanged,
    /// The index has a newer change of the parameter (this one was read before it).
    Older,
}

pub struct PolicyIndex<'a> {
    ddb: &'a Client,
    table: &'a str,
}

/// Attempts of an index write that lost a race with another writer of the same service.
const WRITE_ATTEMPTS: u32 = 3;

impl<'a> PolicyIndex<'a> {
    pub fn new(ddb: &'a Client, table: &'a str) -> Self {
        PolicyIndex { ddb, table }
    }

    /// The services whose valid policies name `repository` (their `CLUSTER/SERVICE` and
    /// parameter): one Query, and one GetItem more when it finds none (has the index been built?).
    pub async fn services_for_repository(&self, repository: &str) -> Result<Lookup<Vec<(String, String)>>, AwsError> {
        let what = format!("{} policy index of repository {repository}", self.table);
        let query = self
            .ddb
            .query()
            .table_name(self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(repository_pk(repository)));
        let mut found = Vec::new();
        let mut pages = query.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::new("DynamoDB", "Query", what.clone(), e))?;
            found.extend(page.items().iter().map(|i| (get_s(i, "sk").unwrap_or_default(), get_s(i, "parameter").unwrap_or_default())));
        }
        if found.is_empty() && !self.is_built().await? {
            return Ok(Lookup::NotBuilt);
        }
        Ok(Lookup::Indexed(found))
    }

    /// The index entry of one service (`None`: it has no policy), and whether the index has been
    /// built, in one BatchGetItem.
    pub async fn service(&self, service_key: &str) -> Result<Lookup<Option<ServiceEntry>>, AwsError> {
        Ok(self.batch(service_key, false).await?.1)
    }

    /// [`Self::service`] and the service's rollout lock (restart-loop detection leaves a rollout's
    /// new tasks to the circuit breaker), in the same one BatchGetItem.
    pub async fn service_and_lock(&self, service_key: &str) -> Result<(Option<LockRecord>, Lookup<Option<ServiceEntry>>), AwsError> {
        self.batch(service_key, true).await
    }

    async fn batch(&self, service_key: &str, with_lock: bool) -> Result<(Option<LockRecord>, Lookup<Option<ServiceEntry>>), AwsError> {
        let what = format!("{} policy index entry of {service_key}", self.table);
        let key =
            |pk: String, sk: String| -> HashMap<String, AttributeValue> { [("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))].into() };
        let mut keys = vec![key(PK_POLICIES.into(), service_sk(service_key)), key(PK_POLICIES.into(), SK_BUILT.into())];
        if with_lock {
            keys.push(key(service_pk(service_key), "lock".into()));
        }
        let mut items = Vec::new();
        // BatchGetItem may leave keys unprocessed (throttling): ask again for those, a few times.
        for _ in 0..WRITE_ATTEMPTS {
            let request = KeysAndAttributes::builder().set_keys(Some(keys.clone())).consistent_read(true).build().map_err(build_error)?;
            let out = self
                .ddb
                .batch_get_item()
                .request_items(self.table, request)
                .send()
                .await
                .map_err(|e| AwsError::new("DynamoDB", "BatchGetItem", what.clone(), e))?;
            items.extend(out.responses().and_then(|r| r.get(self.table)).cloned().unwrap_or_default());
            keys = out.unprocessed_keys().and_then(|u| u.get(self.table)).map(|k| k.keys().to_vec()).unwrap_or_default();
            if keys.is_empty() {
                break;
            }
        }
        if !keys.is_empty() {
            return Err(AwsError::message(
                "DynamoDB",
                "BatchGetItem",
                what,
                "keys stayed unprocessed after 3 attempts (throttled); the event is retried",
            ));
        }
        let is = |i: &HashMap<String, AttributeValue>, pk: &str, sk: &str| {
            get_s(i, "pk").as_deref() == Some(pk) && get_s(i, "sk").as_deref() == Some(sk)
        };
        let built = items.iter().any(|i| is(i, PK_POLICIES, SK_BUILT));
        let entry = items.iter().find(|i| is(i, PK_POLICIES, &service_sk(service_key))).map(ServiceEntry::from_item);
        let lock = items.iter().find(|i| is(i, &service_pk(service_key), "lock")).map(lock_from);
        Ok((lock, if entry.is_none() && !built { Lookup::NotBuilt } else { Lookup::Indexed(entry) }))
    }

    async fn is_built(&self) -> Result<bool, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(self.table)
            .key("pk", s(PK_POLICIES))
            .key("sk", s(SK_BUILT))
            .send()
            .await
            .map_err(|e| AwsError::new("DynamoDB", "GetItem", format!("{} policy index", self.table), e))?;
        Ok(out.item().is_some())
    }

    async fn entry(&self, service_key: &str) -> Result<Option<ServiceEntry>, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(self.table)
            .key("pk", s(PK_POLICIES))
            .key("sk", s(service_sk(service_key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::new("DynamoDB", "GetItem", format!("{} policy index entry of {service_key}", self.table), e))?;
        Ok(out.item().map(ServiceEntry::from_item))
    }

    /// Every service entry (the sweep).
    pub async fn all(&self) -> Result<Vec<ServiceEntry>, AwsError> {
        let what = format!("{} policy index", self.table);
        let query = self
            .ddb
            .query()
            .table_name(self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :service)")
            .expression_attribute_values(":pk", s(PK_POLICIES))
            .expression_attribute_values(":service", s("service#"))
            .consistent_read(true);
        let mut entries = Vec::new();
        let mut pages = query.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::new("DynamoDB", "Query", what.clone(), e))?;
            entries.extend(page.items().iter().map(ServiceEntry::from_item));
        }
        Ok(entries)
    }

    /// Index the service's policy as `entry` says (`None`: the service has no policy any more).
    /// The service entry and its repository entry change in one transaction, conditioned on the
    /// entry read just before, so concurrent writers never leave a repository pointing at a
    /// service whose policy names another. A change older than the one indexed is not written,
    /// unless `force` (the sweep, which has just read every policy).
    pub async fn put(&self, service_key: &str, entry: Option<&ServiceEntry>, force: bool, at: u64) -> Result<Indexed, AwsError> {
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.entry(service_key).await?;
            if current.as_ref() == entry {
                return Ok(Indexed::Unchanged);
            }
            if let (Some(current), Some(new), false) = (&current, entry, force) {
                if (current.modified_at, current.version) > (new.modified_at, new.version) {
                    return Ok(Indexed::Older);
                }
            }
            let mut writes = Vec::new();
            let mut items = Vec::new();
            let guard = match &current {
                Some(c) => Put::builder()
                    .condition_expression("version = :version AND modifiedAt = :modified")
                    .expression_attribute_values(":version", AttributeValue::N(c.version.to_string()))
                    .expression_attribute_values(":modified", n(c.modified_at)),
                None => Put::builder().condition_expression("attribute_not_exists(pk)"),
            };
            match entry {
                Some(e) => {
                    let put = guard.table_name(self.table).set_item(Some(e.item(at))).build().map_err(build_error)?;
                    writes.push(TransactWriteItem::builder().put(put).build());
                }
                None => {
                    let Some(c) = &current else { return Ok(Indexed::Unchanged) };
                    let delete = Delete::builder()
                        .table_name(self.table)
                        .key("pk", s(PK_POLICIES))
                        .key("sk", s(service_sk(service_key)))
                        .condition_expression("version = :version AND modifiedAt = :modified")
                        .expression_attribute_values(":version", AttributeValue::N(c.version.to_string()))
                        .expression_attribute_values(":modified", n(c.modified_at))
                        .build()
                        .map_err(build_error)?;
                    writes.push(TransactWriteItem::builder().delete(delete).build());
                }
            }
            items.push(TransactItem::conditioned(format!("policy index entry of {service_key}")));
            let old_repository = current.as_ref().and_then(|c| c.repository.clone());
            let new_repository = entry.and_then(|e| e.repository.clone());
            if let Some(repository) = &new_repository {
                let put = Put::builder()
                    .table_name(self.table)
                    .item("pk", s(repository_pk(repository)))
                    .item("sk", s(service_key))
                    .item("parameter", s(&entry.expect("a repository comes with an entry").parameter))
                    .item("indexedAt", n(at))
                    .build()
                    .map_err(build_error)?;
                writes.push(TransactWriteItem::builder().put(put).build());
                items.push(TransactItem::unconditioned(format!("policy index entry of repository {repository} for {service_key}")));
            }
            if let Some(repository) = old_repository.filter(|r| Some(r) != new_repository.as_ref()) {
                let delete = Delete::builder()
                    .table_name(self.table)
                    .key("pk", s(repository_pk(&repository)))
                    .key("sk", s(service_key))
                    .build()
                    .map_err(build_error)?;
                writes.push(TransactWriteItem::builder().delete(delete).build());
                items.push(TransactItem::unconditioned(format!("policy index entry of repository {repository} for {service_key}")));
            }
            let result = self.ddb.transact_write_items().set_transact_items(Some(writes)).send().await;
            if conditional_transaction(result, &items, format!("{} policy index entry of {service_key}", self.table))?.is_some() {
                return Ok(Indexed::Written);
            }
            // Another writer changed the entry between the read and the write: read it again.
        }
        Err(AwsError::message(
            "DynamoDB",
            "TransactWriteItems",
            format!("{} policy index entry of {service_key}", self.table),
            "the entry kept changing under concurrent writers (3 attempts); the next policy change or the daily sweep indexes it",
        ))
    }

    /// Record that a sweep indexed every policy (`count` of them) at `at`.
    pub async fn mark_built(&self, count: usize, at: u64) -> Result<(), AwsError> {
        self.ddb
            .put_item()
            .table_name(self.table)
            .item("pk", s(PK_POLICIES))
            .item("sk", s(SK_BUILT))
            .item("builtAt", n(at))
            .item("policies", n(count as u64))
            .send()
            .await
            .map_err(|e| AwsError::new("DynamoDB", "PutItem", format!("{} policy index", self.table), e))?;
        Ok(())
    }
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> AwsError {
    AwsError::message("DynamoDB", "TransactWriteItems", "policy index", format!("request could not be built: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_policy_parameters_name_a_service() {
        for prefix in ["/kanaria/policies/", "/kanaria/policies", "kanaria/policies"] {
            assert_eq!(service_of_parameter(prefix, "/kanaria/policies/prod/web").as_deref(), Some("prod/web"), "{prefix}");
        }
        for other in ["/kanaria/policies/prod", "/kanaria/policies/prod/web/extra", "/kanaria/config/x/y", "/kanaria/policies//web"] {
            assert_eq!(service_of_parameter("/kanaria/policies/", other), None, "{other}");
        }
    }

    fn stored(text: &str) -> StoredPolicy {
        let parameter = "/kanaria/policies/prod/web".to_string();
        StoredPolicy {
            policy: super::super::policies::parse_stored("/kanaria/policies", &parameter, text),
            parameter,
            version: 3,
            modified_at: 1_700_000_000_123,
        }
    }

    #[test]
    fn an_entry_says_repository_and_thresholds_of_a_valid_policy_only() {
        let valid = crate::policy::tests::EXAMPLE.to_string() + "restartLoop: { failures: 4, window: 5m }\n";
        let e = ServiceEntry::from_stored("/kanaria/policies", &stored(&valid)).unwrap();
        assert!(e.valid);
        assert_eq!(e.repository.as_deref(), Some("team/web"));
        assert_eq!(e.restart_loop, Some((4, 300)));
        assert_eq!(ServiceEntry::from_item(&e.item(1)), e, "an entry reads back as written");

        let invalid = ServiceEntry::from_stored("/kanaria/policies", &stored(&valid.replace("weight: 1,", "weight: 0,"))).unwrap();
        assert!(!invalid.valid);
        assert_eq!((invalid.repository, invalid.restart_loop), (None, None), "an invalid policy starts nothing and sets no threshold");
    }
}
