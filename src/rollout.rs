//! A rollout's whole lifecycle, as pure decisions: observe → decide → act.
//!
//! Each state of the rollout state machine calls one [`Action`]. The handler
//! ([`crate::handlers::rollout_step`]) runs a small reconcile loop:
//!
//! 1. **observe** ECS, the ALB and kanaria's records into an [`Observation`];
//! 2. **decide** with [`decide`] what must change to reach the action's goal ([`Command`]s) and,
//!    once nothing must change, what the rollout does next ([`Verdict`]);
//! 3. **act** on the commands, then observe again.
//!
//! The loop ends when a decision has no commands: the goal is read back from ECS and the ALB,
//! not assumed. Because decisions depend only on what is observed, a retried call (Lambda or
//! Step Functions retry, duplicate invoke) finds the work done and issues no command twice.
//!
//! Nothing here touches AWS, a clock or I/O: `now` is passed in.

use serde::{Deserialize, Serialize};

use crate::analysis::Judgement;
use crate::events::TaskFailure;
use crate::policy::{ApprovalGate, Gate, Inconclusive, OnTimeout, Policy, ServiceRef};

/// Rounds of observe → decide → act one action may take before it gives up. Every action
/// converges in at most four when AWS does what it is told.
pub const MAX_ROUNDS: usize = 6;

/// The state of one rollout, carried from state to state by the state machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Deterministic id: the same push of the same digest to the same service has the same id.
    pub id: String,
    pub service: ServiceRef,
    /// The policy as it was when the push arrived; later policy edits apply to later rollouts.
    pub policy: Policy,
    pub image: Image,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<TaskSetRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub green: Option<TaskSetRef>,
    /// When the new task set was created (Unix seconds), for the stabilization timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub green_created_at: Option<u64>,
    /// How many readiness checks (`CheckNewTasks` states) the new task set has had; each may
    /// look several times within its invocation ([`READINESS_POLL_WINDOW_SECONDS`]).
    #[serde(default)]
    pub checks: u32,
    /// Index of the current canary step.
    #[serde(default)]
    pub step: usize,
    /// Percent of traffic the new task set has (read back from the ALB).
    #[serde(default)]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<u64>,
    /// Seconds the next Wait state waits (bake, readiness poll or drain).
    #[serde(default)]
    pub wait_seconds: u64,
    /// Always serialised (null when unset) so the state machine's Choice states can test it.
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// Why the rollout is being rolled back, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// What a failed state left here (Step Functions `Catch` with `ResultPath: $.error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StateError>,
    /// Extra bakes taken because canary analysis was inconclusive.
    #[serde(default)]
    pub holds: u32,
    /// The last canary analysis, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<String>,
    /// What a blue/green validation hook answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookResult>,
    /// The image the stable task set runs (its task definition), for people: "old → new".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_image: Option<String>,
    /// When rolling back began to wait for the stable task set to serve again (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_started_at: Option<u64>,
    /// What the rollout waits for (a rollback waiting for the stable task set), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// The rollback was asked for without a failure signal (an inconclusive analysis that rolls
    /// back): the policy's `shiftBack` paces it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paced_rollback: bool,
    /// When a paced rollback last moved traffic back one step (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_back_at: Option<u64>,
    /// Present while the rollout must wait for a person before going on (an approval step
    /// after the step just verified, or a blue/green approval gate). The state machine's
    /// Choice states test it; every decision clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<PendingApproval>,
}

/// A wait for a person: how long (the state's `TimeoutSecondsPath`) and what a timeout means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingApproval {
    pub timeout_seconds: u64,
    pub on_timeout: OnTimeout,
    /// Percent of traffic on the new task set while waiting.
    pub weight: u32,
    /// The person who pushed the image may not decide (`approval.forbidSelfApproval`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forbid_self_approval: bool,
}

impl Rollout {
    /// A rollout as a push starts it: nothing known about task sets yet.
    pub fn new(id: String, policy: Policy, image: Image) -> Self {
        Rollout {
            id,
            service: policy.service.clone(),
            policy,
            image,
            task_definition_arn: None,
            stable: None,
            green: None,
            green_created_at: None,
            checks: 0,
            step: 0,
            weight: 0,
            step_started_at: None,
            wait_seconds: 0,
            verdict: None,
            cause: None,
            error: None,
            holds: 0,
            analysis: None,
            hook: None,
            stable_image: None,
            rollback_started_at: None,
            waiting_for: None,
            paced_rollback: false,
            shift_back_at: None,
            approval: None,
        }
    }
}

/// A validation hook's answer, as the state machine keeps it (`$.hook.answer`): the function's
/// whole payload. The contract is `{"pass": true|false, "reason": "..."}` with `reason`
/// optional; anything but `"pass": true` fails the release (the state machine itself never reads
/// a field that may be missing, which would fail the execution with States.Runtime).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookResult {
    #[serde(default)]
    pub answer: serde_json::Value,
}

impl HookResult {
    pub fn answered(pass: bool, reason: &str) -> Self {
        HookResult { answer: serde_json::json!({ "pass": pass, "reason": reason }) }
    }

    pub fn passed(&self) -> bool {
        self.answer.get("pass") == Some(&serde_json::Value::Bool(true))
    }

    /// Why it failed, for people.
    pub fn reason(&self) -> String {
        match (self.answer.get("pass"), self.answer.get("reason").and_then(|r| r.as_str())) {
            (_, Some(reason)) if !reason.is_empty() => reason.to_string(),
            (Some(serde_json::Value::Bool(_)), _) => "it gave no reason".into(),
            _ => format!("it answered {} instead of {{\"pass\": true|false, \"reason\": \"...\"}}", truncate_json(&self.answer)),
        }
    }
}

