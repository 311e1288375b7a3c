//! What ECS and the ALB do with the task sets of EXTERNAL-controller services, as a pure model:
//! no I/O, the time is passed in. [`super::simulator`] feeds it what moto stores (services, task
//! sets, their scale) and carries out its [`Effect`]s (RunTask/StopTask in moto, task state
//! change events to EventBridge); the front server answers `DescribeTaskSets`,
//! `DescribeTargetHealth`, … from it ([`super::front`]).
//!
//! Modelled as AWS documents it (`../shared/reference/real-aws.md`, rows 1–4):
//! - a task goes PROVISIONING → PENDING → ACTIVATING → RUNNING over its image's start delay (never
//!   zero); on RUNNING its IP is registered in its task set's target group;
//! - a target is `initial` until `HealthyThresholdCount × HealthCheckIntervalSeconds` of passing
//!   checks, then `healthy` (or `unhealthy` after `UnhealthyThresholdCount` checks for an image
//!   marked to fail them, and ECS then stops the task);
//! - a task set is STEADY_STATE only when runningCount = computedDesiredCount, pendingCount = 0 and
//!   every running task is healthy in its target group (ECS API reference, TaskSet);
//! - stopping is staged: first `desiredStatus: STOPPED` with the stop code, reason and exit codes
//!   while `lastStatus` is still RUNNING; then DEACTIVATING while the target drains for the target
//!   group's deregistration delay; then STOPPING, DEPROVISIONING and STOPPED;
//! - a deleted task set is DRAINING until its tasks have stopped; then it is gone.
//!
//! AWS durations (health-check intervals, deregistration delays) are multiplied by
//! [`Timing::time_scale`] so tests run in seconds; start delays are given in local time.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How fast the emulated AWS runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// From a task's creation to RUNNING when its image has no start delay of its own (image
    /// pull, ENI attachment). Never zero: ECS never starts a task at once.
    pub start_delay: Duration,
    /// Local seconds per AWS second, for health checks and deregistration delays (0.01: a 300 s
    /// deregistration delay takes 3 s).
    pub time_scale: f64,
    /// How long ECS waits after a task of a task set failed before it starts a replacement.
    pub restart_delay: Duration,
    /// Each step of a stop after the target has drained (STOPPING, DEPROVISIONING, STOPPED).
    pub stop_step: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            start_delay: Duration::from_millis(1000),
            time_scale: 0.01,
            restart_delay: Duration::from_secs(1),
            stop_step: Duration::from_millis(100),
        }
    }
}

impl Timing {
    /// An AWS duration in local time.
    pub fn scaled(&self, aws_seconds: f64) -> Duration {
        Duration::from_secs_f64((aws_seconds * self.time_scale).max(0.0))
    }
}

/// How tasks of an image behave (set by tests and the demo).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Behaviour {
    /// From creation to RUNNING; `None`: [`Timing::start_delay`].
    pub start_delay: Option<Duration>,
    /// The essential container exits with this code this long after RUNNING.
    pub crash: Option<(i64, Duration)>,
    /// The task never reaches RUNNING: it stops with TaskFailedToStart and this reason.
    pub fail_to_start: Option<String>,
    /// The load balancer's health checks fail.
    pub fail_health_checks: bool,
    /// The share of requests (0 to 1) the application answers with a 5xx.
    pub error_rate: f64,
}

impl Behaviour {
    fn merge(&mut self, other: &Behaviour) {
        self.start_delay = self.start_delay.or(other.start_delay);
        self.crash = self.crash.or(other.crash);
        if self.fail_to_start.is_none() {
            self.fail_to_start = other.fail_to_start.clone();
        }
        self.fail_health_checks |= other.fail_health_checks;
        self.error_rate = self.error_rate.max(other.error_rate);
    }
}

/// A target group's health-check and deregistration settings (AWS seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetGroupSettings {
    pub interval_seconds: f64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub deregistration_delay_seconds: f64,
}

