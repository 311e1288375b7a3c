//! Lambda entry point of `decide`: the AWS configuration is loaded once, at init, each client the
//! handler uses is built on its first call, and every invocation borrows them.
//!
//! It calls its own handler, not `handlers::Function::handle` (a `match` over every handler):
//! that way this binary links only what `decide` uses (BENCHMARKS.md, size and cold start).

use kanaria::handlers::{decide, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kanaria::telemetry::init_json();
    let ctx = kanaria::aws::Context::from_env().await;
    lambda_runtime::run(lambda_runtime::service_fn(|event: LambdaEvent| decide::handle(&ctx, event.payload))).await
}
