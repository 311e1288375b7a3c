//! Benchmarks on emulated AWS (printed, never asserted):
//! - time to roll back: from the threshold-reaching `ECS Task State Change` (or an alarm's
//!   `CloudWatch Alarm State Change`) reaching its handler to the listener weights read back
//!   at 100% on the stable task set;
//! - cost per rollout: state transitions (from the execution history), Lambda invocations and
//!   their durations, the functions' AWS API calls, for canaries of different bake lengths;
//! - CPU time and DynamoDB writes per event over a stream of ECS Task State Change events;
//! - with [`crate::coldstart`]: cold start, memory and size of the release binaries.
//!
//! [`run`] does all of it and [`Report::markdown`] renders BENCHMARKS.md.

pub mod scale;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use aws_sdk_sfn::types::HistoryEventType;
use kanaria::handlers::Function;
use serde_json::{json, Value};

use crate::coldstart::{
    deployed_ca_bundle, is_reference, sample_event, Binary, Launch, Sections, Size, Start, StreamCpu, HELLO, HELLO_SDK,
};
use crate::fixture::{self, SampleOptions, SampleService};
use crate::{LocalAws, Options};

/// Accounts measured by [`scale::per_event_reads`]: few policies and many.
pub const SCALE_POLICIES: [usize; 2] = [10, 500];

