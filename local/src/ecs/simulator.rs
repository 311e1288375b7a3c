//! The ECS task **simulator**: moto stores services and task sets but runs nothing, so this loop
//! plays ECS's scheduler and the ALB's health checks for EXTERNAL-controller services, following
//! [`super::model`]. It reads what moto stores (services' desired counts, task sets and their
//! scale), starts and stops real moto tasks (RunTask/StopTask, `startedBy` = the task set id, as
//! ECS does) and publishes an `ECS Task State Change` event to EventBridge for every change.
//!
//! It talks to moto directly, not through the front server: what it does is AWS's own doing, so
//! it is not a function's call to authorize, fault or answer strictly.
//!
//! Test and demo scaffolding only; nothing in kanaria's functions depends on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use aws_config::SdkConfig;
use aws_sdk_ecs::types::{LaunchType, NetworkConfiguration};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tracing::debug;

use super::model::{Behaviour, Effect, LastStatus, Model, TargetGroupSettings, Task, TaskSetSpec, Timing};

const TICK: Duration = Duration::from_millis(50);
/// moto is read at least this often even when nothing went through the front server (a test
/// may change moto directly).
const RESYNC: Duration = Duration::from_millis(1000);

pub struct Simulator {
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    events: aws_sdk_eventbridge::Client,
    pub(crate) model: Mutex<Model>,
    /// Network configuration of each task set (RunTask needs it; the model does not).
    networks: Mutex<HashMap<String, (String, Option<NetworkConfiguration>)>>,
    images: Mutex<HashMap<String, Vec<(String, String)>>>,
    events_sent: Mutex<Vec<(Instant, Value)>>,
    /// Set by the front server after any change to ECS services or task sets.
    dirty: AtomicBool,
    wake: Notify,
    /// Instant ↔ wall clock, for event timestamps.
    epoch: (Instant, SystemTime),
    /// Tasks that exist before the first sync report no events (nothing to report).
    changed: Notify,
}

