//! A **traffic probe**: simulated clients sending a request through every ALB listener of
//! emulated AWS every [`INTERVAL`], as production traffic would, so a test or the demo can say
//! "no client saw an error during this rollback".
//!
//! Each request goes where the ALB would send it (ELB docs, "Listeners for your Application Load
//! Balancers", forward actions; "Target group stickiness"):
//! - to a target group chosen by the forward action's weights — except that with target-group
//!   stickiness on, a client holding a cookie for a target group that is still in the action goes
//!   there again, whatever its weight, until the cookie expires (stickiness beats weights);
//! - within the group, to a `healthy` target. With none healthy but some `unhealthy`, the ALB
//!   fails open and sends the request to an unhealthy target (recorded as a 502: they fail
//!   their health checks for a reason); with no registered target in service (none, or only
//!   `initial` or `draining` ones), the client gets a 503.
//!
//! The probe records, per request, the target group and the image that answered, or the error
//! (a target whose image is set to fail a share of requests answers those with a 500). Listener
//! changes reach it through the front server (every `ModifyListener`/`ModifyRule`…), so it follows
//! weights as soon as AWS would.
//!
//! Like the ALB, it publishes what it saw to CloudWatch every second (namespace
//! AWS/ApplicationELB, dimensions LoadBalancer and TargetGroup): `RequestCount`,
//! `HTTPCode_Target_5XX_Count` and `HTTPCode_ELB_5XX_Count`, so canary analysis reads the traffic
//! the probe sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum;
use tokio::sync::watch;
use tracing::debug;

use crate::ecs::model::TargetState;
use crate::ecs::Simulator;

/// Time between two requests on each listener (20 per second).
pub const INTERVAL: Duration = Duration::from_millis(50);
/// Clients per listener: each keeps its own stickiness cookie.
const CLIENTS: usize = 16;

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A healthy target of the task set answered.
    Ok { target_group: String, task_set: String, image: String },
    /// The ALB answered 503: the chosen target group had no target in service.
    NoHealthyTarget { target_group: String },
    /// Every target of the group was unhealthy: the ALB failed open and the target failed.
    UnhealthyTarget { target_group: String },
    /// A healthy target answered with a 5xx (its application failed the request).
    TargetError { target_group: String, task_set: String, image: String },
    /// The listener has no forward action with a target group.
    NoRoute,
}

impl Outcome {
    pub fn is_error(&self) -> bool {
        !matches!(self, Outcome::Ok { .. })
    }

    pub fn target_group(&self) -> Option<&str> {
        match self {
            Outcome::Ok { target_group, .. }
            | Outcome::NoHealthyTarget { target_group }
            | Outcome::UnhealthyTarget { target_group }
            | Outcome::TargetError { target_group, .. } => Some(target_group),
            Outcome::NoRoute => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProbeRequest {
    pub at: Instant,
    pub listener: String,
    pub client: usize,
    pub outcome: Outcome,
}

/// Counts over a window of requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub requests: usize,
    pub ok: usize,
    /// 503s: the ALB had no target in service in the chosen group.
    pub no_healthy_target: usize,
    /// Requests the ALB failed open to an unhealthy target.
    pub unhealthy_target: usize,
    /// Requests a healthy target answered with a 5xx.
    pub target_errors: usize,
    pub no_route: usize,
    /// Requests answered per target group.
    pub by_target_group: BTreeMap<String, usize>,
    /// Requests answered per image.
    pub by_image: BTreeMap<String, usize>,
    /// Errors per target group.
    pub errors_by_target_group: BTreeMap<String, usize>,
}

impl Summary {
    pub fn errors(&self) -> usize {
        self.no_healthy_target + self.unhealthy_target + self.target_errors + self.no_route
    }
}

/// The forward action of a listener as the probe follows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forward {
    /// Target groups and their weights.
    pub groups: Vec<(String, u32)>,
    /// Target-group stickiness duration (AWS seconds), when on.
    pub sticky_seconds: Option<u64>,
}

impl Forward {
    pub fn weight_of(&self, target_group: &str) -> Option<u32> {
        self.groups.iter().find(|(g, _)| g == target_group).map(|(_, w)| *w)
    }
}

/// A listener's forward action as the probe began to follow it: every request sent at or after
/// `at` went by it (until the next change).
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerChange {
    pub at: Instant,
    pub listener: String,
    pub forward: Forward,
}

#[derive(Debug, Default)]
struct ListenerState {
    forward: Forward,
    /// Smooth weighted round robin: each group's running credit.
    credit: HashMap<String, i64>,
    /// Per client: (target group, expires) of its stickiness cookie.
    cookies: Vec<Option<(String, Instant)>>,
    next_client: usize,
    /// Round robin over a group's healthy targets.
    next_target: HashMap<String, usize>,
}

/// One second of one target group's traffic, as the ALB reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Second {
    requests: f64,
    target_5xx: f64,
    elb_5xx: f64,
}

