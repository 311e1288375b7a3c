//! The smallest Lambda function that calls AWS through the Rust SDK, for BENCHMARKS.md: what
//! `bench/hello-lambda` costs plus loading the SDK's configuration at init (credentials chain,
//! region, the HTTPS client and its trust store) and one DynamoDB `ListTables` per event, with
//! the same SDK features and release profile as kanaria's functions. kanaria's figures against
//! this one show kanaria's own share; against hello-lambda, the SDK's and kanaria's together.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| {
        let dynamodb = &dynamodb;
        async move {
            let tables = dynamodb.list_tables().limit(1).send().await?;
            Ok::<Value, Error>(json!({ "tables": tables.table_names().len() }))
        }
    }))
    .await
}