fn truncate_json(v: &serde_json::Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub digest: String,
    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY@sha256:...`: pinned to the digest so a
    /// later push of the same tag never changes what this rollout runs.
    pub uri: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSetRef {
    pub id: String,
    pub arn: String,
    pub target_group_arn: String,
}

/// The error a Step Functions `Catch` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateError {
    #[serde(rename = "Error", default, deserialize_with = "null_as_empty")]
    pub error: String,
    /// Step Functions may record no cause (null).
    #[serde(rename = "Cause", default, deserialize_with = "null_as_empty")]
    pub cause: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// The new task set is not ready yet: wait `wait_seconds` and check again.
    Wait,
    /// The new task set runs all its tasks: start shifting traffic.
    Ready,
    /// The step baked cleanly: shift to the next step.
    NextStep,
    /// The last step baked cleanly (or a person asked to skip the rest): promote.
    Promote,
    /// Canary analysis had too little data: bake this step once more.
    Hold,
    /// Something is wrong with the release: roll back (see `cause`).
    Rollback,
    /// The action's goal holds.
    Done,
}

/// The states of the rollout state machine, each a call of the rollout-step function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Register the task-definition revision and create the new (green) task set, 0% traffic.
    CreateGreen,
    /// Is the green task set running all its tasks?
    CheckGreen,
    /// Put the current step's weight on the green target group.
    Shift,
    /// After a bake: no failed green task, all green tasks running.
    Verify,
    /// 100% to green, green primary, old task set scaled to 0; the rollout is done (lock released).
    Promote,
    /// After draining: delete the old task set (the service is released already).
    Finish,
    /// 100% back to stable, green deleted, service released.
    Rollback,
    /// Blue/green: send the test listener's traffic to the new task set.
    TestTraffic,
    /// Blue/green: after the gate on the test route, is the new task set still healthy?
    Validate,
    /// The circuit breaker, from an event handler: 100% back to stable (read back), green
    /// deleted; the rollout's own Rollback state then releases the service.
    Restore,
}

/// What kanaria sees of the world at one moment (built by the adapters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The service's desired count.
    pub desired_count: u32,
    pub task_sets: Vec<TaskSetView>,
    /// Traffic weights per target group on the production listener or rule.
    pub weights: Vec<(String, u32)>,
    /// The task-definition revision that runs `rollout.image` in the policy's container, if one
    /// is registered already: the newest ACTIVE revision of the primary's family that is exactly
    /// what registering would create (the primary's revision with only that image changed), so a
    /// registration whose answer was lost is reused, not repeated.
    pub revision_with_image: Option<String>,
    /// RUNNING tasks of the green task set (when ECS reports no running count).
    pub green_running: u32,
    /// How the running tasks of a task set stand in its target group, by task set id: read for
    /// the task set traffic is about to move to (the new one before the first shift, the stable
    /// one before a rollback shift).
    pub target_health: Vec<(String, TargetHealth)>,
    /// Failed green tasks recorded for this rollout (each counted once).
    pub failures: Vec<TaskFailure>,
    /// The rollout that holds the service's lock, if any.
    pub lock_holder: Option<String>,
    /// The rollout has been fenced for rollback (circuit breaker, alarm, newer push, a person).
    pub aborting: bool,
    /// Why, as recorded by whoever fenced it.
    pub abort_cause: Option<String>,
    /// Whoever fenced it asked for the policy's paced shift back (a person, a newer push), not
    /// for all traffic back at once (a failure signal).
    pub abort_paced: bool,
    /// A person asked to skip the remaining steps (`kanaria promote`).
    pub promote_requested: bool,
    /// Alarms of the policy that are in ALARM now.
    pub alarms_firing: Vec<String>,
    /// Canary analysis of the step just baked, when the policy asks for it.
    pub analysis: Option<Judgement>,
    /// Weights on the blue/green test listener or rule.
    pub test_weights: Vec<(String, u32)>,
    /// The image the primary task set runs in the policy's container (CreateGreen only).
    pub stable_image: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskSetView {
    pub id: String,
    pub arn: String,
    pub external_id: Option<String>,
    /// PRIMARY, ACTIVE or DRAINING.
    pub status: String,
    pub target_group_arn: Option<String>,
    pub task_definition_arn: String,
    pub scale_percent: f64,
    /// ECS's own figures, when it reports them.
    pub computed_desired_count: Option<u32>,
    pub running_count: Option<u32>,
    /// Tasks ECS is starting for the set (PROVISIONING, PENDING, ACTIVATING).
    pub pending_count: Option<u32>,
    /// `stabilityStatus`: STEADY_STATE only when every wanted task runs, none is pending and all
    /// are healthy in their target group (ECS API reference, TaskSet).
    pub stability: Option<Stability>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stability {
    SteadyState,
    Stabilizing,
}

/// The RUNNING tasks of a task set and how many of them are `healthy` targets in its target
/// group (ELB `DescribeTargetHealth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetHealth {
    pub running_tasks: u32,
    pub healthy: u32,
}

impl Observation {
    fn task_set(&self, id: &str) -> Option<&TaskSetView> {
        self.task_sets.iter().find(|t| t.id == id && t.status != "DRAINING")
    }

    fn primary(&self) -> Option<&TaskSetView> {
        self.task_sets.iter().find(|t| t.status == "PRIMARY")
    }

    pub fn weight_of(&self, target_group: &str) -> u32 {
        self.weights.iter().find(|(tg, _)| tg == target_group).map(|(_, w)| *w).unwrap_or(0)
    }

    /// Tasks the green task set should run: ECS's figure when it reports one, else the service's
    /// desired count scaled by the task set's percent (rounded up, as ECS does).
    fn green_expected(&self, green: &TaskSetView) -> u32 {
        green.computed_desired_count.unwrap_or_else(|| ((self.desired_count as f64) * green.scale_percent / 100.0).ceil() as u32)
    }

    fn green_running(&self, green: &TaskSetView) -> u32 {
        self.green_running.max(green.running_count.unwrap_or(0))
    }

    /// Why the new task set, which has taken traffic, is short of tasks — or None. Tasks ECS is
    /// still starting count: the service scaling out during a bake (target tracking, a schedule)
    /// starts new tasks, which is no failure of the release (failed tasks are counted apart, by
    /// the circuit breaker). A set that should run no task cannot be judged, and a set running
    /// none cannot serve.
    fn tasks_missing(&self, set: &TaskSetView) -> Option<String> {
        let expected = self.green_expected(set);
        let running = self.green_running(set);
        let pending = set.pending_count.unwrap_or(0);
        if expected == 0 || running == 0 || running + pending < expected {
            return Some(format!("only {running} of {expected} tasks of the new task set are running ({pending} starting)"));
        }
        None
    }

    /// Whether traffic may move to the task set, or why not (for people). Ready means healthy
    /// (`../shared/reference/real-aws.md`): ECS reports it STEADY_STATE, every task it should run
    /// is RUNNING, and each of them is a healthy target in its target group. A target that is
    /// still `initial` gets no requests from the ALB, so shifting weight to it fails clients.
    pub fn serving(&self, set: &TaskSetView) -> Result<(), String> {
        let expected = self.green_expected(set);
        let running = self.green_running(set);
        if expected == 0 {
            return Err(format!(
                "task set {} should run no tasks (desired count {} × scale {}%)",
                set.id, self.desired_count, set.scale_percent
            ));
        }
        if running < expected {
            return Err(format!("{running} of {expected} tasks of task set {} are running", set.id));
        }
        if set.stability == Some(Stability::Stabilizing) {
            return Err(format!("ECS reports task set {} STABILIZING (not every task is healthy yet)", set.id));
        }
        if set.target_group_arn.is_some() {
            match self.target_health.iter().find(|(id, _)| *id == set.id).map(|(_, h)| *h) {
                Some(h) if h.healthy >= expected => {}
                Some(h) => {
                    return Err(format!("{} of {expected} targets of task set {} are healthy in its target group", h.healthy, set.id))
                }
                None => return Err(format!("the target health of task set {} was not read", set.id)),
            }
        }
        Ok(())
    }
}

/// A change to make in ECS, the ALB or kanaria's records.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    RegisterTaskDefinition { based_on: String, container: String, image: String },
    CreateTaskSet { task_definition_arn: String, target_group_arn: String, external_id: String },
    SetWeights { weights: Vec<(String, u32)> },
    SetTestWeights { weights: Vec<(String, u32)> },
    MakePrimary { task_set_arn: String },
    ScaleTaskSet { task_set_id: String, percent: f64 },
    DeleteTaskSet { task_set_id: String },
    ReleaseLock { rollout_id: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub commands: Vec<Command>,
    pub rollout: Rollout,
}

/// Why an action cannot go on; the handler reports it as the error of the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Halt {
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Superseded(String),
}

