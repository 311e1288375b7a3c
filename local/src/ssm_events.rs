//! SSM Parameter Store's change events, which moto does not emit: after a successful
//! PutParameter, DeleteParameter or DeleteParameters, a `Parameter Store Change` event
//! (`aws.ssm`; operation Create, Update or Delete) goes to the default bus, as AWS sends it
//! (Systems Manager user guide, "Monitoring Systems Manager events with Amazon EventBridge").
//! policy-sync keeps the policy index and the schedules in step from them.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::{json, Value};
use tracing::warn;

use crate::call::ApiCall;
use crate::{ACCOUNT, REGION};

#[derive(Clone)]
pub struct SsmEvents {
    events: aws_sdk_eventbridge::Client,
}

impl SsmEvents {
    pub fn new(moto_config: &aws_config::SdkConfig) -> SsmEvents {
        SsmEvents { events: aws_sdk_eventbridge::Client::new(moto_config) }
    }

    /// The change events of a call moto answered with `status`, sent in the background (AWS
    /// delivers them asynchronously, after the call has returned).
    pub fn after(&self, call: &ApiCall, request: &[u8], status: hyper::StatusCode, answer: &[u8]) {
        if call.service != "ssm" || !status.is_success() {
            return;
        }
        let request: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
        let answer: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
        let changes: Vec<(String, &str)> = match call.operation.as_str() {
            "PutParameter" => {
                let operation = if answer["Version"].as_i64() == Some(1) { "Create" } else { "Update" };
                request["Name"].as_str().map(|n| (n.to_string(), operation)).into_iter().collect()
            }
            "DeleteParameter" => request["Name"].as_str().map(|n| (n.to_string(), "Delete")).into_iter().collect(),
            // Only the names SSM actually deleted.
            "DeleteParameters" => answer["DeletedParameters"]
                .as_array()
                .map(|names| names.iter().filter_map(Value::as_str).map(|n| (n.to_string(), "Delete")).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if changes.is_empty() {
            return;
        }
        let parameter_type = request["Type"].as_str().unwrap_or("String").to_string();
        let events = self.events.clone();
        tokio::spawn(async move {
            for (name, operation) in changes {
                let path = if name.starts_with('/') { name.clone() } else { format!("/{name}") };
                let entry = PutEventsRequestEntry::builder()
                    .source("aws.ssm")
                    .detail_type("Parameter Store Change")
                    .resources(format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{path}"))
                    .detail(json!({"operation": operation, "name": name, "type": parameter_type}).to_string())
                    .build();
                if let Err(e) = events.put_events().entries(entry).send().await {
                    warn!(parameter = %name, error = %e, "could not send the Parameter Store Change event");
                }
            }
        });
    }
}
