//! `policy-sync`: keeps kanaria's EventBridge Scheduler schedules in step with the policies'
//! `schedules`. It runs on the `Parameter Store Change` event of a policy parameter (and
//! `kanaria policy apply` runs the same [`sync_service`] right after storing a policy);
//! `{"syncAll": true}` reconciles every policy at once. It also keeps the policy index
//! ([`crate::aws::policy_index`]) in step: each change indexes its parameter as it is now, the
//! daily `syncAll` rebuilds it.
//!
//! **Ownership.** kanaria owns a schedule when it is in kanaria's schedule group *and* its name
//! starts with `kanaria.` (names are `kanaria.CLUSTER.SERVICE.NAME`, see
//! [`crate::schedule::scheduler_name`]). Schedules in other groups, and schedules in kanaria's
//! group with other names, are never read, changed or deleted.
//!
//! **Reconcile.** For the service(s) in scope: owned schedules the policy does not want are
//! deleted, missing ones created, differing ones updated (expression, time zone, input, target,
//! role, dead-letter queue, retry policy, flexible window off, enabled), and the rest left
//! alone, so running it again changes nothing. A policy that does not validate changes nothing:
//! its schedules stay as they were (and a notice says why).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{info, warn};

use super::HandlerError;
use crate::aws::notify::{self, Notice};
use crate::aws::policies::StoredPolicy;
use crate::aws::policy_index::{service_of_parameter, Indexed, PolicyIndex, ServiceEntry};
use crate::aws::{now_unix, policies, scheduler, AwsError, Context};
use crate::events::Envelope;
use crate::policy::Policy;
use crate::schedule::{self, Change, DesiredSchedule, ObservedSchedule};

/// `detail` of a `Parameter Store Change` event.
#[derive(Debug, Clone, Deserialize)]
pub struct ParameterChange {
    pub name: String,
    /// Create, Update, Delete, LabelParameterVersion, ...
    pub operation: String,
}

/// The policy of the service being synced.
#[derive(Debug, Clone, Copy)]
pub enum PolicyState<'a> {
    Valid(&'a Policy),
    /// Stored but not valid: its schedules are left as they are.
    Invalid,
    /// No policy any more: its schedules are deleted.
    Absent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Updated {
    pub name: String,
    pub differences: Vec<String>,
}

/// What a sync did, schedule by schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub group: String,
    pub created: Vec<String>,
    pub updated: Vec<Updated>,
    pub deleted: Vec<String>,
    pub unchanged: Vec<String>,
    /// Owned schedules of services whose policy is invalid: left as they are.
    pub kept: Vec<String>,
    /// Policy index entries the sweep changed (written or removed).
    #[serde(skip_serializing_if = "is_zero")]
    pub indexed: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl SyncReport {
    /// One line per schedule, for people.
    pub fn lines(&self) -> Vec<String> {
        let g = &self.group;
        let mut lines: Vec<String> = self.created.iter().map(|n| format!("created {g}/{n}")).collect();
        lines.extend(self.updated.iter().map(|u| format!("updated {g}/{} ({})", u.name, u.differences.join(", "))));
        lines.extend(self.deleted.iter().map(|n| format!("deleted {g}/{n}")));
        lines.extend(self.unchanged.iter().map(|n| format!("in step {g}/{n}")));
        lines.extend(self.kept.iter().map(|n| format!("left as is {g}/{n} (the service's policy is invalid)")));
        lines
    }

    pub fn changed(&self) -> bool {
        !(self.created.is_empty() && self.updated.is_empty() && self.deleted.is_empty())
    }
}

/// Which services a sync looks at.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    Service(&'a str),
    All,
}

impl Scope<'_> {
    fn covers(&self, service: Option<&str>) -> bool {
        match self {
            Scope::Service(key) => service == Some(*key),
            Scope::All => true,
        }
    }
}

/// The owned schedules in scope, as they are.
async fn observe(ctx: &Context, scope: Scope<'_>) -> Result<Vec<ObservedSchedule>, AwsError> {
    let client = &ctx.clients.scheduler;
    let group = &ctx.settings.scheduler.group;
    let mut observed = Vec::new();
    for name in scheduler::list_owned(client, group).await? {
        // Most names say their service; a hashed (long) name is read to learn it from its input.
        let decoded = schedule::decode_name(&name).map(|(cluster, service, _)| format!("{cluster}/{service}"));
        if decoded.is_some() && !scope.covers(decoded.as_deref()) {
            continue;
        }
        if let Some(o) = scheduler::get(client, group, &name).await? {
            if scope.covers(o.service().as_deref()) {
                observed.push(o);
            }
        }
    }
    Ok(observed)
}

