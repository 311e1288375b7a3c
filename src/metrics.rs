//! Rollout metrics as CloudWatch Embedded Metric Format (EMF) documents: one JSON object per
//! line on a function's standard output, from which CloudWatch Logs extracts the metrics (no
//! API call, no `cloudwatch:PutMetricData`). Pure: the caller passes the time in; the sink that
//! writes the line is [`crate::telemetry::MetricsSink`].
//!
//! Metrics, namespace [`NAMESPACE`]:
//!
//! | name | unit | dimension sets | when |
//! |---|---|---|---|
//! | `RolloutsStarted` | Count | `[service]`, `[]` | the rollout's first state runs |
//! | `RolloutsPromoted` | Count | `[service]`, `[]` | a rollout released its service promoted |
//! | `RolloutDuration` | Seconds | `[service]`, `[]` | with `RolloutsPromoted`: from the lock taken to the promotion |
//! | `RolloutsRolledBack` | Count | `[service, cause]`, `[cause]`, `[]` | a rolled-back rollout released its service |
//! | `TimeToRollBack` | Seconds | `[service]`, `[]` | all traffic is back on the stable task set (read back): from the start of the call that moved it back (the circuit breaker's restore, or the RollBack state) to the read-back |
//! | `RestartLoopEpisodes` | Count | `[service]`, `[]` | a restart-loop episode opened (its one alert) |
//!
//! The empty dimension set publishes each metric without dimensions too, for account-wide
//! graphs and alarms. `cause` is one of [`RollbackCause`]'s few values (dimensions must have a
//! small number of values: each combination is a metric, and is billed).

use serde_json::{json, Map, Value};

/// The CloudWatch namespace of kanaria's metrics.
pub const NAMESPACE: &str = "kanaria";

pub const ROLLOUTS_STARTED: &str = "RolloutsStarted";
pub const ROLLOUTS_PROMOTED: &str = "RolloutsPromoted";
pub const ROLLOUT_DURATION: &str = "RolloutDuration";
pub const ROLLOUTS_ROLLED_BACK: &str = "RolloutsRolledBack";
pub const TIME_TO_ROLL_BACK: &str = "TimeToRollBack";
pub const RESTART_LOOP_EPISODES: &str = "RestartLoopEpisodes";

/// Every metric name kanaria emits (the dashboard in template.yaml shows each one).
pub const ALL: [&str; 6] =
    [ROLLOUTS_STARTED, ROLLOUTS_PROMOTED, ROLLOUT_DURATION, ROLLOUTS_ROLLED_BACK, TIME_TO_ROLL_BACK, RESTART_LOOP_EPISODES];

/// The dimension names.
pub const SERVICE: &str = "service";
pub const CAUSE: &str = "cause";

/// Why a rollout was rolled back, as a dimension value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackCause {
    /// Tasks of the new task set failed (the circuit breaker, or a verify step).
    FailedTasks,
    /// An alarm of the policy was in ALARM.
    Alarm,
    /// Canary analysis failed or stayed inconclusive.
    Analysis,
    /// A newer push superseded the rollout.
    Superseded,
    /// `kanaria abort`, or a person's Roll back at an approval step.
    Manual,
    /// Nobody approved in time.
    ApprovalTimeout,
    /// A blue/green validation hook failed the release.
    Hook,
    /// A step timed out, or the new tasks never became ready.
    Timeout,
    /// A step failed (an AWS error, a missing resource, ...).
    Error,
}