impl Simulator {
    /// `moto_config`: an SDK config pointing at moto itself (not the front server).
    pub fn new(moto_config: &SdkConfig, timing: Timing) -> Self {
        Simulator {
            ecs: aws_sdk_ecs::Client::new(moto_config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(moto_config),
            events: aws_sdk_eventbridge::Client::new(moto_config),
            model: Mutex::new(Model::new(timing)),
            networks: Mutex::new(HashMap::new()),
            images: Mutex::new(HashMap::new()),
            events_sent: Mutex::new(Vec::new()),
            dirty: AtomicBool::new(true),
            wake: Notify::new(),
            epoch: (Instant::now(), SystemTime::now()),
            changed: Notify::new(),
        }
    }

    pub fn timing(&self) -> Timing {
        self.model.lock().unwrap().timing.clone()
    }

    /// How fast emulated AWS runs from now on (tests that need long health checks, say).
    pub fn set_timing(&self, timing: Timing) {
        self.model.lock().unwrap().timing = timing;
    }

    fn rule(&self, image_contains: &str, behaviour: Behaviour) {
        self.model.lock().unwrap().add_rule(image_contains, behaviour);
    }

    /// Tasks whose container image contains `image_contains` exit with `exit_code` `after`
    /// reaching RUNNING.
    pub fn crash_images(&self, image_contains: &str, exit_code: i64, after: Duration) {
        self.rule(image_contains, Behaviour { crash: Some((exit_code, after)), ..Default::default() });
    }

    /// Tasks whose container image contains `image_contains` never start: they stop with
    /// stopCode TaskFailedToStart and `reason` (e.g. a CannotPullContainerError).
    pub fn fail_to_start_images(&self, image_contains: &str, reason: &str) {
        self.rule(image_contains, Behaviour { fail_to_start: Some(reason.to_string()), ..Default::default() });
    }

    /// Tasks whose container image contains `image_contains` take `after` to reach RUNNING (as a
    /// Fargate task takes a minute or so to pull its image and attach its ENI).
    pub fn slow_start_images(&self, image_contains: &str, after: Duration) {
        self.rule(image_contains, Behaviour { start_delay: Some(after), ..Default::default() });
    }

    /// Tasks whose container image contains `image_contains` fail the load balancer's health
    /// checks: their targets turn `unhealthy` and ECS replaces them.
    pub fn unhealthy_images(&self, image_contains: &str) {
        self.rule(image_contains, Behaviour { fail_health_checks: true, ..Default::default() });
    }

    /// Tasks whose container image contains `image_contains` answer `rate` (0 to 1) of the
    /// requests the load balancer sends them with HTTP 500 (the traffic probe's requests, and
    /// the ALB metrics it publishes).
    pub fn failing_requests_images(&self, image_contains: &str, rate: f64) {
        self.rule(image_contains, Behaviour { error_rate: rate.clamp(0.0, 1.0), ..Default::default() });
    }

    /// Tasks whose container image contains `image_contains` exit with `exit_code` now (the
    /// running ones at the next tick), and later ones as soon as they run.
    pub fn crash_images_now(&self, image_contains: &str, exit_code: i64) {
        self.model.lock().unwrap().crash_now(image_contains, exit_code);
        self.wake.notify_one();
    }

    /// Every event the simulator has published, in order.
    pub fn events_sent(&self) -> Vec<Value> {
        self.events_sent.lock().unwrap().iter().map(|(_, detail)| detail.clone()).collect()
    }

    /// When the first event published at or after `since` whose detail satisfies `matches`
    /// was emitted (handed to EventBridge).
    pub fn first_event_since(&self, since: Instant, matches: impl Fn(&Value) -> bool) -> Option<Instant> {
        self.events_sent.lock().unwrap().iter().find(|(at, detail)| *at >= since && matches(detail)).map(|(at, _)| *at)
    }

    /// Something changed ECS services or task sets: read moto again before the next tick.
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Wait until the simulator has changed something (tests and the demo use it to wait on a
    /// condition without polling blindly).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    pub async fn run(self: Arc<Self>) {
        let mut last_sync = Instant::now() - RESYNC;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = self.wake.notified() => {}
            }
            let now = Instant::now();
            if self.dirty.swap(false, Ordering::AcqRel) || now.duration_since(last_sync) >= RESYNC {
                match self.sync(now).await {
                    Ok(()) => last_sync = now,
                    Err(e) => {
                        self.dirty.store(true, Ordering::Release);
                        debug!(error = %e, "simulator: reading moto failed");
                    }
                }
            }
            let effects = self.model.lock().unwrap().tick(Instant::now());
            if let Err(e) = self.apply(effects).await {
                debug!(error = %e, "simulator tick failed");
            }
        }
    }

    /// Read every EXTERNAL service's task sets from moto into the model, and the settings of
    /// target groups it has not seen yet.
    pub async fn sync(&self, now: Instant) -> Result<()> {
        let mut specs = Vec::new();
        let mut new_target_groups = Vec::new();
        let clusters = self.ecs.list_clusters().send().await?.cluster_arns().to_vec();
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
                        let lb = ts.load_balancers().first().and_then(|lb| {
                            Some((
                                lb.target_group_arn()?.to_string(),
                                lb.container_name().unwrap_or_default().to_string(),
                                lb.container_port().unwrap_or(80) as u16,
                            ))
                        });
                        if let Some((tg, _, _)) = &lb {
                            if !self.model.lock().unwrap().knows_target_group(tg) {
                                new_target_groups.push(tg.clone());
                            }
                        }
                        self.networks.lock().unwrap().insert(id.clone(), (name.clone(), ts.network_configuration().cloned()));
                        specs.push(TaskSetSpec {
                            id,
                            arn: ts.task_set_arn().unwrap_or_default().to_string(),
                            cluster_arn: cluster.clone(),
                            service: name.clone(),
                            task_definition_arn: ts.task_definition().unwrap_or_default().to_string(),
                            scale_percent: ts.scale().map(|s| s.value()).unwrap_or(100.0),
                            load_balancer: lb,
                            service_desired_count: svc.desired_count().max(0) as u32,
                        });
                    }
                }
            }
        }
        for tg in new_target_groups {
            let settings = self.target_group_settings(&tg).await.unwrap_or_default();
            self.model.lock().unwrap().set_target_group(&tg, settings);
        }
        let effects = self.model.lock().unwrap().sync(specs, now);
        self.apply(effects).await
    }

    async fn target_group_settings(&self, arn: &str) -> Result<TargetGroupSettings> {
        let mut s = TargetGroupSettings::default();
        let groups = self.elb.describe_target_groups().target_group_arns(arn).send().await?;
        if let Some(g) = groups.target_groups().first() {
            s.interval_seconds = g.health_check_interval_seconds().unwrap_or(30) as f64;
            s.healthy_threshold = g.healthy_threshold_count().unwrap_or(5).max(1) as u32;
            s.unhealthy_threshold = g.unhealthy_threshold_count().unwrap_or(2).max(1) as u32;
        }
        let attrs = self.elb.describe_target_group_attributes().target_group_arn(arn).send().await?;
        if let Some(delay) = attrs.attributes().iter().find(|a| a.key() == Some("deregistration_delay.timeout_seconds")) {
            s.deregistration_delay_seconds = delay.value().and_then(|v| v.parse().ok()).unwrap_or(300.0);
        }
        Ok(s)
    }

    /// Forget a target group's settings (it was modified): read them again on the next sync.
    pub fn target_group_changed(&self) {
        self.mark_dirty();
    }

    async fn apply(&self, effects: Vec<Effect>) -> Result<()> {
        let mut any = false;
        for effect in effects {
            any = true;
            match effect {
                Effect::StartTasks { task_set_id, count } => {
                    if let Err(e) = self.start_tasks(&task_set_id, count).await {
                        self.model.lock().unwrap().start_failed(&task_set_id, count);
                        debug!(error = %e, task_set = %task_set_id, "simulator: RunTask failed");
                    }
                }
                Effect::Publish(event) => self.publish(&event.task).await?,
                Effect::StopInMoto { cluster_arn, task_arn, reason } => {
                    self.ecs.stop_task().cluster(&cluster_arn).task(&task_arn).reason(reason).send().await?;
                }
                Effect::DeleteTaskSet { cluster_arn, service, task_set_arn } => {
                    let deleted =
                        self.ecs.delete_task_set().cluster(&cluster_arn).service(&service).task_set(&task_set_arn).force(true).send().await;
                    if let Err(e) = deleted {
                        let id = task_set_arn.rsplit('/').next().unwrap_or_default();
                        debug!(error = %aws_sdk_ecs::error::DisplayErrorContext(&e), "simulator: removing a drained task set failed");
                        self.model.lock().unwrap().delete_failed(&format!("ecs-svc/{id}"));
                    }
                }
            }
        }
        if any {
            self.changed.notify_waiters();
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

    async fn start_tasks(&self, task_set_id: &str, count: usize) -> Result<()> {
        let spec = {
            let model = self.model.lock().unwrap();
            model.spec(task_set_id).cloned()
        };
        let Some(spec) = spec else { return Ok(()) };
        let (service, network) = self.networks.lock().unwrap().get(task_set_id).cloned().unwrap_or_default();
        let containers = self.containers_of(&spec.task_definition_arn).await?;
        let run = self
            .ecs
            .run_task()
            .cluster(&spec.cluster_arn)
            .task_definition(&spec.task_definition_arn)
            .count(count as i32)
            .launch_type(LaunchType::Fargate)
            .set_network_configuration(network)
            .started_by(task_set_id)
            .group(format!("service:{service}"))
            .send()
            .await?;
        let started = run.tasks().len();
        for task in run.tasks() {
            let ip = task
                .attachments()
                .iter()
                .flat_map(|a| a.details())
                .find(|d| d.name() == Some("privateIPv4Address"))
                .and_then(|d| d.value())
                .unwrap_or("10.0.0.1")
                .to_string();
            let effects = self.model.lock().unwrap().task_started(
                task_set_id,
                task.task_arn().unwrap_or_default(),
                &ip,
                containers.clone(),
                Instant::now(),
            );
            Box::pin(self.apply(effects)).await?;
        }
        if started < count {
            self.model.lock().unwrap().start_failed(task_set_id, count - started);
        }
        Ok(())
    }

    fn rfc3339(&self, at: Instant) -> String {
        let wall = self.epoch.1 + at.saturating_duration_since(self.epoch.0);
        humantime::format_rfc3339_millis(wall).to_string()
    }

    /// The task's state as ECS puts it in an `ECS Task State Change` event.
    pub fn event_detail(&self, t: &Task) -> Value {
        let now = Instant::now();
        let stopped = t.last_status == LastStatus::Stopped;
        let containers: Vec<Value> = t
            .containers
            .iter()
            .map(|(name, image)| {
                let exit = t.stop.as_ref().and_then(|s| s.exit_codes.iter().find(|(n, _)| n == name).map(|(_, c)| *c));
                let status = match (exit, t.last_status) {
                    (Some(_), _) => "STOPPED",
                    (None, s) if s >= LastStatus::Deprovisioning => "STOPPED",
                    (None, s) if s >= LastStatus::Running => "RUNNING",
                    _ => "PENDING",
                };
                let mut c = json!({
                    "name": name, "image": image, "lastStatus": status, "taskArn": t.arn,
                    "networkInterfaces": [{"privateIpv4Address": t.ip}],
                });
                match exit {
                    Some(code) => c["exitCode"] = json!(code),
                    // A container stopped by ECS (SIGTERM) exits 0 when it shuts down cleanly.
                    None if stopped && t.stop.as_ref().is_some_and(|s| s.stop_code != "TaskFailedToStart") => c["exitCode"] = json!(0),
                    None => {}
                }
                if let Some(stop) = t.stop.as_ref().filter(|s| s.stop_code == "TaskFailedToStart") {
                    c["reason"] = json!(stop.reason);
                }
                c
            })
            .collect();
        let mut detail = json!({
            "clusterArn": t.cluster_arn,
            "taskArn": t.arn,
            "taskDefinitionArn": t.task_definition_arn,
            "group": format!("service:{}", t.service),
            "startedBy": t.task_set_id,
            "launchType": "FARGATE",
            "lastStatus": t.last_status.as_str(),
            "desiredStatus": if t.desired_running { "RUNNING" } else { "STOPPED" },
            "containers": containers,
            "attachments": [{"type": "eni", "details": [{"name": "privateIPv4Address", "value": t.ip}]}],
            "version": t.version,
            "createdAt": self.rfc3339(t.created),
            "updatedAt": self.rfc3339(now),
        });
        if let Some(started) = t.started {
            detail["startedAt"] = json!(self.rfc3339(started));
        }
        if let Some(stop) = &t.stop {
            detail["stopCode"] = json!(stop.stop_code);
            detail["stoppedReason"] = json!(stop.reason);
            detail["stoppingAt"] = json!(self.rfc3339(now));
            if stopped {
                detail["stoppedAt"] = json!(self.rfc3339(now));
            }
        }
        detail
    }

    async fn publish(&self, t: &Task) -> Result<()> {
        let detail = self.event_detail(t);
        // The signal's time is when ECS emits it, before EventBridge's delivery.
        let at = Instant::now();
        self.events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source("aws.ecs")
                    .detail_type("ECS Task State Change")
                    .resources(&t.arn)
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await?;
        self.events_sent.lock().unwrap().push((at, detail));
        Ok(())
    }
}