impl Halt {
    pub fn error_type(&self) -> &'static str {
        match self {
            Halt::NotReady(_) => "Kanaria.ServiceNotReady",
            Halt::Superseded(_) => "Kanaria.Superseded",
        }
    }
}

/// How long one readiness check (`CheckNewTasks`) keeps looking at the new task set inside its
/// invocation before it hands back to the state machine's `WaitForNewTasks`. Each hand-back costs
/// three state transitions ($0.000075); polling costs GB-seconds (40 s at 128 MB: $0.000067) and
/// a few reads. Fargate tasks take 30–90 s to start (image pull, ENI, health checks), so a
/// state-machine poll alone would spend most of a rollout's transitions waiting for them
/// (BENCHMARKS.md, cost per rollout). Keep it well under rollout-step's Lambda timeout (60 s).
pub const READINESS_POLL_WINDOW_SECONDS: u64 = 40;

/// Seconds between looks at the new task set within [`READINESS_POLL_WINDOW_SECONDS`].
pub const READINESS_POLL_INTERVAL_SECONDS: u64 = 3;

/// Seconds the state machine waits before a rollback looks again at a stable task set that is
/// not serving yet (its tasks starting again after a scale-down).
pub const ROLLBACK_POLL_SECONDS: u64 = 5;

/// Seconds between readiness checks of the new task set: quick at first (tasks often start in
/// seconds), then backing off so a slow start costs few state transitions.
pub fn readiness_poll_seconds(checks: u32) -> u64 {
    match checks {
        0 => 2,
        1 => 5,
        2 => 10,
        _ => 15,
    }
}