pub struct Probe {
    elb: aws_sdk_elasticloadbalancingv2::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    simulator: Arc<Simulator>,
    listeners: Mutex<BTreeMap<String, ListenerState>>,
    log: Mutex<Vec<ProbeRequest>>,
    /// Requests answered per target, for targets failing a share of requests.
    answered: Mutex<HashMap<String, u64>>,
    /// Traffic not yet published to CloudWatch, by (LoadBalancer, TargetGroup) dimension.
    metrics: Mutex<BTreeMap<(String, String), Second>>,
    /// Every forward action the probe followed, in order.
    changes: Mutex<Vec<ListenerChange>>,
}

impl Probe {
    /// `moto_config`: an SDK config pointing at moto itself.
    pub fn new(moto_config: &SdkConfig, simulator: Arc<Simulator>) -> Self {
        Probe {
            elb: aws_sdk_elasticloadbalancingv2::Client::new(moto_config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(moto_config),
            simulator,
            listeners: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
            answered: Mutex::new(HashMap::new()),
            metrics: Mutex::new(BTreeMap::new()),
            changes: Mutex::new(Vec::new()),
        }
    }

    /// Send requests forever; re-read the listeners whenever the front server reports a change.
    pub async fn run(self: Arc<Self>, mut elb_changes: watch::Receiver<u64>) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stale = true;
        let mut published = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = elb_changes.changed() => {
                    if changed.is_err() { return; }
                    stale = true;
                    continue;
                }
            }
            if stale {
                match self.read_listeners().await {
                    Ok(()) => stale = false,
                    Err(e) => debug!(error = %e, "probe: reading the listeners failed"),
                }
            }
            self.send_requests(Instant::now());
            if published.elapsed() >= Duration::from_secs(1) {
                published = Instant::now();
                if let Err(e) = self.publish_metrics().await {
                    debug!(error = %e, "probe: publishing the ALB metrics failed");
                }
            }
        }
    }

    /// The second's traffic per target group, as the ALB's CloudWatch metrics.
    async fn publish_metrics(&self) -> anyhow::Result<()> {
        use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
        let seconds = std::mem::take(&mut *self.metrics.lock().unwrap());
        let now = aws_sdk_cloudwatch::primitives::DateTime::from(std::time::SystemTime::now());
        for ((lb, tg), second) in seconds {
            let datum = |name: &str, value: f64| {
                MetricDatum::builder()
                    .metric_name(name)
                    .value(value)
                    .unit(StandardUnit::Count)
                    .timestamp(now)
                    .dimensions(Dimension::builder().name("LoadBalancer").value(&lb).build())
                    .dimensions(Dimension::builder().name("TargetGroup").value(&tg).build())
                    .build()
            };
            self.cloudwatch
                .put_metric_data()
                .namespace("AWS/ApplicationELB")
                .metric_data(datum("RequestCount", second.requests))
                .metric_data(datum("HTTPCode_Target_5XX_Count", second.target_5xx))
                .metric_data(datum("HTTPCode_ELB_5XX_Count", second.elb_5xx))
                .send()
                .await?;
        }
        Ok(())
    }

    async fn read_listeners(&self) -> anyhow::Result<()> {
        let mut found = BTreeMap::new();
        let lbs = self.elb.describe_load_balancers().send().await?;
        for lb in lbs.load_balancers() {
            let Some(lb_arn) = lb.load_balancer_arn() else { continue };
            let listeners = self.elb.describe_listeners().load_balancer_arn(lb_arn).send().await?;
            for l in listeners.listeners() {
                let Some(arn) = l.listener_arn() else { continue };
                let forward = l.default_actions().iter().find(|a| a.r#type() == Some(&ActionTypeEnum::Forward));
                let mut f = Forward::default();
                if let Some(a) = forward {
                    match a.forward_config().filter(|c| !c.target_groups().is_empty()) {
                        Some(c) => {
                            f.groups = c
                                .target_groups()
                                .iter()
                                .filter_map(|g| Some((g.target_group_arn()?.to_string(), g.weight().unwrap_or(1).max(0) as u32)))
                                .collect();
                            f.sticky_seconds = c
                                .target_group_stickiness_config()
                                .filter(|s| s.enabled() == Some(true))
                                .map(|s| s.duration_seconds().unwrap_or(3600).max(1) as u64);
                        }
                        None => f.groups = a.target_group_arn().map(|tg| vec![(tg.to_string(), 1)]).unwrap_or_default(),
                    }
                }
                found.insert(arn.to_string(), f);
            }
        }
        let mut listeners = self.listeners.lock().unwrap();
        listeners.retain(|arn, _| found.contains_key(arn));
        let now = Instant::now();
        for (arn, forward) in found {
            let state =
                listeners.entry(arn.clone()).or_insert_with(|| ListenerState { cookies: vec![None; CLIENTS], ..Default::default() });
            if state.forward != forward {
                self.changes.lock().unwrap().push(ListenerChange { at: now, listener: arn, forward: forward.clone() });
                state.forward = forward;
                state.credit.clear();
            }
        }
        Ok(())
    }

    fn send_requests(&self, now: Instant) {
        let model = self.simulator.model.lock().unwrap();
        let time_scale = model.timing.time_scale;
        let mut listeners = self.listeners.lock().unwrap();
        let mut sent = Vec::with_capacity(listeners.len());
        for (arn, state) in listeners.iter_mut() {
            let client = state.next_client;
            state.next_client = (client + 1) % CLIENTS;
            let group = choose_group(state, client, now, time_scale);
            let outcome = match group {
                None => Outcome::NoRoute,
                Some(tg) => {
                    let targets = model.targets_of(&tg);
                    let healthy: Vec<_> = targets.iter().filter(|t| t.state == TargetState::Healthy).collect();
                    let unhealthy_only = healthy.is_empty()
                        && targets.iter().any(|t| t.state == TargetState::Unhealthy)
                        && targets.iter().all(|t| matches!(t.state, TargetState::Unhealthy | TargetState::Draining));
                    if !healthy.is_empty() {
                        let i = state.next_target.entry(tg.clone()).or_default();
                        let target = healthy[*i % healthy.len()];
                        *i += 1;
                        let image = model.image_of_target(target).unwrap_or_default();
                        let task_set = model.task_set_of_target(target).unwrap_or_default();
                        // The application fails `rate` of its requests, spread evenly.
                        let rate = model.error_rate_of_target(target);
                        let mut answered = self.answered.lock().unwrap();
                        let n = answered.entry(target.task_arn.clone()).or_default();
                        *n += 1;
                        let fails = ((*n as f64) * rate).floor() > (((*n - 1) as f64) * rate).floor();
                        if fails {
                            Outcome::TargetError { target_group: tg, task_set, image }
                        } else {
                            Outcome::Ok { image, task_set, target_group: tg }
                        }
                    } else if unhealthy_only {
                        Outcome::UnhealthyTarget { target_group: tg }
                    } else {
                        Outcome::NoHealthyTarget { target_group: tg }
                    }
                }
            };
            sent.push(ProbeRequest { at: now, listener: arn.clone(), client, outcome });
        }
        drop(listeners);
        drop(model);
        let mut metrics = self.metrics.lock().unwrap();
        for r in &sent {
            let Some(tg) = r.outcome.target_group() else { continue };
            let key = (load_balancer_dimension(&r.listener), target_group_dimension(tg));
            let second = metrics.entry(key).or_default();
            second.requests += 1.0;
            match r.outcome {
                Outcome::TargetError { .. } | Outcome::UnhealthyTarget { .. } => second.target_5xx += 1.0,
                Outcome::NoHealthyTarget { .. } => second.elb_5xx += 1.0,
                _ => {}
            }
        }
        drop(metrics);
        self.log.lock().unwrap().extend(sent);
    }

    /// The forward actions of `listener` the probe followed, oldest first (from when it first read
    /// the listener): what a test compares requests with, e.g. "none to the new target group once
    /// the rollback's ModifyListener was followed".
    pub fn listener_changes(&self, listener: &str) -> Vec<ListenerChange> {
        self.changes.lock().unwrap().iter().filter(|c| c.listener == listener).cloned().collect()
    }

    /// Every request sent at or after `since`.
    pub fn requests_since(&self, since: Instant) -> Vec<ProbeRequest> {
        self.log.lock().unwrap().iter().filter(|r| r.at >= since).cloned().collect()
    }

    /// Counts for `listener`'s requests in `[from, to)` (`to`: now when None).
    pub fn summary(&self, listener: &str, from: Instant, to: Option<Instant>) -> Summary {
        let log = self.log.lock().unwrap();
        let mut s = Summary::default();
        for r in log.iter().filter(|r| r.listener == listener && r.at >= from && to.is_none_or(|to| r.at < to)) {
            s.requests += 1;
            match &r.outcome {
                Outcome::Ok { target_group, image, .. } => {
                    s.ok += 1;
                    *s.by_target_group.entry(target_group.clone()).or_default() += 1;
                    *s.by_image.entry(image.clone()).or_default() += 1;
                }
                Outcome::NoHealthyTarget { target_group } => {
                    s.no_healthy_target += 1;
                    *s.errors_by_target_group.entry(target_group.clone()).or_default() += 1;
                }
                Outcome::UnhealthyTarget { target_group } => {
                    s.unhealthy_target += 1;
                    *s.errors_by_target_group.entry(target_group.clone()).or_default() += 1;
                }
                Outcome::TargetError { target_group, .. } => {
                    s.target_errors += 1;
                    *s.errors_by_target_group.entry(target_group.clone()).or_default() += 1;
                }
                Outcome::NoRoute => s.no_route += 1,
            }
        }
        s
    }

    /// The errors `listener`'s clients saw in `[from, to)`, for messages.
    pub fn errors(&self, listener: &str, from: Instant, to: Option<Instant>) -> Vec<ProbeRequest> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|r| r.listener == listener && r.at >= from && to.is_none_or(|to| r.at < to) && r.outcome.is_error())
            .cloned()
            .collect()
    }
}

