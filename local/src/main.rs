//! `kanaria-local`: the local runtime as a command.
//!
//! - `kanaria-local demo [--fail]`: emulated AWS, a sample service, an ECR push, and the real
//!   kanaria functions and state machine rolling it out; prints the timeline.
//! - `kanaria-local serve [--port N]`: just the runtime, for trying the CLI against it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use aws_sdk_sfn::types::HistoryEventType;
use clap::{Parser, Subcommand};
use kanaria::aws::store::Store;
use kanaria::handlers::Function;
use kanaria::rollout::Rollout;
use kanaria_local::fixture::{self, SampleOptions};
use kanaria_local::{LocalAws, Options};

#[derive(Parser)]
#[command(name = "kanaria-local", about = "kanaria on emulated AWS (moto): the local runtime and the demo")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Roll a new image out to a sample service as a canary (10% → 50% → 100%) and print the timeline.
    Demo {
        /// Make the new image crash after it starts, to see the rollback.
        #[arg(long)]
        fail: bool,
        /// Bake time of each canary step, in seconds.
        #[arg(long, default_value_t = 5)]
        bake: u64,
    },
    /// Measure every benchmark of BENCHMARKS.md (release binaries: cold start, memory, size, CPU
    /// per event; emulated AWS: time to roll back, cost per rollout, writes per event), print
    /// them, and with --write regenerate BENCHMARKS.md. `scripts/bench` builds what it needs.
    Bench {
        /// Rollbacks to time from each kind of event.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Cold starts of each release binary.
        #[arg(long, default_value_t = 25)]
        starts: usize,
        /// The release binaries (default: $CARGO_TARGET_DIR/release, else target/release).
        #[arg(long)]
        release_dir: Option<std::path::PathBuf>,
        /// ECS Task State Change events in the event-throughput stream.
        #[arg(long, default_value_t = 10_000)]
        stream_events: usize,
        /// Crashes timed from the first desiredStatus STOPPED event on the strict runtime (and
        /// promotes and supersedes watched by the traffic probe).
        #[arg(long, default_value_t = 20)]
        strict_runs: usize,
        /// Write the report (Markdown) to this file, e.g. BENCHMARKS.md.
        #[arg(long)]
        write: Option<std::path::PathBuf>,
    },
    /// Only the scale figures of `bench` (the reads of a push and of a failed task with few and
    /// many policies), printed; nothing is written.
    Scale {
        /// Numbers of policies to measure with.
        #[arg(long, value_delimiter = ',', default_values_t = kanaria_local::bench::SCALE_POLICIES)]
        policies: Vec<usize>,
    },
    /// Run the local runtime until interrupted; prints the endpoint to use.
    Serve {
        #[arg(long, default_value_t = 4566)]
        port: u16,
        /// Also provision the sample service.
        #[arg(long)]
        sample: bool,
    },
}