/// Decide what `action` needs, given what is observed. `now` is Unix seconds.
pub fn decide(action: Action, rollout: &Rollout, obs: &Observation, now: u64) -> Result<Decision, Halt> {
    let mut next = rollout.clone();
    next.verdict = None;
    // A wait for a person is asked for by the decision right before it, never carried on.
    next.approval = None;
    let mut commands = Vec::new();
    match action {
        Action::CreateGreen => create_green(&mut next, obs, now, &mut commands)?,
        Action::CheckGreen => {
            let green = green_of(rollout, obs)?;
            next.checks += 1;
            let serving = obs.serving(green);
            if let Some(cause) = stop_cause(rollout, obs) {
                rollback_with(&mut next, cause);
            } else if serving.is_ok() {
                next.verdict = Some(Verdict::Ready);
            } else if now.saturating_sub(rollout.green_created_at.unwrap_or(now)) >= rollout.policy.stabilization_timeout.secs() {
                rollback_with(
                    &mut next,
                    format!(
                        "the new task set was not ready after {} (stabilizationTimeout): {}; check the service's events, stopped tasks and target health",
                        rollout.policy.stabilization_timeout,
                        serving.err().unwrap_or_default()
                    ),
                );
            } else {
                next.verdict = Some(Verdict::Wait);
                next.wait_seconds = readiness_poll_seconds(rollout.checks);
            }
        }
        Action::TestTraffic => {
            holds_lock(rollout, obs)?;
            let green = green_ref(rollout)?;
            let stable = stable_ref(rollout)?;
            if let Some(cause) = stop_cause(rollout, obs) {
                rollback_with(&mut next, cause);
            } else {
                let wanted = split(stable, &green.target_group_arn, 100);
                if wanted.iter().any(|(tg, w)| weight_in(&obs.test_weights, tg) != *w) {
                    commands.push(Command::SetTestWeights { weights: wanted });
                } else {
                    next.wait_seconds = match rollout.policy.gate() {
                        Some(Gate::Bake(secs)) => secs,
                        Some(Gate::Approval(gate)) => {
                            next.approval = Some(pending(&gate, 0));
                            gate.timeout.secs()
                        }
                        _ => 0,
                    };
                    next.verdict = Some(Verdict::Done);
                }
            }
        }
        Action::Validate => {
            let green = green_of(rollout, obs)?;
            if let Some(cause) = stop_cause(rollout, obs) {
                rollback_with(&mut next, cause);
            } else if let Some(hook) = rollout.hook.as_ref().filter(|h| !h.passed()) {
                rollback_with(&mut next, format!("the validation hook failed the release: {}", hook.reason()));
            } else if let Some(short) = obs.tasks_missing(green) {
                rollback_with(&mut next, format!("{short} after validation on the test route"));
            } else {
                next.verdict = Some(Verdict::Ready);
            }
        }
        Action::Shift => {
            holds_lock(rollout, obs)?;
            green_of(rollout, obs)?;
            let stable = stable_ref(rollout)?;
            let green_tg = &green_ref(rollout)?.target_group_arn;
            let steps = rollout.policy.steps();
            let step = &steps[rollout.step.min(steps.len().saturating_sub(1))];
            if let Some(cause) = stop_cause(rollout, obs) {
                // Never move traffic forward onto a task set that is failing or fenced; if a
                // forward shift raced with the fence, put the traffic back at once.
                let back = split(stable, green_tg, 0);
                if obs.aborting && obs.weight_of(green_tg) > 0 && weights_differ(obs, &back) {
                    commands.push(Command::SetWeights { weights: back });
                } else {
                    rollback_with(&mut next, cause);
                }
            } else {
                let wanted = split(stable, green_tg, step.weight);
                if weights_differ(obs, &wanted) {
                    commands.push(Command::SetWeights { weights: wanted });
                } else {
                    next.weight = step.weight;
                    next.step_started_at = Some(now);
                    next.wait_seconds = step.bake.secs();
                    next.verdict = Some(Verdict::Done);
                }
            }
        }
        Action::Verify => {
            let green = green_of(rollout, obs)?;
            let steps = rollout.policy.steps();
            if let Some(cause) = stop_cause(rollout, obs) {
                rollback_with(&mut next, cause);
            } else if let Some(short) = obs.tasks_missing(green) {
                rollback_with(&mut next, format!("{short} after the {}% step", rollout.weight));
            } else {
                match &obs.analysis {
                    Some(Judgement::Fail(reason)) => rollback_with(&mut next, format!("canary analysis at {}%: {reason}", rollout.weight)),
                    Some(Judgement::Inconclusive(reason)) => {
                        let hold = rollout.policy.analysis.as_ref().is_some_and(|a| a.inconclusive == Inconclusive::Hold);
                        if hold && rollout.holds == 0 {
                            next.holds += 1;
                            next.analysis = Some(format!("inconclusive, holding {}% for one more bake: {reason}", rollout.weight));
                            next.wait_seconds = steps[rollout.step.min(steps.len().saturating_sub(1))].bake.secs();
                            next.verdict = Some(Verdict::Hold);
                        } else {
                            rollback_with(&mut next, format!("canary analysis at {}% stayed inconclusive: {reason}", rollout.weight));
                            // Not enough data is not a failure: the policy may pace the way back.
                            next.paced_rollback = true;
                        }
                    }
                    Some(Judgement::Pass(summary)) => next.analysis = Some(summary.clone()),
                    None => {}
                }
                if next.verdict.is_none() {
                    next.holds = 0;
                    // A person asked to promote has already given the go-ahead an approval
                    // step would ask for.
                    let gate = steps.get(rollout.step).and_then(|s| s.approval.as_ref()).filter(|_| !obs.promote_requested);
                    next.approval = gate.map(|g| pending(g, rollout.weight));
                    if obs.promote_requested || rollout.step + 1 >= steps.len() {
                        next.verdict = Some(Verdict::Promote);
                    } else {
                        next.step += 1;
                        next.verdict = Some(Verdict::NextStep);
                    }
                }
            }
        }
        Action::Promote => {
            let green = green_ref(rollout)?;
            let stable = stable_ref(rollout)?;
            let promoted = obs.primary().map(|p| p.id.as_str()) == Some(green.id.as_str())
                && obs.task_set(&stable.id).is_none_or(|s| s.scale_percent == 0.0);
            if obs.lock_holder.as_deref() != Some(rollout.id.as_str()) {
                // The lock is released as the last act of a promotion: a retry finds the work
                // done. Anything else means another rollout holds the service now.
                if !promoted {
                    holds_lock(rollout, obs)?;
                }
                next.weight = 100;
                next.wait_seconds = rollout.policy.drain.secs();
                next.verdict = Some(Verdict::Done);
                return Ok(Decision { commands, rollout: next });
            }
            // Never send all traffic to a task set that is no longer there.
            green_of(rollout, obs)?;
            let wanted = split(stable, &green.target_group_arn, 100);
            let cause = stop_cause(rollout, obs);
            // Order matters for safety: all traffic first, then primary, and only then is the old
            // task set scaled down (a failure before that leaves a fast rollback possible). Then
            // the rollout is done: the lock goes, so events no longer treat the new primary as a
            // canary and a newer push starts a rollout of its own. The old task set drains and is
            // deleted after that (Finish), without the lock.
            if weights_differ(obs, &wanted) {
                match cause {
                    Some(cause) => rollback_with(&mut next, cause),
                    None => commands.push(Command::SetWeights { weights: wanted }),
                }
            } else if obs.primary().map(|p| p.id.as_str()) != Some(green.id.as_str()) {
                commands.push(Command::MakePrimary { task_set_arn: green.arn.clone() });
            } else if obs.task_set(&stable.id).is_some_and(|s| s.scale_percent > 0.0) {
                commands.push(Command::ScaleTaskSet { task_set_id: stable.id.clone(), percent: 0.0 });
            } else {
                next.weight = 100;
                commands.push(Command::ReleaseLock { rollout_id: rollout.id.clone() });
            }
        }
        Action::Finish => {
            // After the drain: delete the task set this rollout replaced, if it is still there, no
            // longer primary and gets no traffic. Nothing else is this rollout's to touch (a newer
            // rollout may be in flight by now), and nothing here can undo the promotion. A replaced
            // set kanaria did not create (the team's first, without a kanaria externalId) stays,
            // scaled to 0: kanaria never deletes what it did not create.
            let stable = stable_ref(rollout)?;
            if let Some(old) = obs.task_set(&stable.id) {
                let unused = old.status != "PRIMARY" && old.target_group_arn.as_deref().is_none_or(|tg| obs.weight_of(tg) == 0);
                if unused && is_kanarias(old.external_id.as_deref()) {
                    commands.push(Command::DeleteTaskSet { task_set_id: old.id.clone() });
                }
            }
            if commands.is_empty() {
                next.verdict = Some(Verdict::Done);
            }
        }
        Action::Rollback | Action::Restore => {
            if next.cause.is_none() {
                let hook = rollout
                    .hook
                    .as_ref()
                    .filter(|h| !h.passed())
                    .map(|h| format!("the validation hook failed the release: {}", h.reason()));
                next.cause = Some(
                    obs.abort_cause
                        .clone()
                        .or(hook)
                        .or_else(|| failed_tasks_cause(rollout, obs))
                        .or_else(|| approval_timeout_cause(rollout))
                        .unwrap_or_else(|| cause_from_error(rollout.error.as_ref())),
                );
            }
            let holds = obs.lock_holder.as_deref() == Some(rollout.id.as_str());
            if action == Action::Restore {
                holds_lock(rollout, obs)?;
            }
            let mut waiting = None;
            if holds {
                waiting = restore(rollout, obs, paced_rollback(rollout, obs), now, &mut next, &mut commands)?;
            } else {
                // Another rollout holds the service now (a newer push) or none does: traffic is
                // not ours to move. Only remove what this rollout created, if it gets no traffic.
                for t in obs.task_sets.iter().filter(|t| t.status != "PRIMARY" && t.status != "DRAINING" && created_by(rollout, t)) {
                    if t.target_group_arn.as_deref().is_none_or(|tg| obs.weight_of(tg) == 0) {
                        commands.push(Command::DeleteTaskSet { task_set_id: t.id.clone() });
                    }
                }
            }
            if commands.is_empty() {
                if let Some(Waiting::Pacing { why, seconds }) = waiting {
                    // Held on purpose: not a stable task set that fails to come up, so the
                    // stabilization timeout does not run.
                    next.waiting_for = Some(why);
                    next.wait_seconds = seconds.clamp(1, ROLLBACK_POLL_SECONDS);
                    next.verdict = Some(Verdict::Wait);
                } else if let Some(Waiting::StableNotServing(why)) = waiting {
                    let started = *next.rollback_started_at.get_or_insert(now);
                    let limit = rollout.policy.stabilization_timeout.secs();
                    if now.saturating_sub(started) >= limit {
                        return Err(Halt::NotReady(format!(
                            "cannot roll back {}: the stable task set did not become ready within {} (stabilizationTimeout): {why}; traffic was left where it was ({}% on the new task set)",
                            rollout.service,
                            rollout.policy.stabilization_timeout,
                            rollout.green.as_ref().map(|g| obs.weight_of(&g.target_group_arn)).unwrap_or(0)
                        )));
                    }
                    next.waiting_for = Some(why);
                    next.wait_seconds = ROLLBACK_POLL_SECONDS;
                    next.verdict = Some(Verdict::Wait);
                } else if holds && action == Action::Rollback {
                    commands.push(Command::ReleaseLock { rollout_id: rollout.id.clone() });
                } else {
                    next.waiting_for = None;
                    next.weight = 0;
                    next.verdict = Some(Verdict::Done);
                }
            }
        }
    }
    Ok(Decision { commands, rollout: next })
}