pub struct RollbackTimes {
    pub task_event_ms: Vec<f64>,
    pub alarm_event_ms: Vec<f64>,
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !check().await? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Start a rollout of a new digest and wait until its first step's bake has begun.
async fn rollout_in_bake(local: &LocalAws, sample: &SampleService, n: usize) -> Result<(String, String, String)> {
    let digest = fixture::new_digest(&format!("bench-{n}"));
    let shifts_before = count_shifts(local);
    fixture::put_event(&local.config, &fixture::ecr_push_event(&sample.options.repository, "v2", &digest)).await?;
    local
        .shared
        .wait_for_invocations("the first shift", Duration::from_secs(60), |inv| {
            inv.iter().filter(|i| i.function == Function::RolloutStep && i.input["action"] == "shift" && i.result.is_ok()).count()
                > shifts_before
        })
        .await?;
    let lock = kanaria::aws::store::Store::new(&local.ctx().clients.dynamodb, &local.ctx().settings.table)
        .lock(&sample.policy.service.key())
        .await?
        .context("a rollout is in flight")?;
    // The bake's task token is registered once the Bake state has started.
    let store = kanaria::aws::store::Store::new(&local.ctx().clients.dynamodb, &local.ctx().settings.table);
    let key = sample.policy.service.key();
    wait_until("the bake to begin", Duration::from_secs(30), async || Ok(store.lock(&key).await?.is_some_and(|l| l.bake_token.is_some())))
        .await?;
    Ok((lock.rollout_id, lock.execution_arn.unwrap_or_default(), digest))
}

fn count_shifts(local: &LocalAws) -> usize {
    local
        .shared
        .invocations()
        .iter()
        .filter(|i| i.function == Function::RolloutStep && i.input["action"] == "shift" && i.result.is_ok())
        .count()
}

async fn stable_restored(local: &LocalAws, sample: &SampleService) -> Result<bool> {
    let route = sample.policy.traffic.route().expect("route");
    let weights = kanaria::aws::elb::read_weights(&local.ctx().clients.elb, &route).await?;
    Ok(weights.iter().any(|(tg, w)| tg == &sample.target_groups[0] && *w == 100))
}

/// Time to roll back, `runs` times from a task event and `runs` times from an alarm event.
pub async fn time_to_roll_back(runs: usize) -> Result<RollbackTimes> {
    let local = LocalAws::start(Options::default()).await?;
    let options =
        SampleOptions { steps: vec![(10, 3600)], extra_policy_yaml: "alarms: [bench-alarm]\n".into(), ..SampleOptions::default() };
    let sample = fixture::provision(&local.config, &local.endpoint, local.ctx(), options).await?;
    let cluster_arn = format!("arn:aws:ecs:{}:{}:cluster/{}", crate::REGION, crate::ACCOUNT, sample.options.cluster);
    let mut times = RollbackTimes { task_event_ms: Vec::new(), alarm_event_ms: Vec::new() };
    for n in 0..runs * 2 {
        let (rollout_id, execution, _) = rollout_in_bake(&local, &sample, n).await?;
        let lock = kanaria::aws::store::Store::new(&local.ctx().clients.dynamodb, &local.ctx().settings.table)
            .lock(&sample.policy.service.key())
            .await?
            .context("in flight")?;
        let green = lock.green_task_set_id.context("the new task set is known")?;
        let from_alarm = n % 2 == 1;
        let event = if from_alarm {
            json!({"version": "0", "id": format!("bench-{n}"), "source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change",
                   "account": crate::ACCOUNT, "region": crate::REGION,
                   "detail": {"alarmName": "bench-alarm", "state": {"value": "ALARM", "reason": "benchmark"}}})
        } else {
            json!({"version": "0", "id": format!("bench-{n}"), "source": "aws.ecs", "detail-type": "ECS Task State Change",
                   "account": crate::ACCOUNT, "region": crate::REGION,
                   "detail": {"clusterArn": cluster_arn, "taskArn": format!("arn:aws:ecs:{}:{}:task/{}/bench{n:027}", crate::REGION, crate::ACCOUNT, sample.options.cluster),
                              "group": format!("service:{}", sample.options.service), "startedBy": green, "lastStatus": "STOPPED",
                              "stopCode": "EssentialContainerExited", "stoppedReason": "Essential container in task exited",
                              "containers": [{"name": sample.options.service, "exitCode": 1}], "version": 3}})
        };
        let function = if from_alarm { Function::OnAlarm } else { Function::OnTaskEvent };
        // The event reaches the handler: the clock starts.
        let t0 = Instant::now();
        local.shared.invoke(function, event).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        if !stable_restored(&local, &sample).await? {
            bail!("run {n}: the handler returned but the listener is not back at 100% stable");
        }
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        if from_alarm {
            times.alarm_event_ms.push(ms)
        } else {
            times.task_event_ms.push(ms)
        }
        let status = wait_execution_end(&local, &execution, Duration::from_secs(60)).await?;
        if status != "FAILED" {
            bail!("run {n}: rollout {rollout_id} ended {status}, expected FAILED");
        }
    }
    Ok(times)
}

/// On the strict runtime: how fast a crash of the new tasks puts every client back on healthy
/// stable tasks, and what the simulated clients saw during rollbacks, promotions and a
/// supersede.
#[derive(Debug, Clone, Default)]
pub struct StrictFigures {
    /// First `desiredStatus: STOPPED` event of a crashing new task (emitted by the ECS
    /// simulator) → the production listener read back 100% on the stable target group, which
    /// has a healthy target.
    pub signal_to_healthy_stable_ms: Vec<f64>,
    /// Per scenario: (runs, probe requests, probe errors: 503s from the load balancer and
    /// 5xx from targets).
    pub probe: Vec<(&'static str, usize, usize, usize)>,
    /// Errors inside the crash → restore windows, and the windows' total length.
    pub fault_window_errors: Option<(usize, Duration)>,
}

/// 503s and other load-balancer errors, not the application's own 5xx.
fn load_balancer_errors(s: &crate::probe::Summary) -> usize {
    s.no_healthy_target + s.unhealthy_target + s.no_route
}

async fn stable_serving(local: &LocalAws, sample: &SampleService) -> Result<bool> {
    if !stable_restored(local, sample).await? {
        return Ok(false);
    }
    let health = local.ctx().clients.elb.describe_target_health().target_group_arn(&sample.target_groups[0]).send().await?;
    Ok(health
        .target_health_descriptions()
        .iter()
        .any(|d| d.target_health().and_then(|h| h.state()) == Some(&aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum::Healthy)))
}

/// `runs` canaries whose new tasks crash during the first bake, then a quarter as many (at least
/// 3) that promote and as many pushes superseded by a newer one during their bake, all on the
/// strict runtime with the traffic probe on the production listener.
pub async fn strict_figures(runs: usize) -> Result<StrictFigures> {
    let local = LocalAws::start(Options::default()).await?;
    let options = SampleOptions { steps: vec![(10, 3600)], ..SampleOptions::default() };
    let sample = fixture::provision(&local.config, &local.endpoint, local.ctx(), options).await?;
    let listener = sample.listener_arn.clone();
    let mut figures = StrictFigures::default();

    wait_until("the sample service to serve", Duration::from_secs(60), async || stable_serving(&local, &sample).await).await?;
    // Rollbacks: the crash is the only thing that stops a task, so the first STOPPED event after
    // it is the first failure signal.
    let began = Instant::now();
    let mut fault_windows = Vec::new();
    for n in 0..runs {
        let (rollout_id, execution, digest) = rollout_in_bake(&local, &sample, 1000 + n).await?;
        let crashed = Instant::now();
        local.simulator.crash_images_now(&digest, 1);
        let deadline = crashed + Duration::from_secs(60);
        let restored = loop {
            if stable_serving(&local, &sample).await? {
                break Instant::now();
            }
            if Instant::now() > deadline {
                let route = sample.policy.traffic.route().expect("route");
                let weights = kanaria::aws::elb::read_weights(&local.ctx().clients.elb, &route).await?;
                let health = local.ctx().clients.elb.describe_target_health().target_group_arn(&sample.target_groups[0]).send().await?;
                let stopped: Vec<_> = local.simulator.events_sent().into_iter().filter(|d| d["desiredStatus"] == "STOPPED").collect();
                bail!("run {n}: 60 s after the crash, traffic is not back at 100% on healthy stable tasks: weights {weights:?}, stable health {:?}, {} stop events, last {:?}", health.target_health_descriptions(), stopped.len(), stopped.last());
            }
            // A measurement's resolution, not a synchronisation: the figure is in hundreds of ms.
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let signal = local
            .simulator
            .first_event_since(crashed, |d| d["desiredStatus"] == "STOPPED")
            .context("the crash was never reported by a desiredStatus STOPPED event")?;
        figures.signal_to_healthy_stable_ms.push(restored.saturating_duration_since(signal).as_secs_f64() * 1000.0);
        fault_windows.push((crashed.min(signal), restored));
        let status = wait_execution_end(&local, &execution, Duration::from_secs(120)).await?;
        if status != "FAILED" {
            bail!("run {n}: rollout {rollout_id} ended {status}, expected FAILED (rolled back)");
        }
    }
    // Between the crash and the restore, the canary's share of requests finds a target group
    // without healthy targets: that is the fault itself (an ALB does not fail over between the
    // groups of a weighted forward), counted apart.
    let ended = Instant::now();
    let mut outside = 0;
    let mut inside = 0;
    let mut requests = 0;
    let mut from = began;
    for (start, end) in fault_windows.iter().copied().chain([(ended, ended)]) {
        let before = local.probe.summary(&listener, from, Some(start));
        let during = local.probe.summary(&listener, start, Some(end));
        outside += load_balancer_errors(&before);
        inside += load_balancer_errors(&during);
        requests += before.requests + during.requests;
        from = end;
    }
    figures.probe.push(("rollback (new tasks crash in the first bake), outside the crash → restore window", runs, requests, outside));
    figures.fault_window_errors = Some((inside, fault_windows.iter().map(|(a, b)| b.saturating_duration_since(*a)).sum()));

    drop(local);

    // Promotions and supersedes: short bakes, on a fresh runtime.
    let local = LocalAws::start(Options::default()).await?;
    let options = SampleOptions { steps: vec![(20, 2), (50, 2)], ..SampleOptions::default() };
    let sample = fixture::provision(&local.config, &local.endpoint, local.ctx(), options).await?;
    let listener = sample.listener_arn.clone();
    wait_until("the sample service to serve", Duration::from_secs(60), async || stable_serving(&local, &sample).await).await?;
    // Whole rollouts take tens of seconds each: a quarter as many (at least 3) as the timed crashes.
    let rollouts = (runs / 4).max(3);
    let began = Instant::now();
    for n in 0..rollouts {
        let execution = push_and_start(&local, &sample, &fixture::new_digest(&format!("bench-promote-{n}"))).await?;
        let status = wait_execution_end(&local, &execution, Duration::from_secs(300)).await?;
        if status != "SUCCEEDED" {
            bail!("promote run {n} ended {status}, expected SUCCEEDED");
        }
    }
    let s = local.probe.summary(&listener, began, None);
    figures.probe.push(("promote (20% then 50%, then 100% and the old set drained)", rollouts, s.requests, load_balancer_errors(&s)));

    let began = Instant::now();
    let store = kanaria::aws::store::Store::new(&local.ctx().clients.dynamodb, &local.ctx().settings.table);
    let key = sample.policy.service.key();
    for n in 0..rollouts {
        let older = push_and_start(&local, &sample, &fixture::new_digest(&format!("bench-older-{n}"))).await?;
        wait_until("the older push's first bake", Duration::from_secs(60), async || {
            Ok(store.lock(&key).await?.is_some_and(|l| l.execution_arn.as_deref() == Some(older.as_str()) && l.bake_token.is_some()))
        })
        .await?;
        let newer = push_and_start(&local, &sample, &fixture::new_digest(&format!("bench-newer-{n}"))).await?;
        let status = wait_execution_end(&local, &newer, Duration::from_secs(300)).await?;
        if status != "SUCCEEDED" {
            bail!("supersede run {n}: the newer push ended {status}, expected SUCCEEDED");
        }
        wait_execution_end(&local, &older, Duration::from_secs(60)).await?;
    }
    let s = local.probe.summary(&listener, began, None);
    figures.probe.push(("supersede (a newer push during the first bake, promoted)", rollouts, s.requests, load_balancer_errors(&s)));
    Ok(figures)
}

/// Push `digest` and return the execution on-image-push started for it.
async fn push_and_start(local: &LocalAws, sample: &SampleService, digest: &str) -> Result<String> {
    let handled = |inv: &[crate::Invocation]| inv.iter().filter(|i| i.function == Function::OnImagePush).count();
    let before = handled(&local.shared.invocations());
    fixture::put_event(&local.config, &fixture::ecr_push_event(&sample.options.repository, "v2", digest)).await?;
    local.shared.wait_for_invocations("on-image-push", Duration::from_secs(60), |inv| handled(inv) > before).await?;
    let invocations = local.shared.invocations();
    let out = invocations
        .iter()
        .filter(|i| i.function == Function::OnImagePush)
        .nth(before)
        .and_then(|i| i.result.as_ref().ok())
        .context("on-image-push failed")?;
    out["rollouts"][0]["execution"].as_str().map(str::to_string).with_context(|| format!("no rollout started: {out}"))
}

/// What one rollout cost: its state transitions, the Lambda invocations it caused (every
/// function: rollout-step for each Task state, on-image-push for the push, on-task-event for the
/// tasks it stopped), their durations, and the functions' AWS API calls.
#[derive(Debug, Clone)]
pub struct RolloutCost {
    pub steps: usize,
    pub total_bake_seconds: u64,
    pub transitions: usize,
    /// `CheckNewTasks` entries: readiness polls of the new task set (depends on how long the
    /// new tasks take to start, not on the bake).
    pub readiness_checks: usize,
    pub invocations: Vec<(Function, usize)>,
    /// Sum of the invocations' durations, each rounded up to 1 ms as Lambda bills it.
    pub billed_ms: u64,
    pub api_calls: u64,
    pub dynamodb_writes: u64,
    pub status: String,
}

/// Lambda memory the functions are deployed with (template.yaml), for GB-seconds.
pub const LAMBDA_GB: f64 = 128.0 / 1024.0;
/// List prices (us-east-1): Step Functions Standard per transition, Lambda arm64 per GB-second
/// and per request.
pub const USD_PER_TRANSITION: f64 = 0.025 / 1000.0;
pub const USD_PER_GB_SECOND: f64 = 0.0000133334;
pub const USD_PER_REQUEST: f64 = 0.20 / 1_000_000.0;

impl RolloutCost {
    /// The same rollout had the new tasks taken `start_seconds` to run, derived from this run:
    /// each more readiness check is `WaitForNewTasks`, `CheckNewTasks`, `NewTasksReady` and one
    /// rollout-step invocation, and every check looks again within its invocation for up to
    /// [`kanaria::rollout::READINESS_POLL_WINDOW_SECONDS`] (billed as GB-seconds).
    pub fn with_task_start(&self, start_seconds: u64) -> SlowStart {
        let (window, interval) = (kanaria::rollout::READINESS_POLL_WINDOW_SECONDS, kanaria::rollout::READINESS_POLL_INTERVAL_SECONDS);
        let (mut at, mut checks, mut polled_seconds) = (0, 0u32, 0);
        loop {
            at += kanaria::rollout::readiness_poll_seconds(checks);
            checks += 1;
            let began = at;
            while at < start_seconds && at + interval <= began + window {
                at += interval;
            }
            polled_seconds += at - began;
            if at >= start_seconds {
                break;
            }
        }
        let checks = (checks as usize).max(self.readiness_checks);
        let extra = checks - self.readiness_checks;
        let transitions = self.transitions + 3 * extra;
        // The measured run's own (short) polling is in its durations already: counting the model's
        // whole polling on top errs on the expensive side.
        let usd = self.usd()
            + 3.0 * extra as f64 * USD_PER_TRANSITION
            + extra as f64 * USD_PER_REQUEST
            + LAMBDA_GB * polled_seconds as f64 * USD_PER_GB_SECOND;
        SlowStart { start_seconds, checks, polled_seconds, transitions, usd }
    }

    pub fn lambda_invocations(&self) -> usize {
        self.invocations.iter().map(|(_, n)| n).sum()
    }
    pub fn gb_seconds(&self) -> f64 {
        LAMBDA_GB * self.billed_ms as f64 / 1000.0
    }
    pub fn usd(&self) -> f64 {
        self.transitions as f64 * USD_PER_TRANSITION
            + self.gb_seconds() * USD_PER_GB_SECOND
            + self.lambda_invocations() as f64 * USD_PER_REQUEST
    }
}

/// [`RolloutCost::with_task_start`]: what a rollout costs when its new tasks start slowly.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowStart {
    pub start_seconds: u64,
    /// Readiness checks (`CheckNewTasks` entries).
    pub checks: usize,
    /// Seconds the checks spent looking again within their invocations.
    pub polled_seconds: u64,
    pub transitions: usize,
    pub usd: f64,
}

/// Bake per canary step, seconds, of the two measured cost-per-rollout runs: different enough
/// that anything which grows with the bake would show between them.
pub const BAKES: [u64; 2] = [2, 20];

/// What a rollout costs at a given total bake, as counts (fractional when computed).
#[derive(Debug, Clone, PartialEq)]
pub struct CostAt {
    pub total_bake_seconds: u64,
    pub transitions: f64,
    pub invocations: f64,
    pub billed_ms: f64,
    pub api_calls: f64,
}

impl CostAt {
    fn measured(c: &RolloutCost) -> CostAt {
        CostAt {
            total_bake_seconds: c.total_bake_seconds,
            transitions: c.transitions as f64,
            invocations: c.lambda_invocations() as f64,
            billed_ms: c.billed_ms as f64,
            api_calls: c.api_calls as f64,
        }
    }
    pub fn gb_seconds(&self) -> f64 {
        LAMBDA_GB * self.billed_ms / 1000.0
    }
    pub fn usd(&self) -> f64 {
        self.transitions * USD_PER_TRANSITION + self.gb_seconds() * USD_PER_GB_SECOND + self.invocations * USD_PER_REQUEST
    }
}

/// Cost per rollout as a straight line in the total bake, through two measured runs with
/// different bakes: `count(B) = count(B_short) + slope × (B − B_short)` for transitions,
/// invocations and AWS API calls; the slope is what the runs measured. Billed Lambda time follows
/// the invocations, each billed at the larger of the two runs' mean per invocation: a handler's
/// duration does not depend on the bake, and extrapolating the runs' noise would.
/// Readiness checks depend on how fast the new tasks start, not on the bake, so the longer run
/// is first brought to the shorter run's number of checks (3 transitions and 1 invocation each;
/// see [`RolloutCost::with_task_start`]). Slopes are never taken below zero: a longer bake is not
/// cheaper, and a negative slope is run-to-run noise (the handlers' durations).
#[derive(Debug, Clone)]
pub struct BakeModel {
    pub base: CostAt,
    /// Per second of bake: (transitions, invocations, API calls).
    pub slope: (f64, f64, f64),
    /// Billed ms per invocation (the larger of the two runs' means).
    pub ms_per_invocation: f64,
}

impl BakeModel {
    pub fn fit(short: &RolloutCost, long: &RolloutCost) -> Option<BakeModel> {
        let span = long.total_bake_seconds.checked_sub(short.total_bake_seconds).filter(|s| *s > 0)? as f64;
        let (a, mut b) = (CostAt::measured(short), CostAt::measured(long));
        let extra_checks = long.readiness_checks as f64 - short.readiness_checks as f64;
        b.transitions -= 3.0 * extra_checks;
        b.invocations -= extra_checks;
        let per_second = |x: f64, y: f64| ((y - x) / span).max(0.0);
        let slope =
            (per_second(a.transitions, b.transitions), per_second(a.invocations, b.invocations), per_second(a.api_calls, b.api_calls));
        let ms_per_invocation = (short.billed_ms as f64 / short.lambda_invocations().max(1) as f64)
            .max(long.billed_ms as f64 / long.lambda_invocations().max(1) as f64);
        Some(BakeModel { base: a, slope, ms_per_invocation })
    }

