//! Per-service rollout policy: the declarative document a team writes for each ECS service.
//!
//! Policies are YAML or JSON. Parsing is strict about field names (a typo such as `wieght` is an
//! error, not a silently ignored field) and [`Policy::validate`] reports every semantic problem
//! at once, each with the field path and what to change. A policy that does not validate never
//! starts a rollout.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Step Functions history is bounded; so is the number of steps a policy may have.
pub const MAX_STEPS: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "kanaria rollout policy")]
pub struct Policy {
    /// The ECS service this policy rolls out. Its deployment controller must be EXTERNAL.
    pub service: ServiceRef,
    /// Name of the container (in the task definition) whose image a push replaces.
    pub container: String,
    /// Which ECR pushes start a rollout.
    pub trigger: Trigger,
    /// Where production traffic is split between the stable and the new task set.
    pub traffic: Traffic,
    /// How traffic moves to the new task set.
    pub strategy: Strategy,
    /// How long the new task set may take to run all its tasks before the rollout is rolled back.
    #[serde(default = "default_stabilization_timeout")]
    #[schemars(with = "String")]
    pub stabilization_timeout: HumanDuration,
    /// How long the old task set keeps serving in-flight requests after promotion before it is
    /// deleted. Match the target groups' deregistration delay.
    #[serde(default = "default_drain")]
    #[schemars(with = "String")]
    pub drain: HumanDuration,
    /// Failed tasks of the new task set that trip the circuit breaker (roll back at once).
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// CloudWatch alarm names: any of them in ALARM during the rollout rolls it back at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    /// Compare the new target group with the stable one at every verify (ALB metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// How traffic goes back to the stable task set when a rollback is not caused by a failure
    /// signal: by default at once, or in held steps so that stable tasks which served little or
    /// nothing during the bakes warm up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_back: Option<ShiftBack>,
    /// What a push of a newer image does while a rollout is in flight.
    #[serde(default)]
    pub on_newer_push: NewerPush,
    /// When the service counts as crash-looping (otherwise the account defaults apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_loop: Option<RestartLoop>,
    /// Time-based capacity changes (EventBridge Scheduler cron in the team's time zone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
    /// Slack: where this service's rollout message goes and who may approve its approval steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackSettings>,
}

/// Slack for one service. Approvals can always also be given with `kanaria approve` (IAM).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackSettings {
    /// Channel id (e.g. `C0123ABCD`) for this service's rollout messages; default: the channel
    /// kanaria was deployed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Slack user ids (e.g. `U012AB3CD`) who may approve or roll back at an approval step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// Slack user group ids (e.g. `S0614TZR7`) whose members may approve or roll back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approver_groups: Vec<String>,
}

/// A service is in a restart loop when `failures` of its tasks stop for failure reasons
/// within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartLoop {
    pub failures: u32,
    #[schemars(with = "String")]
    pub window: HumanDuration,
}

/// One scheduled capacity change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// Unique within the policy; part of the EventBridge Scheduler schedule's name.
    pub name: String,
    /// EventBridge cron: `cron(...)` or its six fields, e.g. `0 8 ? * MON-FRI *`.
    pub cron: String,
    /// IANA time zone the cron is read in, e.g. `Asia/Tokyo`.
    pub timezone: String,
    /// Application Auto Scaling bounds, when the service has a scalable target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_capacity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_capacity: Option<u32>,
    /// The service's desired count, when it has no scalable target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum NewerPush {
    /// Roll the in-flight rollout back and start the newer image.
    #[default]
    Supersede,
    /// Let the in-flight rollout finish, then start the newest image pushed meanwhile.
    Queue,
}

/// Canary analysis: the new target group against the stable one over the step, from the ALB's
/// CloudWatch metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analysis {
    /// Fewer requests than this on either target group in the step makes the result inconclusive.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// The new 5xx rate may be at most max(stable rate × this, errorRateFloorPercent).
    #[serde(default = "default_error_rate_ratio")]
    pub error_rate_ratio: f64,
    #[serde(default = "default_error_rate_floor")]
    pub error_rate_floor_percent: f64,
    /// The new p99 response time may be at most max(stable p99 × this, latencyP99FloorMs).
    /// Leave out to not judge latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99_ratio: Option<f64>,
    #[serde(default = "default_latency_floor")]
    pub latency_p99_floor_ms: f64,
    /// Not enough data: hold the step for one more bake (then roll back), or roll back now.
    #[serde(default)]
    pub inconclusive: Inconclusive,
}

/// A paced rollback: the new task set's weight steps down through `steps`, each held for
/// `interval`, then to 0. It applies to rollbacks a person, a newer push, an approval timeout or
/// an inconclusive analysis asks for, and only while every new task still runs and is healthy.
/// A failure signal (failed tasks, an alarm in ALARM, a failed analysis, unhealthy targets)
/// always moves all traffic back at once, also in the middle of a paced rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShiftBack {
    /// The new task set's weights on the way back, highest first (e.g. `[50, 20]`); the ones at
    /// or above its weight when the rollback starts are skipped.
    pub steps: Vec<u32>,
    /// How long each step is held before the next.
    #[schemars(with = "String")]
    pub interval: HumanDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Inconclusive {
    #[default]
    Hold,
    Rollback,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    /// Cluster name (not ARN).
    pub cluster: String,
    /// Service name (not ARN).
    pub name: String,
}

