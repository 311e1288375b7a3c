//! What people do by hand (the CLI's `abort` and `promote`), through the same mechanisms as
//! the automatic paths.

use super::circuit_breaker::{self, Pace, Tripped};
use super::HandlerError;
use crate::aws::store::Store;
use crate::aws::Context;

/// Roll the service's in-flight rollout back: at once, or paced by the policy's `shiftBack`
/// (`Pace::Policy`; a policy without one goes at once too).
pub async fn abort(ctx: &Context, service_key: &str, who: &str, pace: Pace) -> Result<Option<(String, Tripped)>, HandlerError> {
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let Some(lock) = store.lock(service_key).await? else { return Ok(None) };
    let cause = format!("aborted by {who}");
    let outcome = circuit_breaker::trip(ctx, service_key, &lock.rollout_id, &cause, pace).await?;
    Ok(Some((lock.rollout_id, outcome)))
}

/// Skip the remaining steps: the current bake ends now and the next verify promotes (it still
/// checks failed tasks, alarms and analysis first). Returns the rollout id, or None when no
/// rollout is in flight.
pub async fn promote(ctx: &Context, service_key: &str) -> Result<Option<String>, HandlerError> {
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let Some(lock) = store.request_promote(service_key).await? else { return Ok(None) };
    if let Some(token) = &lock.bake_token {
        circuit_breaker::continue_wait(&ctx.clients.sfn, token).await?;
    }
    Ok(Some(lock.rollout_id))
}