fn create_green(next: &mut Rollout, obs: &Observation, now: u64, commands: &mut Vec<Command>) -> Result<(), Halt> {
    holds_lock(next, obs)?;
    let primary = obs.primary().ok_or_else(|| {
        Halt::NotReady(format!(
            "service {} has no primary task set; create the service with deploymentController EXTERNAL and one task set (see docs/deploy.md)",
            next.service
        ))
    })?;
    // A retried call finds the task set it created before (tagged with the rollout id).
    let ours = obs.task_sets.iter().find(|t| t.external_id.as_deref() == Some(next.id.as_str()) && t.status != "DRAINING");
    let stable = match (&next.stable, ours) {
        (Some(s), _) => s.clone(),
        (None, _) => {
            let tg = primary.target_group_arn.clone().ok_or_else(|| {
                Halt::NotReady(format!("the primary task set {} of {} has no load balancer target group", primary.id, next.service))
            })?;
            if !next.policy.traffic.target_groups.contains(&tg) {
                return Err(Halt::NotReady(format!(
                    "the primary task set {} uses target group {tg}, which is not in the policy's traffic.targetGroups; fix the policy",
                    primary.id
                )));
            }
            TaskSetRef { id: primary.id.clone(), arn: primary.arn.clone(), target_group_arn: tg }
        }
    };
    let green_tg = next
        .policy
        .traffic
        .target_groups
        .iter()
        .find(|tg| **tg != stable.target_group_arn)
        .cloned()
        .ok_or_else(|| Halt::NotReady("the policy names only one target group".into()))?;
    if obs.weight_of(&stable.target_group_arn) != 100 && ours.is_none() {
        return Err(Halt::NotReady(format!(
            "the production listener does not send 100% to the stable target group {} (weights: {:?}); another deployment may be in progress",
            stable.target_group_arn, obs.weights
        )));
    }
    next.stable = Some(stable.clone());
    if next.stable_image.is_none() {
        next.stable_image = obs.stable_image.clone();
    }
    // Leftovers (a task set of an earlier rollout that could not be cleaned up) would exceed
    // the per-service task-set limit over time; remove them while they get no traffic. A retried
    // call that finds the task set it made removes the others too: a second set of this rollout
    // (a create retried without its client token) would run tasks for nothing until Finish.
    // Only kanaria's own are deleted; another's is left alone unless its tasks would serve the
    // new task set's target group.
    let ours_id = ours.map(|o| o.id.as_str());
    for t in obs.task_sets.iter().filter(|t| t.id != stable.id && t.status != "DRAINING" && Some(t.id.as_str()) != ours_id) {
        if t.target_group_arn.as_deref().is_some_and(|tg| obs.weight_of(tg) > 0) {
            return Err(Halt::NotReady(format!(
                "task set {} of {} still receives traffic; finish or roll back that deployment first",
                t.id, next.service
            )));
        }
        if is_kanarias(t.external_id.as_deref()) {
            commands.push(Command::DeleteTaskSet { task_set_id: t.id.clone() });
        } else if t.target_group_arn.as_deref() == Some(green_tg.as_str()) && t.scale_percent > 0.0 {
            return Err(Halt::NotReady(format!(
                "task set {} of {} (externalId {}) runs tasks on target group {green_tg}, where the new task set goes, and kanaria deletes only \
                 task sets it created; delete it (aws ecs delete-task-set --cluster {} --service {} --task-set {}) or scale it to 0, then push again",
                t.id,
                next.service,
                t.external_id.as_deref().unwrap_or("none"),
                next.service.cluster,
                next.service.name,
                t.id
            )));
        }
    }
    if !commands.is_empty() {
        return Ok(());
    }
    if let Some(green) = ours {
        next.green = Some(TaskSetRef { id: green.id.clone(), arn: green.arn.clone(), target_group_arn: green_tg });
        next.task_definition_arn = Some(green.task_definition_arn.clone());
        next.green_created_at.get_or_insert(now);
        next.checks = 0;
        next.verdict = Some(Verdict::Done);
        next.wait_seconds = readiness_poll_seconds(0);
        return Ok(());
    }
    match &obs.revision_with_image {
        None => commands.push(Command::RegisterTaskDefinition {
            based_on: primary.task_definition_arn.clone(),
            container: next.policy.container.clone(),
            image: next.image.uri.clone(),
        }),
        Some(revision) => {
            commands.push(Command::CreateTaskSet {
                task_definition_arn: revision.clone(),
                target_group_arn: green_tg,
                external_id: next.id.clone(),
            });
        }
    }
    Ok(())
}