impl ServiceRef {
    /// Stable key used in kanaria's records and parameter names: `cluster/service`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.cluster, self.name)
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.cluster, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    /// ECR repository name, e.g. `team/web`.
    pub repository: String,
    /// Tag patterns (`*` and `?` wildcards). A push whose tag matches any of them starts a rollout.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Traffic {
    /// ARN of the production listener whose default action forwards to the two target groups.
    /// Give this or `listenerRuleArn`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_arn: Option<String>,
    /// ARN of the production listener rule that forwards to the two target groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_rule_arn: Option<String>,
    /// Exactly two target groups (type `ip`). Each rollout puts the new task set in the one the
    /// stable task set does not use.
    pub target_groups: Vec<String>,
}

/// Where the weights live: a listener's default action or one listener rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrafficRoute {
    Listener(String),
    Rule(String),
}

impl Traffic {
    pub fn route(&self) -> Option<TrafficRoute> {
        match (&self.listener_arn, &self.listener_rule_arn) {
            (Some(l), None) => Some(TrafficRoute::Listener(l.clone())),
            (None, Some(r)) => Some(TrafficRoute::Rule(r.clone())),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Strategy {
    /// Shift traffic in the listed steps; after the last step the new task set is promoted.
    Canary(Canary),
    /// Shift `stepPercent` more traffic every `interval` until 100%.
    Linear(Linear),
    /// Bring the new task set up at full size behind a test listener or rule, validate it there,
    /// cut over 100% at once, keep the old task set for `keepOldFor` (instant rollback), then
    /// delete it.
    BlueGreen(BlueGreen),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Linear {
    pub step_percent: u32,
    #[schemars(with = "String")]
    pub interval: HumanDuration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueGreen {
    /// Test listener (e.g. port 8443) whose default action forwards to the two target groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_listener_arn: Option<String>,
    /// Or one rule (e.g. a header match) of a listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_listener_rule_arn: Option<String>,
    pub validation: Validation,
    /// How long the old task set stays ready to take traffic back after the cutover.
    #[schemars(with = "String")]
    pub keep_old_for: HumanDuration,
}

/// Exactly one gate before the cutover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Validation {
    /// Watch the new task set on the test route this long, at least 1s (failed tasks and alarms roll back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub bake: Option<HumanDuration>,
    /// A Lambda function (ARN) invoked with the rollout; it answers `{"pass": bool, "reason": "..."}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// Wait for a person (Slack buttons or `kanaria approve`/`reject`); see [`ApprovalGate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalGate>,
}

/// Wait for a person to approve (go on) or reject (roll back). Approvers are `slack.approvers`
/// and `slack.approverGroups` in Slack, and anyone IAM allows with `kanaria approve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalGate {
    /// How long to wait for an answer, e.g. `30m`, `4h` (1s to 7 days).
    #[schemars(with = "String")]
    pub timeout: HumanDuration,
    /// What happens when nobody answers in time: `rollback` (default) or `promote` (go on as if
    /// approved).
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// The person who pushed the image may not approve it (rolling back stays open to them; default
    /// false). Who pushed
    /// comes from CloudTrail's PutImage event (needs a trail); in Slack the clicking user's email
    /// is compared with the pusher's IAM user or role session name (the app needs the
    /// users:read.email scope). When either is unknown, the decision is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forbid_self_approval: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnTimeout {
    #[default]
    Rollback,
    Promote,
}

impl OnTimeout {
    pub fn as_str(self) -> &'static str {
        match self {
            OnTimeout::Rollback => "rollback",
            OnTimeout::Promote => "promote",
        }
    }
}

/// The shortest wait the state machine can time out: bakes, validation bakes and approvals are
/// waited on by Task states with `TimeoutSecondsPath`, which must resolve to a positive integer.
/// Zero fails the execution with `States.Runtime`, which no `Catch` catches ("States.ALL ... can't
/// catch the States.DataLimitExceeded terminal error or Runtime error types", Step Functions
/// developer guide, error handling): the rollout would stop with traffic split and no rollback.
pub const MIN_TIMED_WAIT: Duration = Duration::from_secs(1);

/// The longest an approval may wait (a task token lives as long as its execution; a week is
/// already longer than anyone should leave a canary half-deployed).
pub const MAX_APPROVAL_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The gate a blue/green rollout passes on its test route before the cutover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Bake(u64),
    Hook(String),
    Approval(ApprovalGate),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Canary {
    pub steps: Vec<CanaryStep>,
}

/// One entry of `strategy.canary.steps`: a traffic step `{weight: 10, bake: 5m}`, or an approval
/// step `{approval: {timeout: 1h}}` that waits for a person once the step before it has baked and
/// verified (before the next step, or before promotion when it is the last entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryStep {
    /// Percent of production traffic on the new task set during this step (1–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// How long to hold this weight before verifying, e.g. `30s`, `5m`, `1h` (1s to 24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub bake: Option<HumanDuration>,
    /// Wait for a person here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalGate>,
}

/// A traffic step as every strategy comes down to: a weight held for `bake`, then verified, then
/// (if `approval`) a person's go-ahead before the next step or promotion.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub weight: u32,
    pub bake: HumanDuration,
    pub approval: Option<ApprovalGate>,
}

impl Policy {
    /// The traffic steps every strategy comes down to (a blue/green cutover is one 100% step
    /// baked for `keepOldFor`).
    pub fn steps(&self) -> Vec<Step> {
        match &self.strategy {
            Strategy::Canary(c) => {
                let mut steps: Vec<Step> = Vec::new();
                for entry in &c.steps {
                    match (entry.weight, &entry.approval) {
                        (Some(weight), _) => steps.push(Step { weight, bake: entry.bake.unwrap_or_default(), approval: None }),
                        // An approval belongs to the traffic step before it (validation rejects
                        // one with nothing before it).
                        (None, Some(gate)) => {
                            if let Some(last) = steps.last_mut() {
                                last.approval = Some(gate.clone());
                            }
                        }
                        (None, None) => {}
                    }
                }
                steps
            }
            Strategy::Linear(l) => {
                let step = l.step_percent.clamp(1, 100);
                (1..=100u32.div_ceil(step)).map(|i| Step { weight: (i * step).min(100), bake: l.interval, approval: None }).collect()
            }
            Strategy::BlueGreen(b) => vec![Step { weight: 100, bake: b.keep_old_for, approval: None }],
        }
    }

