//! `kanaria status`: each service's in-flight rollout (the lock), its last finished rollout and
//! the live traffic split read back from the ALB.
//!
//! [`gather`] does the AWS calls; [`format_text`] and [`to_json`] are pure.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use serde_json::{json, Value};

use super::UsageError;
use crate::aws::store::{LastRollout, LockRecord, Store};
use crate::aws::{elb, policies, Clients};

/// What `kanaria status` shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusReport {
    pub services: Vec<ServiceStatus>,
    /// Things that kept the report from being complete (shown after the tables).
    pub warnings: Vec<String>,
    /// Where the records and policies were read from (for the "nothing found" hint).
    pub table: String,
    pub policy_prefix: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    /// `CLUSTER/SERVICE`
    pub service: String,
    /// The SSM parameter holding the service's policy.
    pub policy_parameter: Option<String>,
    /// Number of canary steps of the policy (when it is valid).
    pub steps: Option<usize>,
    pub in_flight: Option<LockRecord>,
    pub last: Option<LastRollout>,
    pub live: Live,
}

/// The live traffic split on the policy's listener or rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    /// Percent of traffic per target group ARN.
    Weights(Vec<(String, u32)>),
    /// No policy names this service, so kanaria does not know its listener.
    NoPolicy,
    /// The service's policy does not validate; kanaria ignores it.
    InvalidPolicy { parameter: String, problems: Vec<String> },
    /// Reading the weights (or the policies) failed.
    Unavailable(String),
}

/// `CLUSTER/SERVICE`, or an ECS service ARN (`arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/SERVICE`).
pub fn parse_service_key(arg: &str) -> Result<String, UsageError> {
    let arg = arg.trim();
    let resource = if arg.starts_with("arn:") {
        let parts: Vec<&str> = arg.splitn(6, ':').collect();
        match parts.as_slice() {
            [_, _, "ecs", _, _, resource] => resource.strip_prefix("service/").unwrap_or(""),
            _ => "",
        }
    } else {
        arg
    };
    match resource.split('/').collect::<Vec<_>>().as_slice() {
        [cluster, name] if !cluster.is_empty() && !name.is_empty() => Ok(format!("{cluster}/{name}")),
        _ => Err(UsageError(format!(
            "{arg:?} is not a service: give it as CLUSTER/SERVICE (names, e.g. `demo/web`) or as the service's ARN \
             with the cluster in it (arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/SERVICE)"
        ))),
    }
}

