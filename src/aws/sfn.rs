//! Step Functions adapter: start a rollout execution exactly once per name.

use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_sfn::Client;

use super::AwsError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A new execution started, or the same name was already running (a duplicate).
    Running(String),
    /// An execution of that name exists and has ended.
    Ended { arn: String, status: String },
}

pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!("{}:{name}", state_machine_arn.replacen(":stateMachine:", ":execution:", 1))
}

/// Start `name`; an execution of the same name means a duplicate delivery.
pub async fn start_once(sfn: &Client, state_machine_arn: &str, name: &str, input: &str) -> Result<Started, AwsError> {
    match sfn.start_execution().state_machine_arn(state_machine_arn).name(name).input(input).send().await {
        Ok(out) => Ok(Started::Running(out.execution_arn().to_string())),
        Err(e) => {
            let err = AwsError::new("Step Functions", "StartExecution", name, e);
            if !err.is_code("ExecutionAlreadyExists") {
                return Err(err);
            }
            let arn = execution_arn(state_machine_arn, name);
            match status(sfn, &arn).await? {
                Some(s) if s == "RUNNING" => Ok(Started::Running(arn)),
                Some(status) => Ok(Started::Ended { arn, status }),
                None => Err(err),
            }
        }
    }
}

/// The status of an execution (RUNNING, SUCCEEDED, FAILED, ...), None if there is no such one.
pub async fn status(sfn: &Client, execution_arn: &str) -> Result<Option<String>, AwsError> {
    match sfn.describe_execution().execution_arn(execution_arn).send().await {
        Ok(out) => Ok(Some(out.status().as_str().to_string())),
        Err(e) => {
            let err = AwsError::new("Step Functions", "DescribeExecution", execution_arn, e);
            if err.is_code("ExecutionDoesNotExist") {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

pub fn is_running(status: &str) -> bool {
    status == ExecutionStatus::Running.as_str()
}