async fn sync(
    ctx: &Context,
    scope: Scope<'_>,
    desired: Vec<DesiredSchedule>,
    invalid: &HashSet<String>,
) -> Result<SyncReport, HandlerError> {
    let settings = &ctx.settings.scheduler;
    let client = &ctx.clients.scheduler;
    let mut report = SyncReport { group: settings.group.clone(), ..Default::default() };
    let (kept, observed): (Vec<ObservedSchedule>, Vec<ObservedSchedule>) =
        observe(ctx, scope).await?.into_iter().partition(|o| o.service().is_some_and(|s| invalid.contains(&s)));
    report.kept = kept.into_iter().map(|o| o.name).collect();
    let changes = match settings.target() {
        Ok(target) => schedule::plan(&desired, &observed, &target).into_iter().map(|c| (c, Some(target.clone()))).collect::<Vec<_>>(),
        // Deleting needs no target; creating and updating do.
        Err(_) if desired.is_empty() => observed.into_iter().map(|o| (Change::Delete(o.name), None)).collect(),
        Err(missing) => {
            return Err(HandlerError::new(
                "Kanaria.NotConfigured",
                format!(
                    "cannot create or update Scheduler schedules: {} not set (template.yaml sets them on the policy-sync function; \
                     for the CLI see `kanaria policy apply --help`); nothing was changed",
                    missing.join(", ")
                ),
            ))
        }
    };
    for (change, target) in changes {
        match (change, target) {
            (Change::Create(d), Some(t)) => {
                if scheduler::create(client, &settings.group, &d, &t).await? {
                    report.created.push(d.name);
                    continue;
                }
                // Created meanwhile (`kanaria policy apply` and policy-sync's change event race):
                // make it what this policy wants, writing only what differs.
                let current: Vec<ObservedSchedule> = scheduler::get(client, &settings.group, &d.name).await?.into_iter().collect();
                match schedule::plan(std::slice::from_ref(&d), &current, &t).into_iter().next() {
                    Some(Change::Unchanged(name)) => report.unchanged.push(name),
                    Some(Change::Update { desired, differences }) => {
                        scheduler::update(client, &settings.group, &desired, &t).await?;
                        report
                            .updated
                            .push(Updated { name: desired.name, differences: differences.iter().map(|d| d.to_string()).collect() });
                    }
                    // Gone again, or never readable: write it as wanted.
                    _ => {
                        scheduler::update(client, &settings.group, &d, &t).await?;
                        report.created.push(d.name);
                    }
                }
            }
            (Change::Update { desired, differences }, Some(t)) => {
                scheduler::update(client, &settings.group, &desired, &t).await?;
                report.updated.push(Updated { name: desired.name, differences: differences.iter().map(|d| d.to_string()).collect() });
            }
            (Change::Delete(name), _) => {
                scheduler::delete(client, &settings.group, &name).await?;
                report.deleted.push(name);
            }
            (Change::Unchanged(name), _) => report.unchanged.push(name),
            (Change::Create(_) | Change::Update { .. }, None) => unreachable!("creates and updates are planned only with a target"),
        }
    }
    info!(group = %settings.group, created = ?report.created, updated = ?report.updated, deleted = ?report.deleted, kept = ?report.kept, "schedules synced");
    Ok(report)
}

/// Bring one service's schedules in step with its policy.
pub async fn sync_service(ctx: &Context, service_key: &str, policy: PolicyState<'_>) -> Result<SyncReport, HandlerError> {
    let mut invalid = HashSet::new();
    let desired = match policy {
        PolicyState::Valid(p) if p.service.key() == service_key => schedule::desired(p),
        PolicyState::Valid(p) => {
            return Err(HandlerError::invalid_input("policy-sync", format!("the policy is for {}, not {service_key}", p.service)))
        }
        PolicyState::Invalid => {
            invalid.insert(service_key.to_string());
            Vec::new()
        }
        PolicyState::Absent => Vec::new(),
    };
    sync(ctx, Scope::Service(service_key), desired, &invalid).await
}

/// Bring every owned schedule in step with every policy under the prefix, and rebuild the policy
/// index from them (entries of deleted policies removed, then the index marked built).
pub async fn sync_all(ctx: &Context) -> Result<SyncReport, HandlerError> {
    let prefix = &ctx.settings.policy_prefix;
    let stored = policies::load_all_stored(&ctx.clients.ssm, prefix).await?;
    let indexed = reindex_all(ctx, &stored).await?;
    let mut desired = Vec::new();
    let mut invalid = HashSet::new();
    for s in &stored {
        match &s.policy {
            Ok(p) => desired.extend(schedule::desired(p)),
            Err(e) => {
                warn!(parameter = %s.parameter, error = %e, "invalid policy: its schedules are left as they are");
                invalid.insert(s.parameter.strip_prefix(prefix.as_str()).unwrap_or(&s.parameter).to_string());
            }
        }
    }
    let mut report = sync(ctx, Scope::All, desired, &invalid).await?;
    report.indexed = indexed;
    Ok(report)
}