impl Default for TargetGroupSettings {
    /// ELB's defaults for an `ip` target group with HTTP health checks.
    fn default() -> Self {
        TargetGroupSettings { interval_seconds: 30.0, healthy_threshold: 5, unhealthy_threshold: 2, deregistration_delay_seconds: 300.0 }
    }
}

/// A task set as moto stores it (what the model cannot know by itself).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSetSpec {
    pub id: String,
    pub arn: String,
    pub cluster_arn: String,
    pub service: String,
    pub task_definition_arn: String,
    pub scale_percent: f64,
    /// The load balancer of the task set: (target group ARN, container name, container port).
    pub load_balancer: Option<(String, String, u16)>,
    /// The service's desired count.
    pub service_desired_count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LastStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl LastStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LastStatus::Provisioning => "PROVISIONING",
            LastStatus::Pending => "PENDING",
            LastStatus::Activating => "ACTIVATING",
            LastStatus::Running => "RUNNING",
            LastStatus::Deactivating => "DEACTIVATING",
            LastStatus::Stopping => "STOPPING",
            LastStatus::Deprovisioning => "DEPROVISIONING",
            LastStatus::Stopped => "STOPPED",
        }
    }

    /// Not yet RUNNING: ECS counts these in `pendingCount`.
    pub fn is_starting(self) -> bool {
        self < LastStatus::Running
    }
}

/// Why a task stops.
#[derive(Debug, Clone, PartialEq)]
pub struct StopCause {
    pub stop_code: String,
    pub reason: String,
    /// (container, exit code) of containers that exited.
    pub exit_codes: Vec<(String, i64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub arn: String,
    pub cluster_arn: String,
    pub service: String,
    pub task_set_id: String,
    pub task_definition_arn: String,
    /// (name, image) of each container.
    pub containers: Vec<(String, String)>,
    pub ip: String,
    pub last_status: LastStatus,
    pub desired_running: bool,
    /// `detail.version` of the task's last event: raised with every change.
    pub version: u64,
    pub created: Instant,
    pub started: Option<Instant>,
    pub stop: Option<StopCause>,
    stop_requested: Option<Instant>,
    status_since: Instant,
    behaviour: Behaviour,
}

/// A task's state as an `ECS Task State Change` event carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvent {
    pub task: Task,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    Initial,
    Healthy,
    Unhealthy,
    Draining,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Initial => "initial",
            TargetState::Healthy => "healthy",
            TargetState::Unhealthy => "unhealthy",
            TargetState::Draining => "draining",
        }
    }

    /// The reason code `DescribeTargetHealth` gives with the state (ELB API reference, TargetHealth).
    pub fn reason(self) -> Option<(&'static str, &'static str)> {
        match self {
            TargetState::Initial => Some(("Elb.InitialHealthChecking", "Initial health checks in progress")),
            TargetState::Healthy => None,
            TargetState::Unhealthy => Some(("Target.FailedHealthChecks", "Health checks failed")),
            TargetState::Draining => Some(("Target.DeregistrationInProgress", "Target deregistration is in progress")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub target_group_arn: String,
    pub ip: String,
    pub port: u16,
    pub task_arn: String,
    pub state: TargetState,
    since: Instant,
}

/// What the model needs done in the world.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start tasks of the task set (RunTask in moto, then [`Model::task_started`] for each).
    StartTasks { task_set_id: String, count: usize },
    /// Publish an `ECS Task State Change` event.
    Publish(TaskEvent),
    /// The task's desired status is STOPPED now: tell moto (ListTasks' desiredStatus filter).
    StopInMoto { cluster_arn: String, task_arn: String, reason: String },
    /// A deleted task set has drained: remove it from moto.
    DeleteTaskSet { cluster_arn: String, service: String, task_set_arn: String },
}

#[derive(Debug, Clone)]
struct TaskSetState {
    spec: TaskSetSpec,
    /// Deleted (DeleteTaskSet): its tasks stop, then it is removed.
    draining: bool,
    /// Starts asked for and not yet reported back (RunTask in flight).
    starting: usize,
    /// When a task of the set last failed (ECS waits before replacing it).
    last_failure: Option<Instant>,
    /// Still in moto as of the last sync.
    in_moto: bool,
    /// Drained, and its removal from moto asked for ([`Effect::DeleteTaskSet`]): gone for ECS.
    delete_requested: bool,
}

/// Counts ECS reports for a task set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSetCounts {
    pub computed_desired: u32,
    pub running: u32,
    pub pending: u32,
    pub steady: bool,
    pub draining: bool,
}