    /// The test route and gate of a blue/green policy.
    pub fn test_route(&self) -> Option<TrafficRoute> {
        match &self.strategy {
            Strategy::BlueGreen(b) => match (&b.test_listener_arn, &b.test_listener_rule_arn) {
                (Some(l), None) => Some(TrafficRoute::Listener(l.clone())),
                (None, Some(r)) => Some(TrafficRoute::Rule(r.clone())),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn gate(&self) -> Option<Gate> {
        match &self.strategy {
            Strategy::BlueGreen(b) => match (&b.validation.bake, &b.validation.hook, &b.validation.approval) {
                (Some(d), None, None) => Some(Gate::Bake(d.secs())),
                (None, Some(h), None) => Some(Gate::Hook(h.clone())),
                (None, None, Some(a)) => Some(Gate::Approval(a.clone())),
                _ => None,
            },
            _ => None,
        }
    }

    /// Does a push of `repository:tag` trigger this policy?
    pub fn matches(&self, repository: &str, tag: &str) -> bool {
        self.trigger.repository == repository && self.trigger.tags.iter().any(|p| wildmatch::WildMatch::new(p).matches(tag))
    }

    /// Every semantic problem of the policy, each with its field path and a fix.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut bad =
            |path: &str, message: String, fix: &str| problems.push(Problem { path: path.to_string(), message, fix: fix.to_string() });
        if self.service.cluster.trim().is_empty() || self.service.cluster.starts_with("arn:") {
            bad(
                "service.cluster",
                format!("{:?} is not a cluster name", self.service.cluster),
                "give the cluster's name, e.g. `prod`, not its ARN",
            );
        }
        if self.service.name.trim().is_empty() || self.service.name.starts_with("arn:") {
            bad(
                "service.name",
                format!("{:?} is not a service name", self.service.name),
                "give the service's name, e.g. `web`, not its ARN",
            );
        }
        if self.container.trim().is_empty() {
            bad("container", "is empty".into(), "name the container in the task definition whose image should be replaced");
        }
        if !valid_repository_name(&self.trigger.repository) {
            bad(
                "trigger.repository",
                format!("{:?} is not an ECR repository name", self.trigger.repository),
                "use the repository name as ECR shows it (lowercase, e.g. `team/web`), not its URI",
            );
        }
        if self.trigger.tags.is_empty() {
            bad(
                "trigger.tags",
                "is empty, so no push would ever start a rollout".into(),
                "list at least one tag pattern, e.g. `[\"v*\"]` or `[\"*\"]`",
            );
        }
        for (i, t) in self.trigger.tags.iter().enumerate() {
            if t.is_empty() || t.len() > 128 || t.chars().any(|c| !(c.is_ascii_alphanumeric() || "._-*?".contains(c))) {
                bad(
                    &format!("trigger.tags[{i}]"),
                    format!("{t:?} is not a tag pattern"),
                    "use tag characters (letters, digits, `.`, `_`, `-`) with `*` or `?` wildcards",
                );
            }
        }
        match (&self.traffic.listener_arn, &self.traffic.listener_rule_arn) {
            (None, None) => bad(
                "traffic",
                "names neither `listenerArn` nor `listenerRuleArn`".into(),
                "give the production listener's ARN, or the ARN of the listener rule that forwards to the service",
            ),
            (Some(_), Some(_)) => bad(
                "traffic",
                "names both `listenerArn` and `listenerRuleArn`".into(),
                "keep only the one whose forward action kanaria should weight",
            ),
            (Some(l), None) if !is_arn(l, "elasticloadbalancing", ":listener/") => {
                bad("traffic.listenerArn", format!("{l:?} is not a listener ARN"), "copy the ARN from `aws elbv2 describe-listeners`")
            }
            (None, Some(r)) if !is_arn(r, "elasticloadbalancing", ":listener-rule/") => {
                bad("traffic.listenerRuleArn", format!("{r:?} is not a listener rule ARN"), "copy the ARN from `aws elbv2 describe-rules`")
            }
            _ => {}
        }
        if self.traffic.target_groups.len() != 2 {
            bad(
                "traffic.targetGroups",
                format!("has {} entries", self.traffic.target_groups.len()),
                "list exactly two target groups: the one the service uses now and a spare of the same type `ip`",
            );
        }
        for (i, tg) in self.traffic.target_groups.iter().enumerate() {
            if !is_arn(tg, "elasticloadbalancing", ":targetgroup/") {
                bad(
                    &format!("traffic.targetGroups[{i}]"),
                    format!("{tg:?} is not a target group ARN"),
                    "copy the ARN from `aws elbv2 describe-target-groups`",
                );
            }
        }
        if self.traffic.target_groups.len() == 2 && self.traffic.target_groups[0] == self.traffic.target_groups[1] {
            bad(
                "traffic.targetGroups[1]",
                "is the same as targetGroups[0]".into(),
                "use two different target groups: traffic moves from one to the other",
            );
        }
        let entries = match &self.strategy {
            Strategy::Canary(c) => c.steps.clone(),
            _ => Vec::new(),
        };
        let steps = self.steps();
        if matches!(self.strategy, Strategy::Canary(_)) && steps.is_empty() {
            bad("strategy.canary.steps", "is empty".into(), "add at least one step, e.g. `- {weight: 10, bake: 5m}`");
        }
        match &self.strategy {
            Strategy::Canary(_) => {}
            Strategy::Linear(l) => {
                if l.step_percent == 0 || l.step_percent > 100 {
                    bad(
                        "strategy.linear.stepPercent",
                        format!("{} is not a percentage from 1 to 100", l.step_percent),
                        "use e.g. 10 (ten steps of 10%)",
                    );
                } else if 100u32.div_ceil(l.step_percent) as usize > MAX_STEPS {
                    bad(
                        "strategy.linear.stepPercent",
                        format!("{}% makes more than {MAX_STEPS} steps", l.step_percent),
                        &format!("use at least {}%", 100u32.div_ceil(MAX_STEPS as u32)),
                    );
                }
                if l.interval.0 < MIN_TIMED_WAIT || l.interval.0 > Duration::from_secs(24 * 3600) {
                    bad("strategy.linear.interval", format!("{} is outside 1s..24h", l.interval), "bake each step between 1s and 24h");
                }
            }
            Strategy::BlueGreen(b) => {
                match (&b.test_listener_arn, &b.test_listener_rule_arn) {
                    (None, None) | (Some(_), Some(_)) => bad(
                        "strategy.blueGreen",
                        "needs exactly one of `testListenerArn` or `testListenerRuleArn`".into(),
                        "give the test listener (or rule) that forwards to the two target groups",
                    ),
                    (Some(l), None) if !is_arn(l, "elasticloadbalancing", ":listener/") => bad(
                        "strategy.blueGreen.testListenerArn",
                        format!("{l:?} is not a listener ARN"),
                        "copy the ARN from `aws elbv2 describe-listeners`",
                    ),
                    (None, Some(r)) if !is_arn(r, "elasticloadbalancing", ":listener-rule/") => bad(
                        "strategy.blueGreen.testListenerRuleArn",
                        format!("{r:?} is not a listener rule ARN"),
                        "copy the ARN from `aws elbv2 describe-rules`",
                    ),
                    (Some(l), None) if Some(l) == self.traffic.listener_arn.as_ref() => bad(
                        "strategy.blueGreen.testListenerArn",
                        "is the production listener".into(),
                        "use a separate test listener (another port) or a test rule",
                    ),
                    _ => {}
                }
                let v = &b.validation;
                let gates = [v.bake.is_some(), v.hook.is_some(), v.approval.is_some()].iter().filter(|g| **g).count();
                if gates != 1 {
                    bad(
                        "strategy.blueGreen.validation",
                        format!("names {gates} gates"),
                        "give exactly one of `bake`, `hook` or `approval`",
                    );
                }
                if let Some(h) = &v.hook {
                    if !is_arn(h, "lambda", ":function:") {
                        bad(
                            "strategy.blueGreen.validation.hook",
                            format!("{h:?} is not a Lambda function ARN"),
                            "give the function's ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)",
                        );
                    }
                }
                if v.bake.is_some_and(|d| d.0 < MIN_TIMED_WAIT) {
                    bad("strategy.blueGreen.validation.bake", "is shorter than 1s".into(), "bake for at least 1s");
                }
                if b.keep_old_for.0 < MIN_TIMED_WAIT || b.keep_old_for.0 > Duration::from_secs(24 * 3600) {
                    bad(
                        "strategy.blueGreen.keepOldFor",
                        format!("{} is outside 1s..24h", b.keep_old_for),
                        "keep the old task set between 1s and 24h",
                    );
                }
            }
        }
        if self.failure_threshold == 0 {
            bad("failureThreshold", "is 0".into(), "use 1 (roll back on the first failed task) or more");
        }
        for (i, alarm) in self.alarms.iter().enumerate() {
            if alarm.trim().is_empty() || alarm.len() > 255 || alarm.starts_with("arn:") {
                bad(&format!("alarms[{i}]"), format!("{alarm:?} is not an alarm name"), "give the CloudWatch alarm's name (not its ARN)");
            }
        }
        if let Some(r) = &self.restart_loop {
            if r.failures < 2 {
                bad(
                    "restartLoop.failures",
                    format!("{} would call every single failure a loop", r.failures),
                    "use 2 or more (3 is a good start)",
                );
            }
            if r.window.0 < Duration::from_secs(60) || r.window.0 > Duration::from_secs(24 * 3600) {
                bad("restartLoop.window", format!("{} is outside 1m..24h", r.window), "use e.g. 10m");
            }
        }
        if let Some(back) = &self.shift_back {
            if back.steps.is_empty() {
                bad(
                    "shiftBack.steps",
                    "is empty".into(),
                    "list the new task set's weights on the way back, e.g. `[50, 20]`, or leave `shiftBack` out",
                );
            }
            for (i, w) in back.steps.iter().enumerate() {
                if !(1..=99).contains(w) {
                    bad(
                        &format!("shiftBack.steps[{i}]"),
                        format!("{w} is not a weight between 1 and 99"),
                        "use weights of the new task set, e.g. `[50, 20]`",
                    );
                }
            }
            if back.steps.windows(2).any(|p| p[0] <= p[1]) {
                bad("shiftBack.steps", format!("{:?} does not go down", back.steps), "list the weights highest first, e.g. `[50, 20]`");
            }
            if back.interval.secs() < 1 || back.interval.secs() > 3600 {
                bad(
                    "shiftBack.interval",
                    format!("{} is not between 1s and 1h", back.interval),
                    "use e.g. `30s`: long enough for stable tasks to warm up",
                );
            }
        }
        if let Some(a) = &self.analysis {
            if a.error_rate_ratio < 1.0 {
                bad(
                    "analysis.errorRateRatio",
                    format!("{} is below 1", a.error_rate_ratio),
                    "use 1 or more (2 allows twice the stable 5xx rate)",
                );
            }
            if !(0.0..=100.0).contains(&a.error_rate_floor_percent) {
                bad("analysis.errorRateFloorPercent", format!("{} is not a percentage", a.error_rate_floor_percent), "use e.g. 0.5");
            }
            if a.latency_p99_ratio.is_some_and(|r| r < 1.0) {
                bad("analysis.latencyP99Ratio", "is below 1".into(), "use 1 or more (1.5 allows 50% slower than stable)");
            }
        }
        if steps.len() > MAX_STEPS {
            bad("strategy.canary.steps", format!("has {} steps", steps.len()), &format!("use at most {MAX_STEPS} steps"));
        }
        let mut previous = 0;
        let mut after_traffic = false;
        for (i, s) in entries.iter().enumerate() {
            let path = format!("strategy.canary.steps[{i}]");
            match (s.weight, &s.approval) {
                (Some(_), Some(_)) => {
                    bad(
                        &path,
                        "is both a traffic step and an approval".into(),
                        "split it: `- {weight: 10, bake: 5m}` then `- approval: {timeout: 1h}`",
                    );
                    continue;
                }
                (None, None) => {
                    bad(&path, "has neither `weight` nor `approval`".into(), "give `weight` and `bake`, or `approval`");
                    continue;
                }
                (None, Some(gate)) => {
                    if s.bake.is_some() {
                        bad(
                            &format!("{path}.bake"),
                            "is set on an approval step".into(),
                            "remove it: an approval step holds the weight before it until someone answers",
                        );
                    }
                    if !after_traffic {
                        bad(
                            &path,
                            if i == 0 { "comes before any traffic step".into() } else { "follows another approval".into() },
                            "put each approval after a traffic step, e.g. after `- {weight: 10, bake: 5m}`; for a gate before any production traffic use `blueGreen` with `validation.approval`",
                        );
                    } else if i + 1 == entries.len() && previous >= 100 {
                        bad(
                            &path,
                            "follows the 100% step, so there is nothing left to approve".into(),
                            "put it before the last step, or make the last step less than 100% (promotion follows it)",
                        );
                    }
                    validate_approval(&format!("{path}.approval"), gate, &mut bad);
                    after_traffic = false;
                    continue;
                }
                (Some(_), None) => after_traffic = true,
            }
            let weight = s.weight.unwrap_or(0);
            if weight == 0 || weight > 100 {
                bad(&format!("{path}.weight"), format!("{weight} is not a percentage from 1 to 100"), "use a weight from 1 to 100");
            } else if weight <= previous {
                bad(
                    &format!("{path}.weight"),
                    format!("{weight} does not increase on the step before ({previous})"),
                    "list weights in increasing order, e.g. 1, 5, 25, 100",
                );
            }
            if weight <= 100 {
                previous = previous.max(weight);
            }
            match s.bake {
                None => {
                    bad(&format!("{path}.bake"), "is missing".into(), "say how long to hold this weight before verifying, e.g. `bake: 5m`")
                }
                Some(bake) if bake.0 > Duration::from_secs(24 * 3600) => bad(
                    &format!("{path}.bake"),
                    format!("{bake} is longer than a day"),
                    "bake for at most 24h per step; add steps for longer observation",
                ),
                Some(bake) if bake.0 < MIN_TIMED_WAIT => bad(
                    &format!("{path}.bake"),
                    format!("{bake} is shorter than 1s"),
                    "bake for at least 1s, e.g. `30s` (Step Functions times the bake out and needs a positive number of seconds)",
                ),
                Some(_) => {}
            }
        }
        if let Strategy::BlueGreen(b) = &self.strategy {
            if let Some(gate) = &b.validation.approval {
                validate_approval("strategy.blueGreen.validation.approval", gate, &mut bad);
            }
        }
        if let Some(slack) = &self.slack {
            if let Some(c) = &slack.channel {
                if !slack_id(c, &['C', 'G']) {
                    bad(
                        "slack.channel",
                        format!("{c:?} is not a Slack channel id"),
                        "give the channel id (e.g. C0123ABCD: channel details → About), not its name",
                    );
                }
            }
            for (i, u) in slack.approvers.iter().enumerate() {
                if !slack_id(u, &['U', 'W']) {
                    bad(
                        &format!("slack.approvers[{i}]"),
                        format!("{u:?} is not a Slack user id"),
                        "give the member id (e.g. U012AB3CD: profile → ⋮ → Copy member ID), not a name or email",
                    );
                }
            }
            for (i, g) in slack.approver_groups.iter().enumerate() {
                if !slack_id(g, &['S']) {
                    bad(
                        &format!("slack.approverGroups[{i}]"),
                        format!("{g:?} is not a Slack user group id"),
                        "give the user group id (e.g. S0614TZR7), not its @handle",
                    );
                }
            }
        }
        if self.stabilization_timeout.0 < Duration::from_secs(10) || self.stabilization_timeout.0 > Duration::from_secs(3600) {
            bad(
                "stabilizationTimeout",
                format!("{} is outside 10s..1h", self.stabilization_timeout),
                "give the new tasks between 10s and 1h to start",
            );
        }
        if self.drain.0 > Duration::from_secs(3600) {
            bad("drain", format!("{} is longer than an hour", self.drain), "drain for at most 1h (the ALB's deregistration delay maximum)");
        }
        problems.extend(crate::schedule::validate(&self.schedules));
        problems
    }
}

fn validate_approval(path: &str, gate: &ApprovalGate, bad: &mut impl FnMut(&str, String, &str)) {
    if gate.timeout.0 < MIN_TIMED_WAIT || gate.timeout.0 > MAX_APPROVAL_WAIT {
        bad(&format!("{path}.timeout"), format!("{} is outside 1s..7 days", gate.timeout), "wait between 1s and 7 days, e.g. `1h`");
    }
}

/// Slack ids are an uppercase prefix letter and uppercase letters or digits (U012AB3CD).
fn slack_id(id: &str, prefixes: &[char]) -> bool {
    id.len() >= 3
        && id.len() <= 32
        && id.starts_with(|c| prefixes.contains(&c))
        && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn is_arn(s: &str, service: &str, marker: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6 && parts[0] == "arn" && parts[2] == service && s.contains(marker)
}

fn valid_repository_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
        && !name.starts_with('/')
        && !name.ends_with('/')
}

/// One thing wrong with a policy: where, what, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.path, self.message, self.fix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {source_name} is invalid:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { source_name: String, problems: Vec<Problem> },
}

impl PolicyError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            PolicyError::Invalid { problems, .. } => problems,
        }
    }
}

