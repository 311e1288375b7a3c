//! Lambda entry point of `restart-loop`: the AWS configuration is loaded once, at init, each client the
//! handler uses is built on its first call, and every invocation borrows them.
//!
//! It calls its own handler, not `handlers::Function::handle` (a `match` over every handler):
//! that way this binary links only what `restart_loop` uses (BENCHMARKS.md, size and cold start).

use kanaria::handlers::{restart_loop, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kanaria::telemetry::init_json();
    let ctx = kanaria::aws::Context::from_env().await;
    lambda_runtime::run(lambda_runtime::service_fn(|event: LambdaEvent| restart_loop::handle(&ctx, event.payload))).await
}
