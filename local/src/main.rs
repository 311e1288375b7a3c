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
        /// Write the report (Markdown) to this file, e.g. BENCHMARKS.md.
        #[arg(long)]
        write: Option<std::path::PathBuf>,
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
        Cmd::Bench { runs, starts, release_dir, stream_events, write } => bench(runs, starts, release_dir, stream_events, write).await,
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
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
    let report = run(BenchOptions { runs, starts, release_dir, stream_events, bakes: kanaria_local::bench::BAKES }).await?;
    println!("\n{}", report.text());
    if let Some(path) = write {
        std::fs::write(&path, report.markdown()).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

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
    println!("kanaria demo: an ECR push rolls out as a canary on emulated AWS (moto)\n");
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

    // The stable task set's tasks come up first (the simulator plays ECS's scheduler).
    let clients = &local.ctx().clients;
    let deadline = Instant::now() + Duration::from_secs(30);
    while kanaria::aws::ecs::running_tasks_of(&clients.ecs, &o.cluster, &sample.initial_task_set).await? < o.desired_count as u32 {
        if Instant::now() > deadline {
            bail!("the sample service's tasks did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let digest = fixture::new_digest("demo");
    if fail {
        local.simulator.crash_images(&digest, 1, Duration::from_secs(2));
    }
    let t = Timeline { t0: Instant::now() };
    fixture::put_event(&local.config, &fixture::ecr_push_event(&o.repository, "v2", &digest)).await?;
    t.line(format!(
        "push {}:v2 @ sha256:{}…{}",
        o.repository,
        short_digest(&digest),
        if fail { " (this image crashes 2s after it starts)" } else { "" }
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

    let status = follow(&local, &execution_arn, &t).await?;
    println!();
    verify_end_state(&local, &sample, &digest, fail, &status).await?;
    println!("\ndemo finished in {:.1}s", began.elapsed().as_secs_f64());
    Ok(())
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Read the end state back from ECS, the ALB and the table, and say whether it is right.
async fn verify_end_state(local: &LocalAws, sample: &fixture::SampleService, digest: &str, fail: bool, status: &str) -> Result<()> {
    let clients = &local.ctx().clients;
    let route = sample.policy.traffic.route().expect("sample policy has a route");
    let weights = kanaria::aws::elb::read_weights(&clients.elb, &route).await?;
    let service = kanaria::aws::ecs::describe_service(&clients.ecs, &sample.policy.service).await?;
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