/// The policy index as the policies are now: every stored policy indexed (over whatever the index
/// had), every entry without a policy removed, then the index marked built. Returns the number of
/// entries that changed.
async fn reindex_all(ctx: &Context, stored: &[StoredPolicy]) -> Result<usize, HandlerError> {
    let prefix = &ctx.settings.policy_prefix;
    let index = PolicyIndex::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let at = now_unix();
    let mut changed = 0;
    let mut services = HashSet::new();
    for s in stored {
        let Some(entry) = ServiceEntry::from_stored(prefix, s) else { continue };
        services.insert(entry.service.clone());
        if index.put(&entry.service, Some(&entry), true, at).await? == Indexed::Written {
            changed += 1;
        }
    }
    for gone in index.all().await?.into_iter().filter(|e| !services.contains(&e.service)) {
        if index.put(&gone.service, None, true, at).await? == Indexed::Written {
            changed += 1;
        }
    }
    index.mark_built(services.len(), at).await?;
    info!(policies = services.len(), changed, "policy index rebuilt");
    Ok(changed)
}

/// Index one service's policy as its parameter is now (`None`: the parameter is gone).
pub async fn index_service(ctx: &Context, service_key: &str, stored: Option<&StoredPolicy>) -> Result<Indexed, AwsError> {
    let entry = stored.and_then(|s| ServiceEntry::from_stored(&ctx.settings.policy_prefix, s));
    let indexed = PolicyIndex::new(&ctx.clients.dynamodb, &ctx.settings.table).put(service_key, entry.as_ref(), false, now_unix()).await?;
    info!(service = %service_key, version = entry.as_ref().map(|e| e.version), ?indexed, "policy index entry");
    Ok(indexed)
}

pub async fn handle(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    if event.get("syncAll").and_then(Value::as_bool) == Some(true) {
        let report = sync_all(ctx).await?;
        return Ok(json!({ "syncAll": true, "report": report }));
    }
    let event = Envelope::<ParameterChange>::parse(event, "aws.ssm", "Parameter Store Change")
        .map_err(|e| HandlerError::invalid_input("policy-sync", e))?;
    let change = &event.detail;
    let prefix = &ctx.settings.policy_prefix;
    let Some(service) = service_of_parameter(prefix, &change.name) else {
        return Ok(json!({ "ignored": format!("{} is not a policy parameter ({prefix}CLUSTER/SERVICE)", change.name) }));
    };
    // The parameter as it is now, whatever the event says: a redelivered or late event then
    // changes nothing that a newer one did (a Delete event of a parameter created again indexes
    // the new one).
    let stored = policies::get_for_service(&ctx.clients.ssm, prefix, &service).await?;
    let indexed = index_service(ctx, &service, stored.as_ref()).await?;
    let report = match stored {
        None => sync_service(ctx, &service, PolicyState::Absent).await?,
        Some(StoredPolicy { policy: Ok(p), .. }) => sync_service(ctx, &service, PolicyState::Valid(&p)).await?,
        Some(StoredPolicy { policy: Err(e), .. }) => {
            let report = sync_service(ctx, &service, PolicyState::Invalid).await?;
            let notice = Notice {
                subject: format!("kanaria: policy of {service} is invalid; its schedules are unchanged"),
                body: format!(
                    "{service}: parameter {} is not a valid policy, so it starts no rollout and its {} Scheduler schedule(s) were \
                     left as they are: {}",
                    change.name,
                    report.kept.len(),
                    e.to_string().replace('\n', " ")
                ),
                attributes: vec![("kind".into(), "policy-invalid".into()), ("service".into(), service.clone())],
            };
            notify::send(ctx, &notice).await;
            report
        }
    };
    Ok(
        json!({ "parameter": change.name, "operation": change.operation, "service": service, "indexed": format!("{indexed:?}"), "report": report }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_name_every_schedule() {
        let r = SyncReport {
            group: "kanaria".into(),
            created: vec!["kanaria.a.b.x".into()],
            updated: vec![Updated { name: "kanaria.a.b.y".into(), differences: vec!["expression".into(), "input".into()] }],
            deleted: vec!["kanaria.a.b.z".into()],
            unchanged: vec!["kanaria.a.b.w".into()],
            kept: vec![],
            indexed: 0,
        };
        assert_eq!(
            r.lines(),
            vec![
                "created kanaria/kanaria.a.b.x",
                "updated kanaria/kanaria.a.b.y (expression, input)",
                "deleted kanaria/kanaria.a.b.z",
                "in step kanaria/kanaria.a.b.w"
            ]
        );
        assert!(r.changed());
        assert!(!SyncReport { unchanged: vec!["x".into()], ..Default::default() }.changed());
    }
}