    pub fn at(&self, total_bake_seconds: u64) -> CostAt {
        let d = total_bake_seconds as f64 - self.base.total_bake_seconds as f64;
        let invocations = self.base.invocations + self.slope.1 * d;
        CostAt {
            total_bake_seconds,
            transitions: self.base.transitions + self.slope.0 * d,
            invocations,
            billed_ms: invocations * self.ms_per_invocation,
            api_calls: self.base.api_calls + self.slope.2 * d,
        }
    }
}

/// Run one canary with `steps` to completion and count what it cost.
pub async fn rollout_cost(steps: Vec<(u32, u64)>) -> Result<RolloutCost> {
    use crate::server::FUNCTION_API_CALLS;
    use kanaria::aws::store::WRITE_REQUESTS;
    use std::sync::atomic::Ordering;
    let local = LocalAws::start(Options::default()).await?;
    let total_bake_seconds = steps.iter().map(|(_, b)| b).sum();
    let n = steps.len();
    let sample = fixture::provision(
        &local.config,
        &local.endpoint,
        local.ctx(),
        SampleOptions { steps, drain_seconds: 1, ..SampleOptions::default() },
    )
    .await?;
    // Let the stable tasks come up first, as they would be in a real service.
    let ecs = &local.ctx().clients.ecs;
    wait_until("the stable tasks", Duration::from_secs(30), async || {
        Ok(kanaria::aws::ecs::running_tasks_of(ecs, &sample.options.cluster, &sample.initial_task_set).await?
            >= sample.options.desired_count as u32)
    })
    .await?;
    let invocations_before = local.shared.invocations().len();
    let api_calls_before = FUNCTION_API_CALLS.load(Ordering::Relaxed);
    let writes_before = WRITE_REQUESTS.load(Ordering::Relaxed);
    let digest = fixture::new_digest("transitions");
    fixture::put_event(&local.config, &fixture::ecr_push_event(&sample.options.repository, "v2", &digest)).await?;
    local
        .shared
        .wait_for_invocations("on-image-push", Duration::from_secs(30), |inv| inv.iter().any(|i| i.function == Function::OnImagePush))
        .await?;
    let out = local
        .shared
        .invocations()
        .into_iter()
        .find(|i| i.function == Function::OnImagePush)
        .context("pushed")?
        .result
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let arn = out["rollouts"][0]["execution"].as_str().context("a rollout started")?.to_string();
    let status = wait_execution_end(&local, &arn, Duration::from_secs(total_bake_seconds + 120)).await?;
    // The old task set's tasks stop as it is deleted; their events reach on-task-event just after.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sfn = aws_sdk_sfn::Client::new(&local.config);
    let history = sfn.get_execution_history().execution_arn(&arn).max_results(1000).send().await?;
    let entered = |e: &&aws_sdk_sfn::types::HistoryEvent| {
        matches!(
            e.r#type(),
            HistoryEventType::TaskStateEntered
                | HistoryEventType::WaitStateEntered
                | HistoryEventType::ChoiceStateEntered
                | HistoryEventType::PassStateEntered
                | HistoryEventType::ParallelStateEntered
                | HistoryEventType::MapStateEntered
                | HistoryEventType::SucceedStateEntered
                | HistoryEventType::FailStateEntered
        )
    };
    let transitions = history.events().iter().filter(entered).count();
    let readiness_checks = history
        .events()
        .iter()
        .filter(entered)
        .filter(|e| e.state_entered_event_details().is_some_and(|d| d.name() == "CheckNewTasks"))
        .count();
    let log = local.shared.invocations();
    let log = &log[invocations_before..];
    let invocations =
        Function::ALL.into_iter().map(|f| (f, log.iter().filter(|i| i.function == f).count())).filter(|(_, n)| *n > 0).collect();
    let billed_ms = log.iter().map(|i| (i.duration.as_micros() as u64).div_ceil(1000).max(1)).sum();
    Ok(RolloutCost {
        steps: n,
        total_bake_seconds,
        transitions,
        readiness_checks,
        invocations,
        billed_ms,
        api_calls: FUNCTION_API_CALLS.load(Ordering::Relaxed) - api_calls_before,
        dynamodb_writes: WRITE_REQUESTS.load(Ordering::Relaxed) - writes_before,
        status,
    })
}

async fn wait_execution_end(local: &LocalAws, arn: &str, timeout: Duration) -> Result<String> {
    let sfn = aws_sdk_sfn::Client::new(&local.config);
    let mut status = String::new();
    wait_until("the execution to end", timeout, async || {
        status = sfn.describe_execution().execution_arn(arn).send().await?.status().as_str().to_string();
        Ok(status != "RUNNING")
    })
    .await?;
    Ok(status)
}

#[derive(Debug, Clone)]
pub struct EventStream {
    pub events: usize,
    pub irrelevant: usize,
    pub cpu_ms_per_event: f64,
    pub wall_ms_per_event: f64,
    pub writes_per_event: f64,
    pub writes_for_irrelevant: u64,
}

/// This process's CPU time (user + system), from /proc/self/stat.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// `total` ECS Task State Change events: 90% irrelevant (RUNNING, PENDING, scale-in and
/// deployment stops, exits with code 0) across 10 services, 10% failures (CannotPullContainerError)
/// of 20 tasks delivered many times each, with varying `detail.version`: (irrelevant, event), in
/// stream order.
pub fn mixed_task_events(total: usize) -> Vec<(bool, Value)> {
    let cluster_arn = format!("arn:aws:ecs:{}:{}:cluster/demo", crate::REGION, crate::ACCOUNT);
    let event = |n: usize| {
        let kind = n % 10;
        let service = format!("svc-{}", n % 10);
        let (status, stop_code, reason, exit, task) = match kind {
            0 => (
                "STOPPED",
                "TaskFailedToStart",
                "CannotPullContainerError: pull image manifest has been retried 5 time(s): dial tcp 10.0.0.1:443: i/o timeout",
                None,
                n % 200,
            ),
            1..=3 => ("RUNNING", "", "", None, n),
            4 | 5 => ("PENDING", "", "", None, n),
            6 | 7 => ("STOPPED", "ServiceSchedulerInitiated", "Scaling activity initiated by (deployment ecs-svc/1234)", Some(0), n),
            _ => ("STOPPED", "EssentialContainerExited", "Essential container in task exited", Some(0), n),
        };
        let mut container = json!({"name": "app", "lastStatus": status});
        if let Some(code) = exit {
            container["exitCode"] = code.into();
        }
        let mut detail = json!({"clusterArn": cluster_arn, "taskArn": format!("arn:aws:ecs:{}:{}:task/demo/{task:032x}", crate::REGION, crate::ACCOUNT),
            "taskDefinitionArn": format!("arn:aws:ecs:{}:{}:task-definition/{service}:1", crate::REGION, crate::ACCOUNT),
            "group": format!("service:{service}"), "startedBy": "ecs-svc/1", "lastStatus": status, "containers": [container], "version": 2 + (n % 3) as u64});
        if status == "STOPPED" {
            detail["stopCode"] = stop_code.into();
            detail["stoppedReason"] = reason.into();
        }
        (
            kind != 0,
            json!({"version": "0", "source": "aws.ecs", "detail-type": "ECS Task State Change", "account": crate::ACCOUNT, "region": crate::REGION, "detail": detail}),
        )
    };
    (0..total).map(event).collect()
}

/// `total` ECS Task State Change events ([`mixed_task_events`]) through on-task-event, in this
/// process. Reports CPU time and DynamoDB write requests per event.
pub async fn task_event_stream(total: usize) -> Result<EventStream> {
    use kanaria::aws::store::WRITE_REQUESTS;
    use std::sync::atomic::Ordering;
    let local = LocalAws::start(Options::default()).await?;
    local.ctx().clients.ecs.create_cluster().cluster_name("demo").send().await?;
    // Irrelevant events first, on their own, to show they cost no write.
    let writes_before = WRITE_REQUESTS.load(Ordering::Relaxed);
    let (irrelevant, relevant): (Vec<_>, Vec<_>) = mixed_task_events(total).into_iter().partition(|(irrelevant, _)| *irrelevant);
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    for (_, e) in &irrelevant {
        local.shared.invoke(Function::OnTaskEvent, e.clone()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let writes_for_irrelevant = WRITE_REQUESTS.load(Ordering::Relaxed) - writes_before;
    for (_, e) in &relevant {
        local.shared.invoke(Function::OnTaskEvent, e.clone()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu0;
    let writes = WRITE_REQUESTS.load(Ordering::Relaxed) - writes_before;
    Ok(EventStream {
        events: total,
        irrelevant: irrelevant.len(),
        cpu_ms_per_event: cpu * 1000.0 / total as f64,
        wall_ms_per_event: wall * 1000.0 / total as f64,
        writes_per_event: writes as f64 / total as f64,
        writes_for_irrelevant,
    })
}

// ------------------------------------------------------------------------------------------
// All of it, and BENCHMARKS.md.

/// What `kanaria-local bench` measures, and with how many samples.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Rollbacks timed from each kind of event.
    pub runs: usize,
    /// Cold starts per binary.
    pub starts: usize,
    /// Where the release binaries are (`$CARGO_TARGET_DIR/release`).
    pub release_dir: PathBuf,
    /// Events in the ECS Task State Change stream.
    pub stream_events: usize,
    /// Bake per canary step, seconds, for the two cost-per-rollout runs.
    pub bakes: [u64; 2],
    /// Crashes, promotes and supersedes on the strict runtime ([`strict_figures`]).
    pub strict_runs: usize,
}

#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub arch: String,
    pub rustc: String,
}

impl Machine {
    pub fn this() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string()))
            .unwrap_or_else(|| "unknown CPU".into());
        let memory_kb: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let rustc = std::process::Command::new("rustc")
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "rustc ?".into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_gib: memory_kb / 1024.0 / 1024.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            arch: std::env::consts::ARCH.to_string(),
            rustc,
        }
    }

    /// For the table's machine column.
    pub fn short(&self) -> String {
        format!("{} ×{}, {:.0} GiB", self.arch, self.cores, self.memory_gib)
    }
}

/// Today (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let days = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) / 86_400) as i64;
    // Days since 1970-01-01 → civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

pub struct Report {
    pub date: String,
    pub machine: Machine,
    pub options: BenchOptions,
    pub sizes: Vec<(String, Size)>,
    pub starts: Vec<(Binary, Vec<Start>)>,
    /// `SSL_CERT_FILE` as deployed (template.yaml `Globals`), this machine's equivalent.
    pub ca_bundle: Option<PathBuf>,
    /// Starts of one function with three trust stores, interleaved.
    pub trust_store: Option<TrustStoreStarts>,
    /// Criterion's estimates for `benches/task_event.rs`, when `make bench` ran it.
    pub criterion: Vec<CriterionEstimate>,
    pub stream_cpu: StreamCpu,
    /// The same stream through the hello-world binary: the runtime's own cost per event.
    pub stream_cpu_hello: StreamCpu,
    pub rollback: RollbackTimes,
    pub strict: StrictFigures,
    pub stream: EventStream,
    pub costs: Vec<RolloutCost>,
    /// Reads per push and per failed task with few and many policies ([`scale::per_event_reads`]).
    pub scale: Vec<scale::PerEvent>,
    pub elapsed: Duration,
}

/// Starts of one function (`function`) with the system trust store (no `SSL_CERT_FILE`: the
/// bundle and every file of the certificate directory), as deployed (`SSL_CERT_FILE` = the CA
/// bundle) and with a one-certificate file (the floor: what loading no trust store would cost).
#[derive(Debug, Clone)]
pub struct TrustStoreStarts {
    pub function: String,
    pub system: Vec<Start>,
    pub deployed: Vec<Start>,
    pub one_certificate: Vec<Start>,
}

/// One criterion benchmark's result (`<criterion dir>/<group>/<name>/new/estimates.json`).
#[derive(Debug, Clone)]
pub struct CriterionEstimate {
    pub name: String,
    /// Median time per iteration, and its 95% confidence interval, in nanoseconds.
    pub median_ns: f64,
    pub low_ns: f64,
    pub high_ns: f64,
}

/// Criterion group of `benches/task_event.rs` and its benchmarks, in report order.
pub const CRITERION_GROUP: &str = "on_task_event";
pub const CRITERION_BENCHES: [&str; 3] = ["irrelevant", "failure", "json_decode"];

