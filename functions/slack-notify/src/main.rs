//! Lambda entry point of `slack-notify` (subscribed to kanaria's SNS topics): the AWS
//! configuration and the Slack HTTP client are set up once, at init; each AWS client is built on
//! its first call.
//!
//! It calls its own handler, not `handlers::Function::handle`, so this binary links only what
//! `slack_notify` uses (BENCHMARKS.md, size and cold start).

use kanaria::handlers::{slack_notify, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kanaria::telemetry::init_json();
    let ctx = kanaria::aws::Context::from_env().await;
    lambda_runtime::run(lambda_runtime::service_fn(|event: LambdaEvent| slack_notify::handle(&ctx, event.payload))).await
}
