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
    /// When the sample service was ready (the traffic probe's window starts here).
    pub ready_at: Instant,
}

/// Run the `kanaria` CLI against the emulated AWS at `endpoint` (it blocks: call it from
/// `spawn_blocking`, or use [`Env::kanaria`]).
pub fn kanaria(endpoint: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kanaria"))
        .args(args)
        .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .env_remove("AWS_ENDPOINT_URL")
        // `approve`/`reject` are decided by the decide function, through its AWS_IAM URL.
        .env("KANARIA_DECIDE_URL", format!("{endpoint}/function-url/DecideFunction"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("kanaria runs")
}

pub async fn start(options: SampleOptions) -> Env {
    let local = LocalAws::start(Options::default()).await.expect("local AWS starts (run scripts/setup first)");
    let sample = fixture::provision(&local.config, &local.endpoint, local.ctx(), options).await.expect("sample service provisioned");
    let mut env = Env { local, sample, ready_at: Instant::now() };
    env.wait_until_serving().await;
    env.ready_at = Instant::now();
    env
}

impl Env {
    /// Wait until the sample service's stable task set is STEADY_STATE with healthy targets, as
    /// a real service is before anyone deploys to it.
    pub async fn wait_until_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sets = self.task_sets().await;
            if sets.iter().any(|t| t.status == "PRIMARY" && t.stability == Some(kanaria::rollout::Stability::SteadyState)) {
                return;
            }
            assert!(Instant::now() < deadline, "the sample service never became STEADY_STATE: {sets:?}");
            tokio::time::timeout(Duration::from_secs(1), self.local.simulator.changed()).await.ok();
        }
    }

    /// Wait for a condition emulated AWS changes over time: re-checked whenever the simulator
    /// changed something and at least every half second (never a fixed sleep).
    pub async fn eventually<T>(&self, what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
            tokio::time::timeout(Duration::from_millis(500), self.local.simulator.changed()).await.ok();
        }
    }

    /// A CloudWatch alarm the policy may list, and the event CloudWatch sends when it goes to ALARM.
    pub async fn create_alarm(&self, name: &str) {
        self.local
            .ctx()
            .clients
            .cloudwatch
            .put_metric_alarm()
            .alarm_name(name)
            .namespace("AWS/ApplicationELB")
            .metric_name("HTTPCode_Target_5XX_Count")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(10.0)
            .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
            .send()
            .await
            .unwrap();
    }

    /// The alarm goes to ALARM, and CloudWatch tells EventBridge.
    pub async fn fire_alarm(&self, name: &str) {
        let reason = "Threshold Crossed: 1 datapoint [42.0] was greater than the threshold (10.0).";
        self.local
            .ctx()
            .clients
            .cloudwatch
            .set_alarm_state()
            .alarm_name(name)
            .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
            .state_reason(reason)
            .send()
            .await
            .unwrap();
        let event = serde_json::json!({
            "source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change",
            "detail": {"alarmName": name, "state": {"value": "ALARM", "reason": reason}, "previousState": {"value": "OK"}}
        });
        fixture::put_event(&self.local.config, &event).await.unwrap();
    }

    /// The metric documents emitted so far that carry `metric` (CloudWatch Embedded Metric Format).
    pub fn metrics(&self, metric: &str) -> Vec<serde_json::Value> {
        self.local.metric_documents().into_iter().filter(|d| d.get(metric).is_some()).collect()
    }

    /// The executions started by on-image-push so far, in order.
    pub fn started_executions(&self) -> Vec<String> {
        self.results_of(Function::OnImagePush)
            .into_iter()
            .filter_map(|r| r.ok())
            .flat_map(|out| out["rollouts"].as_array().cloned().unwrap_or_default())
            .filter(|r| matches!(r["outcome"].as_str(), Some("started" | "superseded")))
            .filter_map(|r| r["execution"].as_str().map(str::to_string))
            .collect()
    }

    /// What the probe's clients on the production listener saw since the service was ready.
    pub fn traffic(&self) -> kanaria_local::probe::Summary {
        self.local.probe.summary(&self.sample.listener_arn, self.ready_at, None)
    }

    /// No client of the production listener saw an error since the service was ready.
    pub fn assert_no_client_errors(&self) {
        let errors = self.local.probe.errors(&self.sample.listener_arn, self.ready_at, None);
        assert!(errors.is_empty(), "{} of {} requests failed, first: {:?}", errors.len(), self.traffic().requests, errors.first());
    }
}