/// Read criterion's estimates for `benches/task_event.rs` from `dir` (`$CARGO_TARGET_DIR/criterion`).
/// Missing or unreadable results are left out (the report says criterion did not run).
pub fn criterion_estimates(dir: &std::path::Path) -> Vec<CriterionEstimate> {
    CRITERION_BENCHES
        .iter()
        .filter_map(|name| {
            let path = dir.join(CRITERION_GROUP).join(name).join("new/estimates.json");
            let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
            let m = &v["median"];
            Some(CriterionEstimate {
                name: name.to_string(),
                median_ns: m["point_estimate"].as_f64()?,
                low_ns: m["confidence_interval"]["lower_bound"].as_f64()?,
                high_ns: m["confidence_interval"]["upper_bound"].as_f64()?,
            })
        })
        .collect()
}

/// The binaries measured: every kanaria function, then the two references.
pub fn binaries(options: &BenchOptions) -> Result<Vec<Binary>> {
    let root = crate::project_root();
    let mut out = Vec::new();
    for name in Function::ALL.iter().map(|f| f.crate_name()).chain([HELLO, HELLO_SDK]) {
        let path = options.release_dir.join(name);
        if !path.exists() {
            bail!("{} is missing: build the release binaries first (scripts/bench does)", path.display());
        }
        let (event, event_note) = sample_event(&root, name)?;
        out.push(Binary { name: name.to_string(), path, event, event_note });
    }
    Ok(out)
}

/// Measure everything (takes a few minutes), printing progress.
pub async fn run(options: BenchOptions) -> Result<Report> {
    let began = Instant::now();
    let binaries = binaries(&options)?;
    println!("size of {} release binaries …", binaries.len());
    let scratch = std::env::temp_dir();
    let mut sizes = Vec::new();
    for b in &binaries {
        sizes.push((b.name.clone(), crate::coldstart::size(&b.path, &scratch)?));
    }

    println!("cold starts: {} of each binary, interleaved, against a local Runtime API …", options.starts);
    let local = LocalAws::start(Options::default()).await?;
    local.ctx().clients.ecs.create_cluster().cluster_name("demo").send().await?;
    let ca_bundle = deployed_ca_bundle();
    let mut launch = Launch {
        endpoint: local.endpoint.clone(),
        extra_env: vec![
            ("KANARIA_STATE_MACHINE_ARN".into(), local.state_machine_arn.clone()),
            ("KANARIA_ALERT_TOPIC_ARN".into(), format!("arn:aws:sns:{}:{}:kanaria-alerts", crate::REGION, crate::ACCOUNT)),
            // The Slack functions as configured in a deployment, against the local Slack recorder.
            ("KANARIA_SLACK_SECRET_ARN".into(), crate::slack::SECRET_NAME.into()),
            ("KANARIA_SLACK_TEAM_ID".into(), crate::slack::TEAM_ID.into()),
            ("KANARIA_SLACK_APP_ID".into(), crate::slack::APP_ID.into()),
            ("KANARIA_SLACK_CHANNEL".into(), crate::slack::CHANNEL.into()),
            ("KANARIA_SLACK_API_URL".into(), format!("{}/slack/api", local.endpoint)),
        ],
        log: scratch.join(format!("kanaria-bench-functions-{}.log", std::process::id())),
    };
    // As deployed: template.yaml's Globals point SSL_CERT_FILE at the CA bundle.
    let system_store = launch.clone();
    if let Some(bundle) = &ca_bundle {
        launch.extra_env.push(("SSL_CERT_FILE".into(), bundle.display().to_string()));
    }
    let starts = crate::coldstart::cold_starts(&binaries, &launch, options.starts).await?;

    let probe = binaries.iter().find(|b| b.name == "on-alarm").context("on-alarm")?;
    let trust_store = match crate::coldstart::one_certificate_pem(&scratch) {
        Some(pem) => {
            println!(
                "trust store: {} more starts of {} with the system store, SSL_CERT_FILE = the CA bundle, and = one certificate …",
                options.starts, probe.name
            );
            let mut one = system_store.clone();
            one.extra_env.push(("SSL_CERT_FILE".into(), pem.display().to_string()));
            let mut t =
                TrustStoreStarts { function: probe.name.clone(), system: Vec::new(), deployed: Vec::new(), one_certificate: Vec::new() };
            for _ in 0..options.starts {
                t.system.push(crate::coldstart::start_once(probe, &system_store).await?);
                t.deployed.push(crate::coldstart::start_once(probe, &launch).await?);
                t.one_certificate.push(crate::coldstart::start_once(probe, &one).await?);
            }
            let _ = std::fs::remove_file(&pem);
            Some(t)
        }
        None => None,
    };

    println!("CPU per event: {} ECS Task State Change events through the release on-task-event …", options.stream_events);
    let on_task_event = binaries.iter().find(|b| b.name == "on-task-event").context("on-task-event")?;
    let (irrelevant, failures): (Vec<_>, Vec<_>) = mixed_task_events(options.stream_events).into_iter().partition(|(i, _)| *i);
    let phases = vec![
        ("irrelevant".to_string(), irrelevant.into_iter().map(|(_, e)| e).collect::<Vec<_>>()),
        ("failure".to_string(), failures.into_iter().map(|(_, e)| e).collect::<Vec<_>>()),
    ];
    let stream_cpu = crate::coldstart::stream_cpu(on_task_event, &launch, phases.clone()).await?;
    let hello = binaries.iter().find(|b| b.name == HELLO).context("hello-lambda")?;
    let stream_cpu_hello = crate::coldstart::stream_cpu(hello, &launch, phases).await?;
    // The functions' own output, kept only when a start fails (for the error).
    let _ = std::fs::remove_file(&launch.log);
    drop(local);

    println!("time to roll back: {} runs from each kind of event …", options.runs);
    let rollback = time_to_roll_back(options.runs).await?;
    println!(
        "strict runtime: {} crashes timed from the first desiredStatus STOPPED event, {0} promotes and {0} supersedes under the traffic probe …",
        options.strict_runs
    );
    let strict = strict_figures(options.strict_runs).await?;
    println!("DynamoDB writes per event: {} events through on-task-event …", options.stream_events);
    let stream = task_event_stream(options.stream_events).await?;
    let mut costs = Vec::new();
    for bake in options.bakes {
        println!("cost per rollout: a 3-step canary with {bake}s bakes …");
        costs.push(rollout_cost(vec![(10, bake), (50, bake), (100, bake)]).await?);
    }
    let mut per_event = Vec::new();
    for policies in SCALE_POLICIES {
        println!("scale: the reads of a push and of a failed task with {policies} policies …");
        per_event.push(scale::per_event_reads(policies).await?);
    }
    // `cargo bench --bench task_event` (scripts/bench) leaves its results next to the release dir.
    let criterion = options.release_dir.parent().map(|d| criterion_estimates(&d.join("criterion"))).unwrap_or_default();
    Ok(Report {
        date: today(),
        machine: Machine::this(),
        options,
        sizes,
        starts,
        ca_bundle,
        trust_store,
        criterion,
        stream_cpu,
        stream_cpu_hello,
        rollback,
        strict,
        stream,
        costs,
        scale: per_event,
        elapsed: began.elapsed(),
    })
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub figure: String,
    pub target: String,
    pub measured: String,
    pub ratio: String,
    /// None: reported, no target.
    pub met: Option<bool>,
}

fn row(
    figure: impl Into<String>,
    target: impl Into<String>,
    measured: impl Into<String>,
    ratio: impl Into<String>,
    met: Option<bool>,
) -> Row {
    Row { figure: figure.into(), target: target.into(), measured: measured.into(), ratio: ratio.into(), met }
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1_000_000.0)
}

fn mib_kb(kb: f64) -> String {
    format!("{:.1} MiB", kb / 1024.0)
}

impl Report {
    fn samples(&self, name: &str) -> &[Start] {
        self.starts.iter().find(|(b, _)| b.name == name).map(|(_, s)| s.as_slice()).unwrap_or(&[])
    }

    fn med(&self, name: &str, f: impl Fn(&Start) -> f64) -> f64 {
        median(&self.samples(name).iter().map(f).collect::<Vec<_>>())
    }

    /// Cost per rollout against the bake, from the shortest and the longest measured runs.
    pub fn bake_model(&self) -> Option<BakeModel> {
        let short = self.costs.iter().min_by_key(|c| c.total_bake_seconds)?;
        let long = self.costs.iter().max_by_key(|c| c.total_bake_seconds)?;
        BakeModel::fit(short, long)
    }

