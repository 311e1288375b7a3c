//! ECS task **simulator**. moto stores task sets but runs nothing, so this loop plays the part
//! of ECS's scheduler for EXTERNAL-controller services: it keeps each task set at
//! `ceil(desiredCount × scale%)` tasks (real moto tasks via RunTask/StopTask, `startedBy` = the
//! task set id, as ECS does) and publishes an `ECS Task State Change` event to EventBridge for
//! every task that starts or stops. Images marked with [`Simulator::crash_images`] crash a
//! while after reaching RUNNING (essential container exits), and ECS-like replacements follow.
//!
//! It is test and demo scaffolding only; nothing in kanaria's functions depends on it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_config::SdkConfig;
use aws_sdk_ecs::types::{LaunchType, NetworkConfiguration};
use serde_json::json;
use tracing::debug;

#[derive(Debug, Clone)]
struct CrashRule {
    image_contains: String,
    exit_code: i64,
    after: Duration,
    /// Never reaches RUNNING: stops at once with TaskFailedToStart and this reason.
    fail_to_start: Option<String>,
}

#[derive(Debug, Clone)]
struct SimTask {
    cluster_arn: String,
    task_arn: String,
    task_set_id: String,
    service: String,
    task_definition_arn: String,
    containers: Vec<(String, String)>,
    started: Instant,
    crash: Option<CrashRule>,
}

pub struct Simulator {
    ecs: aws_sdk_ecs::Client,
    events: aws_sdk_eventbridge::Client,
    crash_rules: Mutex<Vec<CrashRule>>,
    tasks: Mutex<HashMap<String, SimTask>>,
    images: Mutex<HashMap<String, Vec<(String, String)>>>,
    /// When a task of a task set last crashed: ECS waits a little before replacing it.
    last_crash: Mutex<HashMap<String, Instant>>,
    /// Images whose tasks take this long to start (image pull, ENI, health checks on Fargate).
    slow_starts: Mutex<Vec<(String, Duration)>>,
    /// When each task set was first seen, for the slow starts.
    first_seen: Mutex<HashMap<String, Instant>>,
    events_sent: Mutex<Vec<serde_json::Value>>,
}

const TICK: Duration = Duration::from_millis(250);
const RESTART_DELAY: Duration = Duration::from_secs(1);

impl Simulator {
    pub fn new(config: &SdkConfig) -> Self {
        Simulator {
            ecs: aws_sdk_ecs::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            crash_rules: Mutex::new(Vec::new()),
            tasks: Mutex::new(HashMap::new()),
            images: Mutex::new(HashMap::new()),
            last_crash: Mutex::new(HashMap::new()),
            slow_starts: Mutex::new(Vec::new()),
            first_seen: Mutex::new(HashMap::new()),
            events_sent: Mutex::new(Vec::new()),
        }
    }

    /// Tasks whose container image contains `image_contains` exit with `exit_code` `after`
    /// reaching RUNNING.
    pub fn crash_images(&self, image_contains: &str, exit_code: i64, after: Duration) {
        self.crash_rules.lock().unwrap().push(CrashRule {
            image_contains: image_contains.to_string(),
            exit_code,
            after,
            fail_to_start: None,
        });
    }

    /// Tasks whose container image contains `image_contains` never start: they stop at once
    /// with stopCode TaskFailedToStart and `reason` (e.g. a CannotPullContainerError).
    pub fn fail_to_start_images(&self, image_contains: &str, reason: &str) {
        self.crash_rules.lock().unwrap().push(CrashRule {
            image_contains: image_contains.to_string(),
            exit_code: 0,
            after: Duration::ZERO,
            fail_to_start: Some(reason.to_string()),
        });
    }

    /// Task sets whose container image contains `image_contains` start their first tasks only
    /// `after` the simulator first sees the task set (as a Fargate task takes a minute or so).
    pub fn slow_start_images(&self, image_contains: &str, after: Duration) {
        self.slow_starts.lock().unwrap().push((image_contains.to_string(), after));
    }

    /// Every event the simulator has published, in order.
    pub fn events_sent(&self) -> Vec<serde_json::Value> {
        self.events_sent.lock().unwrap().clone()
    }

