//! Lambda entry point of `slack-interactions` (behind a Function URL): the AWS configuration and
//! the Slack HTTP client are set up once, at init; each AWS client is built on its first call and
//! the signing secret is fetched on first use and cached.
//!
//! It calls its own handler, not `handlers::Function::handle`, so this binary links only what
//! `slack_interactions` uses (BENCHMARKS.md, size and cold start).

use kanaria::handlers::{slack_interactions, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kanaria::telemetry::init_json();
    let ctx = kanaria::aws::Context::from_env().await;
    lambda_runtime::run(lambda_runtime::service_fn(|event: LambdaEvent| slack_interactions::handle(&ctx, event.payload))).await
}
