//! Step Functions tells EventBridge when an execution changes status (`Step Functions Execution
//! Status Change`, source `aws.states`; Step Functions developer guide, "Automating Step Functions
//! event delivery with EventBridge"). moto does not: this watcher reads the local state
//! machines' executions and publishes the event for each change, with the execution's input,
//! error and cause, so rules on it (template.yaml's `ExecutionEnded`) work locally.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use serde_json::json;
use tracing::debug;

const POLL: Duration = Duration::from_millis(250);

/// Forever: publish a status change event for every execution of `state_machines` whose status
/// changed (RUNNING when it appears, then how it ended).
pub async fn run(moto_config: SdkConfig, state_machines: Vec<String>) {
    let sfn = aws_sdk_sfn::Client::new(&moto_config);
    let events = aws_sdk_eventbridge::Client::new(&moto_config);
    let mut seen: HashMap<String, String> = HashMap::new();
    loop {
        tokio::time::sleep(POLL).await;
        for sm in &state_machines {
            let Ok(list) = sfn.list_executions().state_machine_arn(sm).send().await else { continue };
            for e in list.executions() {
                let status = e.status().as_str().to_string();
                if seen.get(e.execution_arn()) == Some(&status) {
                    continue;
                }
                let Ok(d) = sfn.describe_execution().execution_arn(e.execution_arn()).send().await else { continue };
                let millis = |t: Option<&aws_sdk_sfn::primitives::DateTime>| t.and_then(|t| t.to_millis().ok());
                let detail = json!({
                    "executionArn": d.execution_arn(),
                    "stateMachineArn": d.state_machine_arn(),
                    "name": d.name(),
                    "status": d.status().as_str(),
                    "startDate": millis(Some(d.start_date())),
                    "stopDate": millis(d.stop_date()),
                    "input": d.input(),
                    "output": d.output(),
                    "error": d.error(),
                    "cause": d.cause(),
                });
                let put = events
                    .put_events()
                    .entries(
                        aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                            .source("aws.states")
                            .detail_type("Step Functions Execution Status Change")
                            .resources(d.execution_arn())
                            .detail(detail.to_string())
                            .build(),
                    )
                    .send()
                    .await;
                match put {
                    Ok(_) => {
                        seen.insert(e.execution_arn().to_string(), status);
                    }
                    Err(err) => debug!(error = %aws_sdk_eventbridge::error::DisplayErrorContext(&err), "publishing a status change failed"),
                }
            }
        }
    }
}