    pub fn functions(&self) -> Vec<&str> {
        self.starts.iter().map(|(b, _)| b.name.as_str()).filter(|n| !is_reference(n)).collect()
    }

    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let n = self.options.starts;
        let hello_next = self.med(HELLO, |s| s.to_first_next_ms);
        let hello_resp = self.med(HELLO, |s| s.to_first_response_ms);
        let hello_warm = self.med(HELLO, |s| s.warm_invoke_ms);
        let hello_init = self.med(HELLO, |s| s.hwm_init_kb as f64);
        let hello_after = self.med(HELLO, |s| s.hwm_after_event_kb as f64);
        let sdk_next = self.med(HELLO_SDK, |s| s.to_first_next_ms);
        let sdk_resp = self.med(HELLO_SDK, |s| s.to_first_response_ms);
        let sdk_init = self.med(HELLO_SDK, |s| s.hwm_init_kb as f64);
        let sdk_after = self.med(HELLO_SDK, |s| s.hwm_after_event_kb as f64);
        rows.push(row(
            format!("Cold start, hello-world reference: exec → first GET /invocation/next · → first response (median of {n})"),
            "reference",
            format!("{hello_next:.2} ms · {hello_resp:.2} ms"),
            "1×",
            None,
        ));
        rows.push(row(
            format!(
                "Cold start, hello-world + AWS SDK reference (`bench/hello-sdk`: SDK config at init, one DynamoDB call per event): \
                 exec → first GET · → first response (median of {n})"
            ),
            "reference",
            format!("{sdk_next:.2} ms · {sdk_resp:.2} ms"),
            format!("{:.2}× · {:.2}× hello-world", sdk_next / hello_next, sdk_resp / hello_resp),
            None,
        ));
        for f in self.functions() {
            let next = self.med(f, |s| s.to_first_next_ms);
            let resp = self.med(f, |s| s.to_first_response_ms);
            let warm = self.med(f, |s| s.warm_invoke_ms);
            rows.push(row(
                format!("Cold start `{f}`: exec → first GET /invocation/next (median of {n})"),
                "≤ 1.3× hello-world",
                format!("{next:.2} ms (hello {hello_next:.2} ms; hello-sdk {sdk_next:.2} ms: {:.2}×)", next / sdk_next),
                format!("{:.2}×", next / hello_next),
                Some(next / hello_next <= 1.3),
            ));
            rows.push(row(
                format!("Cold start `{f}`: exec → first response posted (median of {n})"),
                "≤ 1.3× hello-world",
                format!(
                    "{resp:.2} ms (hello {hello_resp:.2} ms; hello-sdk {sdk_resp:.2} ms: {:.2}×); without the handler's own work (its warm \
                     duration): {:.2} ms, {:.2}× hello",
                    resp / sdk_resp,
                    resp - warm,
                    (resp - warm) / (hello_resp - hello_warm)
                ),
                format!("{:.2}×", resp / hello_resp),
                Some(resp / hello_resp <= 1.3),
            ));
        }
        for f in self.functions() {
            let first = self.med(f, |s| s.first_invoke_ms);
            let warm = self.med(f, |s| s.warm_invoke_ms);
            let outcome = self.samples(f).first().map(|s| s.outcome.clone()).unwrap_or_default();
            rows.push(row(
                format!("First AWS call `{f}`: first invocation − warm invocation of the same event (median of {n})"),
                "reported",
                format!("{:.2} ms ({first:.2} ms first, {warm:.2} ms warm; {outcome})", first - warm),
                "—",
                None,
            ));
        }
        if let Some(t) = &self.trust_store {
            let f = &t.function;
            let next = |v: &[Start]| median(&v.iter().map(|s| s.to_first_next_ms).collect::<Vec<_>>());
            let (system, deployed, one) = (next(&t.system), next(&t.deployed), next(&t.one_certificate));
            rows.push(row(
                format!(
                    "Config loading: TLS trust store loaded at init, as deployed (`{f}` with SSL_CERT_FILE = the CA bundle − with \
                     SSL_CERT_FILE = one certificate; median of {n} each)"
                ),
                "reported",
                format!("{:.2} ms ({deployed:.2} ms − {one:.2} ms to the first GET)", deployed - one),
                format!("{:.0}% of init", 100.0 * (deployed - one) / deployed),
                None,
            ));
            rows.push(row(
                format!(
                    "Config loading: the system trust store without SSL_CERT_FILE (the bundle and every file of the certificate \
                     directory) − as deployed (`{f}`; median of {n} each)"
                ),
                "reported",
                format!("{:.2} ms ({system:.2} ms − {deployed:.2} ms to the first GET)", system - deployed),
                "—",
                None,
            ));
        }
        rows.push(row(
            "Peak RSS, hello-world reference: after init · after its event",
            "reference",
            format!("{} · {}", mib_kb(hello_init), mib_kb(hello_after)),
            "1×",
            None,
        ));
        rows.push(row(
            "Peak RSS, hello-world + AWS SDK reference (`bench/hello-sdk`): after init · after its event",
            "reference",
            format!("{} · {}", mib_kb(sdk_init), mib_kb(sdk_after)),
            format!("{:.2}× · {:.2}× hello-world", sdk_init / hello_init, sdk_after / hello_after),
            None,
        ));
        for f in self.functions() {
            let init = self.med(f, |s| s.hwm_init_kb as f64);
            let after = self.med(f, |s| s.hwm_after_event_kb as f64);
            rows.push(row(
                format!("Peak RSS `{f}` after init"),
                "≤ 1.5× hello-world",
                format!("{} (hello {}; hello-sdk {}: {:.2}×)", mib_kb(init), mib_kb(hello_init), mib_kb(sdk_init), init / sdk_init),
                format!("{:.2}×", init / hello_init),
                Some(init / hello_init <= 1.5),
            ));
            rows.push(row(
                format!("Peak RSS `{f}` after its sample event"),
                "≤ 1.5× hello-world",
                format!("{} (hello {}; hello-sdk {}: {:.2}×)", mib_kb(after), mib_kb(hello_after), mib_kb(sdk_after), after / sdk_after),
                format!("{:.2}×", after / hello_after),
                Some(after / hello_after <= 1.5),
            ));
        }
        for (name, size) in &self.sizes {
            let limit = 8_000_000.0;
            rows.push(row(
                format!("Size `{name}`: stripped binary · zipped package ({})", self.machine.arch),
                if is_reference(name) { "reference".to_string() } else { "≤ 8 MB stripped".to_string() },
                format!("{} · {}{}", mb(size.stripped_bytes), mb(size.zipped_bytes), if size.is_stripped { "" } else { " (NOT stripped)" }),
                format!("{:.2}× of 8 MB", size.stripped_bytes as f64 / limit),
                (!is_reference(name)).then_some(size.stripped_bytes as f64 <= limit && size.is_stripped),
            ));
        }
        let runs = self.options.runs;
        for (what, v) in [("an ECS Task State Change", &self.rollback.task_event_ms), ("a CloudWatch alarm", &self.rollback.alarm_event_ms)]
        {
            let m = median(v);
            rows.push(row(
                format!("Time to roll back from {what}: event reaches the handler → listener read back 100% stable (median of {runs})"),
                "≤ 2 s",
                format!(
                    "{m:.0} ms (min {:.0}, max {:.0})",
                    v.iter().cloned().fold(f64::MAX, f64::min),
                    v.iter().cloned().fold(f64::MIN, f64::max)
                ),
                format!("{:.3}×", m / 2000.0),
                Some(m <= 2000.0),
            ));
        }
        let v = &self.strict.signal_to_healthy_stable_ms;
        if !v.is_empty() {
            let m = median(v);
            let worst = v.iter().cloned().fold(f64::MIN, f64::max);
            rows.push(row(
                format!(
                    "Time from the first failure signal to healthy stable, strict runtime: a new task crashes in the first bake; ECS's first `desiredStatus: STOPPED` event → production listener read back 100% on the stable target group, which has healthy targets (median · worst of {})",
                    v.len()
                ),
                "≤ 2 s",
                format!("{m:.0} ms · {worst:.0} ms (best {:.0})", v.iter().cloned().fold(f64::MAX, f64::min)),
                format!("{:.3}× · {:.3}×", m / 2000.0, worst / 2000.0),
                Some(worst <= 2000.0),
            ));
        }
        if let Some((errors, window)) = self.strict.fault_window_errors {
            rows.push(row(
                "503s inside the crash → restore windows (the fault itself: the canary's share of requests while its group has no healthy target)",
                "reported",
                format!("{errors} in {:.1} s of windows", window.as_secs_f64()),
                "—",
                None,
            ));
        }
        for (scenario, runs, requests, errors) in &self.strict.probe {
            rows.push(row(
                format!("Load-balancer errors (503) seen by the traffic probe's clients on the production listener, strict runtime: {runs} × {scenario}"),
                "0",
                format!("{errors} of {requests} requests"),
                "—",
                Some(*errors == 0),
            ));
        }
        if let [few, many, ..] = self.scale.as_slice() {
            let (a, b) = (few.policies, many.policies);
            rows.push(row(
                format!("Reads per ECR push to find its policies (policy index: one Query, one GetParameters of the matched), {a} · {b} policies"),
                format!("≤ 2, the same at {b}"),
                format!("{} · {}", few.push, many.push),
                format!(
                    "{:.3}× the reads without the index at {b} ({} · {})",
                    many.push.total() as f64 / many.push_without_index.total().max(1) as f64,
                    few.push_without_index,
                    many.push_without_index
                ),
                Some(few.push.total() <= 2 && many.push == few.push),
            ));
            for (what, f) in [
                ("circuit breaker (on-task-event)", (|p: &scale::PerEvent| p.failed_task_breaker) as fn(&scale::PerEvent) -> scale::Reads),
                ("restart-loop detection (restart-loop)", |p: &scale::PerEvent| p.failed_task_restart_loop),
            ] {
                rows.push(row(
                    format!("Reads per failed task of a service with no rollout, {what}, {a} · {b} policies"),
                    format!("≤ 2, the same at {b}"),
                    format!("{} · {}", f(few), f(many)),
                    "—",
                    Some(f(few).total() <= 2 && f(many) == f(few)),
                ));
            }
        }
        for c in &self.costs {
            rows.push(row(
                format!(
                    "State transitions per rollout: 3-step canary, {} s of bake in all, no failures ({})",
                    c.total_bake_seconds, c.status
                ),
                "≤ 30",
                format!("{} ({} readiness check{})", c.transitions, c.readiness_checks, if c.readiness_checks == 1 { "" } else { "s" }),
                format!("{:.2}×", c.transitions as f64 / 30.0),
                Some(c.transitions <= 30 && c.status == "SUCCEEDED"),
            ));
            rows.push(row(
                format!("Cost per rollout, {} s of bake: transitions + Lambda requests + GB-s", c.total_bake_seconds),
                "≤ $0.001",
                format!(
                    "${:.6} ({} transitions, {} invocations, {:.3} GB-s, {} AWS API calls)",
                    c.usd(),
                    c.transitions,
                    c.lambda_invocations(),
                    c.gb_seconds(),
                    c.api_calls
                ),
                format!("{:.2}×", c.usd() / 0.001),
                Some(c.usd() <= 0.001),
            ));
        }
        if let Some(model) = self.bake_model() {
            for (label, secs) in [("15 min", 900), ("2 h", 7200)] {
                let c = model.at(secs);
                rows.push(row(
                    format!(
                        "Cost per rollout, {label} of bake (3 × {} min): computed from the two measured runs, bake length the only \
                         variable (see notes)",
                        secs / 180
                    ),
                    "≤ 30 transitions, ≤ $0.001",
                    format!(
                        "${:.6} ({:.0} transitions, {:.0} invocations, {:.3} GB-s, {:.0} AWS API calls)",
                        c.usd(),
                        c.transitions,
                        c.invocations,
                        c.gb_seconds(),
                        c.api_calls
                    ),
                    format!("{:.2}× ($) · {:.2}× (transitions)", c.usd() / 0.001, c.transitions / 30.0),
                    Some(c.transitions <= 30.0 && c.usd() <= 0.001),
                ));
            }
        }
        if let Some(c) = self.costs.iter().max_by_key(|c| c.transitions) {
            for slow in SLOW_TASK_STARTS.map(|start| c.with_task_start(start)) {
                rows.push(row(
                    format!(
                        "Cost per rollout if the new tasks take {} s to start, as on Fargate (derived from the runs above: \
                         {} readiness checks instead of {}, {} s of looking within them; see notes)",
                        slow.start_seconds, slow.checks, c.readiness_checks, slow.polled_seconds
                    ),
                    "≤ 30 transitions, ≤ $0.001",
                    format!("{} transitions, ${:.6}", slow.transitions, slow.usd),
                    format!("{:.2}× ($) · {:.2}× (transitions)", slow.usd / 0.001, slow.transitions as f64 / 30.0),
                    Some(slow.transitions <= 30 && slow.usd <= 0.001),
                ));
            }
        }
        for ((name, events, cpu, wall), (_, _, hello_cpu, _)) in self.stream_cpu.phases.iter().zip(&self.stream_cpu_hello.phases) {
            rows.push(row(
                format!(
                    "CPU per ECS Task State Change event, warm release `on-task-event`, {name} events ({events} of a {}-event stream)",
                    self.options.stream_events
                ),
                "reported (hello-world's runtime loop on the same events for reference)",
                format!("{cpu:.3} ms (hello-world {hello_cpu:.3} ms; handler ≈ {:.3} ms; {wall:.3} ms wall)", (cpu - hello_cpu).max(0.0)),
                format!("{:.2}× hello-world", cpu / hello_cpu),
                None,
            ));
        }
        for e in &self.criterion {
            let what = match e.name.as_str() {
                "irrelevant" => "irrelevant events (the whole handler: no AWS call)",
                "failure" => "failure events (up to the first DynamoDB call)",
                _ => "decoding the event's JSON into a serde_json::Value (lambda_runtime's share, before the handler; for scale)",
            };
            rows.push(row(
                format!(
                    "CPU per ECS Task State Change event, the handler's decision (criterion, `benches/task_event.rs`, {}-event mixed \
                     stream), {what}",
                    10_000
                ),
                "reported",
                format!("{:.2} µs (95% CI {:.2}–{:.2} µs)", e.median_ns / 1000.0, e.low_ns / 1000.0, e.high_ns / 1000.0),
                "—",
                None,
            ));
        }
        if self.criterion.is_empty() {
            rows.push(row(
                "CPU per ECS Task State Change event, the handler's decision (criterion, `benches/task_event.rs`)",
                "reported",
                "not run (`cargo bench --bench task_event`; scripts/bench runs it)",
                "—",
                None,
            ));
        }
        rows.push(row(
            format!("DynamoDB write requests per event, {}-event mixed stream ({} irrelevant)", self.stream.events, self.stream.irrelevant),
            "reported",
            format!("{:.3}", self.stream.writes_per_event),
            "—",
            None,
        ));
        rows.push(row(
            format!("DynamoDB write requests for the {} irrelevant events", self.stream.irrelevant),
            "0",
            self.stream.writes_for_irrelevant.to_string(),
            "—",
            Some(self.stream.writes_for_irrelevant == 0),
        ));
        rows
    }

    /// BENCHMARKS.md.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        md.push_str("# Benchmarks\n\n");
        md.push_str(&format!(
            "Generated by `make bench` (`scripts/bench`) on {} in {:.0} s; rerun it to regenerate this file, do not edit it \
             by hand (the notes are generated too, from `local/src/bench.rs`).\n\n",
            self.date,
            self.elapsed.as_secs_f64()
        ));
        md.push_str(&format!(
            "Machine: {}, {} cores, {:.1} GiB, Linux {}, {}; {}. Emulated AWS: moto, in front of it the local runtime (`kanaria-local`).\n\n",
            m.cpu, m.cores, m.memory_gib, m.kernel, m.arch, m.rustc
        ));
        md.push_str("| figure | target | measured | ratio | met | date | machine |\n|---|---|---|---|---|---|---|\n");
        let machine = m.short();
        for r in self.rows() {
            let met = match r.met {
                Some(true) => "✅",
                Some(false) => "❌ see notes",
                None => "—",
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.figure, r.target, r.measured, r.ratio, met, self.date, machine
            ));
        }
        md.push('\n');
        md.push_str(&self.notes());
        md
    }

    /// Plain text for the terminal.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for r in self.rows() {
            let met = match r.met {
                Some(true) => "ok  ",
                Some(false) => "MISS",
                None => "    ",
            };
            out.push_str(&format!("{met} {}\n       target {} · measured {} · ratio {}\n", r.figure, r.target, r.measured, r.ratio));
        }
        out
    }

    fn notes(&self) -> String {
        let mut md = String::new();
        let n = self.options.starts;
        let functions = self.functions();
        let med_over = |f: &dyn Fn(&Start) -> f64| -> (f64, f64) {
            let v: Vec<f64> = functions.iter().map(|name| self.med(name, f)).collect();
            (v.iter().cloned().fold(f64::MAX, f64::min), v.iter().cloned().fold(f64::MIN, f64::max))
        };
        let hello_next = self.med(HELLO, |s| s.to_first_next_ms);
        let hello_init_kb = self.med(HELLO, |s| s.hwm_init_kb as f64);
        let (next_lo, next_hi) = med_over(&|s| s.to_first_next_ms);
        let (rss_lo, rss_hi) = med_over(&|s| s.hwm_init_kb as f64);
        let rss_range = if mib_kb(rss_lo) == mib_kb(rss_hi) { mib_kb(rss_hi) } else { format!("{}–{}", mib_kb(rss_lo), mib_kb(rss_hi)) };
        let size_of = |name: &str| self.sizes.iter().find(|(n, _)| n == name).map(|(_, s)| s.stripped_bytes).unwrap_or(0);
        let function_sizes: Vec<u64> = functions.iter().map(|f| size_of(f)).collect();
        let largest = function_sizes.iter().copied().max().unwrap_or(0);
        let smallest = function_sizes.iter().copied().min().unwrap_or(0);
        let cert_files = std::fs::read_dir("/etc/ssl/certs").map(|d| d.count()).unwrap_or(0);
        let next_of = |v: &[Start]| median(&v.iter().map(|s| s.to_first_next_ms).collect::<Vec<_>>());
        let sdk_next = self.med(HELLO_SDK, |s| s.to_first_next_ms);
        let sdk_init_kb = self.med(HELLO_SDK, |s| s.hwm_init_kb as f64);
        let missed = |prefix: &str| self.rows().iter().any(|r| r.figure.starts_with(prefix) && r.met == Some(false));

        md.push_str("## How the figures are measured\n\n");
        md.push_str(&format!(
            "- **Cold start** (`local/src/coldstart.rs`): each release binary is started the way Lambda starts a \
             `provided.al2023` function — Lambda's environment variables, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128`, \
             static credentials, `AWS_ENDPOINT_URL` at emulated AWS (so the first AWS call is real, over plain HTTP \
             on loopback), and template.yaml's `SSL_CERT_FILE` (here {}) — against a local Runtime API that hands it its sample event twice, records when \
             `GET /2018-06-01/runtime/invocation/next` and the result `POST` arrive, and reads `VmHWM` (peak RSS) \
             from `/proc` at each `GET`. The clock starts just before `exec`. {n} measured starts per binary, the \
             binaries interleaved (one of each in turn) after one unmeasured start each (page cache), the two \
             references in the same run: hello-world (`bench/hello-lambda`: lambda_runtime + tokio, echo), the \
             target's yardstick, and hello-sdk (`bench/hello-sdk`: the same plus the AWS SDK's configuration at \
             init and one DynamoDB call per event), both with the same release profile. Medians. \
             Not included, because there is nothing local to measure them with: Lambda's own sandbox start \
             (≈ 10 ms of the 12.9 ms quoted for hello-world on Lambda) and a real TLS handshake with an AWS \
             endpoint (one or two round trips on the first call).\n",
            self.ca_bundle.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "no CA bundle found, so unset".into())
        ));
        md.push_str(
            "- **First AWS call**: the first invocation's duration minus the second's (same event, same process): \
             connection set-up, credential and endpoint caches, and building the SDK clients the handler uses, \
             which kanaria does on their first use (`kanaria::aws::LazyClient`). The SDK's configuration and TLS \
             client (trust store included) are built at init, in `kanaria::aws::Context::from_env`; the *config \
             loading* rows isolate the trust store's share by starting one function three ways, interleaved: \
             without `SSL_CERT_FILE` (the system store), as deployed, and with a one-certificate file.\n",
        );
        md.push_str(
            "- **Memory**: `VmHWM` of the function's process at the first `GET` (after init) and at the second \
             (after handling the sample event). Lambda's *Max Memory Used* is measured over the whole sandbox, which \
             this does not reproduce.\n",
        );
        md.push_str("- **Sample events** (`coldstart::sample_event`; a function's error result is by design where noted):\n");
        for (b, _) in &self.starts {
            md.push_str(&format!("  - `{}`: {}\n", b.name, b.event_note));
        }
        md.push_str(&format!(
            "- **Size**: the release binaries (`[profile.release]`: opt-level \"s\", fat LTO, one codegen unit, \
             panic = abort, stripped) as built for this machine ({}); the package is the binary zipped as \
             `bootstrap` (deflate), what `sam build`/cargo-lambda upload. `make build-lambdas` builds for arm64, \
             whose sizes are not measured here.\n",
            self.machine.arch
        ));
        md.push_str(
            "- **Time to roll back**: on emulated AWS (moto behind `kanaria-local`) with the sample service in the \
             first canary step's bake, the clock starts when the event is handed to the handler and stops when the \
             listener's weights, read back, are 100% on the stable target group (the handler returns after it has \
             read them back itself). The handlers run in the local runtime's process (a debug build with optimised \
             dependencies), not as the release binaries. moto answers in a few ms; on AWS each of the handful of \
             API calls on this path takes tens of ms.\n",
        );
        md.push_str(
            "- **Reads per event as the account grows** (`bench::scale`): the sample service and N − 1 more \
             policies (each for its own service and repository), stored straight into moto so that, as in an \
             account whose policies predate kanaria, nothing has indexed them. The AWS calls of each function are \
             counted by the local runtime (SSM calls, and DynamoDB GetItem, BatchGetItem, Query and Scan). A push \
             of a repository one policy names, with a tag none of its patterns matches (so no rollout starts and \
             only finding the policies is counted), first before the index is built — kanaria then reads every \
             policy, as every push did before the index: the reference — then after `policy-sync`'s sweep has \
             built it. Then one failed-task event of a service without a rollout, handed to the circuit breaker \
             and to restart-loop detection (the first failure of the service: counting it takes one more write). \
             Without the index the cost grows with the policies (one GetParametersByPath per 10); with it, it does \
             not grow at all.\n",
        );
        md.push_str(
            "- **Time from the first failure signal to healthy stable** (`bench::strict_figures`): the strict \
             runtime end to end — the ECS simulator, EventBridge rules, on-task-event, Step Functions. With the \
             sample service in the first bake (10% on the new task set), the new image's tasks crash \
             (`Simulator::crash_images_now`); the clock starts when the simulator emits the first `ECS Task State \
             Change` with `desiredStatus: STOPPED` (while `lastStatus` is still RUNNING, as ECS does) and stops at \
             the first 5 ms poll that reads the production listener back at 100% on the stable target group and \
             `DescribeTargetHealth` reports a healthy stable target. Local EventBridge delivers in a few ms; on AWS \
             delivery adds typically well under a second.\n\
             - **Load-balancer errors seen by the probe**: the traffic probe (`local/src/probe.rs`) sends a request \
             every ~50 ms through the production listener, following its weights and stickiness, and records a 503 \
             whenever the chosen target group has no healthy target. Counted over all the runs of a scenario: \
             rollbacks (the crash runs above), promotes (two canary steps, then 100% and the old set drained) and \
             supersedes (a newer push during the first bake, promoted).\n",
        );
        md.push_str(&format!(
            "- **Cost per rollout**: a 3-step canary (10% → 50% → 100%) of the sample service run to completion on \
             emulated AWS, twice, with {} s and {} s bakes per step (`bench::BAKES`). Transitions are the states entered in the \
             execution history; invocations are every function invocation the rollout caused (on-image-push, \
             rollout-step for every Task state including `Bake`, on-task-event for the old tasks it stopped); \
             GB-s are 128 MB × the handlers' durations (in-process in the local runtime, against moto), each rounded \
             up to 1 ms as Lambda bills; AWS API calls are \
             the functions' requests counted at the local runtime's front server. Prices: Step Functions Standard \
             $0.025 per 1,000 transitions, Lambda arm64 $0.0000133334 per GB-s and $0.20 per million requests.\n",
            self.options.bakes[0], self.options.bakes[1]
        ));
        if let Some(m) = self.bake_model() {
            let (t, i, api) = m.slope;
            md.push_str(&format!(
                "  **15 minutes and 2 hours of bake are computed, not waited for**, from the two measured runs with the \
                 bake as the only variable: each count is a straight line in the total bake through the two runs \
                 (`bench::BakeModel`), `count(B) = count({} s) + slope × (B − {} s)`, the longer run first brought to \
                 the shorter's number of readiness checks (they depend on the tasks' start, not on the bake), slopes \
                 not taken below zero. Measured slopes per hour of bake: {:.1} transitions, {:.1} invocations, {:.1} \
                 AWS API calls; billed Lambda time follows the invocations, each at the larger of the two runs' mean \
                 ({:.1} ms per invocation: handler durations do not depend on the bake, and the runs' difference is \
                 noise). That they are zero is what the state machine predicts: \
                 `Bake` is a `lambda:invoke.waitForTaskToken` task whose timeout is the bake (`TimeoutSecondsPath`), \
                 one state entered and one short rollout-step invocation whatever its length, and nothing runs while \
                 it waits (Step Functions Standard bills transitions, not waiting time). What does change the count \
                 is how long the new tasks take to start (below).\n",
                m.base.total_bake_seconds,
                m.base.total_bake_seconds,
                t * 3600.0,
                i * 3600.0,
                api * 3600.0,
                m.ms_per_invocation,
            ));
        }
        md.push_str(&format!(
            "- **Event throughput**: {} ECS Task State Change events (`bench::mixed_task_events`: 90% irrelevant — \
             RUNNING, PENDING, scale-in and deployment stops, exits with code 0 — and 10% CannotPullContainerError \
             failures of 20 tasks, each delivered many times) handed one after the other to one warm release \
             `on-task-event` process through the local Runtime API, irrelevant events first; its CPU time per \
             event (all its threads, `/proc/PID/task/*/schedstat`), next to hello-world's on the same stream (the \
             Runtime API client, JSON in and out: what every Lambda function pays). The difference is the \
             handler's own share, SDK calls included. The handler's pure decision — what it does with an event \
             before its first AWS call, all of it for an irrelevant event — is also timed with criterion \
             (`benches/task_event.rs`, run by `make bench` with the release profile; median per event and its 95% \
             confidence interval, the events cycled through the same stream). DynamoDB write requests are counted \
             in the handler (`kanaria::aws::store::WRITE_REQUESTS`) over the same stream run in-process.\n\n",
            self.options.stream_events
        ));

        md.push_str("## Misses: why, and what would fix them\n\n");
        let cold = missed("Cold start");
        let memory = missed("Peak RSS");
        let size = missed("Size");
        if !self.rows().iter().any(|r| r.met == Some(false)) {
            md.push_str("None: every figure with a target meets it.\n\n");
        }
        if cold || memory || size {
            md.push_str(&format!(
                "**Cold start, memory and size** (start {next_lo:.1}–{next_hi:.1} ms to the first GET against \
                 hello-world's {hello_next:.1} ms; {rss_range} of peak RSS after init against {}; {} stripped \
                 against {}).\n\n",
                mib_kb(hello_init_kb),
                if mb(largest) == mb(smallest) { mb(largest) } else { format!("{}–{}", mb(smallest), mb(largest)) },
                mb(size_of(HELLO)),
            ));
            md.push_str(&format!(
                "- *Most of it is the AWS SDK, before any kanaria code.* `bench/hello-sdk` — hello-world plus \
                 `aws_config::load_defaults` at init and one DynamoDB client making one call per event, the same SDK \
                 features and release profile — takes {sdk_next:.1} ms to its first GET ({:.2}× hello-world) and \
                 {} of peak RSS after init ({:.2}×), {} stripped: already over the 1.3× and 1.5× targets on its own. \
                 Against it, kanaria's functions start in {:.2}–{:.2}× and hold {:.2}–{:.2}× the memory. What the SDK \
                 brings: an HTTPS client (hyper 1, rustls 0.23 and aws-lc, whose C code initialises its CPU \
                 feature detection and self-tests at first use), the credential and region provider chains, \
                 SigV4 signing, each service's endpoint rules and operation (de)serialisers, and the trust store, \
                 parsed into memory at init.\n",
                sdk_next / hello_next,
                mib_kb(sdk_init_kb),
                sdk_init_kb / hello_init_kb,
                mb(size_of(HELLO_SDK)),
                next_lo / sdk_next,
                next_hi / sdk_next,
                rss_lo / sdk_init_kb,
                rss_hi / sdk_init_kb,
            ));
            if let Some(t) = &self.trust_store {
                let (system, deployed, one) = (next_of(&t.system), next_of(&t.deployed), next_of(&t.one_certificate));
                md.push_str(&format!(
                    "- *Init*: of `{}`'s {deployed:.1} ms to its first GET as deployed, {:.1} ms is parsing the CA bundle \
                     (`SSL_CERT_FILE`; {one:.1} ms with a one-certificate file, the floor for any trust store). Without \
                     `SSL_CERT_FILE` it is {system:.1} ms here: rustls-native-certs then also reads every file of \
                     the certificate directory ({cert_files} under /etc/ssl/certs on this machine; on Lambda's \
                     provided.al2023 the directory holds the bundle and one other file, so the saving there is \
                     smaller).\n",
                    t.function,
                    deployed - one,
                ));
            }
            md.push_str(
                "- *Memory*: the peak RSS after init is mostly the binary's own pages — the code run at init and \
                 its relocated pointers (`.data.rel.ro` below: every page of it is written by the loader at exec \
                 in a position-independent executable) — plus the parsed trust store and the SDK's configuration \
                 on the heap; it scales with the binary. The sample events add about 1 MiB (buffers, the first \
                 connection, the client built on first use).\n",
            );
            md.push_str(&format!(
                "- *Size*: each binary now links only its own handler and the SDK clients it calls (see below); \
                 what is left is the SDK's shared runtime (≈ {} in hello-sdk, with one client) plus, per function, \
                 its clients' operations and kanaria's code. Where the bytes go (ELF section sizes):\n\n\
                 | binary | stripped | code (`.text`) | read-only data (`.rodata`) | unwind tables (`.eh_frame`…) | \
                 relocated at exec (`.data.rel.ro`, relocations) |\n|---|---|---|---|---|---|\n",
                mb(size_of(HELLO_SDK)),
            ));
            for (name, size) in &self.sizes {
                let s = &size.sections;
                md.push_str(&format!(
                    "| `{name}` | {} | {} | {} | {} | {} ({}) |\n",
                    mb(size.stripped_bytes),
                    mb(s.code),
                    mb(s.read_only),
                    mb(s.unwind),
                    mb(s.relocated),
                    s.relocations
                ));
            }
            // Which binaries hold the time-zone database is read from the binaries themselves.
            let sections_of = |tz: bool| -> Vec<(&str, &Sections)> {
                self.sizes
                    .iter()
                    .filter(|(n, s)| !is_reference(n) && s.sections.has_tz_database == tz)
                    .map(|(n, s)| (n.as_str(), &s.sections))
                    .collect()
            };
            let (with_tz, without_tz) = (sections_of(true), sections_of(false));
            let with = with_tz.iter().map(|(_, s)| s.relocated).min();
            let without = without_tz.iter().map(|(_, s)| s.relocated).max();
            if let (Some(with_min), Some(without_max)) = (with, without) {
                let extra_relocations = with_tz
                    .iter()
                    .map(|(_, s)| s.relocations)
                    .min()
                    .unwrap_or(0)
                    .saturating_sub(without_tz.iter().map(|(_, s)| s.relocations).max().unwrap_or(0));
                md.push_str(&format!(
                    "\nThe binaries that hold the IANA time-zone database ({}; found by its zone names in the \
                     binary) have {} or more of relocated data against at most {} for the others, and at least \
                     {extra_relocations} more relocations to apply at every start. It is chrono-tz's tables, \
                     linked because validating a policy evaluates each schedule's cron in its time zone. Evaluating \
                     schedules in their zones only where schedules are made (policy-sync and `kanaria policy`) would \
                     take about 1 MB of dirty pages and those relocations out of the others; not done, because a \
                     policy with a schedule that can never fire would then still drive rollouts.\n",
                    with_tz.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                    mb(with_min),
                    mb(without_max),
                ));
            }
            md.push_str(&format!(
                "\nWhat would bring the larger binaries to 8 MB, not done: code is most of each binary, and it is \
                 what the function does. `on-alarm`, whose work is the circuit breaker's restore (ECS, ELBv2, \
                 DynamoDB, CloudWatch, Step Functions), is {} already; the larger ones add policy loading, the \
                 restart-loop diagnosis, Slack approvals and progress cards on top of that same restore path. \
                 Moving the restore into a function of its own that the others invoke would shrink them, at the \
                 price of one more hop on the path that must put traffic back within seconds. Smaller levers: \
                 opt-level \"z\" (less inlining: smaller, slower code) and `-C force-unwind-tables=no` (with \
                 `panic = \"abort\"` the unwind tables serve only backtraces; std's own stay). A non-PIE build \
                 (`-C relocation-model=static`) would leave the relocated pages clean and save their share of start \
                 time and memory, at the price of address-space randomisation for the executable, which kanaria \
                 does not give up.\n\n",
                mb(size_of("on-alarm")),
            ));
            md.push_str(
                "What would go further, not done: (a) a trust store of only the roots AWS endpoints chain to (the \
                 Amazon Trust Services roots) built into the SDK's HTTP client, which would bring init to the \
                 one-certificate floor above, at the price of breaking TLS-inspecting proxies and custom endpoints \
                 with other roots; (b) an AWS client smaller than the SDK, which kanaria should not write. Neither \
                 brings a function that calls AWS through the Rust SDK within 1.3× of a hello-world that does not: \
                 hello-sdk itself is not. **The start and memory targets are met only if they are restated against \
                 hello-sdk** (the ratios are in the table); the size target depends on the function (above).\n\n",
            );
        }
        if missed("Time to roll back") {
            md.push_str(
                "**Time to roll back**: over 2 s here means the circuit breaker's path (fence, restore 100% to \
                 stable, read back) is making more calls than it should or is waiting; check the rollback path in \
                 `src/handlers/circuit_breaker.rs`.\n\n",
            );
        }
        if let Some(c) = self.costs.iter().max_by_key(|c| c.transitions) {
            let slow: Vec<SlowStart> = SLOW_TASK_STARTS.map(|start| c.with_task_start(start)).to_vec();
            md.push_str(&format!(
                "**Transitions depend on how long the new tasks take to start, not on the bake.** Here the simulated \
                 tasks run within about two seconds, so the rollout checks readiness {} time(s). Each more check is \
                 three transitions (`WaitForNewTasks`, `CheckNewTasks`, `NewTasksReady`) and one invocation; the \
                 checks are spaced {} s (`kanaria::rollout::readiness_poll_seconds`), and each check looks again \
                 every {} s for up to {} s within its invocation before it hands back to the state machine. {}{}\n\n",
                c.readiness_checks,
                (0..6).map(|i| kanaria::rollout::readiness_poll_seconds(i).to_string()).collect::<Vec<_>>().join(", "),
                kanaria::rollout::READINESS_POLL_INTERVAL_SECONDS,
                kanaria::rollout::READINESS_POLL_WINDOW_SECONDS,
                slow.iter()
                    .map(|s| format!(
                        "A {} s start, common on Fargate, takes {} checks and {} s of looking: **{} transitions, ${:.6}**.",
                        s.start_seconds, s.checks, s.polled_seconds, s.transitions, s.usd
                    ))
                    .collect::<Vec<_>>()
                    .join(" "),
                if slow.iter().any(|s| s.transitions > 30 || s.usd > 0.001) {
                    " That is over target. What would fix it: a longer look within each check (rollout-step's timeout \
                     allows up to about 45 s), or ending the wait on the green tasks' RUNNING events (a callback like \
                     `Bake`) instead of polling."
                } else {
                    " Both within target: polling only in the state machine (the first version, one look per check) \
                     took 6 checks and 39 transitions for a 60 s start."
                }
            ));
        }
        md.push_str("## Changed because of these figures\n\n");
        md.push_str(&self.before_after());
        md.push_str(CHANGES);
        md
    }
}