fn pending(gate: &ApprovalGate, weight: u32) -> PendingApproval {
    PendingApproval {
        timeout_seconds: gate.timeout.secs().max(1),
        on_timeout: gate.on_timeout,
        weight,
        forbid_self_approval: gate.forbid_self_approval,
    }
}

/// May the policy's `shiftBack` pace this rollback? Only when it has one and the rollback was
/// asked for without a failure signal: fenced by a person or a newer push that asked for the
/// policy's pace, or (not fenced) an inconclusive analysis or an approval timeout. Whether the
/// new task set still serves is `paced_step`'s to judge.
pub fn paced_rollback(rollout: &Rollout, obs: &Observation) -> bool {
    rollout.policy.shift_back.is_some()
        && (obs.abort_paced || (!obs.aborting && (rollout.paced_rollback || approval_timeout_cause(rollout).is_some())))
}

/// The rollout waited for a person in vain and its policy says to roll back then.
fn approval_timeout_cause(rollout: &Rollout) -> Option<String> {
    let approval = rollout.approval.as_ref()?;
    let timed_out = rollout.error.as_ref().is_some_and(|e| e.error == "States.Timeout");
    (timed_out && approval.on_timeout == OnTimeout::Rollback).then(|| {
        format!(
            "nobody approved within {} at {}% traffic (the policy's approval rolls back on timeout)",
            humantime::format_duration(std::time::Duration::from_secs(approval.timeout_seconds)),
            approval.weight
        )
    })
}

