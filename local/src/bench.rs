//! Benchmarks on emulated AWS (printed, never asserted):
//! - time to roll back: from the threshold-reaching `ECS Task State Change` (or an alarm's
//!   `CloudWatch Alarm State Change`) reaching its handler to the listener weights read back
//!   at 100% on the stable task set;
//! - state transitions per rollout, counted from the execution history, for canaries of
//!   different bake lengths.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use aws_sdk_sfn::types::HistoryEventType;
use kanaria::handlers::Function;
use serde_json::json;

use crate::fixture::{self, SampleOptions, SampleService};
use crate::{LocalAws, Options};

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
async fn rollout_in_bake(local: &LocalAws, sample: &SampleService, n: usize) -> Result<(String, String)> {
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
    Ok((lock.rollout_id, lock.execution_arn.unwrap_or_default()))
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
        let (rollout_id, execution) = rollout_in_bake(&local, &sample, n).await?;
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

#[derive(Debug, Clone)]
pub struct TransitionCount {
    pub steps: usize,
    pub total_bake_seconds: u64,
    pub transitions: usize,
    pub rollout_step_invocations: usize,
    pub status: String,
}

/// Run one canary with `steps` to completion and count its state transitions (state entries in
/// the execution history) and rollout-step invocations.
pub async fn transitions_per_rollout(steps: Vec<(u32, u64)>) -> Result<TransitionCount> {
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
    let sfn = aws_sdk_sfn::Client::new(&local.config);
    let history = sfn.get_execution_history().execution_arn(&arn).max_results(1000).send().await?;
    let transitions = history
        .events()
        .iter()
        .filter(|e| {
            matches!(
                e.r#type(),
                HistoryEventType::TaskStateEntered
                    | HistoryEventType::WaitStateEntered
                    | HistoryEventType::ChoiceStateEntered
                    | HistoryEventType::PassStateEntered
                    | HistoryEventType::SucceedStateEntered
                    | HistoryEventType::FailStateEntered
            )
        })
        .count();
    let rollout_step_invocations = local.shared.invocations().iter().filter(|i| i.function == Function::RolloutStep).count();
    Ok(TransitionCount { steps: n, total_bake_seconds, transitions, rollout_step_invocations, status })
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

/// `total` ECS Task State Change events through on-task-event, most of them irrelevant
/// (RUNNING, PENDING, scale-in, deployments), the rest failures of 200 tasks of 10 services
/// delivered several times each. Reports CPU time and DynamoDB write requests per event.
pub async fn task_event_stream(total: usize) -> Result<EventStream> {
    use kanaria::aws::store::WRITE_REQUESTS;
    use std::sync::atomic::Ordering;
    let local = LocalAws::start(Options::default()).await?;
    local.ctx().clients.ecs.create_cluster().cluster_name("demo").send().await?;
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
    // Irrelevant events first, on their own, to show they cost no write.
    let writes_before = WRITE_REQUESTS.load(Ordering::Relaxed);
    let (irrelevant, relevant): (Vec<_>, Vec<_>) = (0..total).map(event).partition(|(irrelevant, _)| *irrelevant);
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