impl RollbackCause {
    pub const ALL: [RollbackCause; 9] = [
        RollbackCause::FailedTasks,
        RollbackCause::Alarm,
        RollbackCause::Analysis,
        RollbackCause::Superseded,
        RollbackCause::Manual,
        RollbackCause::ApprovalTimeout,
        RollbackCause::Hook,
        RollbackCause::Timeout,
        RollbackCause::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RollbackCause::FailedTasks => "failed-tasks",
            RollbackCause::Alarm => "alarm",
            RollbackCause::Analysis => "analysis",
            RollbackCause::Superseded => "superseded",
            RollbackCause::Manual => "manual",
            RollbackCause::ApprovalTimeout => "approval-timeout",
            RollbackCause::Hook => "hook",
            RollbackCause::Timeout => "timeout",
            RollbackCause::Error => "error",
        }
    }

    /// The kind of a rollback's cause, from the cause text kanaria writes (see `crate::rollout`,
    /// `crate::handlers::circuit_breaker` and its callers); anything else is an error.
    pub fn of(cause: &str) -> RollbackCause {
        let starts = |p: &str| cause.starts_with(p);
        if cause.contains("task(s) of the new task set failed") {
            RollbackCause::FailedTasks
        } else if starts("alarm ") {
            RollbackCause::Alarm
        } else if starts("canary analysis") {
            RollbackCause::Analysis
        } else if starts("superseded by") {
            RollbackCause::Superseded
        } else if starts("aborted by") || (starts("rolled back by") && cause.contains("approval")) {
            RollbackCause::Manual
        } else if starts("nobody approved") {
            RollbackCause::ApprovalTimeout
        } else if starts("the validation hook") {
            RollbackCause::Hook
        } else if starts("a step timed out") || cause.contains("did not become ready") || cause.contains("stabilizationTimeout") {
            RollbackCause::Timeout
        } else {
            RollbackCause::Error
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
        }
    }
}

/// Something worth a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    RolloutStarted {
        service: &'a str,
    },
    /// `duration_seconds`: from the service's lock taken to the promotion.
    RolloutPromoted {
        service: &'a str,
        duration_seconds: f64,
    },
    RolloutRolledBack {
        service: &'a str,
        cause: RollbackCause,
    },
    /// From the start of the call that moved traffic back (the circuit breaker's restore, or the
    /// RollBack state) to all of it read back on the stable task set.
    TrafficRestored {
        service: &'a str,
        seconds: f64,
    },
    RestartLoopEpisode {
        service: &'a str,
    },
}

/// One metric directive: these metrics, published under each of these dimension sets.
struct Directive {
    dimension_sets: &'static [&'static [&'static str]],
    metrics: Vec<(&'static str, Unit, f64)>,
}

const BY_SERVICE: &[&[&str]] = &[&[SERVICE], &[]];
const BY_SERVICE_AND_CAUSE: &[&[&str]] = &[&[SERVICE, CAUSE], &[CAUSE], &[]];

/// The EMF document for `event` at `timestamp_ms` (milliseconds since the Unix epoch).
pub fn document(event: &Event, timestamp_ms: u64) -> Value {
    let (service, cause, directives) = match *event {
        Event::RolloutStarted { service } => {
            (service, None, vec![Directive { dimension_sets: BY_SERVICE, metrics: vec![(ROLLOUTS_STARTED, Unit::Count, 1.0)] }])
        }
        Event::RolloutPromoted { service, duration_seconds } => (
            service,
            None,
            vec![Directive {
                dimension_sets: BY_SERVICE,
                metrics: vec![(ROLLOUTS_PROMOTED, Unit::Count, 1.0), (ROLLOUT_DURATION, Unit::Seconds, duration_seconds)],
            }],
        ),
        Event::RolloutRolledBack { service, cause } => (
            service,
            Some(cause),
            vec![Directive { dimension_sets: BY_SERVICE_AND_CAUSE, metrics: vec![(ROLLOUTS_ROLLED_BACK, Unit::Count, 1.0)] }],
        ),
        Event::TrafficRestored { service, seconds } => {
            (service, None, vec![Directive { dimension_sets: BY_SERVICE, metrics: vec![(TIME_TO_ROLL_BACK, Unit::Seconds, seconds)] }])
        }
        Event::RestartLoopEpisode { service } => {
            (service, None, vec![Directive { dimension_sets: BY_SERVICE, metrics: vec![(RESTART_LOOP_EPISODES, Unit::Count, 1.0)] }])
        }
    };
    let mut root = Map::new();
    let cloudwatch_metrics: Vec<Value> = directives
        .iter()
        .map(|d| {
            json!({
                "Namespace": NAMESPACE,
                "Dimensions": d.dimension_sets,
                "Metrics": d.metrics.iter().map(|(name, unit, _)| json!({ "Name": name, "Unit": unit.as_str() })).collect::<Vec<_>>(),
            })
        })
        .collect();
    root.insert("_aws".into(), json!({ "Timestamp": timestamp_ms, "CloudWatchMetrics": cloudwatch_metrics }));
    root.insert(SERVICE.into(), json!(service));
    if let Some(cause) = cause {
        root.insert(CAUSE.into(), json!(cause.as_str()));
    }
    for d in &directives {
        for (name, _, value) in &d.metrics {
            root.insert((*name).into(), json!(value));
        }
    }
    Value::Object(root)
}

/// [`document`] as the one line the function writes.
pub fn line(event: &Event, timestamp_ms: u64) -> String {
    document(event, timestamp_ms).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: u64 = 1_764_900_000_123;

    #[test]
    fn a_started_rollout_is_one_count_by_service_and_in_total() {
        assert_eq!(
            document(&Event::RolloutStarted { service: "prod/web" }, AT),
            json!({
                "_aws": {
                    "Timestamp": 1_764_900_000_123u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "kanaria",
                        "Dimensions": [["service"], []],
                        "Metrics": [{"Name": "RolloutsStarted", "Unit": "Count"}]
                    }]
                },
                "service": "prod/web",
                "RolloutsStarted": 1.0
            })
        );
    }