/// A task set this rollout created: it carries the rollout's id as its externalId (the new task
/// set recorded as `green` always does). Only the externalId counts, never an id the rollout's
/// input names, so no input can make a rollback delete a task set kanaria did not create.
fn created_by(rollout: &Rollout, t: &TaskSetView) -> bool {
    t.external_id.as_deref() == Some(rollout.id.as_str())
}

/// The prefix of an externalId with which a team hands a task set it created itself (the
/// service's first) over to kanaria, to be deleted once a rollout has replaced it.
pub const HANDED_OVER_PREFIX: &str = "kanaria-";

/// A rollout id as `on_image_push::rollout_names` makes it: 16 lowercase hex digits. Every task
/// set kanaria creates carries its rollout's id as its externalId.
pub fn is_rollout_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether kanaria may ever delete a task set with this externalId: one it created (a rollout
/// id), or one handed over with [`HANDED_OVER_PREFIX`]. A task set without an externalId, or with
/// another tool's, is never deleted — at most left without traffic and scaled to 0.
pub fn is_kanarias(external_id: Option<&str>) -> bool {
    external_id.is_some_and(|id| is_rollout_id(id) || id.starts_with(HANDED_OVER_PREFIX))
}

/// The task set a promotion replaced that [`Action::Finish`] leaves in place because kanaria did
/// not create it (its externalId is not kanaria's): it has no traffic and is scaled to 0, and it is
/// the team's to delete.
pub fn kept_after_finish<'a>(rollout: &Rollout, obs: &'a Observation) -> Option<&'a TaskSetView> {
    let stable = rollout.stable.as_ref()?;
    obs.task_set(&stable.id).filter(|old| old.status != "PRIMARY" && old.status != "DRAINING" && !is_kanarias(old.external_id.as_deref()))
}

/// The commands that put the service back as it was: stable task set primary at full scale,
/// 100% of traffic on it (read back) once it is serving — healthy, never before — and only then
/// the new task set deleted. Returns why it waits, while the stable task set is not serving yet
/// (scaled down before, its tasks starting again): traffic stays where it is until then.
/// Why a rollback does not move traffic yet.
#[derive(Debug, Clone, PartialEq)]
enum Waiting {
    /// The stable task set does not serve yet (its tasks starting again after a scale-down).
    StableNotServing(String),
    /// A paced shift back holds a step (the policy's `shiftBack`) for `seconds` more.
    Pacing { why: String, seconds: u64 },
}

/// The next weight of the new task set on a paced way back, or why it holds the current one:
/// the first step of `shiftBack.steps` below its weight, once the step it is on has been held
/// for the interval. None: move all traffic back now (no pacing asked for, or a failure signal:
/// the new task set no longer fully serves, tasks of it failed).
fn paced_step(rollout: &Rollout, obs: &Observation, green_tg: &str, now: u64, next: &mut Rollout) -> Option<Result<u32, (String, u64)>> {
    let back = rollout.policy.shift_back.as_ref()?;
    let green = rollout.green.as_ref().and_then(|g| obs.task_set(&g.id))?;
    if obs.serving(green).is_err() || failed_tasks_cause(rollout, obs).is_some() || !obs.alarms_firing.is_empty() {
        return None;
    }
    let current = obs.weight_of(green_tg);
    if current == 0 {
        return None;
    }
    let on_a_step = back.steps.contains(&current);
    if on_a_step {
        // A step reached by the circuit breaker's own restore (or before a retry) is held from
        // the first time this rollback sees it.
        let since = *next.shift_back_at.get_or_insert(now);
        // Whole seconds: a step is held for more than the interval, never less.
        let held = now.saturating_sub(since);
        if held <= back.interval.secs() {
            let left = back.interval.secs() - held + 1;
            return Some(Err((
                format!("shifting back gradually (policy shiftBack): {current}% on the new task set for {left}s more, so the stable tasks warm up"),
                left,
            )));
        }
    }
    Some(Ok(back.steps.iter().copied().find(|w| *w < current).unwrap_or(0)))
}