/// Read everything `kanaria status` shows. `only` restricts it to one `CLUSTER/SERVICE`;
/// otherwise every service with a record in the table or a policy under the prefix is shown.
pub async fn gather(clients: &Clients, table: &str, policy_prefix: &str, only: Option<&str>) -> anyhow::Result<StatusReport> {
    let store = Store::new(&clients.dynamodb, table);
    let mut report = StatusReport { table: table.to_string(), policy_prefix: policy_prefix.to_string(), ..Default::default() };

    // Policies, by service key: a valid one by the service it names, an invalid one by its
    // parameter name under the prefix.
    let mut by_key: BTreeMap<String, (String, Result<crate::policy::Policy, Vec<String>>)> = BTreeMap::new();
    let policies_error = match policies::load_all(&clients.ssm, policy_prefix).await {
        Ok(list) => {
            for (name, parsed) in list {
                let (key, parsed) = match parsed {
                    Ok(p) => (p.service.key(), Ok(p)),
                    Err(e) => (
                        name.strip_prefix(policy_prefix).unwrap_or(&name).to_string(),
                        Err(e.problems().iter().map(|p| p.to_string()).collect()),
                    ),
                };
                if let Some((first, _)) = by_key.get(&key) {
                    report
                        .warnings
                        .push(format!("{key}: both {first} and {name} hold its policy; {name} is ignored here, remove one of them"));
                    continue;
                }
                by_key.insert(key, (name, parsed));
            }
            None
        }
        Err(e) => {
            report.warnings.push(format!(
                "policies under {policy_prefix} could not be read, so live traffic is not shown: {e} \
                 (check --policy-prefix and that you may call ssm:GetParametersByPath)"
            ));
            Some(e.to_string())
        }
    };

    let keys: BTreeSet<String> = match only {
        Some(key) => BTreeSet::from([key.to_string()]),
        None => {
            let mut keys: BTreeSet<String> = store
                .services()
                .await
                .with_context(|| format!("listing kanaria's services in DynamoDB table {table} failed; {}", table_hint()))?
                .into_iter()
                .collect();
            keys.extend(by_key.keys().cloned());
            keys
        }
    };

    for key in keys {
        let records = |what: &str| format!("reading the {what} of {key} from DynamoDB table {table} failed; {}", table_hint());
        let in_flight = store.lock(&key).await.with_context(|| records("in-flight rollout"))?;
        let last = store.last(&key).await.with_context(|| records("last rollout"))?;
        let (policy_parameter, steps, live) = match by_key.get(&key) {
            Some((name, Ok(policy))) => {
                let live = match policy.traffic.route() {
                    Some(route) => match elb::read_weights(&clients.elb, &route).await {
                        Ok(weights) => Live::Weights(weights),
                        Err(e) => Live::Unavailable(e.to_string()),
                    },
                    None => Live::Unavailable("the policy names no listener or rule".into()),
                };
                (Some(name.clone()), Some(policy.steps().len()), live)
            }
            Some((name, Err(problems))) => {
                (Some(name.clone()), None, Live::InvalidPolicy { parameter: name.clone(), problems: problems.clone() })
            }
            None => match &policies_error {
                Some(e) => (None, None, Live::Unavailable(format!("policies could not be read: {e}"))),
                None => (None, None, Live::NoPolicy),
            },
        };
        if only.is_some() && in_flight.is_none() && last.is_none() && policy_parameter.is_none() && policies_error.is_none() {
            report.warnings.push(format!(
                "{key}: kanaria has no record of this service in table {table} and no policy for it under {policy_prefix}; \
                 check the name (CLUSTER/SERVICE), --table and --policy-prefix"
            ));
        }
        report.services.push(ServiceStatus { service: key, policy_parameter, steps, in_flight, last, live });
    }
    Ok(report)
}

pub(crate) fn table_hint() -> &'static str {
    "check the region and --table (KANARIA_TABLE: the table kanaria was deployed with), and that you may read it"
}

/// `42s ago`, `5m ago`, `3h 12m ago`, `2d 4h ago`; `-` for an unknown time (0).
pub fn ago(now: u64, then: u64) -> String {
    if then == 0 {
        return "-".into();
    }
    let d = now.saturating_sub(then);
    match d {
        0..=59 => format!("{d}s ago"),
        60..=3599 => format!("{}m ago", d / 60),
        3600..=86399 => format!("{}h {}m ago", d / 3600, d % 3600 / 60),
        _ => format!("{}d {}h ago", d / 86400, d % 86400 / 3600),
    }
}

/// An image URI without its registry host, digest shortened:
/// `123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web@sha256:0f6f…` → `demo/web@sha256:0f6f3104d35c`.
pub fn short_image(uri: &str) -> String {
    let path = match uri.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => rest,
        _ => uri,
    };
    match path.split_once("@sha256:") {
        Some((repo, hex)) => format!("{repo}@sha256:{}", hex.chars().take(12).collect::<String>()),
        None => path.to_string(),
    }
}

/// The target group's name from its ARN (`...:targetgroup/web-blue/73e2d6bc24d8a067` → `web-blue`).
pub fn target_group_name(arn: &str) -> &str {
    match arn.split_once(":targetgroup/") {
        Some((_, rest)) => rest.split('/').next().unwrap_or(rest),
        None => arn,
    }
}

fn live_cell(live: &Live) -> String {
    match live {
        Live::Weights(w) if w.is_empty() => "no target groups".into(),
        Live::Weights(w) => w.iter().map(|(tg, pct)| format!("{} {pct}%", target_group_name(tg))).collect::<Vec<_>>().join(", "),
        Live::NoPolicy => "no policy".into(),
        Live::InvalidPolicy { .. } => "policy invalid (see below)".into(),
        Live::Unavailable(_) => "unavailable (see below)".into(),
    }
}