/// `app/NAME/ID` of `…:listener/app/NAME/ID/LISTENER`: the ALB's `LoadBalancer` dimension.
fn load_balancer_dimension(listener_arn: &str) -> String {
    let path = listener_arn.split_once(":listener/").map(|(_, p)| p).unwrap_or(listener_arn);
    path.splitn(4, '/').take(3).collect::<Vec<_>>().join("/")
}

/// `targetgroup/NAME/ID`: the ALB's `TargetGroup` dimension.
fn target_group_dimension(target_group_arn: &str) -> String {
    target_group_arn.split_once(":targetgroup/").map(|(_, p)| format!("targetgroup/{p}")).unwrap_or_else(|| target_group_arn.to_string())
}

/// The target group a client's request goes to: its sticky group when stickiness is on and the
/// group is still in the action (whatever its weight), else by weight (smooth weighted round
/// robin, so the split over a window is the weights' split).
fn choose_group(state: &mut ListenerState, client: usize, now: Instant, time_scale: f64) -> Option<String> {
    let forward = &state.forward;
    if let Some(seconds) = forward.sticky_seconds {
        if let Some((tg, expires)) = &state.cookies[client] {
            if *expires > now && forward.groups.iter().any(|(g, _)| g == tg) {
                return Some(tg.clone());
            }
        }
        let tg = by_weight(state)?;
        state.cookies[client] = Some((tg.clone(), now + Duration::from_secs_f64(seconds as f64 * time_scale)));
        return Some(tg);
    }
    state.cookies[client] = None;
    by_weight(state)
}