    pub async fn run(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.reconcile().await {
                debug!(error = %e, "simulator tick failed");
            }
        }
    }

    async fn reconcile(&self) -> Result<()> {
        self.crash_due_tasks().await?;
        let clusters = self.ecs.list_clusters().send().await?.cluster_arns().to_vec();
        let mut live_sets = Vec::new();
        for cluster in clusters {
            let services = self.ecs.list_services().cluster(&cluster).send().await?.service_arns().to_vec();
            for chunk in services.chunks(10) {
                let described = self.ecs.describe_services().cluster(&cluster).set_services(Some(chunk.to_vec())).send().await?;
                for svc in described.services() {
                    let external = svc.deployment_controller().map(|d| d.r#type().as_str()) == Some("EXTERNAL");
                    if !external || svc.status() != Some("ACTIVE") {
                        continue;
                    }
                    let name = svc.service_name().unwrap_or_default().to_string();
                    let sets = self.ecs.describe_task_sets().cluster(&cluster).service(&name).send().await?;
                    for ts in sets.task_sets() {
                        let id = ts.id().unwrap_or_default().to_string();
                        live_sets.push(id.clone());
                        let scale = ts.scale().map(|s| s.value()).unwrap_or(100.0);
                        let desired = ((svc.desired_count().max(0) as f64) * scale / 100.0).ceil() as usize;
                        let current: Vec<SimTask> = self.tasks.lock().unwrap().values().filter(|t| t.task_set_id == id).cloned().collect();
                        if current.len() < desired {
                            let recently_crashed = self.last_crash.lock().unwrap().get(&id).is_some_and(|t| t.elapsed() < RESTART_DELAY);
                            if !recently_crashed {
                                self.start_tasks(&cluster, &name, ts, desired - current.len()).await?;
                            }
                        } else if current.len() > desired {
                            for t in current.iter().take(current.len() - desired) {
                                self.stop(
                                    t,
                                    "Scaling activity initiated by (deployment ".to_string() + &id + ")",
                                    "ServiceSchedulerInitiated",
                                    0,
                                )
                                .await?;
                            }
                        }
                    }
                }
            }
        }
        // Tasks of deleted task sets stop.
        let orphans: Vec<SimTask> = self.tasks.lock().unwrap().values().filter(|t| !live_sets.contains(&t.task_set_id)).cloned().collect();
        for t in orphans {
            self.stop(&t, format!("Task set {} deleted", t.task_set_id), "ServiceSchedulerInitiated", 0).await?;
        }
        Ok(())
    }

    async fn containers_of(&self, task_definition: &str) -> Result<Vec<(String, String)>> {
        if let Some(c) = self.images.lock().unwrap().get(task_definition) {
            return Ok(c.clone());
        }
        let td = self.ecs.describe_task_definition().task_definition(task_definition).send().await?;
        let containers: Vec<(String, String)> = td
            .task_definition()
            .map(|t| {
                t.container_definitions()
                    .iter()
                    .map(|c| (c.name().unwrap_or_default().to_string(), c.image().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        self.images.lock().unwrap().insert(task_definition.to_string(), containers.clone());
        Ok(containers)
    }

    async fn start_tasks(&self, cluster: &str, service: &str, ts: &aws_sdk_ecs::types::TaskSet, count: usize) -> Result<()> {
        let td = ts.task_definition().unwrap_or_default().to_string();
        let containers = self.containers_of(&td).await?;
        let slow_start =
            self.slow_starts.lock().unwrap().iter().find(|(i, _)| containers.iter().any(|(_, image)| image.contains(i))).map(|(_, d)| *d);
        if let Some(after) = slow_start {
            let first_seen = *self.first_seen.lock().unwrap().entry(ts.id().unwrap_or_default().to_string()).or_insert_with(Instant::now);
            if first_seen.elapsed() < after {
                return Ok(());
            }
        }
        let crash = self
            .crash_rules
            .lock()
            .unwrap()
            .iter()
            .find(|r| containers.iter().any(|(_, image)| image.contains(&r.image_contains)))
            .cloned();
        let network: Option<NetworkConfiguration> = ts.network_configuration().cloned();
        let run = self
            .ecs
            .run_task()
            .cluster(cluster)
            .task_definition(&td)
            .count(count as i32)
            .launch_type(LaunchType::Fargate)
            .set_network_configuration(network)
            .started_by(ts.id().unwrap_or_default())
            .group(format!("service:{service}"))
            .send()
            .await?;
        for task in run.tasks() {
            let sim = SimTask {
                cluster_arn: task.cluster_arn().unwrap_or_default().to_string(),
                task_arn: task.task_arn().unwrap_or_default().to_string(),
                task_set_id: ts.id().unwrap_or_default().to_string(),
                service: service.to_string(),
                task_definition_arn: td.clone(),
                containers: containers.clone(),
                started: Instant::now(),
                crash: crash.clone(),
            };
            if let Some(reason) = crash.as_ref().and_then(|c| c.fail_to_start.clone()) {
                self.last_crash.lock().unwrap().insert(sim.task_set_id.clone(), Instant::now());
                self.ecs.stop_task().cluster(&sim.cluster_arn).task(&sim.task_arn).reason(&reason).send().await?;
                self.publish(&sim, "STOPPED", 2, Some(&reason), Some("TaskFailedToStart"), None).await?;
                continue;
            }
            self.tasks.lock().unwrap().insert(sim.task_arn.clone(), sim.clone());
            self.publish(&sim, "RUNNING", 2, None, None, None).await?;
        }
        Ok(())
    }

    async fn crash_due_tasks(&self) -> Result<()> {
        let due: Vec<SimTask> = self
            .tasks
            .lock()
            .unwrap()
            .values()
            .filter(|t| t.crash.as_ref().is_some_and(|c| t.started.elapsed() >= c.after))
            .cloned()
            .collect();
        for t in due {
            let code = t.crash.as_ref().map(|c| c.exit_code).unwrap_or(1);
            self.last_crash.lock().unwrap().insert(t.task_set_id.clone(), Instant::now());
            self.stop(&t, "Essential container in task exited".into(), "EssentialContainerExited", code).await?;
        }
        Ok(())
    }

    async fn stop(&self, t: &SimTask, reason: String, stop_code: &str, exit_code: i64) -> Result<()> {
        if self.tasks.lock().unwrap().remove(&t.task_arn).is_none() {
            return Ok(());
        }
        self.ecs.stop_task().cluster(&t.cluster_arn).task(&t.task_arn).reason(&reason).send().await?;
        self.publish(t, "STOPPED", 3, Some(&reason), Some(stop_code), Some(exit_code)).await
    }

    async fn publish(
        &self,
        t: &SimTask,
        status: &str,
        version: u64,
        reason: Option<&str>,
        stop_code: Option<&str>,
        exit_code: Option<i64>,
    ) -> Result<()> {
        let now = now_rfc3339();
        let containers: Vec<serde_json::Value> = t
            .containers
            .iter()
            .map(|(name, image)| {
                let mut c = json!({"name": name, "image": image, "lastStatus": status, "taskArn": t.task_arn});
                if let Some(code) = exit_code {
                    c["exitCode"] = json!(code);
                }
                if stop_code == Some("TaskFailedToStart") {
                    c["reason"] = json!(reason.unwrap_or_default());
                }
                c
            })
            .collect();
        let mut detail = json!({
            "clusterArn": t.cluster_arn,
            "taskArn": t.task_arn,
            "taskDefinitionArn": t.task_definition_arn,
            "group": format!("service:{}", t.service),
            "startedBy": t.task_set_id,
            "launchType": "FARGATE",
            "lastStatus": status,
            "desiredStatus": if status == "STOPPED" { "STOPPED" } else { "RUNNING" },
            "containers": containers,
            "version": version,
            "createdAt": now,
            "updatedAt": now,
        });
        if let (Some(r), Some(c)) = (reason, stop_code) {
            detail["stoppedReason"] = json!(r);
            detail["stopCode"] = json!(c);
            detail["stoppedAt"] = json!(now);
        }
        self.events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source("aws.ecs")
                    .detail_type("ECS Task State Change")
                    .resources(&t.task_arn)
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await?;
        self.events_sent.lock().unwrap().push(detail);
        Ok(())
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
