//! The hello-world Lambda function kanaria's functions are measured against (BENCHMARKS.md):
//! lambda_runtime on tokio, echoing its event, nothing else. Same release profile as the
//! functions, so the difference in start time, memory and size is kanaria's own.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move { Ok::<Value, Error>(event.payload) })).await
}
