//! Shared set-up for the integration tests: a private emulated AWS (moto behind kanaria's local
//! runtime) with the sample service, and ways to wait on conditions instead of sleeping.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kanaria::aws::store::Store;
use kanaria::handlers::Function;
use kanaria_local::fixture::{self, SampleOptions, SampleService};
use kanaria_local::{LocalAws, Options};

pub struct Env {
    pub local: LocalAws,
    pub sample: SampleService,
}

pub async fn start(options: SampleOptions) -> Env {
    let local = LocalAws::start(Options::default()).await.expect("local AWS starts (run scripts/setup first)");
    let sample = fixture::provision(&local.config, &local.endpoint, local.ctx(), options).await.expect("sample service provisioned");
    Env { local, sample }
}

impl Env {
    pub fn store(&self) -> Store<'_> {
        Store::new(&self.local.ctx().clients.dynamodb, &self.local.ctx().settings.table)
    }

    pub fn image_uri(&self, digest: &str) -> String {
        format!("{}.dkr.ecr.{}.amazonaws.com/{}@{digest}", kanaria_local::ACCOUNT, kanaria_local::REGION, self.sample.options.repository)
    }

    pub async fn push(&self, tag: &str, digest: &str) {
        fixture::put_event(&self.local.config, &fixture::ecr_push_event(&self.sample.options.repository, tag, digest))
            .await
            .expect("PutEvents");
    }

    /// Wait until `count` invocations of `function` have finished (successfully or not).
    pub async fn wait_invocations(&self, function: Function, count: usize) {
        self.local
            .shared
            .wait_for_invocations(&format!("{count} invocations of {}", function.crate_name()), Duration::from_secs(60), |inv| {
                inv.iter().filter(|i| i.function == function).count() >= count
            })
            .await
            .unwrap();
    }

    pub fn results_of(&self, function: Function) -> Vec<Result<serde_json::Value, kanaria::handlers::HandlerError>> {
        self.local.shared.invocations().into_iter().filter(|i| i.function == function).map(|i| i.result).collect()
    }

    pub async fn executions(&self) -> Vec<(String, String)> {
        let sfn = aws_sdk_sfn::Client::new(&self.local.config);
        let out = sfn.list_executions().state_machine_arn(&self.local.state_machine_arn).send().await.unwrap();
        out.executions().iter().map(|e| (e.execution_arn().to_string(), e.status().as_str().to_string())).collect()
    }

    /// Wait for the execution to end; returns (status, error, cause).
    pub async fn wait_for_end(&self, execution_arn: &str, timeout: Duration) -> Result<(String, String, String)> {
        let sfn = aws_sdk_sfn::Client::new(&self.local.config);
        let deadline = Instant::now() + timeout;
        loop {
            let d = sfn.describe_execution().execution_arn(execution_arn).send().await?;
            if d.status().as_str() != "RUNNING" {
                return Ok((
                    d.status().as_str().to_string(),
                    d.error().unwrap_or_default().to_string(),
                    d.cause().unwrap_or_default().to_string(),
                ));
            }
            if Instant::now() > deadline {
                bail!("execution {execution_arn} still running after {timeout:?}");
            }
            // Polls the execution's own status (the condition), not a guess at how long it takes.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The execution started by the first on-image-push invocation.
    pub async fn started_execution(&self) -> String {
        self.wait_invocations(Function::OnImagePush, 1).await;
        let out = self.results_of(Function::OnImagePush).into_iter().next().unwrap().expect("on-image-push succeeded");
        out["rollouts"][0]["execution"].as_str().unwrap_or_else(|| panic!("no rollout started: {out}")).to_string()
    }

    pub async fn weights(&self) -> Vec<(String, u32)> {
        let route = self.sample.policy.traffic.route().unwrap();
        kanaria::aws::elb::read_weights(&self.local.ctx().clients.elb, &route).await.unwrap()
    }

    pub fn weight_of(weights: &[(String, u32)], tg: &str) -> u32 {
        weights.iter().find(|(t, _)| t == tg).map(|(_, w)| *w).unwrap_or(0)
    }

    pub async fn task_sets(&self) -> Vec<kanaria::rollout::TaskSetView> {
        kanaria::aws::ecs::describe_service(&self.local.ctx().clients.ecs, &self.sample.policy.service).await.unwrap().task_sets
    }

    /// Images of the task definition's containers.
    pub async fn images_of(&self, task_definition: &str) -> Vec<String> {
        let out = self.local.ctx().clients.ecs.describe_task_definition().task_definition(task_definition).send().await.unwrap();
        out.task_definition().unwrap().container_definitions().iter().filter_map(|c| c.image().map(str::to_string)).collect()
    }

    pub async fn task_definition_revisions(&self) -> usize {
        let out = self.local.ctx().clients.ecs.list_task_definitions().family_prefix(&self.sample.options.service).send().await.unwrap();
        out.task_definition_arns().len()
    }
}