impl Env {
    /// `kanaria ARGS...` against this emulated AWS.
    pub async fn kanaria(&self, args: &[&str]) -> std::process::Output {
        let endpoint = self.local.endpoint.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || kanaria(&endpoint, &args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
    }

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

    /// CloudTrail's PutImage record of a push by `pusher_arn` (who pushed).
    pub async fn cloudtrail_put_image(&self, tag: &str, digest: &str, pusher_arn: &str) {
        let event = fixture::ecr_put_image_cloudtrail_event(&self.sample.options.repository, tag, digest, pusher_arn);
        fixture::put_event(&self.local.config, &event).await.expect("PutEvents");
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

    /// The execution started by the first on-image-push invocation of a push (CloudTrail's
    /// record of a push, also handled by on-image-push, starts none).
    pub async fn started_execution(&self) -> String {
        self.wait_invocations(Function::OnImagePush, 1).await;
        let results = self.results_of(Function::OnImagePush);
        let out = results
            .iter()
            .map(|r| r.as_ref().expect("on-image-push succeeded"))
            .find(|out| out.get("pusher").is_none())
            .unwrap_or_else(|| panic!("no push handled: {results:?}"));
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

    /// The task sets once every deleted (DRAINING) one has drained away, as on AWS after the
    /// target group's deregistration delay. Fails if a DRAINING set never goes.
    pub async fn task_sets_after_draining(&self) -> Vec<kanaria::rollout::TaskSetView> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sets = self.task_sets().await;
            if !sets.iter().any(|t| t.status == "DRAINING") {
                return sets;
            }
            assert!(Instant::now() < deadline, "a deleted task set is still DRAINING after 30 s: {sets:?}");
            // Waits on ECS's own report of the condition (the simulator's draining), not a guess.
            tokio::time::timeout(Duration::from_secs(1), self.local.simulator.changed()).await.ok();
        }
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

impl Env {
    /// Wait until rollout-step has completed `action` successfully `count` times.
    pub async fn wait_action(&self, action: &str, count: usize) {
        let a = action.to_string();
        self.local
            .shared
            .wait_for_invocations(&format!("{count} × {action}"), Duration::from_secs(60), move |inv| {
                inv.iter().filter(|i| i.function == Function::RolloutStep && i.input["action"] == a.as_str() && i.result.is_ok()).count()
                    >= count
            })
            .await
            .unwrap();
    }

    /// The weights the rollout's Shift states read back, in order.
    pub fn shifted_weights(&self) -> Vec<u64> {
        self.local
            .shared
            .invocations()
            .into_iter()
            .filter(|i| i.function == Function::RolloutStep && i.input["action"] == "shift")
            .filter_map(|i| i.result.ok().and_then(|o| o["weight"].as_u64()))
            .collect()
    }

    /// How many times rollout-step ran `action` (successfully or not).
    pub fn action_count(&self, action: &str) -> usize {
        self.local.shared.invocations().iter().filter(|i| i.function == Function::RolloutStep && i.input["action"] == action).count()
    }

    /// The non-primary (new) task set.
    pub async fn green_task_set(&self) -> kanaria::rollout::TaskSetView {
        self.task_sets().await.into_iter().find(|t| t.status != "PRIMARY").expect("the new task set exists")
    }

    pub async fn task_arns_of(&self, task_set_id: &str) -> Vec<String> {
        let out =
            self.local.ctx().clients.ecs.list_tasks().cluster(&self.sample.options.cluster).started_by(task_set_id).send().await.unwrap();
        out.task_arns().to_vec()
    }

    /// After a rollback: the execution FAILED with a readable cause containing `cause_has`; 100%
    /// of traffic on the stable target group, read back, served by a primary task set that runs
    /// tasks; no new task set left; the lock released; history shows it. Returns the cause.
    pub async fn assert_rolled_back(&self, execution: &str, cause_has: &str) -> String {
        let (status, error, cause) = self.wait_for_end(execution, Duration::from_secs(90)).await.unwrap();
        assert_eq!((status.as_str(), error.as_str()), ("FAILED", "Kanaria.RolledBack"), "{cause}");
        assert!(cause.contains(cause_has), "cause {cause:?} lacks {cause_has:?}");
        let blue = &self.sample.target_groups[0];
        let weights = self.weights().await;
        assert_eq!(Env::weight_of(&weights, blue), 100, "{weights:?}");
        // The stable task set served every request sent to it, before, during and after the
        // rollback (failures of the new task set's share are the fault being rolled back).
        let traffic = self.traffic();
        assert_eq!(traffic.errors_by_target_group.get(blue), None, "clients of the stable task set saw errors: {traffic:?}");
        assert!(traffic.by_target_group.get(blue).is_some_and(|n| *n > 0), "the stable task set served: {traffic:?}");
        let sets = self.task_sets_after_draining().await;
        assert_eq!(sets.len(), 1, "no new task set is left: {sets:?}");
        assert_eq!((sets[0].status.as_str(), sets[0].target_group_arn.as_deref()), ("PRIMARY", Some(blue.as_str())));
        let running =
            kanaria::aws::ecs::running_tasks_of(&self.local.ctx().clients.ecs, &self.sample.options.cluster, &sets[0].id).await.unwrap();
        assert!(running > 0, "the stable task set runs tasks");
        assert!(self.store().lock(&self.sample.policy.service.key()).await.unwrap().is_none(), "lock released");
        let history = self.store().history(&self.sample.policy.service.key(), 5).await.unwrap();
        assert_eq!(history[0].outcome, "ROLLED_BACK", "{history:?}");
        assert!(history[0].cause.as_deref().is_some_and(|c| c.contains(cause_has)), "{history:?}");
        cause
    }

    /// After a promotion: SUCCEEDED, 100% on the target group of the one primary task set, which
    /// runs `digest`; the lock released.
    pub async fn assert_promoted(&self, execution: &str, digest: &str) {
        let (status, error, cause) = self.wait_for_end(execution, Duration::from_secs(90)).await.unwrap();
        assert_eq!(status, "SUCCEEDED", "{error}: {cause}");
        let sets = self.task_sets_after_draining().await;
        assert_eq!(sets.len(), 1, "{sets:?}");
        assert_eq!(sets[0].status, "PRIMARY");
        let tg = sets[0].target_group_arn.clone().unwrap();
        assert_eq!(Env::weight_of(&self.weights().await, &tg), 100);
        self.assert_no_client_errors();
        assert_eq!(self.images_of(&sets[0].task_definition_arn).await, vec![self.image_uri(digest)]);
        assert!(self.store().lock(&self.sample.policy.service.key()).await.unwrap().is_none(), "lock released");
    }
}

/// An `ECS Task State Change` event for a task of `task_set_id`.
pub fn task_event(
    env: &Env,
    task_arn: &str,
    task_set_id: &str,
    status: &str,
    version: u64,
    stop: Option<(&str, &str, Option<i64>)>,
) -> serde_json::Value {
    let mut detail = serde_json::json!({
        "clusterArn": format!("arn:aws:ecs:us-east-1:{}:cluster/{}", kanaria_local::ACCOUNT, env.sample.options.cluster),
        "taskArn": task_arn, "group": format!("service:{}", env.sample.options.service), "startedBy": task_set_id,
        "lastStatus": status, "desiredStatus": if status == "STOPPED" { "STOPPED" } else { "RUNNING" },
        "containers": [{"name": env.sample.options.service, "lastStatus": status}], "version": version
    });
    if let Some((code, reason, exit)) = stop {
        detail["stopCode"] = code.into();
        detail["stoppedReason"] = reason.into();
        if let Some(exit) = exit {
            detail["containers"][0]["exitCode"] = exit.into();
        }
    }
    serde_json::json!({"version": "0", "detail-type": "ECS Task State Change", "source": "aws.ecs", "detail": detail})
}