    #[test]
    fn a_promotion_counts_and_says_how_long_the_rollout_took() {
        assert_eq!(
            document(&Event::RolloutPromoted { service: "prod/web", duration_seconds: 1830.0 }, AT),
            json!({
                "_aws": {
                    "Timestamp": 1_764_900_000_123u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "kanaria",
                        "Dimensions": [["service"], []],
                        "Metrics": [{"Name": "RolloutsPromoted", "Unit": "Count"}, {"Name": "RolloutDuration", "Unit": "Seconds"}]
                    }]
                },
                "service": "prod/web",
                "RolloutsPromoted": 1.0,
                "RolloutDuration": 1830.0
            })
        );
    }

    #[test]
    fn a_rollback_counts_by_service_and_cause() {
        let cause =
            RollbackCause::of("1 task(s) of the new task set failed at 10% traffic: task 68ca…: Essential container in task exited");
        assert_eq!(
            document(&Event::RolloutRolledBack { service: "prod/web", cause }, AT),
            json!({
                "_aws": {
                    "Timestamp": 1_764_900_000_123u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "kanaria",
                        "Dimensions": [["service", "cause"], ["cause"], []],
                        "Metrics": [{"Name": "RolloutsRolledBack", "Unit": "Count"}]
                    }]
                },
                "service": "prod/web",
                "cause": "failed-tasks",
                "RolloutsRolledBack": 1.0
            })
        );
    }

    #[test]
    fn time_to_roll_back_and_restart_loop_episodes() {
        let restored = document(&Event::TrafficRestored { service: "prod/web", seconds: 0.42 }, AT);
        assert_eq!(restored["_aws"]["CloudWatchMetrics"][0]["Metrics"], json!([{"Name": "TimeToRollBack", "Unit": "Seconds"}]));
        assert_eq!(restored["TimeToRollBack"], json!(0.42));
        let episode = document(&Event::RestartLoopEpisode { service: "prod/api" }, AT);
        assert_eq!(episode["_aws"]["CloudWatchMetrics"][0]["Metrics"], json!([{"Name": "RestartLoopEpisodes", "Unit": "Count"}]));
        assert_eq!(episode["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["service"], []]));
        assert_eq!((episode["service"].clone(), episode["RestartLoopEpisodes"].clone()), (json!("prod/api"), json!(1.0)));
    }

    /// Every document follows the specification: `_aws` with an integer Timestamp and metric
    /// directives; every dimension a string member of the root; every metric a number member;
    /// at most 9 keys per dimension set, at most 100 metrics per directive; one line.
    #[test]
    fn every_document_is_valid_emf_on_one_line() {
        let events = [
            Event::RolloutStarted { service: "a/b" },
            Event::RolloutPromoted { service: "a/b", duration_seconds: 1.5 },
            Event::RolloutRolledBack { service: "a/b", cause: RollbackCause::Alarm },
            Event::TrafficRestored { service: "a/b", seconds: 0.1 },
            Event::RestartLoopEpisode { service: "a/b" },
        ];
        let mut names = Vec::new();
        for event in &events {
            let text = line(event, AT);
            assert!(!text.contains('\n'), "{text}");
            let doc: Value = serde_json::from_str(&text).unwrap();
            assert!(doc["_aws"]["Timestamp"].is_u64(), "{doc}");
            for directive in doc["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
                assert_eq!(directive["Namespace"], NAMESPACE);
                for set in directive["Dimensions"].as_array().unwrap() {
                    let set = set.as_array().unwrap();
                    assert!(set.len() <= 9);
                    for key in set {
                        assert!(doc[key.as_str().unwrap()].is_string(), "dimension {key} of {doc}");
                    }
                }
                let metrics = directive["Metrics"].as_array().unwrap();
                assert!(!metrics.is_empty() && metrics.len() <= 100);
                for m in metrics {
                    let name = m["Name"].as_str().unwrap();
                    assert!(doc[name].is_number(), "metric {name} of {doc}");
                    assert!(["Count", "Seconds"].contains(&m["Unit"].as_str().unwrap()));
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        let mut all: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
        all.sort();
        assert_eq!(names, all, "ALL lists exactly the metrics the documents carry");
    }

    /// The cause texts kanaria writes, each with its kind.
    #[test]
    fn rollback_causes_have_a_few_kinds() {
        for (cause, kind) in [
            ("2 task(s) of the new task set failed at 50% traffic: task 1: OutOfMemoryError", RollbackCause::FailedTasks),
            ("alarm web-5xx went to ALARM: Threshold Crossed", RollbackCause::Alarm),
            ("alarm web-health is in ALARM at 10% traffic", RollbackCause::Alarm),
            ("canary analysis at 25%: 5xx rate 3.00% above the allowed 1.00%", RollbackCause::Analysis),
            ("canary analysis at 25% stayed inconclusive: too little traffic", RollbackCause::Analysis),
            ("superseded by a newer push of demo/web:v3 (sha256:abc)", RollbackCause::Superseded),
            ("aborted by arn:aws:iam::123456789012:user/ops", RollbackCause::Manual),
            ("rolled back by <@U1> (Slack) at the approval step, 10% traffic on the new task set", RollbackCause::Manual),
            ("nobody approved within 1h at 10% traffic (the policy's approval rolls back on timeout)", RollbackCause::ApprovalTimeout),
            ("the validation hook failed the release: smoke test failed", RollbackCause::Hook),
            ("a step timed out: States.Timeout", RollbackCause::Timeout),
            ("Kanaria.NotReady: the new task set was not ready after 10m (stabilizationTimeout): 0 of 2 running", RollbackCause::Timeout),
            ("Kanaria.AwsError: ECS CreateTaskSet on demo/web failed: AccessDenied", RollbackCause::Error),
        ] {
            assert_eq!(RollbackCause::of(cause), kind, "{cause}");
        }
        let values: Vec<&str> = RollbackCause::ALL.iter().map(|c| c.as_str()).collect();
        assert!(values.iter().all(|v| v.chars().all(|c| c.is_ascii_lowercase() || c == '-')), "{values:?}");
    }
}