#[derive(Debug, Default)]
pub struct Model {
    pub timing: Timing,
    rules: Vec<(String, Behaviour)>,
    task_sets: BTreeMap<String, TaskSetState>,
    tasks: BTreeMap<String, Task>,
    targets: Vec<Target>,
    target_groups: HashMap<String, TargetGroupSettings>,
}

impl Model {
    pub fn new(timing: Timing) -> Self {
        Model { timing, ..Default::default() }
    }

    /// Tasks whose container image contains `image_contains` behave as `behaviour` (rules add
    /// up; the first rule that sets a field wins).
    pub fn add_rule(&mut self, image_contains: &str, behaviour: Behaviour) {
        self.rules.push((image_contains.to_string(), behaviour));
    }

    /// Tasks whose image contains `image_contains` exit with `exit_code` now: the ones already
    /// running at their next tick, later ones as soon as they reach RUNNING.
    pub fn crash_now(&mut self, image_contains: &str, exit_code: i64) {
        let crash = Some((exit_code, std::time::Duration::ZERO));
        for task in self.tasks.values_mut() {
            if task.containers.iter().any(|(_, image)| image.contains(image_contains)) {
                task.behaviour.crash = crash;
            }
        }
        // A rule added last loses to earlier ones (first set wins), so put it first.
        self.rules.insert(0, (image_contains.to_string(), Behaviour { crash, ..Default::default() }));
    }

    pub fn set_target_group(&mut self, arn: &str, settings: TargetGroupSettings) {
        self.target_groups.insert(arn.to_string(), settings);
    }

    pub fn knows_target_group(&self, arn: &str) -> bool {
        self.target_groups.contains_key(arn)
    }

    fn behaviour_for(&self, containers: &[(String, String)]) -> Behaviour {
        let mut b = Behaviour::default();
        for (needle, rule) in &self.rules {
            if containers.iter().any(|(_, image)| image.contains(needle.as_str())) {
                b.merge(rule);
            }
        }
        b
    }

    /// The task sets moto stores now (every EXTERNAL service's). A set moto no longer has and
    /// that the model did not drain itself was deleted behind its back: its tasks stop.
    pub fn sync(&mut self, specs: Vec<TaskSetSpec>, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        for state in self.task_sets.values_mut() {
            state.in_moto = false;
        }
        for spec in specs {
            let entry = self.task_sets.entry(spec.id.clone()).or_insert_with(|| TaskSetState {
                spec: spec.clone(),
                draining: false,
                starting: 0,
                last_failure: None,
                in_moto: true,
                delete_requested: false,
            });
            entry.spec = spec;
            entry.in_moto = true;
        }
        let vanished: Vec<String> = self.task_sets.iter().filter(|(_, s)| !s.in_moto).map(|(id, _)| id.clone()).collect();
        for id in vanished {
            let has_tasks = self.tasks.values().any(|t| t.task_set_id == id);
            if self.task_sets.get(&id).is_some_and(|s| s.delete_requested) && !has_tasks {
                self.task_sets.remove(&id);
                continue;
            }
            // Removed from moto by someone else: ECS would have drained it; its tasks stop.
            let reason = format!("Scaling activity initiated by (deployment {id})");
            for arn in self.tasks.values().filter(|t| t.task_set_id == id && t.desired_running).map(|t| t.arn.clone()).collect::<Vec<_>>() {
                effects.extend(self.request_stop(&arn, scheduler_stop(&reason), now));
            }
            if let Some(s) = self.task_sets.get_mut(&id) {
                s.draining = true;
                s.delete_requested = true;
            }
        }
        effects
    }