/// New task sets' start times common on Fargate (image pull, ENI, health checks), for the derived
/// cost of a rollout whose tasks start slowly.
const SLOW_TASK_STARTS: [u64; 2] = [60, 120];

/// The figures before the fixes below: `make bench` on 2026-11-22 on this machine (commit d5c4a66),
/// medians of 25 interleaved starts: hello-world's exec → first GET (ms) and peak RSS after init
/// (MiB), then per function its stripped size (bytes), exec → first GET (ms), peak RSS after init (MiB).
const BEFORE_DATE: &str = "2026-11-22";
const BEFORE_HELLO: (f64, f64) = (1.88, 3.3);
const BEFORE: [(&str, u64, f64, f64); 6] = [
    ("on-image-push", 15_861_120, 8.11, 13.8),
    ("rollout-step", 15_861_120, 8.23, 13.9),
    ("on-task-event", 15_861_120, 8.12, 13.8),
    ("on-alarm", 15_861_120, 8.18, 13.8),
    ("scheduled-scale", 15_861_120, 7.90, 13.8),
    ("policy-sync", 15_861_120, 8.23, 13.7),
];

/// What was changed because of the figures (update with each fix).
const CHANGES: &str = "1. **One handler per binary** (`functions/*/src/main.rs`). Each function's `main` calls its own \
    handler (`kanaria::handlers::on_alarm::handle` and so on) instead of `handlers::lambda(&ctx, Function::X, …)`, whose \
    `match` over every handler made all six binaries the same 15.86 MB program. `Function` and its dispatch stay, for \
    the local runtime.\n\
    2. **Only the clients a function uses, built on first use** (`src/aws/mod.rs`). `Context::from_env` used to build \
    all ten SDK clients at init; `Clients`' fields are now `LazyClient`s that deref to the SDK client and build it from \
    the shared configuration the first time a handler touches it (`ctx.clients.ecs.describe_services()` and \
    `&ctx.clients.dynamodb` read as before). Building is generic over the client type, so a binary no longer links \
    the constructors, endpoint rules and operations of clients its handler never calls.\n\
    3. **No second TLS stack** (`Cargo.toml`). Every `aws-sdk-*` is declared with `default-features = false, \
    features = [\"default-https-client\", \"rt-tokio\"]`, dropping the SDK's legacy connector (hyper 0.14, rustls \
    0.21, *ring*, and with them 29 crates from Cargo.lock); `cargo tree -i rustls@0.21.12` and `cargo tree -i ring` \
    now find nothing in the workspace.\n\
    4. **`SSL_CERT_FILE`** (template.yaml `Globals`) at provided.al2023's CA bundle, so the SDK's trust store is that \
    one file, not the bundle plus the certificate directory.\n\
    5. **The benchmarks**: `bench/hello-sdk`, a second reference that shows what the SDK alone costs; a criterion \
    benchmark of on-task-event's per-event decision (`benches/task_event.rs`); cost per rollout for 15 min and 2 h of \
    bake computed from two measured runs (bakes of 2 s and 20 s per step) with the bake as the only variable; release \
    builds in their own target dir when `KANARIA_BENCH_TARGET_DIR` is set.\n\
    6. **Readiness checks look again within their invocation** (`src/handlers/rollout_step.rs`, \
    `kanaria::rollout::READINESS_POLL_WINDOW_SECONDS`). The cost rows showed that a 60 s task start, common on \
    Fargate, took six state-machine polls and 39 transitions (over the 30 target); a check now looks every 3 s for up \
    to 40 s before it answers \"wait\", so the same start takes two checks and 27 transitions, for about $0.00007 of \
    GB-seconds.\n\n\
    Measured step by step on a prototype of fixes 1, 3 and 4 before they were applied (on-alarm, 2026-11-22, 20 \
    interleaved starts each; hello-world 1.7 ms to the first GET, 3.3 MiB):\n\n\
    | on-alarm | stripped | exec → first GET | peak RSS after init |\n|---|---|---|---|\n\
    | as built | 15.84 MB | 7.55 ms | 14.1 MiB |\n\
    | 1. own handler | 11.72 MB | 6.98 ms | 11.1 MiB |\n\
    | 1 + 3. no legacy connector | 10.02 MB | 6.49 ms | 10.9 MiB |\n\
    | 1 + 3 + 4. `SSL_CERT_FILE` = the CA bundle | 10.02 MB | 4.58 ms | 10.9 MiB |\n";

