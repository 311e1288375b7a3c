//! Lambda entry point of `slack-notify` (subscribed to kanaria's SNS topics): configuration,
//! AWS clients and the Slack HTTP client are built once, at init.

use kanaria::handlers::{self, Function};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kanaria::telemetry::init_json();
    let ctx = kanaria::aws::Context::from_env().await;
    lambda_runtime::run(lambda_runtime::service_fn(|event| handlers::lambda(&ctx, Function::SlackNotify, event))).await
}
