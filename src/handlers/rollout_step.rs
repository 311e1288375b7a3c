//! `rollout-step`: every Task state of the rollout state machine calls this function with an
//! [`Action`] and the rollout. It observes, decides ([`crate::rollout::decide`]) and acts until
//! the decision has nothing left to change, so the result is always read back from ECS and the
//! ALB and a retried call repeats no work.

use serde::Deserialize;
use serde_json::Value;
use tracing::{info, warn};

use super::HandlerError;
use crate::aws::store::{LastRollout, Store};
use crate::aws::{ecs, elb, now_unix, Context};
use crate::rollout::{self, Action, Command, Observation, Rollout, Verdict, MAX_ROUNDS};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepInput {
    pub action: Action,
    pub rollout: Rollout,
}

pub async fn handle(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    let input: StepInput = serde_json::from_value(event).map_err(|e| HandlerError::invalid_input("rollout-step input", e))?;
    let rollout = run(ctx, input.action, input.rollout).await?;
    Ok(serde_json::to_value(rollout).expect("a rollout serialises"))
}

/// Observe → decide → act until the action's goal is read back.
pub async fn run(ctx: &Context, action: Action, mut rollout: Rollout) -> Result<Rollout, HandlerError> {
    for _round in 0..MAX_ROUNDS {
        let obs = observe(ctx, action, &rollout).await?;
        let decision =
            rollout::decide(action, &rollout, &obs, now_unix()).map_err(|halt| HandlerError::new(halt.error_type(), halt.to_string()))?;
        if decision.commands.is_empty() {
            let done = decision.rollout;
            record_progress(ctx, action, &done).await?;
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
    if matches!(action, Action::CreateGreen | Action::Shift | Action::Finish | Action::Rollback) {
        obs.lock_holder = store.lock(&rollout.service.key()).await?.map(|l| l.rollout_id);
    }
    if matches!(action, Action::CheckGreen | Action::Shift | Action::Verify) {
        obs.failures = store.failures(&rollout.id).await?;
    }
    if matches!(action, Action::CheckGreen | Action::Verify) {
        if let Some(green) = rollout.green.as_ref().and_then(|g| obs.task_sets.iter().find(|t| t.id == g.id)) {
            // ECS reports running counts per task set; count tasks only when it does not.
            if green.running_count.is_none() {
                obs.green_running = ecs::running_tasks_of(&clients.ecs, &rollout.service.cluster, &green.id).await?;
            }
        }
    }
    if action == Action::CreateGreen && !obs.task_sets.iter().any(|t| t.external_id.as_deref() == Some(rollout.id.as_str())) {
        if let Some(primary) = obs.task_sets.iter().find(|t| t.status == "PRIMARY") {
            obs.revision_with_image =
                ecs::revision_with_image(&clients.ecs, &primary.task_definition_arn, &rollout.policy.container, &rollout.image.uri).await?;
        }
    }
    Ok(obs)
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
        Command::MakePrimary { task_set_arn } => ecs::make_primary(&clients.ecs, service, task_set_arn).await?,
        Command::ScaleTaskSet { task_set_id, percent } => ecs::scale_task_set(&clients.ecs, service, task_set_id, *percent).await?,
        Command::DeleteTaskSet { task_set_id } => ecs::delete_task_set(&clients.ecs, service, task_set_id).await?,
        Command::ReleaseLock { rollout_id } => {
            let outcome = if action == Action::Finish { "SUCCEEDED" } else { "ROLLED_BACK" };
            let last = LastRollout {
                service: service.key(),
                rollout_id: rollout_id.clone(),
                image: rollout.image.uri.clone(),
                outcome: outcome.into(),
                cause: rollout.cause.clone(),
                ended_at: now_unix(),
            };
            Store::new(&clients.dynamodb, &ctx.settings.table).release(&service.key(), rollout_id, Some(&last)).await?;
        }
    }
    Ok(())
}

/// Keep the lock's progress current for `kanaria status` (and so on-task-event knows which
/// task set is new). Ended rollouts have released the lock; nothing to record then.
async fn record_progress(ctx: &Context, action: Action, rollout: &Rollout) -> Result<(), HandlerError> {
    if matches!(action, Action::Finish | Action::Rollback) {
        return Ok(());
    }
    let phase = match (action, rollout.verdict) {
        (_, Some(Verdict::Rollback)) => "rolling back",
        (Action::CreateGreen | Action::CheckGreen, _) => "starting new task set",
        (Action::Shift, _) => "baking",
        (Action::Verify, _) => "verified",
        (Action::Promote, _) => "draining old task set",
        _ => "in progress",
    };
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let holds = store
        .progress(
            &rollout.service.key(),
            &rollout.id,
            phase,
            rollout.step as u32,
            rollout.weight,
            rollout.green.as_ref().map(|g| g.id.as_str()),
            now_unix(),
        )
        .await?;
    if !holds {
        warn!(rollout = %rollout.id, service = %rollout.service, "the rollout no longer holds the service lock");
    }
    Ok(())
}