fn by_weight(state: &mut ListenerState) -> Option<String> {
    let total: i64 = state.forward.groups.iter().map(|(_, w)| *w as i64).sum();
    if total == 0 {
        return None;
    }
    let mut best: Option<(String, i64)> = None;
    for (tg, w) in &state.forward.groups {
        let c = state.credit.entry(tg.clone()).or_default();
        *c += *w as i64;
        if best.as_ref().is_none_or(|(_, b)| *c > *b) {
            best = Some((tg.clone(), *c));
        }
    }
    let (tg, _) = best?;
    *state.credit.get_mut(&tg).expect("credited above") -= total;
    Some(tg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(groups: &[(&str, u32)], sticky: Option<u64>) -> ListenerState {
        ListenerState {
            forward: Forward { groups: groups.iter().map(|(g, w)| (g.to_string(), *w)).collect(), sticky_seconds: sticky },
            cookies: vec![None; CLIENTS],
            ..Default::default()
        }
    }

    #[test]
    fn metric_dimensions_are_the_albs() {
        let listener = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web-alb/50dc6c495c0c9188/f2f7dc8efc522ab2";
        assert_eq!(load_balancer_dimension(listener), "app/web-alb/50dc6c495c0c9188");
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/73e2d6bc24d8a067";
        assert_eq!(target_group_dimension(tg), "targetgroup/web-blue/73e2d6bc24d8a067");
        // The same as kanaria's own reading of them.
        assert_eq!(Some(load_balancer_dimension(listener)), kanaria::aws::cloudwatch::load_balancer_dimension(listener));
        assert_eq!(Some(target_group_dimension(tg)), kanaria::aws::cloudwatch::target_group_dimension(tg));
    }

    #[test]
    fn requests_split_by_weight() {
        let mut s = state(&[("blue", 90), ("green", 10)], None);
        let now = Instant::now();
        let picks: Vec<String> = (0..100).map(|i| choose_group(&mut s, i % CLIENTS, now, 0.01).unwrap()).collect();
        assert_eq!(picks.iter().filter(|g| *g == "green").count(), 10);
        let mut zero = state(&[("blue", 100), ("green", 0)], None);
        assert!((0..50).all(|i| choose_group(&mut zero, i % CLIENTS, now, 0.01).unwrap() == "blue"));
        assert_eq!(choose_group(&mut state(&[("blue", 0)], None), 0, now, 0.01), None);
    }

    #[test]
    fn stickiness_beats_weights_until_the_cookie_expires_or_the_group_leaves_the_action() {
        let now = Instant::now();
        let mut s = state(&[("blue", 50), ("green", 50)], Some(3600));
        let first: Vec<String> = (0..CLIENTS).map(|c| choose_group(&mut s, c, now, 0.01).unwrap()).collect();
        let on_green: Vec<usize> = (0..CLIENTS).filter(|c| first[*c] == "green").collect();
        assert!(!on_green.is_empty());
        // Rollback: green's weight goes to 0, stickiness left on: its sticky clients stay on it.
        s.forward.groups = vec![("blue".into(), 100), ("green".into(), 0)];
        s.credit.clear();
        for c in &on_green {
            assert_eq!(choose_group(&mut s, *c, now, 0.01).unwrap(), "green", "stickiness beats weights");
        }
        // ...until the cookie expires (3600 s × 0.01 = 36 s).
        let later = now + Duration::from_secs(37);
        assert_eq!(choose_group(&mut s, on_green[0], later, 0.01).unwrap(), "blue");
        // Removing the group from the action (or turning stickiness off) ends it at once.
        s.forward.groups = vec![("blue".into(), 100)];
        assert!(on_green.iter().all(|c| choose_group(&mut s, *c, now, 0.01).unwrap() == "blue"));
        let mut off = state(&[("blue", 100), ("green", 0)], None);
        off.cookies[0] = Some(("green".into(), now + Duration::from_secs(3600)));
        assert_eq!(choose_group(&mut off, 0, now, 0.01).unwrap(), "blue");
    }
}