    /// Removing a drained set from moto failed: ask again on the next tick.
    pub fn delete_failed(&mut self, task_set_id: &str) {
        if let Some(s) = self.task_sets.get_mut(task_set_id) {
            s.delete_requested = false;
        }
    }

    /// DeleteTaskSet: the set is DRAINING from now on. Returns false for a set the model does
    /// not know or that is gone.
    pub fn delete_task_set(&mut self, task_set_id: &str) -> bool {
        match self.task_sets.get_mut(task_set_id) {
            Some(s) if !s.delete_requested => {
                s.draining = true;
                true
            }
            _ => false,
        }
    }

    pub fn is_draining(&self, task_set_id: &str) -> bool {
        self.task_sets.get(task_set_id).is_some_and(|s| s.draining)
    }

    /// Is the set gone (deleted and drained, or never known)?
    pub fn is_gone(&self, task_set_id: &str) -> bool {
        self.task_sets.get(task_set_id).is_none_or(|s| s.delete_requested)
    }

    /// A task RunTask started for the set (after [`Effect::StartTasks`]).
    pub fn task_started(&mut self, task_set_id: &str, arn: &str, ip: &str, containers: Vec<(String, String)>, now: Instant) -> Vec<Effect> {
        let Some(set) = self.task_sets.get_mut(task_set_id) else { return vec![] };
        set.starting = set.starting.saturating_sub(1);
        let spec = set.spec.clone();
        let behaviour = self.behaviour_for(&containers);
        let task = Task {
            arn: arn.to_string(),
            cluster_arn: spec.cluster_arn.clone(),
            service: spec.service.clone(),
            task_set_id: task_set_id.to_string(),
            task_definition_arn: spec.task_definition_arn.clone(),
            containers,
            ip: ip.to_string(),
            last_status: LastStatus::Provisioning,
            desired_running: true,
            version: 1,
            created: now,
            started: None,
            stop: None,
            stop_requested: None,
            status_since: now,
            behaviour,
        };
        self.tasks.insert(arn.to_string(), task.clone());
        vec![Effect::Publish(TaskEvent { task })]
    }

    /// RunTask failed for `count` starts of the set: they are no longer in flight.
    pub fn start_failed(&mut self, task_set_id: &str, count: usize) {
        if let Some(set) = self.task_sets.get_mut(task_set_id) {
            set.starting = set.starting.saturating_sub(count);
        }
    }

    /// The task set as moto last reported it (and as long as the model tracks it).
    pub fn spec(&self, task_set_id: &str) -> Option<&TaskSetSpec> {
        self.task_sets.get(task_set_id).map(|s| &s.spec)
    }

    pub fn task(&self, arn: &str) -> Option<&Task> {
        self.tasks.get(arn)
    }

