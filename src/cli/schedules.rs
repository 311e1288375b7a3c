//! `kanaria schedules CLUSTER/SERVICE`: the service's capacity schedules with their next fire
//! times in each schedule's time zone (the UTC offset shows daylight saving time), whether the
//! EventBridge Scheduler schedule is in step with the policy, and the last run of each.
//! Also the Scheduler options `kanaria policy apply` uses to bring the schedules in step.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::Args;
use serde_json::{json, Value};

use crate::aws::scale_log::{self, ScaleRecord};
use crate::aws::scheduler::{self, SchedulerSettings, DEFAULT_GROUP};
use crate::aws::{policies, Clients};
use crate::policy::{Policy, Schedule};
use crate::schedule::{self, DesiredSchedule};

/// Where kanaria's EventBridge Scheduler schedules live and what they invoke (the stack's
/// outputs of the same names).
#[derive(Debug, Clone, Args)]
pub struct SchedulerArgs {
    /// kanaria's EventBridge Scheduler group (stack output ScheduleGroupName).
    #[arg(long, env = "KANARIA_SCHEDULE_GROUP", default_value = DEFAULT_GROUP, value_name = "GROUP")]
    pub schedule_group: String,
    /// The scheduled-scale function the schedules invoke (stack output ScheduledScaleFunctionArn).
    #[arg(long, env = "KANARIA_SCALE_FUNCTION_ARN", value_name = "ARN")]
    pub scale_function_arn: Option<String>,
    /// The role Scheduler assumes to invoke it (stack output SchedulerRoleArn).
    #[arg(long, env = "KANARIA_SCHEDULER_ROLE_ARN", value_name = "ARN")]
    pub scheduler_role_arn: Option<String>,
    /// The schedules' dead-letter queue (stack output SchedulerDeadLetterQueueArn).
    #[arg(long, env = "KANARIA_SCHEDULER_DLQ_ARN", value_name = "ARN")]
    pub scheduler_dlq_arn: Option<String>,
}

impl SchedulerArgs {
    pub fn settings(&self) -> SchedulerSettings {
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        SchedulerSettings {
            group: self.schedule_group.clone(),
            function_arn: given(&self.scale_function_arn),
            role_arn: given(&self.scheduler_role_arn),
            dead_letter_arn: given(&self.scheduler_dlq_arn),
        }
    }
}

/// What to tell a person whose `policy apply` could not sync the schedules itself.
pub fn not_synced_note(missing: &[&str]) -> String {
    format!(
        "note: the schedules were not synced from here ({} not set): the policy-sync function brings them in step when \
         Parameter Store reports the change; to sync now, pass --scale-function-arn, --scheduler-role-arn and \
         --scheduler-dlq-arn (the stack's outputs)",
        missing.join(", ")
    )
}

