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

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use aws_sdk_sfn::types::HistoryEventType;
use kanaria::handlers::Function;
use serde_json::{json, Value};

use crate::coldstart::{sample_event, Binary, Launch, Size, Start, StreamCpu, HELLO};
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
    /// The same rollout had the new tasks taken `start_seconds` to run: readiness checks, transitions
    /// and USD, derived from this run (each more check: `WaitForNewTasks`, `CheckNewTasks`,
    /// `NewTasksReady` and one rollout-step invocation).
    pub fn with_task_start(&self, start_seconds: u64) -> (usize, usize, f64) {
        let mut waited = 0;
        let mut checks = 0u32;
        while waited < start_seconds {
            waited += kanaria::rollout::readiness_poll_seconds(checks);
            checks += 1;
        }
        let checks = (checks as usize).max(1);
        let extra = checks.saturating_sub(self.readiness_checks);
        (checks, self.transitions + 3 * extra, self.usd() + 3.0 * extra as f64 * USD_PER_TRANSITION + extra as f64 * USD_PER_REQUEST)
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
    /// Starts of one function with a one-certificate trust store (`SSL_CERT_FILE`), interleaved
    /// with starts of the same function as deployed: (function, as deployed, one certificate).
    pub trust_store: Option<(String, Vec<Start>, Vec<Start>)>,
    pub stream_cpu: StreamCpu,
    /// The same stream through the hello-world binary: the runtime's own cost per event.
    pub stream_cpu_hello: StreamCpu,
    pub rollback: RollbackTimes,
    pub stream: EventStream,
    pub costs: Vec<RolloutCost>,
    pub elapsed: Duration,
}