fn restore(
    rollout: &Rollout,
    obs: &Observation,
    paced: bool,
    now: u64,
    next: &mut Rollout,
    commands: &mut Vec<Command>,
) -> Result<Option<Waiting>, Halt> {
    match &rollout.stable {
        Some(stable) => match obs.task_set(&stable.id) {
            None if obs.task_sets.iter().any(|t| t.status != "DRAINING") => {
                // Someone removed the stable task set: moving traffic back would send it nowhere,
                // and deleting the new one would leave nothing serving.
                return Err(Halt::NotReady(format!(
                    "cannot roll back {}: the stable task set {} no longer exists, so the new task set is left serving; push a known-good image to roll forward",
                    rollout.service, stable.id
                )));
            }
            None => {}
            Some(stable_view) => {
                let green_tg = rollout.policy.traffic.target_groups.iter().find(|tg| **tg != stable.target_group_arn).cloned();
                let wanted = split(stable, green_tg.as_deref().unwrap_or(""), 0);
                if stable_view.scale_percent < 100.0 {
                    commands.push(Command::ScaleTaskSet { task_set_id: stable.id.clone(), percent: 100.0 });
                }
                if obs.primary().map(|p| p.id.as_str()) != Some(stable.id.as_str()) {
                    commands.push(Command::MakePrimary { task_set_arn: stable.arn.clone() });
                }
                if commands.is_empty() && weights_differ(obs, &wanted) {
                    if let Err(why) = obs.serving(stable_view) {
                        return Ok(Some(Waiting::StableNotServing(why)));
                    }
                    let green_tg = green_tg.as_deref().unwrap_or("");
                    match paced.then(|| paced_step(rollout, obs, green_tg, now, next)).flatten() {
                        Some(Err((why, seconds))) => return Ok(Some(Waiting::Pacing { why, seconds })),
                        Some(Ok(weight)) => {
                            next.shift_back_at = Some(now);
                            commands.push(Command::SetWeights { weights: split(stable, green_tg, weight) });
                        }
                        None => commands.push(Command::SetWeights { weights: wanted }),
                    }
                }
                // Blue/green: the test listener goes back to the stable task set too, before the
                // new one is deleted (it would point at a target group with nothing behind it).
                if commands.is_empty() && rollout.policy.test_route().is_some() {
                    let wanted = split(stable, green_tg.as_deref().unwrap_or(""), 0);
                    if wanted.iter().any(|(tg, w)| weight_in(&obs.test_weights, tg) != *w) {
                        commands.push(Command::SetTestWeights { weights: wanted });
                    }
                }
                // The new task set goes only once the ALB no longer sends it anything.
                if commands.is_empty() {
                    for t in obs.task_sets.iter().filter(|t| t.id != stable.id && t.status != "DRAINING" && created_by(rollout, t)) {
                        commands.push(Command::DeleteTaskSet { task_set_id: t.id.clone() });
                    }
                }
            }
        },
        // Failed before the stable task set was known (CreateGreen's result was lost): remove
        // what this rollout created, which cannot have had traffic yet.
        None => {
            for t in obs.task_sets.iter().filter(|t| t.status != "PRIMARY" && t.status != "DRAINING" && created_by(rollout, t)) {
                if t.target_group_arn.as_deref().is_none_or(|tg| obs.weight_of(tg) == 0) {
                    commands.push(Command::DeleteTaskSet { task_set_id: t.id.clone() });
                }
            }
        }
    }
    Ok(None)
}

fn stable_ref(rollout: &Rollout) -> Result<&TaskSetRef, Halt> {
    rollout.stable.as_ref().ok_or_else(|| Halt::NotReady("the rollout has no stable task set".into()))
}

fn weight_in(weights: &[(String, u32)], target_group: &str) -> u32 {
    weights.iter().find(|(tg, _)| tg == target_group).map(|(_, w)| *w).unwrap_or(0)
}

/// Why the rollout must not go on, if anything says so: it was fenced for rollback, its new
/// tasks failed (policy threshold), or one of its alarms fires.
fn stop_cause(rollout: &Rollout, obs: &Observation) -> Option<String> {
    if obs.aborting {
        return Some(obs.abort_cause.clone().unwrap_or_else(|| "the rollout is being rolled back".into()));
    }
    if let Some(cause) = failed_tasks_cause(rollout, obs) {
        return Some(cause);
    }
    if !obs.alarms_firing.is_empty() {
        return Some(format!("alarm {} is in ALARM at {}% traffic", obs.alarms_firing.join(", "), rollout.weight));
    }
    None
}

fn holds_lock(rollout: &Rollout, obs: &Observation) -> Result<(), Halt> {
    match obs.lock_holder.as_deref() {
        Some(id) if id == rollout.id => Ok(()),
        other => Err(Halt::Superseded(format!(
            "rollout {} no longer holds {} (held by {}); it must not move traffic",
            rollout.id,
            rollout.service,
            other.unwrap_or("nobody")
        ))),
    }
}

fn green_ref(rollout: &Rollout) -> Result<&TaskSetRef, Halt> {
    rollout.green.as_ref().ok_or_else(|| Halt::NotReady("the rollout has no new task set yet".into()))
}

fn green_of<'a>(rollout: &Rollout, obs: &'a Observation) -> Result<&'a TaskSetView, Halt> {
    let green = green_ref(rollout)?;
    obs.task_set(&green.id)
        .ok_or_else(|| Halt::NotReady(format!("the new task set {} is gone from {}; someone deleted it", green.id, rollout.service)))
}

fn split(stable: &TaskSetRef, green_tg: &str, green_weight: u32) -> Vec<(String, u32)> {
    vec![(stable.target_group_arn.clone(), 100 - green_weight), (green_tg.to_string(), green_weight)]
}

fn weights_differ(obs: &Observation, wanted: &[(String, u32)]) -> bool {
    wanted.iter().any(|(tg, w)| obs.weight_of(tg) != *w)
}

fn rollback_with(next: &mut Rollout, cause: String) {
    next.verdict = Some(Verdict::Rollback);
    next.cause = Some(cause);
}

fn failed_tasks_cause(rollout: &Rollout, obs: &Observation) -> Option<String> {
    if obs.failures.is_empty() || (obs.failures.len() as u32) < rollout.policy.failure_threshold {
        return None;
    }
    let lines: Vec<String> = obs.failures.iter().map(|f| f.describe()).collect();
    Some(format!("{} task(s) of the new task set failed at {}% traffic: {}", obs.failures.len(), rollout.weight, lines.join("; ")))
}

/// A cause a person understands from what a failed state recorded.
pub fn cause_from_error(error: Option<&StateError>) -> String {
    let Some(e) = error else { return "rolled back".into() };
    // Lambda errors carry {"errorType": ..., "errorMessage": ...} as the cause.
    let message = serde_json::from_str::<serde_json::Value>(&e.cause)
        .ok()
        .and_then(|v| v.get("errorMessage").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| e.cause.clone());
    match e.error.as_str() {
        "States.Timeout" => format!("a step timed out: {message}"),
        _ if message.is_empty() => format!("{} failed", e.error),
        _ => format!("{}: {message}", e.error),
    }
}

#[cfg(test)]
mod tests;