/// Parse a policy from YAML or JSON text and validate it. `source_name` (a file name or
/// parameter name) is only used in error messages.
pub fn parse(source_name: &str, text: &str) -> Result<Policy, PolicyError> {
    let invalid = |problems| PolicyError::Invalid { source_name: source_name.to_string(), problems };
    // YAML is a superset of JSON, so one parser reads both.
    let value: serde_json::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        invalid(vec![Problem {
            path: e.location().map(|l| format!("line {}, column {}", l.line(), l.column())).unwrap_or_else(|| "(document)".into()),
            message: format!("is not valid YAML or JSON: {e}"),
            fix: "fix the syntax; `kanaria policy schema` prints the expected shape".into(),
        }])
    })?;
    let policy: Policy = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        invalid(vec![Problem { path: if path == "." { "(document)".into() } else { path }, fix: structural_fix(&inner), message: inner }])
    })?;
    let problems = policy.validate();
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(invalid(problems))
    }
}

fn structural_fix(message: &str) -> String {
    if message.starts_with("unknown field") {
        "remove or correct the field name (names are camelCase; see `kanaria policy schema`)".into()
    } else if message.starts_with("missing field") {
        "add the field (see the policy example in README.md)".into()
    } else if message.contains("unknown variant") {
        "use one of the expected values".into()
    } else {
        "give a value of the expected type (see `kanaria policy schema`)".into()
    }
}