    pub fn tasks_of<'a>(&'a self, task_set_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks.values().filter(move |t| t.task_set_id == task_set_id)
    }

    pub fn targets_of(&self, target_group_arn: &str) -> Vec<&Target> {
        self.targets.iter().filter(|t| t.target_group_arn == target_group_arn).collect()
    }

    /// The image a target's task runs in its load balancer container (the first container
    /// when the task set names none).
    pub fn image_of_target(&self, target: &Target) -> Option<String> {
        let task = self.tasks.get(&target.task_arn)?;
        let lb_container = self.task_sets.get(&task.task_set_id).and_then(|s| s.spec.load_balancer.as_ref()).map(|(_, c, _)| c.as_str());
        task.containers
            .iter()
            .find(|(name, _)| Some(name.as_str()) == lb_container)
            .or(task.containers.first())
            .map(|(_, image)| image.clone())
    }

    /// The share of requests the target's application answers with a 5xx.
    pub fn error_rate_of_target(&self, target: &Target) -> f64 {
        self.tasks.get(&target.task_arn).map(|t| t.behaviour.error_rate).unwrap_or(0.0)
    }

    pub fn task_set_of_target(&self, target: &Target) -> Option<String> {
        self.tasks.get(&target.task_arn).map(|t| t.task_set_id.clone())
    }

    /// What ECS reports for the set: counts and stability (ECS API reference, TaskSet).
    pub fn counts(&self, task_set_id: &str) -> Option<TaskSetCounts> {
        let set = self.task_sets.get(task_set_id)?;
        let computed_desired = computed_desired(set);
        let mut running = 0;
        let mut pending = 0;
        let mut all_healthy = true;
        for t in self.tasks.values().filter(|t| t.task_set_id == task_set_id && t.desired_running) {
            if t.last_status == LastStatus::Running {
                running += 1;
                if set.spec.load_balancer.is_some() {
                    let healthy = self.targets.iter().any(|tg| tg.task_arn == t.arn && tg.state == TargetState::Healthy);
                    all_healthy &= healthy;
                }
            } else if t.last_status.is_starting() {
                pending += 1;
            }
        }
        Some(TaskSetCounts {
            computed_desired,
            running,
            pending,
            steady: !set.draining && running == computed_desired && pending == 0 && all_healthy,
            draining: set.draining,
        })
    }

    /// Advance everything to `now`; returns what must be done in the world.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.advance_tasks(now, &mut effects);
        self.advance_targets(now, &mut effects);
        self.reconcile(now, &mut effects);
        effects
    }

    fn settings_of(&self, target_group: &str) -> TargetGroupSettings {
        self.target_groups.get(target_group).cloned().unwrap_or_default()
    }

    fn advance_tasks(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        let arns: Vec<String> = self.tasks.keys().cloned().collect();
        for arn in arns {
            let Some(task) = self.tasks.get(&arn).cloned() else { continue };
            let start_delay = task.behaviour.start_delay.unwrap_or(self.timing.start_delay).max(Duration::from_millis(1));
            let since_created = now.saturating_duration_since(task.created);
            if task.desired_running {
                let next = match task.last_status {
                    LastStatus::Provisioning if since_created >= start_delay / 3 => Some(LastStatus::Pending),
                    LastStatus::Pending if since_created >= start_delay * 2 / 3 => {
                        if let Some(reason) = task.behaviour.fail_to_start.clone() {
                            let cause = StopCause { stop_code: "TaskFailedToStart".into(), reason, exit_codes: vec![] };
                            effects.extend(self.request_stop(&arn, cause, now));
                            self.note_failure(&task.task_set_id, now);
                            continue;
                        }
                        Some(LastStatus::Activating)
                    }
                    LastStatus::Activating if since_created >= start_delay => Some(LastStatus::Running),
                    LastStatus::Running => {
                        if let (Some((code, after)), Some(started)) = (task.behaviour.crash, task.started) {
                            if now.saturating_duration_since(started) >= after {
                                let container = task.containers.first().map(|(n, _)| n.clone()).unwrap_or_default();
                                let cause = StopCause {
                                    stop_code: "EssentialContainerExited".into(),
                                    reason: "Essential container in task exited".into(),
                                    exit_codes: vec![(container, code)],
                                };
                                effects.extend(self.request_stop(&arn, cause, now));
                                self.note_failure(&task.task_set_id, now);
                            }
                        }
                        None
                    }
                    _ => None,
                };
                if let Some(status) = next {
                    self.set_status(&arn, status, now, effects);
                    if status == LastStatus::Running {
                        self.register_target(&arn, now);
                    }
                }
                continue;
            }
            // Stopping: DEACTIVATING while the target drains, then STOPPING, DEPROVISIONING, STOPPED.
            let step = self.timing.stop_step;
            let since_status = now.saturating_duration_since(task.status_since);
            let draining = self.targets.iter().any(|t| t.task_arn == arn);
            let next = match task.last_status {
                LastStatus::Running | LastStatus::Activating => Some(LastStatus::Deactivating),
                LastStatus::Provisioning | LastStatus::Pending if since_status >= step => Some(LastStatus::Deprovisioning),
                LastStatus::Deactivating if !draining && since_status >= step => Some(LastStatus::Stopping),
                LastStatus::Stopping if since_status >= step => Some(LastStatus::Deprovisioning),
                LastStatus::Deprovisioning if since_status >= step => Some(LastStatus::Stopped),
                _ => None,
            };
            if let Some(status) = next {
                self.set_status(&arn, status, now, effects);
            }
            if self.tasks.get(&arn).is_some_and(|t| t.last_status == LastStatus::Stopped) {
                self.tasks.remove(&arn);
            }
        }
    }

    fn note_failure(&mut self, task_set_id: &str, now: Instant) {
        if let Some(s) = self.task_sets.get_mut(task_set_id) {
            s.last_failure = Some(now);
        }
    }

    fn set_status(&mut self, arn: &str, status: LastStatus, now: Instant, effects: &mut Vec<Effect>) {
        if let Some(t) = self.tasks.get_mut(arn) {
            t.last_status = status;
            t.status_since = now;
            t.version += 1;
            if status == LastStatus::Running {
                t.started = Some(now);
            }
            effects.push(Effect::Publish(TaskEvent { task: t.clone() }));
        }
    }

    fn register_target(&mut self, arn: &str, now: Instant) {
        let Some(task) = self.tasks.get(arn) else { return };
        let Some((tg, _, port)) = self.task_sets.get(&task.task_set_id).and_then(|s| s.spec.load_balancer.clone()) else { return };
        self.targets.push(Target {
            target_group_arn: tg,
            ip: task.ip.clone(),
            port,
            task_arn: arn.to_string(),
            state: TargetState::Initial,
            since: now,
        });
    }

    /// ECS decides to stop the task: the first event says so (desiredStatus STOPPED, lastStatus
    /// unchanged), its target starts draining, and moto is told.
    fn request_stop(&mut self, arn: &str, cause: StopCause, now: Instant) -> Vec<Effect> {
        let Some(task) = self.tasks.get_mut(arn) else { return vec![] };
        if !task.desired_running {
            return vec![];
        }
        task.desired_running = false;
        task.stop = Some(cause.clone());
        task.stop_requested = Some(now);
        task.status_since = now;
        task.version += 1;
        let event = Effect::Publish(TaskEvent { task: task.clone() });
        let cluster_arn = task.cluster_arn.clone();
        for target in self.targets.iter_mut().filter(|t| t.task_arn == arn) {
            target.state = TargetState::Draining;
            target.since = now;
        }
        vec![event, Effect::StopInMoto { cluster_arn, task_arn: arn.to_string(), reason: cause.reason }]
    }

    fn advance_targets(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        let mut unhealthy_tasks = Vec::new();
        let mut drained = Vec::new();
        for (i, target) in self.targets.iter().enumerate() {
            let settings = self.settings_of(&target.target_group_arn);
            let elapsed = now.saturating_duration_since(target.since);
            let fails = self.tasks.get(&target.task_arn).is_some_and(|t| t.behaviour.fail_health_checks);
            match target.state {
                TargetState::Initial if fails => {
                    if elapsed >= self.timing.scaled(settings.interval_seconds * settings.unhealthy_threshold as f64) {
                        unhealthy_tasks.push((i, target.task_arn.clone(), target.target_group_arn.clone()));
                    }
                }
                TargetState::Initial => {
                    if elapsed >= self.timing.scaled(settings.interval_seconds * settings.healthy_threshold as f64) {
                        drained.push((i, TargetState::Healthy));
                    }
                }
                TargetState::Draining => {
                    if elapsed >= self.timing.scaled(settings.deregistration_delay_seconds) {
                        drained.push((i, TargetState::Draining));
                    }
                }
                _ => {}
            }
        }
        let mut remove = Vec::new();
        for (i, state) in drained {
            if state == TargetState::Healthy {
                self.targets[i].state = TargetState::Healthy;
                self.targets[i].since = now;
            } else {
                remove.push(i);
            }
        }
        for (i, _, _) in &unhealthy_tasks {
            self.targets[*i].state = TargetState::Unhealthy;
            self.targets[*i].since = now;
        }
        remove.sort_unstable();
        for i in remove.into_iter().rev() {
            self.targets.remove(i);
        }
        // ECS replaces a task that its load balancer finds unhealthy.
        for (_, task_arn, tg) in unhealthy_tasks {
            let set = self.tasks.get(&task_arn).map(|t| t.task_set_id.clone());
            let cause = StopCause {
                stop_code: "ServiceSchedulerInitiated".into(),
                reason: format!("Task failed ELB health checks in (target-group {tg})"),
                exit_codes: vec![],
            };
            effects.extend(self.request_stop(&task_arn, cause, now));
            if let Some(set) = set {
                self.note_failure(&set, now);
            }
        }
    }

    /// Keep each task set at its computed desired count; remove drained sets.
    fn reconcile(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        let ids: Vec<String> = self.task_sets.keys().cloned().collect();
        for id in ids {
            let Some(set) = self.task_sets.get(&id).cloned() else { continue };
            let desired = computed_desired(&set) as usize;
            let active: Vec<Task> = self.tasks.values().filter(|t| t.task_set_id == id && t.desired_running).cloned().collect();
            let have = active.len() + set.starting;
            if have < desired && !set.draining {
                let backing_off = set.last_failure.is_some_and(|t| now.saturating_duration_since(t) < self.timing.restart_delay);
                if !backing_off {
                    if let Some(s) = self.task_sets.get_mut(&id) {
                        s.starting += desired - have;
                    }
                    effects.push(Effect::StartTasks { task_set_id: id.clone(), count: desired - have });
                }
            } else if active.len() > desired {
                // Scale-in stops tasks that are not serving yet first, then the newest.
                let mut extra = active;
                extra.sort_by_key(|t| (!t.last_status.is_starting(), std::cmp::Reverse(t.created)));
                let reason = format!("Scaling activity initiated by (deployment {id})");
                for t in extra.iter().take(extra.len() - desired) {
                    effects.extend(self.request_stop(&t.arn, scheduler_stop(&reason), now));
                }
            }
            let left = self.tasks.values().any(|t| t.task_set_id == id);
            if set.draining && !left && set.starting == 0 && !set.delete_requested {
                effects.push(Effect::DeleteTaskSet {
                    cluster_arn: set.spec.cluster_arn.clone(),
                    service: set.spec.service.clone(),
                    task_set_arn: set.spec.arn.clone(),
                });
                if let Some(s) = self.task_sets.get_mut(&id) {
                    s.delete_requested = true;
                }
            }
        }
    }
}

fn computed_desired(set: &TaskSetState) -> u32 {
    if set.draining {
        return 0;
    }
    // ECS rounds up (ECS API reference, TaskSet.computedDesiredCount).
    ((set.spec.service_desired_count as f64) * set.spec.scale_percent / 100.0 - 1e-9).ceil().max(0.0) as u32
}

fn scheduler_stop(reason: &str) -> StopCause {
    StopCause { stop_code: "ServiceSchedulerInitiated".into(), reason: reason.to_string(), exit_codes: vec![] }
}

#[cfg(test)]
mod tests;
