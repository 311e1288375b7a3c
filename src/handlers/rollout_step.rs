//! `rollout-step`: every Task state of the rollout state machine calls this function with an
//! [`Action`] and the rollout. It observes, decides ([`crate::rollout::decide`]) and acts until
//! the decision has nothing left to change, so the result is always read back from ECS and the
//! ALB and a retried call repeats no work.
//!
//! Two calls are not reconciles: `bake` (and the blue/green approval gate) keeps the state's
//! task token so the circuit breaker or `kanaria promote` can end the wait early.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::{approval, circuit_breaker, lease, on_image_push, progress, HandlerError};
use crate::analysis::judge;
use crate::aws::store::{LastRollout, Store, TaskToken, ABORTING};
use crate::aws::{cloudwatch, ecs, elb, now_unix, Context};
use crate::metrics;
use crate::rollout::{self, Action, Command, Observation, Rollout, Stability, TargetHealth, Verdict, MAX_ROUNDS};
use crate::slack::message::Phase;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StepAction {
    /// Wait for the bake (or a blue/green gate): keep the task token, return at once.
    Bake,
    /// Wait for a person: keep the task token under an approval id, show the buttons.
    Approval,
    #[serde(untagged)]
    Reconcile(Action),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepInput {
    pub action: StepAction,
    pub rollout: Rollout,
    /// `$$.Task.Token` of a `.waitForTaskToken` state. Never logged.
    #[serde(default)]
    pub task_token: Option<String>,
    /// `$$.StateMachine.Id`: to start a queued newer push when this rollout ends.
    #[serde(default)]
    pub state_machine_arn: Option<String>,
}

pub async fn handle(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    if event.get("detail-type").and_then(Value::as_str) == Some(lease::EXECUTION_STATUS_CHANGE) {
        return lease::execution_ended(ctx, event).await;
    }
    let input: StepInput = serde_json::from_value(event).map_err(|e| HandlerError::invalid_input("rollout-step input", e))?;
    let action = match input.action {
        StepAction::Bake => {
            let token = input.task_token.ok_or_else(|| HandlerError::invalid_input("rollout-step bake", "no taskToken"))?;
            return bake(ctx, &input.rollout, TaskToken(token)).await;
        }
        StepAction::Approval => {
            let token = input.task_token.ok_or_else(|| HandlerError::invalid_input("rollout-step approval", "no taskToken"))?;
            return approval::request(ctx, &input.rollout, TaskToken(token)).await;
        }
        StepAction::Reconcile(action) => action,
    };
    let service_key = input.rollout.service.key();
    let rollout = run(ctx, action, input.rollout).await?;
    // A promotion or a rollback ends by releasing the service: a push queued behind this rollout
    // starts now (Finish tries again after the drain). Its failure never fails this rollout: the
    // push stays queued, and the end of this execution (or the next push) starts it.
    if matches!(action, Action::Promote | Action::Finish | Action::Rollback) && rollout.verdict == Some(Verdict::Done) {
        let mut ctx = ctx.clone();
        if let Some(sm) = input.state_machine_arn {
            ctx.settings.state_machine_arn = sm;
        }
        if let Err(e) = on_image_push::start_queued_push(&ctx, &service_key).await {
            warn!(service = %service_key, error = %e, "the queued push did not start; it stays queued");
        }
    }
    Ok(serde_json::to_value(rollout).expect("a rollout serialises"))
}

/// Keep the bake's task token on the lock, unless the rollout has been fenced meanwhile (then
/// the state fails and the rollout rolls back). A promote request ends the bake at once.
async fn bake(ctx: &Context, rollout: &Rollout, token: TaskToken) -> Result<Value, HandlerError> {
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let service_key = rollout.service.key();
    let lease_until = now_unix() + rollout.wait_seconds + lease::MARGIN_SECONDS;
    if !store.set_bake_token(&service_key, &rollout.id, &token, lease_until).await? {
        let cause = store.abort_cause(&rollout.id).await?.unwrap_or_else(|| "the rollout no longer holds the service".into());
        return Err(HandlerError::new("Kanaria.RolledBack", cause));
    }
    if store.lock(&service_key).await?.is_some_and(|l| l.promote_requested) {
        circuit_breaker::continue_wait(&ctx.clients.sfn, &token).await?;
    }
    Ok(json!({ "baking": rollout.wait_seconds }))
}

/// Observe → decide → act until the action's goal is read back.
///
/// A readiness check whose new tasks are still starting looks again every
/// [`rollout::READINESS_POLL_INTERVAL_SECONDS`] for up to [`rollout::READINESS_POLL_WINDOW_SECONDS`]
/// before it answers "wait": a slow start then costs seconds of this invocation, not three state
/// transitions per look. Each look is a full observation, so a circuit breaker, an abort or the
/// stabilization timeout ends the wait as soon as it is seen.
pub async fn run(ctx: &Context, action: Action, mut rollout: Rollout) -> Result<Rollout, HandlerError> {
    let began = tokio::time::Instant::now();
    // The first state of a rollout, untouched yet (a retry of it counts again: EMF metrics are
    // at-least-once anyway).
    if action == Action::CreateGreen && rollout.green.is_none() && rollout.task_definition_arn.is_none() {
        ctx.metrics.emit(&metrics::Event::RolloutStarted { service: &rollout.service.key() });
    }
    // A rollback: when the traffic it moved back was read back on the stable task set.
    let mut moved_traffic_back = false;
    let mut traffic_restored_after = None;
    // A rollback waiting for the stable task set to serve again looks again too.
    let poll_until = matches!(action, Action::CheckGreen | Action::Rollback)
        .then(|| tokio::time::Instant::now() + Duration::from_secs(rollout::READINESS_POLL_WINDOW_SECONDS));
    let poll_interval = Duration::from_secs(rollout::READINESS_POLL_INTERVAL_SECONDS);
    let mut rounds = 0;
    while rounds < MAX_ROUNDS {
        let obs = observe(ctx, action, &rollout).await?;
        let decision =
            rollout::decide(action, &rollout, &obs, now_unix()).map_err(|halt| HandlerError::new(halt.error_type(), halt.to_string()))?;
        let sets_weights = decision.commands.iter().any(|c| matches!(c, Command::SetWeights { .. }));
        if matches!(action, Action::Rollback | Action::Restore) {
            if moved_traffic_back && !sets_weights && traffic_restored_after.is_none() {
                // This observation read the weights back as the rollback wants them.
                traffic_restored_after = Some(began.elapsed());
            }
            moved_traffic_back |= sets_weights;
        }
        let still_starting = decision.commands.is_empty() && decision.rollout.verdict == Some(Verdict::Wait);
        if still_starting && poll_until.is_some_and(|until| tokio::time::Instant::now() + poll_interval <= until) {
            // `rollout` is left as it was, so `checks` counts invocations (the state machine's
            // back-off), not looks; but a paced rollback's hold began at the first look.
            rollout.shift_back_at = decision.rollout.shift_back_at;
            tokio::time::sleep(poll_interval).await;
            continue;
        }
        rounds += 1;
        if decision.commands.is_empty() {
            let done = decision.rollout;
            if let Some(after) = traffic_restored_after {
                ctx.metrics.emit(&metrics::Event::TrafficRestored { service: &done.service.key(), seconds: after.as_secs_f64() });
            }
            if let Some(kept) = rollout::kept_after_finish(&done, &obs).filter(|_| action == Action::Finish) {
                info!(
                    rollout = %done.id,
                    service = %done.service,
                    task_set = %kept.id,
                    external_id = kept.external_id.as_deref().unwrap_or(""),
                    "the replaced task set was not created by kanaria (its externalId is not kanaria's) and is kept, scaled to 0 and without traffic; delete it with aws ecs delete-task-set if it is no longer needed"
                );
            }
            record_progress(ctx, action, &done).await?;
            show_progress(ctx, action, &done, &obs).await;
            info!(
                rollout = %done.id,
                service = %done.service,
                action = ?action,
                verdict = ?done.verdict,
                step = done.step,
                weight = done.weight,
                cause = done.cause.as_deref().unwrap_or(""),
                "rollout step done"
            );
            return Ok(done);
        }
        for command in &decision.commands {
            info!(rollout = %rollout.id, action = ?action, command = ?command, "acting");
            act(ctx, &decision.rollout, action, command).await?;
        }
        rollout = decision.rollout;
    }
    Err(HandlerError::new(
        "Kanaria.NotConverged",
        format!(
            "{action:?} for {} did not read back as done after {MAX_ROUNDS} rounds; ECS or the ALB did not keep the change",
            rollout.service
        ),
    ))
}

async fn observe(ctx: &Context, action: Action, rollout: &Rollout) -> Result<Observation, HandlerError> {
    let clients = &ctx.clients;
    let store = Store::new(&clients.dynamodb, &ctx.settings.table);
    let service = ecs::describe_service(&clients.ecs, &rollout.service).await?;
    if service.deployment_controller != "EXTERNAL" {
        return Err(HandlerError::new(
            "Kanaria.ServiceNotReady",
            format!(
                "service {} uses the {} deployment controller; kanaria needs EXTERNAL (recreate the service with deploymentController EXTERNAL, see docs/deploy.md)",
                rollout.service, service.deployment_controller
            ),
        ));
    }
    let route =
        rollout.policy.traffic.route().ok_or_else(|| HandlerError::invalid_input("rollout policy", "traffic names no listener or rule"))?;
    let mut obs = Observation {
        desired_count: service.desired_count,
        weights: elb::read_weights(&clients.elb, &route).await?,
        task_sets: service.task_sets,
        ..Default::default()
    };
    let lock = store.lock(&rollout.service.key()).await?;
    if let Some(l) = lock.as_ref().filter(|l| l.rollout_id == rollout.id) {
        obs.aborting = l.status == ABORTING;
        obs.promote_requested = l.promote_requested;
    }
    obs.lock_holder = lock.map(|l| l.rollout_id);
    if obs.aborting || action == Action::Rollback {
        if let Some(abort) = store.abort_record(&rollout.id).await? {
            obs.abort_cause = Some(abort.cause);
            obs.abort_paced = abort.paced;
        }
    }
    // A paced shift back goes on only while the new task set serves and no alarm fires.
    // Only a rollback the policy may pace reads them (one decision: `rollout::paced_rollback`).
    let pacing = matches!(action, Action::Rollback | Action::Restore) && rollout::paced_rollback(rollout, &obs);
    let judging = matches!(
        action,
        Action::CheckGreen | Action::Shift | Action::Verify | Action::Promote | Action::TestTraffic | Action::Validate | Action::Rollback
    );
    if judging {
        obs.failures = store.failures(&rollout.id).await?;
    }
    // (The circuit breaker's Restore reads neither: a failure or an alarm trips it again, at
    // once, see `circuit_breaker::trip`.)
    if (judging && action != Action::Rollback) || (pacing && action == Action::Rollback) {
        obs.alarms_firing = cloudwatch::alarms_in_alarm(&clients.cloudwatch, &rollout.policy.alarms).await?;
    }
    if matches!(action, Action::CheckGreen | Action::Verify | Action::Validate) {
        if let Some(green) = rollout.green.as_ref().and_then(|g| obs.task_sets.iter().find(|t| t.id == g.id)) {
            // ECS reports running counts per task set; count tasks only when it does not.
            if green.running_count.is_none() {
                obs.green_running = ecs::running_tasks_of(&clients.ecs, &rollout.service.cluster, &green.id).await?;
            }
        }
    }
    // Traffic may move only to a task set that serves: read its targets' health when ECS reports
    // the rest ready (the new set before the first shift, the stable set before a rollback shift).
    let moving_to = match action {
        Action::CheckGreen | Action::Validate => rollout.green.as_ref(),
        Action::Rollback | Action::Restore => rollout.stable.as_ref().filter(|s| obs.weight_of(&s.target_group_arn) < 100),
        _ => None,
    };
    let green_while_pacing = rollout.green.as_ref().filter(|g| pacing && obs.weight_of(&g.target_group_arn) > 0);
    for target in moving_to.into_iter().chain(green_while_pacing) {
        let set = obs.task_sets.iter().find(|t| t.id == target.id && t.status != "DRAINING");
        if let Some(set) = set.filter(|s| s.stability != Some(Stability::Stabilizing) && s.running_count != Some(0)) {
            let tg = set.target_group_arn.clone().unwrap_or_else(|| target.target_group_arn.clone());
            let ips = ecs::running_task_ips(&clients.ecs, &rollout.service.cluster, &set.id).await?;
            let healthy = elb::healthy_targets(&clients.elb, &tg, &ips).await?;
            obs.target_health.push((set.id.clone(), TargetHealth { running_tasks: ips.len() as u32, healthy }));
        }
    }
    if action == Action::Verify && !obs.aborting {
        obs.analysis = analyse(ctx, rollout).await?;
    }
    if matches!(action, Action::TestTraffic | Action::Rollback | Action::Restore) {
        if let Some(test) = rollout.policy.test_route() {
            obs.test_weights = elb::read_weights(&clients.elb, &test).await?;
        }
    }
    if action == Action::CreateGreen && !obs.task_sets.iter().any(|t| t.external_id.as_deref() == Some(rollout.id.as_str())) {
        if let Some(primary) = obs.task_sets.iter().find(|t| t.status == "PRIMARY") {
            (obs.revision_with_image, obs.stable_image) =
                ecs::revision_with_image(&clients.ecs, &primary.task_definition_arn, &rollout.policy.container, &rollout.image.uri).await?;
        }
    }
    Ok(obs)
}

/// Canary analysis of the step that just baked, when the policy asks for it.
async fn analyse(ctx: &Context, rollout: &Rollout) -> Result<Option<crate::analysis::Judgement>, HandlerError> {
    let (Some(policy), Some(stable), Some(green), Some(started)) =
        (&rollout.policy.analysis, &rollout.stable, &rollout.green, rollout.step_started_at)
    else {
        return Ok(None);
    };
    let route_arn =
        rollout.policy.traffic.listener_arn.as_deref().or(rollout.policy.traffic.listener_rule_arn.as_deref()).unwrap_or_default();
    let (Some(lb), Some(green_tg), Some(stable_tg)) = (
        cloudwatch::load_balancer_dimension(route_arn),
        cloudwatch::target_group_dimension(&green.target_group_arn),
        cloudwatch::target_group_dimension(&stable.target_group_arn),
    ) else {
        return Ok(None);
    };
    let now = now_unix().max(started + 1);
    let with_latency = policy.latency_p99_ratio.is_some();
    let cw = &ctx.clients.cloudwatch;
    let green_metrics = cloudwatch::target_group_metrics(cw, &lb, &green_tg, started, now, with_latency).await?;
    let (baseline_start, baseline_end) = crate::analysis::baseline_window(rollout.weight, started, now);
    let stable_metrics = cloudwatch::target_group_metrics(cw, &lb, &stable_tg, baseline_start, baseline_end, with_latency).await?;
    Ok(Some(judge(policy, &green_metrics, &stable_metrics)))
}

async fn act(ctx: &Context, rollout: &Rollout, action: Action, command: &Command) -> Result<(), HandlerError> {
    let clients = &ctx.clients;
    let service = &rollout.service;
    match command {
        Command::RegisterTaskDefinition { based_on, container, image } => {
            let arn = ecs::register_revision(&clients.ecs, based_on, container, image).await?;
            info!(rollout = %rollout.id, task_definition = %arn, "registered task definition revision");
        }
        Command::CreateTaskSet { task_definition_arn, target_group_arn, external_id } => {
            let id = ecs::create_task_set(&clients.ecs, service, task_definition_arn, target_group_arn, external_id).await?;
            info!(rollout = %rollout.id, task_set = %id, "created the new task set");
        }
        Command::SetWeights { weights } => {
            let route = rollout
                .policy
                .traffic
                .route()
                .ok_or_else(|| HandlerError::invalid_input("rollout policy", "traffic names no listener or rule"))?;
            elb::set_weights(&clients.elb, &route, weights).await?;
        }
        Command::SetTestWeights { weights } => {
            let route = rollout
                .policy
                .test_route()
                .ok_or_else(|| HandlerError::invalid_input("rollout policy", "blueGreen names no test listener or rule"))?;
            elb::set_weights(&clients.elb, &route, weights).await?;
        }
        Command::MakePrimary { task_set_arn } => ecs::make_primary(&clients.ecs, service, task_set_arn).await?,
        Command::ScaleTaskSet { task_set_id, percent } => ecs::scale_task_set(&clients.ecs, service, task_set_id, *percent).await?,
        Command::DeleteTaskSet { task_set_id } => ecs::delete_task_set(&clients.ecs, service, task_set_id).await?,
        Command::ReleaseLock { rollout_id } => {
            let store = Store::new(&clients.dynamodb, &ctx.settings.table);
            let started_at = store.lock(&service.key()).await?.map(|l| l.started_at).unwrap_or(0);
            let outcome = if action == Action::Promote { "SUCCEEDED" } else { "ROLLED_BACK" };
            let last = LastRollout {
                service: service.key(),
                rollout_id: rollout_id.clone(),
                image: rollout.image.uri.clone(),
                digest: rollout.image.digest.clone(),
                outcome: outcome.into(),
                cause: rollout.cause.clone(),
                started_at,
                ended_at: now_unix(),
            };
            store.release(&service.key(), rollout_id, Some(&last)).await?;
            let key = service.key();
            if action == Action::Promote {
                // started_at is 0 only when the lock vanished meanwhile: no duration to tell then.
                if started_at > 0 {
                    let duration_seconds = last.ended_at.saturating_sub(started_at) as f64;
                    ctx.metrics.emit(&metrics::Event::RolloutPromoted { service: &key, duration_seconds });
                }
            } else {
                let cause = metrics::RollbackCause::of(rollout.cause.as_deref().unwrap_or_default());
                // A superseded rollout is counted by the push that takes its service over, which
                // happens whether or not its own rollback released the service first.
                if cause != metrics::RollbackCause::Superseded {
                    ctx.metrics.emit(&metrics::Event::RolloutRolledBack { service: &key, cause });
                }
            }
        }
    }
    Ok(())
}

/// Publish the rollout's picture for people after the states that change what they see.
async fn show_progress(ctx: &Context, action: Action, rollout: &Rollout, obs: &Observation) {
    let phase = match (action, rollout.verdict) {
        (Action::Restore, _) => return,
        (Action::Rollback, _) => Phase::RolledBack,
        (_, Some(Verdict::Rollback)) => Phase::RollingBack,
        (Action::CreateGreen, _) => Phase::Starting,
        (Action::Shift, _) => Phase::Baking { until: rollout.step_started_at.unwrap_or_else(now_unix) + rollout.wait_seconds },
        (Action::Verify, Some(Verdict::Hold)) => Phase::Baking { until: now_unix() + rollout.wait_seconds },
        (Action::TestTraffic, _) => Phase::Verified,
        (Action::Promote, Some(Verdict::Done)) => Phase::Promoted,
        (Action::Promote, _) => Phase::Promoting,
        // The next state's picture follows at once.
        _ => return,
    };
    let mut card = progress::card(rollout, phase);
    card.failed_tasks = obs.failures.iter().map(|f| f.describe()).collect();
    card.alarms = obs.alarms_firing.iter().map(|a| (a.clone(), "ALARM".to_string())).collect();
    progress::publish(ctx, rollout, card).await;
}

/// Keep the lock's progress and a snapshot of the rollout current, for `kanaria status` and for
/// the event handlers (which task set is new, what to restore). Ended rollouts have released
/// the lock; nothing to record then.
async fn record_progress(ctx: &Context, action: Action, rollout: &Rollout) -> Result<(), HandlerError> {
    // Released by now (or never held, for Finish).
    if matches!(action, Action::Finish | Action::Rollback | Action::Restore)
        || (action == Action::Promote && rollout.verdict == Some(Verdict::Done))
    {
        return Ok(());
    }
    let phase = match (action, rollout.verdict) {
        (_, Some(Verdict::Rollback)) => "rolling back",
        (Action::CreateGreen | Action::CheckGreen, _) => "starting new task set",
        (Action::TestTraffic | Action::Validate, _) => "validating on the test route",
        (Action::Shift, _) => "baking",
        (Action::Verify, Some(Verdict::Hold)) => "holding (analysis inconclusive)",
        (Action::Verify, _) => "verified",
        (Action::Promote, _) => "draining old task set",
        _ => "in progress",
    };
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let snapshot = serde_json::to_string(rollout).expect("a rollout serialises");
    let holds = store
        .progress(
            &rollout.service.key(),
            &rollout.id,
            phase,
            rollout.step as u32,
            rollout.weight,
            rollout.green.as_ref().map(|g| g.id.as_str()),
            &snapshot,
            now_unix(),
            // The next step runs after the wait this one chose, or the lease runs out.
            now_unix() + rollout.wait_seconds + lease::MARGIN_SECONDS,
        )
        .await?;
    if !holds {
        warn!(rollout = %rollout.id, service = %rollout.service, "the rollout no longer holds the service lock");
    }
    Ok(())
}