/// How a policy schedule's Scheduler schedule stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncState {
    InStep,
    Missing,
    Differs(Vec<String>),
    /// It could not be read (the message says why).
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleView {
    pub schedule: Schedule,
    /// `cron(...)`
    pub expression: String,
    pub scheduler_name: String,
    pub next: Vec<DateTime<Tz>>,
    pub state: SyncState,
    pub last_run: Option<ScaleRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchedulesReport {
    pub service: String,
    pub parameter: String,
    pub group: String,
    pub schedules: Vec<ScheduleView>,
    /// kanaria's schedules of this service that the policy no longer has (the next sync deletes them).
    pub not_in_policy: Vec<String>,
}

/// The view of one policy (pure: `observed` is what Scheduler said for each desired schedule,
/// `runs` the service's recent runs, newest first).
pub fn build(
    policy: &Policy,
    parameter: &str,
    group: &str,
    now: DateTime<Utc>,
    count: usize,
    observed: &dyn Fn(&DesiredSchedule) -> SyncState,
    runs: &[ScaleRecord],
) -> SchedulesReport {
    let desired = schedule::desired(policy);
    let schedules = policy
        .schedules
        .iter()
        .zip(&desired)
        .map(|(s, d)| {
            let next = match (schedule::parse_cron(&s.cron), schedule::parse_timezone(&s.timezone)) {
                (Ok(cron), Ok(tz)) => cron.next_times(tz, now, count),
                _ => Vec::new(),
            };
            ScheduleView {
                schedule: s.clone(),
                expression: d.expression.clone(),
                scheduler_name: d.name.clone(),
                next,
                state: observed(d),
                last_run: runs.iter().find(|r| r.schedule == s.name).cloned(),
            }
        })
        .collect();
    SchedulesReport {
        service: policy.service.key(),
        parameter: parameter.to_string(),
        group: group.to_string(),
        schedules,
        not_in_policy: Vec::new(),
    }
}

fn action_text(s: &Schedule) -> String {
    let mut parts = Vec::new();
    if let Some(v) = s.min_capacity {
        parts.push(format!("minCapacity {v}"));
    }
    if let Some(v) = s.max_capacity {
        parts.push(format!("maxCapacity {v}"));
    }
    if let Some(v) = s.desired_count {
        parts.push(format!("desiredCount {v}"));
    }
    parts.join(", ")
}

/// `Mon 2026-03-09 08:00 EDT (UTC-04:00)`
pub fn local_time(t: &DateTime<Tz>) -> String {
    t.format("%a %Y-%m-%d %H:%M %Z (UTC%:z)").to_string()
}

fn utc_time(unix: u64) -> String {
    DateTime::<Utc>::from_timestamp(unix as i64, 0).map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_default()
}

pub fn format_text(r: &SchedulesReport) -> String {
    let mut out = format!(
        "{}: {} schedule{} (policy {}; Scheduler group {})\n",
        r.service,
        r.schedules.len(),
        if r.schedules.len() == 1 { "" } else { "s" },
        r.parameter,
        r.group
    );
    for v in &r.schedules {
        out.push_str(&format!("\n{}: {} in {} → {}\n", v.schedule.name, v.expression, v.schedule.timezone, action_text(&v.schedule)));
        if v.next.is_empty() {
            out.push_str("  next: never again\n");
        }
        for (i, t) in v.next.iter().enumerate() {
            out.push_str(&format!("  {} {}\n", if i == 0 { "next:" } else { "     " }, local_time(t)));
        }
        let state = match &v.state {
            SyncState::InStep => "in step".to_string(),
            SyncState::Missing => "missing (run `kanaria policy apply` for this service to create it)".to_string(),
            SyncState::Differs(d) => format!("out of step: {} (run `kanaria policy apply` to fix)", d.join(", ")),
            SyncState::Unknown(e) => format!("unknown: {e}"),
        };
        out.push_str(&format!("  Scheduler: {}/{} {state}\n", r.group, v.scheduler_name));
        match &v.last_run {
            Some(run) => out.push_str(&format!("  last run: {} {}: {}\n", utc_time(run.at), run.outcome, run.summary)),
            None => out.push_str("  last run: none recorded\n"),
        }
    }
    for name in &r.not_in_policy {
        out.push_str(&format!("\n{}/{name}: no longer in the policy (the next sync deletes it)\n", r.group));
    }
    out
}

pub fn to_json(r: &SchedulesReport) -> Value {
    let schedules: Vec<Value> = r
        .schedules
        .iter()
        .map(|v| {
            let (state, detail) = match &v.state {
                SyncState::InStep => ("inStep", json!(null)),
                SyncState::Missing => ("missing", json!(null)),
                SyncState::Differs(d) => ("differs", json!(d)),
                SyncState::Unknown(e) => ("unknown", json!(e)),
            };
            json!({
                "name": v.schedule.name,
                "cron": v.expression,
                "timezone": v.schedule.timezone,
                "minCapacity": v.schedule.min_capacity,
                "maxCapacity": v.schedule.max_capacity,
                "desiredCount": v.schedule.desired_count,
                "next": v.next.iter().map(|t| t.to_rfc3339()).collect::<Vec<_>>(),
                "scheduler": {
                    "group": r.group,
                    "name": v.scheduler_name,
                    "state": state,
                    "differences": if matches!(v.state, SyncState::Differs(_)) { detail.clone() } else { json!([]) },
                    "error": if matches!(v.state, SyncState::Unknown(_)) { detail } else { json!(null) },
                },
                "lastRun": v.last_run,
            })
        })
        .collect();
    json!({ "service": r.service, "parameter": r.parameter, "group": r.group, "schedules": schedules, "notInPolicy": r.not_in_policy })
}

/// Read the policy, the Scheduler schedules and the recorded runs of one service.
pub async fn gather(
    clients: &Clients,
    table: &str,
    prefix: &str,
    service_key: &str,
    settings: &SchedulerSettings,
    count: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<SchedulesReport> {
    use anyhow::Context as _;
    let parameter = format!("{prefix}{service_key}");
    let parsed = policies::get_for_service(&clients.ssm, prefix, service_key)
        .await
        .with_context(|| format!("reading the policy {parameter} from SSM Parameter Store failed; check the region and --policy-prefix"))?
        .ok_or_else(|| anyhow::anyhow!("no policy for {service_key}: parameter {parameter} does not exist (check --policy-prefix)"))?
        .policy;
    let policy = parsed.map_err(|e| anyhow::Error::new(e).context(format!("the stored policy of {service_key} is invalid")))?;

    let group = &settings.group;
    let target = settings.target().ok();
    let mut states = Vec::new();
    for d in schedule::desired(&policy) {
        let state = match scheduler::get(&clients.scheduler, group, &d.name).await {
            Ok(None) => SyncState::Missing,
            Ok(Some(o)) => {
                let diff = schedule::differences(&d, &o, target.as_ref());
                if diff.is_empty() {
                    SyncState::InStep
                } else {
                    SyncState::Differs(diff.iter().map(|d| d.to_string()).collect())
                }
            }
            Err(e) => SyncState::Unknown(e.to_string()),
        };
        states.push((d.name.clone(), state));
    }
    let runs = scale_log::recent(&clients.dynamodb, table, service_key, 100).await.unwrap_or_default();
    let observed = |d: &DesiredSchedule| {
        states.iter().find(|(n, _)| *n == d.name).map(|(_, s)| s.clone()).unwrap_or(SyncState::Unknown("not read".into()))
    };
    let mut report = build(&policy, &parameter, group, now, count, &observed, &runs);
    if let Ok(names) = scheduler::list_owned(&clients.scheduler, group).await {
        let wanted: Vec<&str> = report.schedules.iter().map(|v| v.scheduler_name.as_str()).collect();
        report.not_in_policy = names
            .into_iter()
            .filter(|n| !wanted.contains(&n.as_str()))
            .filter(|n| schedule::decode_name(n).is_some_and(|(c, s, _)| format!("{c}/{s}") == service_key))
            .collect();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
service: { cluster: prod, name: web }
container: app
trigger: { repository: team/web, tags: ["v*"] }
traffic:
  listenerArn: arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2
  targetGroups:
    - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/73e2d6bc24d8a067
    - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/2453ed029918f21f
strategy:
  canary:
    steps:
      - { weight: 10, bake: 5m }
schedules:
  - { name: weekday-peak, cron: "0 8 ? * MON-FRI *", timezone: America/New_York, minCapacity: 4, maxCapacity: 10 }
  - { name: night, cron: "cron(0 22 * * ? *)", timezone: Asia/Tokyo, desiredCount: 1 }
"#;

    fn report() -> SchedulesReport {
        let policy = crate::policy::parse("p", POLICY).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-03-06T00:00:00Z").unwrap().with_timezone(&Utc);
        let runs = vec![ScaleRecord {
            service: "prod/web".into(),
            schedule: "weekday-peak".into(),
            at: 1_772_712_000,
            outcome: "APPLIED".into(),
            summary: "prod/web: schedule weekday-peak set the scalable target to min 4, max 10 (was min 1, max 4)".into(),
        }];
        let observed = |d: &DesiredSchedule| {
            if d.schedule == "night" {
                SyncState::Differs(vec!["expression".into()])
            } else {
                SyncState::InStep
            }
        };
        build(&policy, "/kanaria/policies/prod/web", "kanaria", now, 3, &observed, &runs)
    }

    #[test]
    fn text_shows_local_times_with_offsets_across_a_dst_change() {
        let text = format_text(&report());
        let expected = "\
prod/web: 2 schedules (policy /kanaria/policies/prod/web; Scheduler group kanaria)

weekday-peak: cron(0 8 ? * MON-FRI *) in America/New_York → minCapacity 4, maxCapacity 10
  next: Fri 2026-03-06 08:00 EST (UTC-05:00)
        Mon 2026-03-09 08:00 EDT (UTC-04:00)
        Tue 2026-03-10 08:00 EDT (UTC-04:00)
  Scheduler: kanaria/kanaria.prod.web.weekday-peak in step
  last run: 2026-03-05 12:00:00 UTC APPLIED: prod/web: schedule weekday-peak set the scalable target to min 4, max 10 (was min 1, max 4)

night: cron(0 22 * * ? *) in Asia/Tokyo → desiredCount 1
  next: Fri 2026-03-06 22:00 JST (UTC+09:00)
        Sat 2026-03-07 22:00 JST (UTC+09:00)
        Sun 2026-03-08 22:00 JST (UTC+09:00)
  Scheduler: kanaria/kanaria.prod.web.night out of step: expression (run `kanaria policy apply` to fix)
  last run: none recorded
";
        assert_eq!(text, expected);
    }

    #[test]
    fn json_has_next_times_state_and_last_run() {
        let mut r = report();
        r.not_in_policy = vec!["kanaria.prod.web.old".into()];
        r.schedules[1].state = SyncState::Missing;
        let j = to_json(&r);
        assert_eq!(j["service"], "prod/web");
        assert_eq!(
            j["schedules"][0]["next"],
            json!(["2026-03-06T08:00:00-05:00", "2026-03-09T08:00:00-04:00", "2026-03-10T08:00:00-04:00"])
        );
        assert_eq!(
            j["schedules"][0]["scheduler"],
            json!({"group": "kanaria", "name": "kanaria.prod.web.weekday-peak", "state": "inStep", "differences": [], "error": null})
        );
        assert_eq!(j["schedules"][0]["lastRun"]["outcome"], "APPLIED");
        assert_eq!(j["schedules"][1]["scheduler"]["state"], "missing");
        assert_eq!(j["schedules"][1]["desiredCount"], 1);
        assert_eq!(j["schedules"][1]["lastRun"], json!(null));
        assert_eq!(j["notInPolicy"], json!(["kanaria.prod.web.old"]));
        assert!(format_text(&r).contains("kanaria/kanaria.prod.web.old: no longer in the policy"));
    }

    #[test]
    fn scheduler_args_become_settings() {
        let a = SchedulerArgs {
            schedule_group: "g".into(),
            scale_function_arn: Some("arn:f".into()),
            scheduler_role_arn: Some(" ".into()),
            scheduler_dlq_arn: None,
        };
        let s = a.settings();
        assert_eq!(s.group, "g");
        assert_eq!(s.target().unwrap_err(), vec!["KANARIA_SCHEDULER_ROLE_ARN", "KANARIA_SCHEDULER_DLQ_ARN"]);
        assert!(not_synced_note(&["KANARIA_SCHEDULER_DLQ_ARN"]).contains("--scheduler-dlq-arn"));
    }
}