/// The `alarms` a policy document lists, as far as they can be read (also from a document that
/// does not validate), so every problem with them is reported at once.
pub fn listed_alarms(text: &str) -> Vec<String> {
    let value: serde_json::Value = serde_yaml_ng::from_str(text).unwrap_or_default();
    value
        .get("alarms")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The listed alarms CloudWatch does not know (`known`: the names DescribeAlarms returned for
/// them, metric and composite), each a problem at its `alarms[i]` path with what to do.
/// DescribeAlarms answers a name it does not know with nothing at all, not an error, so a
/// misspelt or deleted alarm would otherwise never roll a rollout back.
pub fn unknown_alarms(alarms: &[String], known: &[String], region: &str) -> Vec<Problem> {
    alarms
        .iter()
        .enumerate()
        .filter(|(_, name)| !known.contains(name))
        .map(|(i, name)| {
            // A short prefix finds a misspelt name among the account's alarms.
            let prefix: String = name.chars().take_while(|c| c.is_alphanumeric()).take(8).collect();
            let prefix = if prefix.is_empty() { name.clone() } else { prefix };
            Problem {
                path: format!("alarms[{i}]"),
                message: format!(
                    "no CloudWatch alarm named {name:?} in {region}, metric or composite: CloudWatch ignores names it does not know, \
                     so this alarm would never roll a rollout back"
                ),
                fix: format!(
                    "create the alarm in {region}, correct the name (names are case-sensitive; `aws cloudwatch describe-alarms \
                     --region {region} --alarm-types MetricAlarm CompositeAlarm --alarm-name-prefix {prefix}` lists similar ones) or \
                     remove it from `alarms`; a composite alarm is listed only to callers allowed cloudwatch:DescribeAlarms on \"*\", \
                     so check with such credentials before concluding it is missing"
                ),
            }
        })
        .collect()
}

/// JSON Schema of the policy document, generated from the Rust types (for editors).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Policy)).expect("schema serialises")
}

fn default_stabilization_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

fn default_drain() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_failure_threshold() -> u32 {
    1
}

fn default_min_requests() -> u64 {
    100
}

fn default_error_rate_ratio() -> f64 {
    2.0
}

fn default_error_rate_floor() -> f64 {
    0.5
}

fn default_latency_floor() -> f64 {
    100.0
}

/// A duration written the way people write it: `30s`, `5m`, `1h 30m`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn secs(&self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = humantime::parse_duration(text.trim())
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration ({e}); write e.g. `30s`, `5m` or `1h`")))?;
        if parsed.subsec_nanos() != 0 {
            return Err(serde::de::Error::custom(format!("{text:?} has a fraction of a second; use whole seconds")));
        }
        Ok(HumanDuration(parsed))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn alarms_cloudwatch_does_not_know_are_problems_at_their_paths() {
        let listed = vec!["web-5xx".to_string(), "web-health".to_string(), "web-latncy".to_string()];
        let known = vec!["web-health".to_string(), "web-5xx".to_string()];
        let all = [known.clone(), vec!["web-latncy".to_string()]].concat();
        assert!(unknown_alarms(&listed, &all, "us-east-1").is_empty());
        let problems = unknown_alarms(&listed, &known[..1], "eu-west-1");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["alarms[0]", "alarms[2]"]);
        assert_eq!(
            problems[1].message,
            "no CloudWatch alarm named \"web-latncy\" in eu-west-1, metric or composite: CloudWatch ignores names it does not know, \
             so this alarm would never roll a rollout back"
        );
        let fix = &problems[1].fix;
        assert!(fix.starts_with("create the alarm in eu-west-1, correct the name"), "{fix}");
        assert!(fix.contains("--alarm-types MetricAlarm CompositeAlarm --alarm-name-prefix web"), "{fix}");
        assert!(fix.contains("cloudwatch:DescribeAlarms on \"*\""), "{fix}");
    }

    #[test]
    fn listed_alarms_are_read_from_any_document() {
        assert_eq!(listed_alarms("alarms: [a, b]\nstrategy: nonsense\n"), ["a", "b"]);
        assert_eq!(listed_alarms("{\"alarms\": [\"a\", 7]}"), ["a"]);
        assert!(listed_alarms("alarms: a").is_empty());
        assert!(listed_alarms(": not yaml :").is_empty());
    }

    pub(crate) const EXAMPLE: &str = r#"
