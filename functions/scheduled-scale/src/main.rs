//! Lambda entry point of `scheduled-scale`: configuration and AWS clients are built once, at
//! init, and every invocation borrows them.

use kanaria::handlers::{self, Function};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kanaria::telemetry::init_json();
    let ctx = kanaria::aws::Context::from_env().await;
    lambda_runtime::run(lambda_runtime::service_fn(|event| handlers::lambda(&ctx, Function::ScheduledScale, event))).await
}