impl Report {
    /// Before (constants above) → after (this run), per function.
    fn before_after(&self) -> String {
        let hello_next = self.med(HELLO, |s| s.to_first_next_ms);
        let hello_init = self.med(HELLO, |s| s.hwm_init_kb as f64) / 1024.0;
        let mut md = format!(
            "Before ({BEFORE_DATE}, `make bench` before the fixes: hello-world {:.2} ms, {:.1} MiB) → after (this run: hello-world \
             {hello_next:.2} ms, {hello_init:.1} MiB); × is against the same run's hello-world:\n\n\
             | function | stripped | exec → first GET | peak RSS after init |\n|---|---|---|---|\n",
            BEFORE_HELLO.0, BEFORE_HELLO.1
        );
        for (f, bytes, next, rss) in BEFORE {
            let Some(size) = self.sizes.iter().find(|(n, _)| n == f).map(|(_, s)| s.stripped_bytes) else { continue };
            let now_next = self.med(f, |s| s.to_first_next_ms);
            let now_rss = self.med(f, |s| s.hwm_init_kb as f64) / 1024.0;
            md.push_str(&format!(
                "| `{f}` | {} → {} | {next:.2} ms ({:.2}×) → {now_next:.2} ms ({:.2}×) | {rss:.1} MiB ({:.2}×) → {now_rss:.1} MiB ({:.2}×) |\n",
                mb(bytes),
                mb(size),
                next / BEFORE_HELLO.0,
                now_next / hello_next,
                rss / BEFORE_HELLO.1,
                now_rss / hello_init,
            ));
        }
        md.push('\n');
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(transitions: usize, readiness_checks: usize) -> RolloutCost {
        RolloutCost {
            steps: 3,
            total_bake_seconds: 6,
            transitions,
            readiness_checks,
            invocations: vec![(Function::RolloutStep, 14), (Function::OnImagePush, 1)],
            billed_ms: 500,
            api_calls: 100,
            dynamodb_writes: 10,
            status: "SUCCEEDED".into(),
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn a_slower_task_start_costs_three_transitions_and_one_invocation_per_more_check() {
        let c = cost(24, 1);
        // First check at 2 s looks until 41 s (every 3 s, within 40 s); the second, 5 s later at
        // 46 s, sees the tasks running at 61 s: two checks, 39 + 15 s of looking.
        let slow = c.with_task_start(60);
        assert_eq!((slow.checks, slow.polled_seconds, slow.transitions), (2, 54, 27));
        let expected = c.usd() + 3.0 * USD_PER_TRANSITION + USD_PER_REQUEST + LAMBDA_GB * 54.0 * USD_PER_GB_SECOND;
        assert!((slow.usd - expected).abs() < 1e-12);
        // Two minutes: a third check (10 s after the second ends at 85 s) sees them at 122 s.
        let slower = c.with_task_start(120);
        assert_eq!((slower.checks, slower.polled_seconds, slower.transitions), (3, 39 + 39 + 27, 30));
        // Tasks that run by the first check cost what was measured.
        let quick = c.with_task_start(2);
        assert_eq!((quick.checks, quick.polled_seconds, quick.transitions), (1, 0, 24));
        assert!((quick.usd - c.usd()).abs() < 1e-12);
    }

    #[test]
    fn the_bake_model_extrapolates_what_the_runs_measured() {
        let short = cost(24, 1);
        // Same counts at a longer bake: nothing grows with it; 15 min and 2 h cost the same.
        let long = RolloutCost { total_bake_seconds: 60, billed_ms: 480, ..cost(24, 1) };
        let model = BakeModel::fit(&short, &long).expect("two bakes");
        assert_eq!(model.slope, (0.0, 0.0, 0.0));
        assert_eq!(model.ms_per_invocation, 500.0 / 15.0, "the larger mean: shorter handler durations are noise, not a trend");
        let (quarter_hour, two_hours) = (model.at(900), model.at(7200));
        assert_eq!((quarter_hour.transitions, quarter_hour.invocations), (two_hours.transitions, two_hours.invocations));
        assert_eq!((quarter_hour.billed_ms, quarter_hour.api_calls), (two_hours.billed_ms, two_hours.api_calls));
        assert!((model.at(7200).usd() - short.usd()).abs() < 1e-12);
        // One more readiness check in the longer run is the tasks' start, not the bake.
        let slow_start = RolloutCost { total_bake_seconds: 60, readiness_checks: 2, ..cost(27, 1) };
        let slow_start = RolloutCost { invocations: vec![(Function::RolloutStep, 15), (Function::OnImagePush, 1)], ..slow_start };
        assert_eq!(BakeModel::fit(&short, &slow_start).expect("fit").slope.0, 0.0);
        // Something that does grow with the bake is carried to 2 h: 2 transitions per 54 s.
        let growing = RolloutCost { total_bake_seconds: 60, ..cost(26, 1) };
        let at = BakeModel::fit(&short, &growing).expect("fit").at(7200);
        assert!((at.transitions - (24.0 + 2.0 / 54.0 * 7194.0)).abs() < 1e-9);
        assert!(BakeModel::fit(&short, &short).is_none(), "one bake length fits no line");
    }

    #[test]
    fn criterion_estimates_are_read_from_its_json() {
        let dir = std::env::temp_dir().join(format!("kanaria-criterion-test-{}", std::process::id()));
        let bench = dir.join(CRITERION_GROUP).join("irrelevant/new");
        std::fs::create_dir_all(&bench).expect("scratch dir");
        std::fs::write(
            bench.join("estimates.json"),
            r#"{"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":950.0,"upper_bound":1050.0},"point_estimate":1000.0,"standard_error":10.0}}"#,
        )
        .expect("write");
        let estimates = criterion_estimates(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(estimates.len(), 1, "the benchmarks that did not run are left out");
        assert_eq!(
            (estimates[0].name.as_str(), estimates[0].median_ns, estimates[0].low_ns, estimates[0].high_ns),
            ("irrelevant", 1000.0, 950.0, 1050.0)
        );
    }

    #[test]
    fn rollout_cost_in_usd() {
        let c = cost(24, 1);
        assert_eq!(c.lambda_invocations(), 15);
        let expected = 24.0 * 0.025 / 1000.0 + 0.125 * 0.5 * 0.0000133334 + 15.0 * 0.2 / 1e6;
        assert!((c.usd() - expected).abs() < 1e-12);
    }

    #[test]
    fn the_mixed_stream_is_nine_tenths_irrelevant() {
        let events = mixed_task_events(1000);
        assert_eq!(events.len(), 1000);
        assert_eq!(events.iter().filter(|(irrelevant, _)| *irrelevant).count(), 900);
        assert!(events.iter().all(|(_, e)| e["detail-type"] == "ECS Task State Change"));
    }

    #[test]
    fn dates() {
        let d = today();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"));
    }
}