/// The binaries measured: every kanaria function, then the hello-world reference.
pub fn binaries(options: &BenchOptions) -> Result<Vec<Binary>> {
    let root = crate::project_root();
    let mut out = Vec::new();
    for name in Function::ALL.iter().map(|f| f.crate_name()).chain([HELLO]) {
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
    let launch = Launch {
        endpoint: local.endpoint.clone(),
        extra_env: vec![
            ("KANARIA_STATE_MACHINE_ARN".into(), local.state_machine_arn.clone()),
            ("KANARIA_ALERT_TOPIC_ARN".into(), format!("arn:aws:sns:{}:{}:kanaria-alerts", crate::REGION, crate::ACCOUNT)),
        ],
        log: scratch.join(format!("kanaria-bench-functions-{}.log", std::process::id())),
    };
    let starts = crate::coldstart::cold_starts(&binaries, &launch, options.starts).await?;

    let probe = binaries.iter().find(|b| b.name == "on-alarm").context("on-alarm")?;
    let trust_store = match crate::coldstart::one_certificate_pem(&scratch) {
        Some(pem) => {
            println!("trust store: {} more starts of {} with and without SSL_CERT_FILE = one certificate …", options.starts, probe.name);
            let mut one = launch.clone();
            one.extra_env.push(("SSL_CERT_FILE".into(), pem.display().to_string()));
            let (mut deployed, mut reduced) = (Vec::new(), Vec::new());
            for _ in 0..options.starts {
                deployed.push(crate::coldstart::start_once(probe, &launch).await?);
                reduced.push(crate::coldstart::start_once(probe, &one).await?);
            }
            let _ = std::fs::remove_file(&pem);
            Some((probe.name.clone(), deployed, reduced))
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
    println!("DynamoDB writes per event: {} events through on-task-event …", options.stream_events);
    let stream = task_event_stream(options.stream_events).await?;
    let mut costs = Vec::new();
    for bake in options.bakes {
        println!("cost per rollout: a 3-step canary with {bake}s bakes …");
        costs.push(rollout_cost(vec![(10, bake), (50, bake), (100, bake)]).await?);
    }
    Ok(Report {
        date: today(),
        machine: Machine::this(),
        options,
        sizes,
        starts,
        trust_store,
        stream_cpu,
        stream_cpu_hello,
        rollback,
        stream,
        costs,
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

    pub fn functions(&self) -> Vec<&str> {
        self.starts.iter().map(|(b, _)| b.name.as_str()).filter(|n| *n != HELLO).collect()
    }

    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let n = self.options.starts;
        let hello_next = self.med(HELLO, |s| s.to_first_next_ms);
        let hello_resp = self.med(HELLO, |s| s.to_first_response_ms);
        let hello_warm = self.med(HELLO, |s| s.warm_invoke_ms);
        let hello_init = self.med(HELLO, |s| s.hwm_init_kb as f64);
        let hello_after = self.med(HELLO, |s| s.hwm_after_event_kb as f64);
        rows.push(row(
            format!("Cold start, hello-world reference: exec → first GET /invocation/next · → first response (median of {n})"),
            "reference",
            format!("{hello_next:.2} ms · {hello_resp:.2} ms"),
            "1×",
            None,
        ));
        for f in self.functions() {
            let next = self.med(f, |s| s.to_first_next_ms);
            let resp = self.med(f, |s| s.to_first_response_ms);
            let warm = self.med(f, |s| s.warm_invoke_ms);
            rows.push(row(
                format!("Cold start `{f}`: exec → first GET /invocation/next (median of {n})"),
                "≤ 1.3× hello-world",
                format!("{next:.2} ms (hello {hello_next:.2} ms)"),
                format!("{:.2}×", next / hello_next),
                Some(next / hello_next <= 1.3),
            ));
            rows.push(row(
                format!("Cold start `{f}`: exec → first response posted (median of {n})"),
                "≤ 1.3× hello-world",
                format!(
                    "{resp:.2} ms (hello {hello_resp:.2} ms); without the handler's own work (its warm duration): {:.2} ms, {:.2}×",
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
        if let Some((f, deployed, reduced)) = &self.trust_store {
            let d = median(&deployed.iter().map(|s| s.to_first_next_ms).collect::<Vec<_>>());
            let r = median(&reduced.iter().map(|s| s.to_first_next_ms).collect::<Vec<_>>());
            rows.push(row(
                format!("Config loading: system TLS trust store loaded at init (`{f}` started as deployed − with SSL_CERT_FILE = one certificate; median of {n} each)"),
                "reported",
                format!("{:.2} ms ({d:.2} ms − {r:.2} ms to the first GET)", d - r),
                format!("{:.0}% of init", 100.0 * (d - r) / d),
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
        for f in self.functions() {
            let init = self.med(f, |s| s.hwm_init_kb as f64);
            let after = self.med(f, |s| s.hwm_after_event_kb as f64);
            rows.push(row(
                format!("Peak RSS `{f}` after init"),
                "≤ 1.5× hello-world",
                format!("{} (hello {})", mib_kb(init), mib_kb(hello_init)),
                format!("{:.2}×", init / hello_init),
                Some(init / hello_init <= 1.5),
            ));
            rows.push(row(
                format!("Peak RSS `{f}` after its sample event"),
                "≤ 1.5× hello-world",
                format!("{} (hello {})", mib_kb(after), mib_kb(hello_after)),
                format!("{:.2}×", after / hello_after),
                Some(after / hello_after <= 1.5),
            ));
        }
        for (name, size) in &self.sizes {
            let limit = 8_000_000.0;
            rows.push(row(
                format!("Size `{name}`: stripped binary · zipped package ({})", self.machine.arch),
                if name == HELLO { "reference".to_string() } else { "≤ 8 MB stripped".to_string() },
                format!("{} · {}{}", mb(size.stripped_bytes), mb(size.zipped_bytes), if size.is_stripped { "" } else { " (NOT stripped)" }),
                format!("{:.2}× of 8 MB", size.stripped_bytes as f64 / limit),
                (name != HELLO).then_some(size.stripped_bytes as f64 <= limit && size.is_stripped),
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
        if let (Some(a), Some(b)) = (self.costs.first(), self.costs.last()) {
            let same = a.transitions == b.transitions && a.lambda_invocations() == b.lambda_invocations();
            let worst = if a.usd() > b.usd() { a } else { b };
            for (label, secs) in [("15 min", 900), ("2 h", 7200)] {
                rows.push(row(
                    format!("Cost per rollout, {label} of bake (3 × {} min; from the two runs above, see notes)", secs / 180),
                    "≤ 30 transitions, ≤ $0.001",
                    if same {
                        format!("{} transitions, ${:.6}", worst.transitions, worst.usd())
                    } else {
                        format!("depends on bake: {} vs {} transitions", a.transitions, b.transitions)
                    },
                    format!("{:.2}×", worst.usd() / 0.001),
                    Some(same && worst.transitions <= 30 && worst.usd() <= 0.001),
                ));
            }
        }
        if let Some(c) = self.costs.iter().max_by_key(|c| c.transitions) {
            let (checks, transitions, usd) = c.with_task_start(SLOW_TASK_START);
            rows.push(row(
                format!(
                    "Cost per rollout if the new tasks take {SLOW_TASK_START} s to start, as on Fargate (derived from the runs above: \
                     {checks} readiness checks instead of {}; see notes)",
                    c.readiness_checks
                ),
                "≤ 30 transitions, ≤ $0.001",
                format!("{transitions} transitions, ${usd:.6}"),
                format!("{:.2}× (transitions)", transitions as f64 / 30.0),
                Some(transitions <= 30 && usd <= 0.001),
            ));
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
        let trust_ms = self.trust_store.as_ref().map(|(_, d, r)| {
            median(&d.iter().map(|s| s.to_first_next_ms).collect::<Vec<_>>())
                - median(&r.iter().map(|s| s.to_first_next_ms).collect::<Vec<_>>())
        });
        let missed = |prefix: &str| self.rows().iter().any(|r| r.figure.starts_with(prefix) && r.met == Some(false));

        md.push_str("## How the figures are measured\n\n");
        md.push_str(&format!(
            "- **Cold start** (`local/src/coldstart.rs`): each release binary is started the way Lambda starts a \
             `provided.al2023` function — Lambda's environment variables, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128`, \
             static credentials, `AWS_ENDPOINT_URL` at emulated AWS (so the first AWS call is real, over plain HTTP \
             on loopback) — against a local Runtime API that hands it its sample event twice, records when \
             `GET /2018-06-01/runtime/invocation/next` and the result `POST` arrive, and reads `VmHWM` (peak RSS) \
             from `/proc` at each `GET`. The clock starts just before `exec`. {n} measured starts per binary, the \
             binaries interleaved (one of each in turn) after one unmeasured start each (page cache), hello-world \
             (`bench/hello-lambda`: lambda_runtime + tokio, echo; same release profile) in the same run. Medians. \
             Not included, because there is nothing local to measure them with: Lambda's own sandbox start \
             (≈ 10 ms of the 12.9 ms quoted for hello-world on Lambda) and a real TLS handshake with an AWS \
             endpoint (one or two round trips on the first call).\n"
        ));
        md.push_str(
            "- **First AWS call**: the first invocation's duration minus the second's (same event, same process): \
             connection set-up, credential and endpoint caches, lazy initialisation. The SDK's configuration and \
             TLS client (trust store included) are built at init, in `kanaria::aws::Context::from_env`; the \
             *config loading* row isolates the trust store's share by starting the same function with \
             `SSL_CERT_FILE` pointing at a one-certificate file.\n",
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
        md.push_str(&format!(
            "- **Cost per rollout**: a 3-step canary (10% → 50% → 100%) of the sample service run to completion on \
             emulated AWS, twice, with {} s and {} s bakes per step. Transitions are the states entered in the \
             execution history; invocations are every function invocation the rollout caused (on-image-push, \
             rollout-step for every Task state including `Bake`, on-task-event for the old tasks it stopped); \
             GB-s are 128 MB × the handlers' durations (in-process in the local runtime, against moto), each rounded \
             up to 1 ms as Lambda bills; AWS API calls are \
             the functions' requests counted at the local runtime's front server. Prices: Step Functions Standard \
             $0.025 per 1,000 transitions, Lambda arm64 $0.0000133334 per GB-s and $0.20 per million requests.\n",
            self.options.bakes[0], self.options.bakes[1]
        ));
        md.push_str(
            "  **15 minutes and 2 hours of bake are not waited for.** `Bake` is a `lambda:invoke.waitForTaskToken` \
             task whose timeout is the bake (`TimeoutSecondsPath`): one state entered and one short rollout-step \
             invocation whatever the bake's length, and no Lambda runs while it waits. The two short runs above \
             confirm the counts do not move with the bake, so the 15 min and 2 h rows repeat the larger of the two \
             measured costs; only the handlers' durations could differ, and they do not depend on the bake. What \
             does change the count is how long the new tasks take to start (see below).\n",
        );
        md.push_str(&format!(
            "- **Event throughput**: {} ECS Task State Change events (`bench::mixed_task_events`: 90% irrelevant — \
             RUNNING, PENDING, scale-in and deployment stops, exits with code 0 — and 10% CannotPullContainerError \
             failures of 20 tasks, each delivered many times) handed one after the other to one warm release \
             `on-task-event` process through the local Runtime API, irrelevant events first; its CPU time per \
             event (all its threads, `/proc/PID/task/*/schedstat`), next to hello-world's on the same stream (the \
             Runtime API client, JSON in and out: what every Lambda function pays). The difference is the \
             handler's own share, SDK calls included. Criterion is not used: what is timed is the release binary \
             as deployed, not a function in a test harness. DynamoDB write requests are counted in the handler \
             (`kanaria::aws::store::WRITE_REQUESTS`) over the same stream run in-process.\n\n",
            self.options.stream_events
        ));

        md.push_str("## Misses: why, and what would fix them\n\n");
        let cold = missed("Cold start");
        let memory = missed("Peak RSS");
        let size = missed("Size");
        if !(cold || memory || size || self.rows().iter().any(|r| r.met == Some(false))) {
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
            if functions.len() > 1 && largest - smallest < largest / 100 {
                md.push_str(&format!(
                    "- *Every function binary is the same program* ({}). Each `functions/*/src/main.rs` \
                     serves its handler through `kanaria::handlers::lambda(&ctx, Function::X, …)`, which calls \
                     `Function::handle`, a `match` over all {} handlers, and `Context::from_env` builds all ten \
                     SDK clients (`Clients::new`). So each binary links every handler and every AWS SDK crate the \
                     library uses, and fat LTO cannot drop any of it.\n",
                    if largest == smallest { format!("{largest} bytes each") } else { format!("{smallest}–{largest} bytes") },
                    functions.len()
                ));
            }
            if let Some(t) = trust_ms {
                md.push_str(&format!(
                    "- *Init*: {t:.1} ms of the {:.1} ms a function spends before its first GET is loading the \
                     system TLS trust store, inside `aws_config::load_defaults`: rustls-native-certs parses the CA \
                     bundle and then every file of the certificate directory ({cert_files} files under \
                     /etc/ssl/certs here). The rest of the difference from hello-world is faulting in a binary \
                     {:.0}× larger and building the SDK configuration and clients.\n",
                    median(
                        &self
                            .trust_store
                            .as_ref()
                            .map(|(_, d, _)| d.iter().map(|s| s.to_first_next_ms).collect::<Vec<_>>())
                            .unwrap_or_default()
                    ),
                    largest as f64 / size_of(HELLO).max(1) as f64
                ));
            }
            md.push_str(
                "- *Memory*: the peak RSS after init is mostly the binary's own pages — the code run at init, and \
                 the relocated read-only data (≈ 80,000 relative relocations in a PIE this size, all applied at \
                 exec) — plus the parsed trust store on the heap. It scales with the binary, not with what the \
                 handler does (the sample events add about 1 MiB).\n\n",
            );
            md.push_str(&format!("What would fix it — {FIX_STATUS}:\n\n"));
            md.push_str(
                "1. **One handler per binary.** In each `functions/*/src/main.rs`, call the function's own handler \
                 (`kanaria::handlers::on_alarm::handle(ctx, event.payload)` and so on) instead of \
                 `handlers::lambda(&ctx, Function::X, …)`. Fat LTO then drops the other handlers and every SDK \
                 operation only they call.\n\
                 2. **No second TLS stack.** The AWS SDK crates' default `rustls` feature also compiles their legacy \
                 connector (hyper 0.14 + rustls 0.21 + *ring*; its symbols are in the binaries, next to the hyper 1 + \
                 rustls 0.23 + aws-lc client the SDK actually uses). Declare every `aws-sdk-*` in \
                 `[workspace.dependencies]` with `default-features = false, features = [\"default-https-client\", \
                 \"rt-tokio\"]`.\n\
                 3. **A cheaper trust store.** Build the SDK's HTTP client once in `Context::from_env` \
                 (`aws_smithy_http_client::Builder` with a TLS context whose trust store has native roots off and \
                 only the roots AWS endpoints chain to — the Amazon Trust Services roots), instead of parsing every \
                 certificate of the system store at each start. Without code: `SSL_CERT_FILE=/etc/pki/tls/certs/ca-bundle.crt` \
                 in the template's `Globals` makes rustls-native-certs read the one bundle and skip the directory scan.\n\
                 4. **Only the clients a function uses**, built when first used (one `OnceLock` per client in \
                 `Clients`): each SDK client parses its crate's endpoint partition table when it is built, ten \
                 times per start today.\n\n",
            );
            md.push_str(PROTOTYPES);
            md.push_str(
                "\nEven with all four, the 1.3× start and 1.5× memory targets look out of reach for a function that \
                 calls AWS through the Rust SDK: hello-world has no HTTPS client, no SigV4, no endpoint rules and no \
                 SDK types to load. Meeting them would take a smaller AWS client than the SDK, which kanaria should \
                 not write; the targets may rather need restating against a hello-world that makes one SDK call.\n\n",
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
            let slow = SLOW_TASK_START;
            let (slow_checks, slow_transitions, slow_usd) = c.with_task_start(slow);
            md.push_str(&format!(
                "**Transitions depend on how long the new tasks take to start, not on the bake.** Here the simulated \
                 tasks run within about two seconds, so the rollout checks readiness {} time(s). Each more check is \
                 three transitions (`WaitForNewTasks`, `CheckNewTasks`, `NewTasksReady`) and one invocation; the \
                 checks are spaced {} s (`kanaria::rollout::readiness_poll_seconds`). With a {slow} s start, common on \
                 Fargate, that is {} checks: **{slow_transitions} transitions, ${slow_usd:.6}**{}\n\n",
                c.readiness_checks,
                (0..6).map(|i| kanaria::rollout::readiness_poll_seconds(i).to_string()).collect::<Vec<_>>().join(", "),
                slow_checks,
                if slow_transitions > 30 {
                    " — over the 30-transition target. What would fix it: a longer first wait when the policy's \
                     tasks are known to start slowly (e.g. the previous rollout's measured start time, kept with the \
                     service's record), or ending the wait on the green tasks' RUNNING events (a callback like `Bake`) \
                     instead of polling."
                } else {
                    ", within the target."
                }
            ));
        }
        md.push_str("## Changed because of these figures\n\n");
        md.push_str(CHANGES);
        md
    }
}

/// A new task set's start time common on Fargate (image pull, ENI, health checks), for the derived
/// cost of a rollout whose tasks start slowly.
const SLOW_TASK_START: u64 = 60;

/// Whether the fixes listed under the misses are applied (update when they land).
const FIX_STATUS: &str = "proposed, not applied yet (they change `src/aws/mod.rs`, `functions/*/src/main.rs`, \
    `Cargo.toml` dependencies or `template.yaml`)";

/// Prototypes of the fixes, measured once (they need code outside the benchmarks; replace this
/// with the real figures when they land).
const PROTOTYPES: &str = "Prototypes, measured once on 2026-11-22 on this machine (on-alarm; a copy of the tree with the \
    change; 20 interleaved starts each; hello-world 1.7 ms to the first GET, 3.3 MiB):\n\n\
    | on-alarm | stripped | exec → first GET | peak RSS after init |\n|---|---|---|---|\n\
    | as built | 15.84 MB | 7.55 ms | 14.1 MiB |\n\
    | 1. own handler | 11.72 MB | 6.98 ms | 11.1 MiB |\n\
    | 1 + 2. no legacy connector | 10.02 MB | 6.49 ms | 10.9 MiB |\n\
    | 1 + 2 + `SSL_CERT_FILE` = the CA bundle | 10.02 MB | 4.58 ms | 10.9 MiB |\n\
    | 1 + 2 + a one-certificate trust store (the floor for fix 3) | 10.02 MB | 3.67 ms | 10.5 MiB |\n";

/// What was changed because of what the benchmarks showed (update with each fix).
const CHANGES: &str = "- The benchmarks themselves: cold start, memory, size and per-event CPU of the release binaries \
    against a hello-world built the same way (`bench/hello-lambda`), and Lambda invocations, GB-seconds and AWS API \
    calls per rollout, now measured by `make bench`.\n\
    - Nothing in the functions yet: the fixes above are proposed for the slow figures.\n";

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
        // Checks at 2, 7, 17, 32, 47, 62 s: six for a 60 s start.
        let (checks, transitions, usd) = c.with_task_start(60);
        assert_eq!((checks, transitions), (6, 39));
        assert!((usd - (c.usd() + 15.0 * USD_PER_TRANSITION + 5.0 * USD_PER_REQUEST)).abs() < 1e-12);
        assert_eq!(c.with_task_start(2).1, 24);
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