/// Columns padded to their widest cell, two spaces apart.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            s.push_str(cell);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The human-readable report: a table of services with their in-flight rollout and live
/// traffic, a table of last finished rollouts, then notes.
pub fn format_text(report: &StatusReport, now: u64) -> String {
    let mut out = String::new();
    if report.services.is_empty() {
        out.push_str(&format!(
            "no services: kanaria has no rollout records in table {} and no policies under {}.\n\
             Store a policy with `kanaria policy apply FILE`; its service then shows here.\n",
            report.table, report.policy_prefix
        ));
    } else {
        let rows: Vec<Vec<String>> = report
            .services
            .iter()
            .map(|s| match &s.in_flight {
                Some(l) => vec![
                    s.service.clone(),
                    l.rollout_id.clone(),
                    short_image(&l.image),
                    if l.phase.is_empty() { "-".into() } else { l.phase.clone() },
                    match s.steps {
                        Some(n) => format!("{}/{n}", l.step + 1),
                        None => format!("{}", l.step + 1),
                    },
                    format!("{}%", l.weight),
                    ago(now, if l.updated_at != 0 { l.updated_at } else { l.started_at }),
                    live_cell(&s.live),
                ],
                None => {
                    let mut row = vec![s.service.clone(), "idle".into()];
                    row.extend(std::iter::repeat_n("-".to_string(), 5));
                    row.push(live_cell(&s.live));
                    row
                }
            })
            .collect();
        out.push_str(&table(&["SERVICE", "ROLLOUT", "IMAGE", "PHASE", "STEP", "WEIGHT", "SINCE", "LIVE TRAFFIC"], &rows));

        let last_rows: Vec<Vec<String>> = report
            .services
            .iter()
            .filter_map(|s| {
                s.last.as_ref().map(|l| {
                    vec![
                        s.service.clone(),
                        l.outcome.clone(),
                        short_image(&l.image),
                        ago(now, l.ended_at),
                        l.cause.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
            })
            .collect();
        out.push('\n');
        if last_rows.is_empty() {
            out.push_str("LAST ROLLOUT: none finished yet\n");
        } else {
            out.push_str(&table(&["SERVICE", "LAST ROLLOUT", "IMAGE", "ENDED", "CAUSE"], &last_rows));
        }
    }

    let mut notes = Vec::new();
    for s in &report.services {
        match &s.live {
            Live::InvalidPolicy { parameter, problems } => {
                notes.push(format!(
                    "{}: policy {parameter} is invalid, so kanaria ignores it; fix its source and run `kanaria policy apply` again:",
                    s.service
                ));
                notes.extend(problems.iter().map(|p| format!("    - {p}")));
            }
            Live::Unavailable(why) => notes.push(format!("{}: live traffic unavailable: {why}", s.service)),
            Live::Weights(_) | Live::NoPolicy => {}
        }
    }
    notes.extend(report.warnings.iter().cloned());
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            if n.starts_with("    ") {
                out.push_str(&format!("{n}\n"));
            } else {
                out.push_str(&format!("note: {n}\n"));
            }
        }
    }
    out
}

/// The machine-readable report: `{generatedAt, services: [...], warnings: [...]}`. Times are
/// Unix seconds, with `*SecondsAgo` computed from `now`.
pub fn to_json(report: &StatusReport, now: u64) -> Value {
    let services: Vec<Value> = report
        .services
        .iter()
        .map(|s| {
            let in_flight = s.in_flight.as_ref().map(|l| {
                let mut v = serde_json::to_value(l).expect("a lock record serialises");
                v["steps"] = json!(s.steps);
                v["sinceSeconds"] = json!(now.saturating_sub(if l.updated_at != 0 { l.updated_at } else { l.started_at }));
                v["startedSecondsAgo"] = json!(now.saturating_sub(l.started_at));
                v
            });
            let last = s.last.as_ref().map(|l| {
                let mut v = serde_json::to_value(l).expect("a last rollout serialises");
                v["endedSecondsAgo"] = json!(now.saturating_sub(l.ended_at));
                v
            });
            let live = match &s.live {
                Live::Weights(w) => json!({
                    "status": "ok",
                    "weights": w.iter().map(|(tg, pct)| json!({ "targetGroupArn": tg, "targetGroup": target_group_name(tg), "percent": pct })).collect::<Vec<_>>(),
                }),
                Live::NoPolicy => json!({ "status": "noPolicy" }),
                Live::InvalidPolicy { parameter, problems } => json!({ "status": "invalidPolicy", "parameter": parameter, "problems": problems }),
                Live::Unavailable(e) => json!({ "status": "unavailable", "error": e }),
            };
            json!({
                "service": s.service,
                "policy": s.policy_parameter,
                "inFlight": in_flight,
                "last": last,
                "liveTraffic": live,
            })
        })
        .collect();
    json!({ "generatedAt": now, "services": services, "warnings": report.warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_741_944_000;
    const BLUE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/73e2d6bc24d8a067";
    const GREEN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/2453ed029918f21f";
    const IMAGE: &str =
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web@sha256:0f6f3104d35c0913022f8d9e3cbabc13c828ef7fbd37bd466d9a34b72bc023be";

    fn report() -> StatusReport {
        StatusReport {
            table: "kanaria".into(),
            policy_prefix: "/kanaria/policies/".into(),
            warnings: vec![],
            services: vec![
                ServiceStatus {
                    service: "demo/web".into(),
                    policy_parameter: Some("/kanaria/policies/demo/web".into()),
                    steps: Some(4),
                    in_flight: Some(LockRecord {
                        service: "demo/web".into(),
                        rollout_id: "9f86d081884c7d65".into(),
                        digest: "sha256:0f6f3104d35c0913022f8d9e3cbabc13c828ef7fbd37bd466d9a34b72bc023be".into(),
                        image: IMAGE.into(),
                        execution_name: "web-0f6f3104d35c-9f86d081884c7d65".into(),
                        execution_arn: None,
                        started_at: NOW - 600,
                        phase: "baking".into(),
                        step: 1,
                        weight: 5,
                        green_task_set_id: Some("ecs-svc/1234567890123456789".into()),
                        updated_at: NOW - 95,
                        ..Default::default()
                    }),
                    last: Some(LastRollout {
                        service: "demo/web".into(),
                        rollout_id: "2c26b46b68ffc68f".into(),
                        image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web@sha256:251aae0dd0c971fb94b06b2b733667c0fd108a42a04699234785baef3202122f".into(),
                        outcome: "ROLLED_BACK".into(),
                        cause: Some("task 6b4e398e: Essential container in task exited (app exit 1)".into()),
                        ended_at: NOW - 7260,
                        ..Default::default()
                    }),
                    live: Live::Weights(vec![(BLUE.into(), 95), (GREEN.into(), 5)]),
                },
                ServiceStatus {
                    service: "demo/api".into(),
                    policy_parameter: Some("/kanaria/policies/demo/api".into()),
                    steps: None,
                    in_flight: None,
                    last: None,
                    live: Live::InvalidPolicy {
                        parameter: "/kanaria/policies/demo/api".into(),
                        problems: vec!["traffic.targetGroups: has 1 entries (fix: list exactly two target groups)".into()],
                    },
                },
            ],
        }
    }

    #[test]
    fn service_argument_forms() {
        assert_eq!(parse_service_key("demo/web").unwrap(), "demo/web");
        assert_eq!(parse_service_key("arn:aws:ecs:us-east-1:123456789012:service/demo/web").unwrap(), "demo/web");
        for bad in ["web", "demo/web/x", "/web", "demo/", "arn:aws:ecs:us-east-1:123456789012:service/web", "arn:aws:s3:::demo/web"] {
            let e = parse_service_key(bad).unwrap_err();
            assert!(e.0.contains("CLUSTER/SERVICE"), "{bad}: {e}");
        }
    }

    #[test]
    fn ago_reads_naturally() {
        assert_eq!(ago(NOW, 0), "-");
        assert_eq!(ago(NOW, NOW), "0s ago");
        assert_eq!(ago(NOW, NOW + 5), "0s ago", "clock skew is not negative time");
        assert_eq!(ago(NOW, NOW - 42), "42s ago");
        assert_eq!(ago(NOW, NOW - 95), "1m ago");
        assert_eq!(ago(NOW, NOW - 7260), "2h 1m ago");
        assert_eq!(ago(NOW, NOW - 2 * 86400 - 4 * 3600), "2d 4h ago");
    }

    #[test]
    fn images_and_target_groups_are_shortened() {
        assert_eq!(short_image(IMAGE), "demo/web@sha256:0f6f3104d35c");
        assert_eq!(short_image("demo/web:v2"), "demo/web:v2");
        assert_eq!(short_image("localhost:4566/demo/web:v2"), "demo/web:v2");
        assert_eq!(target_group_name(BLUE), "web-blue");
        assert_eq!(target_group_name("tg-a"), "tg-a");
    }

    #[test]
    fn text_report_is_a_table_with_notes() {
        let text = format_text(&report(), NOW);
        let expected = "\
SERVICE   ROLLOUT           IMAGE                         PHASE   STEP  WEIGHT  SINCE   LIVE TRAFFIC
demo/web  9f86d081884c7d65  demo/web@sha256:0f6f3104d35c  baking  2/4   5%      1m ago  web-blue 95%, web-green 5%
demo/api  idle              -                             -       -     -       -       policy invalid (see below)

SERVICE   LAST ROLLOUT  IMAGE                         ENDED      CAUSE
demo/web  ROLLED_BACK   demo/web@sha256:251aae0dd0c9  2h 1m ago  task 6b4e398e: Essential container in task exited (app exit 1)

note: demo/api: policy /kanaria/policies/demo/api is invalid, so kanaria ignores it; fix its source and run `kanaria policy apply` again:
    - traffic.targetGroups: has 1 entries (fix: list exactly two target groups)
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn text_report_without_services_says_where_it_looked() {
        let empty = StatusReport { table: "kanaria-dev".into(), policy_prefix: "/p/".into(), ..Default::default() };
        let text = format_text(&empty, NOW);
        assert!(text.starts_with("no services: kanaria has no rollout records in table kanaria-dev and no policies under /p/."), "{text}");
    }

    #[test]
    fn unavailable_weights_and_warnings_are_noted() {
        let mut r = report();
        r.services.truncate(1);
        r.services[0].live = Live::Unavailable("ELBv2 DescribeListeners on arn:l failed: AccessDenied: no".into());
        r.services[0].last = None;
        r.warnings.push("something else".into());
        let text = format_text(&r, NOW);
        assert!(text.contains("unavailable (see below)"), "{text}");
        assert!(text.contains("LAST ROLLOUT: none finished yet"), "{text}");
        assert!(text.ends_with("note: demo/web: live traffic unavailable: ELBv2 DescribeListeners on arn:l failed: AccessDenied: no\nnote: something else\n"), "{text}");
    }

    #[test]
    fn json_report_is_complete() {
        let v = to_json(&report(), NOW);
        assert_eq!(v["generatedAt"], NOW);
        assert_eq!(v["warnings"], json!([]));
        let web = &v["services"][0];
        assert_eq!(web["service"], "demo/web");
        assert_eq!(web["policy"], "/kanaria/policies/demo/web");
        assert_eq!(web["inFlight"]["rolloutId"], "9f86d081884c7d65");
        assert_eq!(web["inFlight"]["image"], IMAGE);
        assert_eq!(web["inFlight"]["phase"], "baking");
        assert_eq!(web["inFlight"]["step"], 1);
        assert_eq!(web["inFlight"]["steps"], 4);
        assert_eq!(web["inFlight"]["weight"], 5);
        assert_eq!(web["inFlight"]["sinceSeconds"], 95);
        assert_eq!(web["inFlight"]["startedSecondsAgo"], 600);
        assert_eq!(web["last"]["outcome"], "ROLLED_BACK");
        assert_eq!(web["last"]["endedSecondsAgo"], 7260);
        assert_eq!(
            web["liveTraffic"],
            json!({ "status": "ok", "weights": [
                { "targetGroupArn": BLUE, "targetGroup": "web-blue", "percent": 95 },
                { "targetGroupArn": GREEN, "targetGroup": "web-green", "percent": 5 },
            ]})
        );
        let api = &v["services"][1];
        assert_eq!(api["inFlight"], Value::Null);
        assert_eq!(api["last"], Value::Null);
        assert_eq!(api["liveTraffic"]["status"], "invalidPolicy");
        assert_eq!(api["liveTraffic"]["problems"].as_array().unwrap().len(), 1);
    }
}