#[tokio::main]
async fn main() {
    kanaria::telemetry::init_text("error");
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Demo { fail, bake } => demo(fail, bake).await,
        Cmd::Serve { port, sample } => serve(port, sample).await,
        Cmd::Scale { policies } => scale(policies).await,
        Cmd::Bench { runs, starts, release_dir, stream_events, strict_runs, write } => {
            bench(runs, starts, release_dir, stream_events, strict_runs, write).await
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn scale(policies: Vec<usize>) -> Result<()> {
    for n in policies {
        let p = kanaria_local::bench::scale::per_event_reads(n.max(2)).await?;
        println!(
            "{} policies: push {} (without the index {}); failed task: circuit breaker {}, restart-loop {}",
            p.policies, p.push, p.push_without_index, p.failed_task_breaker, p.failed_task_restart_loop
        );
    }
    Ok(())
}

async fn start() -> Result<LocalAws> {
    let log = std::env::temp_dir().join(format!("kanaria-moto-{}.log", std::process::id()));
    LocalAws::start(Options { moto_log: Some(log), ..Options::default() }).await
}

async fn serve(port: u16, sample: bool) -> Result<()> {
    let local = LocalAws::start(Options { port, ..Options::default() }).await?;
    if sample {
        let s = fixture::provision(&local.config, &local.endpoint, local.ctx(), SampleOptions::default()).await?;
        println!("sample service {}/{} behind listener {}", s.options.cluster, s.options.service, s.listener_arn);
    }
    println!("kanaria local runtime on {}", local.endpoint);
    println!("  export AWS_ENDPOINT_URL={} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test", local.endpoint);
    println!("  state machine: {}", local.state_machine_arn);
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn bench(
    runs: usize,
    starts: usize,
    release_dir: Option<std::path::PathBuf>,
    stream_events: usize,
    strict_runs: usize,
    write: Option<std::path::PathBuf>,
) -> Result<()> {
    use kanaria_local::bench::{run, BenchOptions};
    let release_dir = release_dir.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| kanaria_local::project_root().join("target"))
            .join("release")
    });
    println!("kanaria benchmarks: release binaries from {}, emulated AWS (moto); figures, not assertions\n", release_dir.display());
    let report = run(BenchOptions { runs, starts, release_dir, stream_events, strict_runs, bakes: kanaria_local::bench::BAKES }).await?;
    println!("\n{}", report.text());
    if let Some(path) = write {
        std::fs::write(&path, report.markdown()).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Timeline {
    t0: Instant,
}

impl Timeline {
    fn line(&self, what: impl AsRef<str>) {
        println!("[{:>6.1}s] {}", self.t0.elapsed().as_secs_f64(), what.as_ref());
    }
}

/// The readable part of an ARN: a target group's name, a task definition's `family:revision`.
fn short(arn: &str) -> &str {
    let mut parts = arn.rsplit('/');
    let last = parts.next().unwrap_or(arn);
    if arn.contains(":targetgroup/") {
        parts.next().unwrap_or(last)
    } else {
        last
    }
}

fn short_digest(d: &str) -> String {
    d.trim_start_matches("sha256:").chars().take(12).collect()
}

async fn demo(fail: bool, bake: u64) -> Result<()> {
    let began = Instant::now();
    println!("kanaria demo: an ECR push rolls out as a canary on emulated AWS (moto, with the local runtime's");
    println!("ECS model in front: tasks take time to start, the load balancer health-checks them, stops are staged,");
    println!("and a simulated client sends a request through the production listener every 50 ms)\n");
    let local = start().await?;
    let options = SampleOptions { steps: vec![(10, bake), (50, bake)], drain_seconds: 2, ..SampleOptions::default() };
    let sample = fixture::provision(&local.config, &local.endpoint, local.ctx(), options).await?;
    let o = &sample.options;
    println!(
        "sample service {}/{}: {} tasks of {} on task set {} behind {} (listener 100/0)",
        o.cluster,
        o.service,
        o.desired_count,
        sample.initial_image,
        sample.initial_task_set,
        short(&sample.target_groups[0])
    );
    println!(
        "policy: canary {} with {}s bakes, from Parameter Store {}{}/{}\n",
        o.steps.iter().map(|(w, _)| format!("{w}%")).collect::<Vec<_>>().join(" → ") + " → 100%",
        bake,
        local.ctx().settings.policy_prefix,
        o.cluster,
        o.service
    );

    // The stable task set's tasks come up first (the simulator plays ECS's scheduler and the
    // load balancer's health checks): a real service is STEADY_STATE before anyone deploys.
    let clients = &local.ctx().clients;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let service = kanaria::aws::ecs::describe_service(&clients.ecs, &sample.policy.service).await?;
        let steady =
            service.task_sets.iter().any(|ts| ts.status == "PRIMARY" && ts.stability == Some(kanaria::rollout::Stability::SteadyState));
        if steady {
            break;
        }
        if Instant::now() > deadline {
            bail!("the sample service did not reach STEADY_STATE with healthy targets within 30 s");
        }
        tokio::time::timeout(Duration::from_millis(500), local.simulator.changed()).await.ok();
    }
    println!("the sample service is STEADY_STATE: its tasks run and are healthy in {}\n", short(&sample.target_groups[0]));

    let digest = fixture::new_digest("demo");
    if fail {
        // Late enough that the canary already has traffic: the circuit breaker's case.
        local.simulator.crash_images(&digest, 1, Duration::from_secs(6));
    }
    let t = Timeline { t0: Instant::now() };
    fixture::put_event(&local.config, &fixture::ecr_push_event(&o.repository, "v2", &digest)).await?;
    t.line(format!(
        "push {}:v2 @ sha256:{}…{}",
        o.repository,
        short_digest(&digest),
        if fail { " (this image crashes 6 s after it starts, in the first bake)" } else { "" }
    ));

    local
        .shared
        .wait_for_invocations("on-image-push", Duration::from_secs(30), |inv| inv.iter().any(|i| i.function == Function::OnImagePush))
        .await?;
    let started = local.shared.invocations().into_iter().find(|i| i.function == Function::OnImagePush).map(|i| i.result);
    let execution_arn = match started {
        Some(Ok(out)) => out["rollouts"][0]["execution"].as_str().map(str::to_string).context(format!("no rollout started: {out}"))?,
        Some(Err(e)) => bail!("on-image-push failed: {e}"),
        None => bail!("on-image-push was not invoked"),
    };
    t.line(format!("on-image-push matched policy {}/{} → execution {}", o.cluster, o.service, short_arn_name(&execution_arn)));

    let watcher = tokio::spawn(watch_ecs_and_alb(local.ctx().clients.clone(), local.simulator.clone(), sample.clone(), t));
    let status = follow(&local, &execution_arn, &t).await?;
    watcher.abort();
    println!();
    let traffic = local.probe.summary(&sample.listener_arn, t.t0, None);
    println!(
        "traffic probe (production listener, one request every ~50 ms): {} requests, {} answered by the old image, {} by the new, {} errors{}",
        traffic.requests,
        traffic.by_image.iter().filter(|(image, _)| !image.contains(&digest)).map(|(_, n)| n).sum::<usize>(),
        traffic.by_image.iter().filter(|(image, _)| image.contains(&digest)).map(|(_, n)| n).sum::<usize>(),
        traffic.errors(),
        if fail && traffic.errors() > 0 { " (the crashed canary's share of requests between the crash and the rollback)" } else { "" }
    );
    verify_end_state(&local, &sample, &digest, fail, &status).await?;
    println!("\ndemo finished in {:.1}s", began.elapsed().as_secs_f64());
    Ok(())
}

/// What ECS and the load balancer do underneath the rollout, printed as it changes: each task
/// set's running/pending tasks and stability, each target group's target health, and every
/// `desiredStatus: STOPPED` event ECS emits.
async fn watch_ecs_and_alb(
    clients: kanaria::aws::Clients,
    simulator: std::sync::Arc<kanaria_local::ecs::Simulator>,
    sample: fixture::SampleService,
    t: Timeline,
) {
    let mut last_sets = std::collections::BTreeMap::<String, String>::new();
    let mut last_health = std::collections::BTreeMap::<String, String>::new();
    let mut events_seen = simulator.events_sent().len();
    let mut stopping = std::collections::BTreeSet::<String>::new();
    let mut last_weights = String::new();
    let route = sample.policy.traffic.route().expect("the sample policy has a route");
    loop {
        if let Ok(weights) = kanaria::aws::elb::read_weights(&clients.elb, &route).await {
            let now = weights.iter().map(|(tg, w)| format!("{} {w}%", short(tg))).collect::<Vec<_>>().join(", ");
            if now != last_weights {
                t.line(format!("  alb: production listener → {now}"));
                last_weights = now;
            }
        }
        if let Ok(service) = kanaria::aws::ecs::describe_service(&clients.ecs, &sample.policy.service).await {
            for ts in &service.task_sets {
                let now = format!(
                    "{} {} running, {} pending, {}",
                    ts.status,
                    ts.running_count.unwrap_or(0),
                    ts.pending_count.unwrap_or(0),
                    match ts.stability {
                        Some(kanaria::rollout::Stability::SteadyState) => "STEADY_STATE",
                        _ => "STABILIZING",
                    }
                );
                if last_sets.get(&ts.id) != Some(&now) {
                    t.line(format!("  ecs: task set {} ({}): {now}", ts.id, short(ts.target_group_arn.as_deref().unwrap_or("-"))));
                    last_sets.insert(ts.id.clone(), now);
                }
            }
        }
        for tg in &sample.target_groups {
            let Ok(health) = clients.elb.describe_target_health().target_group_arn(tg).send().await else { continue };
            let mut counts = std::collections::BTreeMap::<String, usize>::new();
            for d in health.target_health_descriptions() {
                let state = d.target_health().and_then(|h| h.state()).map(|s| s.as_str().to_string()).unwrap_or_default();
                *counts.entry(state).or_default() += 1;
            }
            let now = if counts.is_empty() {
                "no targets".to_string()
            } else {
                counts.iter().map(|(state, n)| format!("{n} {state}")).collect::<Vec<_>>().join(", ")
            };
            if last_health.get(tg) != Some(&now) {
                t.line(format!("  alb: target group {}: {now}", short(tg)));
                last_health.insert(tg.clone(), now);
            }
        }
        let events = simulator.events_sent();
        for e in events.iter().skip(events_seen) {
            let task = e["taskArn"].as_str().unwrap_or("").to_string();
            if e["desiredStatus"] == "STOPPED" && stopping.insert(task) {
                let exit = e["containers"][0]["exitCode"].as_i64().map(|c| format!(", exit {c}")).unwrap_or_default();
                t.line(format!(
                    "  ecs event: task {} desiredStatus STOPPED while {} ({}{exit})",
                    e["taskArn"].as_str().unwrap_or("").rsplit('/').next().unwrap_or(""),
                    e["lastStatus"].as_str().unwrap_or("?"),
                    e["stopCode"].as_str().unwrap_or("?")
                ));
            }
        }
        events_seen = events.len();
        // What it prints is the state read on each poll; 100 ms is its resolution.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn short_arn_name(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

/// Print the rollout's timeline from the execution history (what the Step Functions console
/// shows), until the execution ends. Returns its final status.
async fn follow(local: &LocalAws, execution_arn: &str, t: &Timeline) -> Result<String> {
    let sfn = aws_sdk_sfn::Client::new(&local.config);
    let mut seen = 0usize;
    let mut last_state = String::new();
    let deadline = Instant::now() + Duration::from_secs(170);
    loop {
        let history = sfn.get_execution_history().execution_arn(execution_arn).max_results(1000).send().await?;
        let events = history.events();
        for e in events.iter().skip(seen) {
            match e.r#type() {
                HistoryEventType::TaskStateEntered | HistoryEventType::WaitStateEntered | HistoryEventType::ChoiceStateEntered => {
                    if let Some(d) = e.state_entered_event_details() {
                        last_state = d.name().to_string();
                        if matches!(e.r#type(), HistoryEventType::WaitStateEntered | HistoryEventType::TaskStateEntered) {
                            let r: Option<Rollout> = d.input().and_then(|i| serde_json::from_str(i).ok());
                            let secs = r.as_ref().map(|r| r.wait_seconds).unwrap_or(0);
                            match d.name() {
                                "Bake" => t.line(format!("bake {secs}s at {}%", r.map(|r| r.weight).unwrap_or(0))),
                                "DrainOldTaskSet" => t.line(format!("drain the old task set for {secs}s")),
                                _ => {}
                            }
                        }
                    }
                }
                HistoryEventType::TaskStateExited => {
                    let Some(d) = e.state_exited_event_details() else { continue };
                    let Some(r) = d.output().and_then(|o| serde_json::from_str::<Rollout>(o).ok()) else { continue };
                    match d.name() {
                        "CreateNewTaskSet" => {
                            t.line(format!(
                                "task-definition revision {} registered (container {} → {}@sha256:{}…)",
                                short(r.task_definition_arn.as_deref().unwrap_or("?")),
                                r.policy.container,
                                r.image.repository,
                                short_digest(&r.image.digest)
                            ));
                            if let Some(g) = &r.green {
                                t.line(format!("green task set {} created on {} (0% traffic)", g.id, short(&g.target_group_arn)));
                            }
                        }
                        "CheckNewTasks" => match r.verdict {
                            Some(kanaria::rollout::Verdict::Ready) => t.line("green tasks running"),
                            Some(kanaria::rollout::Verdict::Rollback) => {
                                t.line(format!("green tasks failed: {}", r.cause.unwrap_or_default()))
                            }
                            _ => {}
                        },
                        "ShiftTraffic" if r.verdict != Some(kanaria::rollout::Verdict::Rollback) => {
                            t.line(format!("{}% of traffic → green (read back from the listener)", r.weight))
                        }
                        "Verify" => match r.verdict {
                            Some(kanaria::rollout::Verdict::Rollback) => t.line(format!("verify failed: {}", r.cause.unwrap_or_default())),
                            _ => t.line("verified: all green tasks running, none failed"),
                        },
                        "Promote" => t.line("100% → green; promoted: green task set is primary, old task set scaled to 0"),
                        "DeleteOldTaskSet" => t.line(format!(
                            "old task set {} drained and deleted; service released",
                            r.stable.map(|s| s.id).unwrap_or_default()
                        )),
                        "RollBack" => t.line(format!(
                            "rolled back: 100% on the stable task set, green task set deleted ({})",
                            r.cause.unwrap_or_default()
                        )),
                        _ => {}
                    }
                }
                HistoryEventType::ExecutionSucceeded => {
                    t.line("rollout SUCCEEDED");
                    return Ok("SUCCEEDED".into());
                }
                HistoryEventType::ExecutionFailed => {
                    let d = e.execution_failed_event_details();
                    t.line(format!(
                        "rollout FAILED ({}): {}",
                        d.and_then(|d| d.error()).unwrap_or("?"),
                        d.and_then(|d| d.cause()).unwrap_or("")
                    ));
                    return Ok("FAILED".into());
                }
                HistoryEventType::ExecutionAborted | HistoryEventType::ExecutionTimedOut => {
                    t.line(format!("rollout {:?}", e.r#type()));
                    return Ok(format!("{:?}", e.r#type()));
                }
                _ => {}
            }
        }
        seen = events.len();
        if Instant::now() > deadline {
            bail!("the rollout did not finish within 170s (last state: {last_state})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Read the end state back from ECS, the ALB and the table, and say whether it is right.
async fn verify_end_state(local: &LocalAws, sample: &fixture::SampleService, digest: &str, fail: bool, status: &str) -> Result<()> {
    let clients = &local.ctx().clients;
    let route = sample.policy.traffic.route().expect("sample policy has a route");
    let weights = kanaria::aws::elb::read_weights(&clients.elb, &route).await?;
    // A deleted task set is DRAINING until its tasks have stopped (after the target group's
    // deregistration delay); ECS removes it then.
    let deadline = Instant::now() + Duration::from_secs(30);
    let service = loop {
        let service = kanaria::aws::ecs::describe_service(&clients.ecs, &sample.policy.service).await?;
        if !service.task_sets.iter().any(|ts| ts.status == "DRAINING") || Instant::now() > deadline {
            break service;
        }
        tokio::time::timeout(Duration::from_millis(500), local.simulator.changed()).await.ok();
    };
    let lock = Store::new(&clients.dynamodb, &local.ctx().settings.table).lock(&sample.policy.service.key()).await?;
    println!("end state, read back from emulated AWS:");
    println!("  listener weights: {}", weights.iter().map(|(tg, w)| format!("{} {w}%", short(tg))).collect::<Vec<_>>().join(", "));
    for ts in &service.task_sets {
        println!(
            "  task set {} {} on {} running {}",
            ts.id,
            ts.status,
            short(ts.target_group_arn.as_deref().unwrap_or("-")),
            short(&ts.task_definition_arn)
        );
    }
    println!("  service lock: {}", if lock.is_some() { "HELD" } else { "released" });
    let primary = service.task_sets.iter().find(|t| t.status == "PRIMARY");
    let live_tg = weights.iter().find(|(_, w)| *w == 100).map(|(tg, _)| tg.clone());
    let ok = if fail {
        status == "FAILED"
            && live_tg.as_deref() == Some(sample.target_groups[0].as_str())
            && service.task_sets.len() == 1
            && primary.map(|p| p.id.as_str()) == Some(sample.initial_task_set.as_str())
            && lock.is_none()
    } else {
        let image = kanaria::aws::ecs::revision_with_image(
            &clients.ecs,
            primary.map(|p| p.task_definition_arn.as_str()).unwrap_or(""),
            &sample.policy.container,
            &format!("{}.dkr.ecr.us-east-1.amazonaws.com/{}@{}", kanaria_local::ACCOUNT, sample.options.repository, digest),
        )
        .await?
        .0;
        status == "SUCCEEDED"
            && live_tg.as_deref() == Some(sample.target_groups[1].as_str())
            && service.task_sets.len() == 1
            && image.is_some()
            && lock.is_none()
    };
    if !ok {
        bail!("the end state is not what the rollout should have left");
    }
    println!(
        "  ✓ {}",
        if fail {
            "100% on the stable task set, the green task set is gone"
        } else {
            "100% on the new task set, which is primary and runs the pushed digest; the old one is gone"
        }
    );
    Ok(())
}
