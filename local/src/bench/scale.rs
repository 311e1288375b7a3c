//! What one event costs as the account grows (issue 16): the reads an ECR push makes to find its
//! policies, and a failed task to be judged, with few and with many policies. The reference, in
//! the same run, is what a push cost before the policy index: a page through every policy (the
//! fallback kanaria still takes while the index has not been built).

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use kanaria::handlers::Function;
use serde_json::json;

use crate::fixture::{self, SampleOptions};
use crate::{LocalAws, Options};

/// AWS read calls of one function for one event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    pub ssm: u64,
    pub dynamodb: u64,
}

impl Reads {
    pub fn total(&self) -> u64 {
        self.ssm + self.dynamodb
    }

    fn between(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Reads {
        let diff = |action: &str| after.get(action).copied().unwrap_or(0) - before.get(action).copied().unwrap_or(0);
        let ssm = after.keys().filter(|a| a.starts_with("ssm:")).map(|a| diff(a)).sum();
        let dynamodb = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"].iter().map(|a| diff(a)).sum();
        Reads { ssm, dynamodb }
    }
}

impl std::fmt::Display for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} SSM, {} DynamoDB)", self.total(), self.ssm, self.dynamodb)
    }
}

/// The reads of one push and one failed task in an account with `policies` policies.
#[derive(Debug, Clone)]
pub struct PerEvent {
    pub policies: usize,
    /// A push of a repository one policy names (its tag matches no pattern, so no rollout
    /// starts: only finding the policies is counted), with the policy index.
    pub push: Reads,
    /// The same push before the index is built: every policy read (the reference).
    pub push_without_index: Reads,
    /// A failed task of a service with no rollout in flight, in the circuit breaker.
    pub failed_task_breaker: Reads,
    /// The same event in restart-loop detection.
    pub failed_task_restart_loop: Reads,
}

/// Measure [`PerEvent`] with `policies` policies (at least 2).
pub async fn per_event_reads(policies: usize) -> Result<PerEvent> {
    let local = LocalAws::start(Options::default()).await?;
    let sample = fixture::provision(&local.config, &local.endpoint, local.ctx(), SampleOptions::default()).await?;
    // The other policies go straight to moto: no change events, so they are not indexed yet, as
    // in an account whose policies predate kanaria.
    let moto = crate::sdk_config(&format!("http://{}", local.shared.moto_addr)).await;
    let ssm = aws_sdk_ssm::Client::new(&moto);
    let prefix = &local.ctx().settings.policy_prefix;
    for i in 1..policies {
        let yaml = sample
            .policy_yaml
            .replace(&format!("name: {}", sample.options.service), &format!("name: other-{i}"))
            .replace(&format!("repository: {}", sample.options.repository), &format!("repository: team/other-{i}"));
        ssm.put_parameter()
            .name(format!("{prefix}{}/other-{i}", sample.options.cluster))
            .value(yaml)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await?;
    }
    let push = |tag: &str| fixture::ecr_push_event("team/other-1", tag, &fixture::new_digest(tag));
    let reads_of = async |function: Function, event: serde_json::Value| -> Result<Reads> {
        let before = local.shared.calls_of(function.crate_name());
        local.shared.invoke(function, event).await.map_err(|e| anyhow!("{}: {e}", function.crate_name()))?;
        Ok(Reads::between(&before, &local.shared.calls_of(function.crate_name())))
    };
    let push_without_index = reads_of(Function::OnImagePush, push("nomatch-1")).await?;
    local.shared.invoke(Function::PolicySync, json!({"syncAll": true})).await.map_err(|e| anyhow!("policy-sync: {e}"))?;
    let push = reads_of(Function::OnImagePush, push("nomatch-2")).await?;
    let failed = json!({"version": "0", "id": "scale-failed-task", "source": "aws.ecs", "detail-type": "ECS Task State Change",
        "account": crate::ACCOUNT, "region": crate::REGION, "time": "2026-01-01T00:00:00Z", "resources": [],
        "detail": {"clusterArn": format!("arn:aws:ecs:{}:{}:cluster/{}", crate::REGION, crate::ACCOUNT, sample.options.cluster),
            "taskArn": format!("arn:aws:ecs:{}:{}:task/{}/{:032x}", crate::REGION, crate::ACCOUNT, sample.options.cluster, 7),
            "taskDefinitionArn": format!("arn:aws:ecs:{}:{}:task-definition/other-1:1", crate::REGION, crate::ACCOUNT),
            "group": "service:other-1", "startedBy": "ecs-svc/1", "lastStatus": "RUNNING", "desiredStatus": "STOPPED",
            "stopCode": "EssentialContainerExited", "stoppedReason": "Essential container in task exited",
            "containers": [{"name": "app", "lastStatus": "RUNNING", "exitCode": 1}], "version": 3,
            "executionStoppedAt": "2026-01-01T00:00:00Z"}});
    let failed_task_breaker = reads_of(Function::OnTaskEvent, failed.clone()).await?;
    let failed_task_restart_loop = reads_of(Function::RestartLoop, failed).await?;
    Ok(PerEvent { policies, push, push_without_index, failed_task_breaker, failed_task_restart_loop })
}
