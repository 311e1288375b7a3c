//! Entry points: one handler per Lambda function. Each takes the shared [`Context`] (clients
//! built once in `main`) and the raw event, and returns JSON or a [`HandlerError`] whose type
//! Step Functions `Retry`/`Catch` and Lambda's error reporting understand.

pub mod approval;
pub mod circuit_breaker;
pub mod decide;
pub mod lease;
pub mod manual;
pub mod on_alarm;
pub mod on_image_push;
pub mod on_task_event;
pub mod policy_sync;
pub mod progress;
pub mod restart_loop;
pub mod rollout_step;
pub mod scheduled_scale;
pub mod slack_interactions;
pub mod slack_notify;

use serde_json::Value;

use crate::aws::{AwsError, Context};

/// Every kanaria function, by the name of its crate under `functions/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    OnImagePush,
    RolloutStep,
    OnTaskEvent,
    OnAlarm,
    ScheduledScale,
    PolicySync,
    SlackInteractions,
    SlackNotify,
    RestartLoop,
    Decide,
}

impl Function {
    pub const ALL: [Function; 10] = [
        Function::OnImagePush,
        Function::RolloutStep,
        Function::OnTaskEvent,
        Function::OnAlarm,
        Function::ScheduledScale,
        Function::PolicySync,
        Function::SlackInteractions,
        Function::SlackNotify,
        Function::RestartLoop,
        Function::Decide,
    ];

    pub fn crate_name(self) -> &'static str {
        match self {
            Function::OnImagePush => "on-image-push",
            Function::RolloutStep => "rollout-step",
            Function::OnTaskEvent => "on-task-event",
            Function::OnAlarm => "on-alarm",
            Function::ScheduledScale => "scheduled-scale",
            Function::PolicySync => "policy-sync",
            Function::SlackInteractions => "slack-interactions",
            Function::SlackNotify => "slack-notify",
            Function::RestartLoop => "restart-loop",
            Function::Decide => "decide",
        }
    }

    pub fn from_crate_name(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.crate_name() == name)
    }

    /// Dispatch by function, for the local runtime and tests. Not for `functions/*`: see
    /// [`LambdaEvent`].
    pub async fn handle(self, ctx: &Context, event: Value) -> Result<Value, HandlerError> {
        match self {
            Function::OnImagePush => on_image_push::handle(ctx, event).await,
            Function::RolloutStep => rollout_step::handle(ctx, event).await,
            Function::OnTaskEvent => on_task_event::handle(ctx, event).await,
            Function::OnAlarm => on_alarm::handle(ctx, event).await,
            Function::ScheduledScale => scheduled_scale::handle(ctx, event).await,
            Function::PolicySync => policy_sync::handle(ctx, event).await,
            Function::SlackInteractions => slack_interactions::handle(ctx, event).await,
            Function::SlackNotify => slack_notify::handle(ctx, event).await,
            Function::RestartLoop => restart_loop::handle(ctx, event).await,
            Function::Decide => decide::handle(ctx, event).await,
        }
    }
}

/// What a Lambda function's `main` receives: the raw event. Each binary under `functions/` passes
/// it to its own handler (`kanaria::handlers::on_alarm::handle(&ctx, event.payload)`), never
/// through [`Function::handle`]: that `match` names every handler, so a binary calling it links
/// all of them and every SDK operation they use (BENCHMARKS.md, size and cold start).
pub type LambdaEvent = lambda_runtime::LambdaEvent<Value>;

/// Adapter for `lambda_runtime::service_fn` by [`Function`], for hosts that serve every function
/// in one process (the local runtime); Lambda binaries call their own handler instead.
pub async fn lambda(
    ctx: &Context,
    function: Function,
    event: lambda_runtime::LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Diagnostic> {
    function.handle(ctx, event.payload).await.map_err(Into::into)
}

/// An error as Lambda reports it: `errorType` (what Step Functions retries or catches on) and
/// a message for people. Messages never include secrets or task tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct HandlerError {
    pub error_type: String,
    pub message: String,
}

impl HandlerError {
    /// The input is not what this function accepts; retrying will not help.
    pub fn invalid_input(what: &str, detail: impl std::fmt::Display) -> Self {
        HandlerError { error_type: "Kanaria.InvalidInput".into(), message: format!("{what}: {detail}; nothing was changed") }
    }

    pub fn new(error_type: &str, message: impl Into<String>) -> Self {
        HandlerError { error_type: error_type.into(), message: message.into() }
    }
}

impl From<AwsError> for HandlerError {
    fn from(e: AwsError) -> Self {
        let error_type = if e.transient { "Kanaria.Transient" } else { "Kanaria.AwsError" };
        HandlerError { error_type: error_type.into(), message: e.to_string() }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        lambda_runtime::Diagnostic { error_type: e.error_type, error_message: e.message }
    }
}