service: { cluster: prod, name: web }
container: app
trigger: { repository: team/web, tags: ["v*", "main"] }
traffic:
  listenerArn: arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2
  targetGroups:
    - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/73e2d6bc24d8a067
    - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/2453ed029918f21f
strategy:
  canary:
    steps:
      - { weight: 1, bake: 5m }
      - { weight: 5, bake: 5m }
      - { weight: 25, bake: 10m }
      - { weight: 100, bake: 10m }
"#;

    #[test]
    fn example_policy_parses_with_defaults() {
        let p = parse("example", EXAMPLE).unwrap();
        assert_eq!(p.steps().iter().map(|s| s.weight).collect::<Vec<_>>(), vec![1, 5, 25, 100]);
        assert_eq!(p.steps()[2].bake.secs(), 600);
        assert_eq!(p.drain.secs(), 30);
        assert_eq!(p.stabilization_timeout.secs(), 600);
        assert!(p.matches("team/web", "v1.2.3"));
        assert!(p.matches("team/web", "main"));
        assert!(!p.matches("team/web", "feature-x"));
        assert!(!p.matches("team/api", "v1"));
    }

    #[test]
    fn json_policy_parses_too() {
        let yaml: serde_json::Value = serde_yaml_ng::from_str(EXAMPLE).unwrap();
        let p = parse("json", &yaml.to_string()).unwrap();
        assert_eq!(p.service.key(), "prod/web");
    }

    #[test]
    fn unknown_field_is_reported_with_its_path() {
        let text = EXAMPLE.replace("- { weight: 5, bake: 5m }", "- { wieght: 5, bake: 5m }");
        let err = parse("typo", &text).unwrap_err();
        let p = &err.problems()[0];
        assert_eq!(p.path, "strategy.canary.steps[1].wieght");
        assert!(p.message.contains("wieght"), "{p}");
    }

    #[test]
    fn bad_duration_is_reported_with_its_path() {
        let text = EXAMPLE.replace("{ weight: 25, bake: 10m }", "{ weight: 25, bake: soon }");
        let err = parse("dur", &text).unwrap_err();
        assert_eq!(err.problems()[0].path, "strategy.canary.steps[2].bake");
    }

    #[test]
    fn every_semantic_problem_is_reported() {
        let text = EXAMPLE
            .replace("{ weight: 5, bake: 5m }", "{ weight: 0, bake: 5m }")
            .replace("{ weight: 100, bake: 10m }", "{ weight: 20, bake: 10m }")
            .replace("repository: team/web", "repository: Team/Web")
            .replace("listenerArn: arn:aws:elasticloadbalancing", "listenerArn: nope:aws:elasticloadbalancing");
        let err = parse("many", &text).unwrap_err();
        let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["trigger.repository", "traffic.listenerArn", "strategy.canary.steps[1].weight", "strategy.canary.steps[3].weight"]
        );
        assert!(err.problems().iter().all(|p| !p.fix.is_empty()));
    }

    #[test]
    fn traffic_needs_exactly_one_route_and_two_target_groups() {
        let text =
            EXAMPLE.replace("    - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/2453ed029918f21f\n", "");
        let err = parse("tg", &text).unwrap_err();
        assert_eq!(err.problems()[0].path, "traffic.targetGroups");
    }

    #[test]
    fn linear_expands_to_equal_steps_and_blue_green_to_one_cutover() {
        let linear = EXAMPLE.replace(
            "  canary:\n    steps:\n      - { weight: 1, bake: 5m }\n      - { weight: 5, bake: 5m }\n      - { weight: 25, bake: 10m }\n      - { weight: 100, bake: 10m }\n",
            "  linear: { stepPercent: 30, interval: 2m }\n",
        );
        let p = parse("linear", &linear).unwrap();
        assert_eq!(
            p.steps().iter().map(|s| (s.weight, s.bake.secs())).collect::<Vec<_>>(),
            vec![(30, 120), (60, 120), (90, 120), (100, 120)]
        );

        let bg = EXAMPLE.replace(
            "  canary:\n    steps:\n      - { weight: 1, bake: 5m }\n      - { weight: 5, bake: 5m }\n      - { weight: 25, bake: 10m }\n      - { weight: 100, bake: 10m }\n",
            "  blueGreen:\n    testListenerArn: arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/aaaaaaaaaaaaaaaa\n    validation: { bake: 1m }\n    keepOldFor: 15m\n",
        );
        let p = parse("bg", &bg).unwrap();
        assert_eq!(p.steps().iter().map(|s| (s.weight, s.bake.secs())).collect::<Vec<_>>(), vec![(100, 900)]);
        assert_eq!(p.gate(), Some(Gate::Bake(60)));
        assert!(matches!(p.test_route(), Some(TrafficRoute::Listener(_))));

        let two_gates = bg.replace("validation: { bake: 1m }", "validation: { bake: 1m, hook: nope }");
        let err = parse("bg2", &two_gates).unwrap_err();
        let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, vec!["strategy.blueGreen.validation", "strategy.blueGreen.validation.hook"]);
    }

    const CANARY_STEPS: &str = "  canary:\n    steps:\n      - { weight: 1, bake: 5m }\n      - { weight: 5, bake: 5m }\n      - { weight: 25, bake: 10m }\n      - { weight: 100, bake: 10m }\n";

    fn blue_green(validation: &str, keep_old_for: &str) -> String {
        EXAMPLE.replace(
            CANARY_STEPS,
            &format!("  blueGreen:\n    testListenerArn: arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/aaaaaaaaaaaaaaaa\n    validation: {validation}\n    keepOldFor: {keep_old_for}\n"),
        )
    }

    fn problem_paths(text: &str) -> Vec<String> {
        match parse("policy", text) {
            Ok(_) => Vec::new(),
            Err(err) => err.problems().iter().map(|p| p.path.clone()).collect(),
        }
    }

    #[test]
    fn a_zero_bake_is_rejected_with_its_path() {
        let err = parse("zero", &EXAMPLE.replace("{ weight: 5, bake: 5m }", "{ weight: 5, bake: 0s }")).unwrap_err();
        assert_eq!(err.problems().len(), 1, "{err}");
        let p = &err.problems()[0];
        assert_eq!((p.path.as_str(), p.message.as_str()), ("strategy.canary.steps[1].bake", "0s is shorter than 1s"));
        assert!(p.fix.contains("at least 1s"), "{p}");
    }

    /// Every duration the state machine hands to a `TimeoutSecondsPath` (Bake,
    /// ValidateOnTestRoute, WaitForApproval) must be a positive number of seconds.
    #[test]
    fn every_wait_the_state_machine_times_out_is_at_least_one_second() {
        let approval_step = |timeout: &str| {
            EXAMPLE.replace(
                "      - { weight: 25, bake: 10m }\n",
                &format!("      - {{ weight: 25, bake: 10m }}\n      - approval: {{ timeout: {timeout} }}\n"),
            )
        };
        let linear = |interval: &str| EXAMPLE.replace(CANARY_STEPS, &format!("  linear: {{ stepPercent: 50, interval: {interval} }}\n"));
        let cases: Vec<(String, String, &str)> = vec![
            (
                EXAMPLE.replace("{ weight: 1, bake: 5m }", "{ weight: 1, bake: 0s }"),
                EXAMPLE.replace("{ weight: 1, bake: 5m }", "{ weight: 1, bake: 1s }"),
                "strategy.canary.steps[0].bake",
            ),
            (approval_step("0s"), approval_step("1s"), "strategy.canary.steps[3].approval.timeout"),
            (linear("0s"), linear("1s"), "strategy.linear.interval"),
            (blue_green("{ bake: 1m }", "0s"), blue_green("{ bake: 1m }", "1s"), "strategy.blueGreen.keepOldFor"),
            (blue_green("{ bake: 0s }", "15m"), blue_green("{ bake: 1s }", "15m"), "strategy.blueGreen.validation.bake"),
            (
                blue_green("{ approval: { timeout: 0s } }", "15m"),
                blue_green("{ approval: { timeout: 1s } }", "15m"),
                "strategy.blueGreen.validation.approval.timeout",
            ),
        ];
        for (zero, one, path) in cases {
            assert_eq!(problem_paths(&zero), vec![path.to_string()], "0s at {path}");
            assert_eq!(problem_paths(&one), Vec::<String>::new(), "1s at {path}");
        }
    }

    #[test]
    fn schedule_problems_are_reported_with_their_paths() {
        let good = format!(
            "{EXAMPLE}schedules:\n  - {{ name: peak, cron: \"0 8 ? * MON-FRI *\", timezone: Asia/Tokyo, minCapacity: 4, maxCapacity: 10 }}\n"
        );
        let p = parse("good", &good).unwrap();
        assert_eq!(p.schedules.len(), 1);
        let bad = format!(
            "{EXAMPLE}schedules:\n  - {{ name: peak, cron: \"0 8 * * MON-FRI *\", timezone: Asia/Tokio, minCapacity: 5, maxCapacity: 2 }}\n  - {{ name: peak, cron: \"rate(1 hour)\", timezone: UTC, desiredCount: 1 }}\n"
        );
        let err = parse("bad", &bad).unwrap_err();
        let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["schedules[0].timezone", "schedules[0].cron", "schedules[0].minCapacity", "schedules[1].name", "schedules[1].cron"]
        );
        assert!(err.problems().iter().all(|p| !p.fix.is_empty()));
    }

    #[test]
    fn committed_schema_is_the_generated_one() {
        let committed: serde_json::Value = serde_json::from_str(include_str!("../policies/policy.schema.json")).unwrap();
        assert!(
            committed == json_schema(),
            "policies/policy.schema.json is stale: run `kanaria policy schema > policies/policy.schema.json`"
        );
    }

    #[test]
    fn schema_names_every_top_level_field() {
        let schema = json_schema();
        let props = schema["properties"].as_object().unwrap();
        for f in ["service", "container", "trigger", "traffic", "strategy", "stabilizationTimeout", "drain"] {
            assert!(props.contains_key(f), "schema lacks {f}");
        }
    }
}
