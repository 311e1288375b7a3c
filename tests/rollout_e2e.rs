//! End to end on emulated AWS: real aws-sdk clients, moto, the rollout state machine executing
//! in moto's interpreter, kanaria's functions behind the local Lambda Invoke API, events through
//! EventBridge rules with the template's patterns.

mod common;

use std::time::Duration;

use common::{start, Env};
use kanaria::handlers::Function;
use kanaria_local::fixture::{self, SampleOptions};

const RUN_LIMIT: Duration = Duration::from_secs(90);

fn quick_canary() -> SampleOptions {
    SampleOptions { steps: vec![(10, 1), (50, 1)], drain_seconds: 1, ..SampleOptions::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_duplicate_deliveries_of_one_push_start_one_rollout() {
    // Long bakes keep the rollout in flight while the duplicates arrive.
    let env = start(SampleOptions { steps: vec![(10, 60)], ..SampleOptions::default() }).await;
    let digest = fixture::new_digest("dup");
    for _ in 0..5 {
        env.push("v2", &digest).await;
    }
    env.wait_invocations(Function::OnImagePush, 5).await;

    let executions = env.executions().await;
    assert_eq!(executions.len(), 1, "{executions:?}");
    let outcomes: Vec<String> = env
        .results_of(Function::OnImagePush)
        .into_iter()
        .map(|r| r.expect("every delivery is handled")["rollouts"][0]["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| *o == "started").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "duplicate").count(), 4, "{outcomes:?}");
    let lock = env.store().lock(&env.sample.policy.service.key()).await.unwrap().expect("the service is locked");
    assert_eq!(lock.digest, digest);
    assert_eq!(lock.execution_arn.as_deref(), Some(executions[0].0.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_no_policy_matches_starts_nothing() {
    let env = start(quick_canary()).await;
    env.push("feature-x", &fixture::new_digest("nomatch")).await; // policy wants v*
    fixture::put_event(&env.local.config, &fixture::ecr_push_event("other/repo", "v9", &fixture::new_digest("repo"))).await.unwrap();
    env.wait_invocations(Function::OnImagePush, 2).await;

    for r in env.results_of(Function::OnImagePush) {
        assert_eq!(r.unwrap()["ignored"], "no policy matches");
    }
    assert!(env.executions().await.is_empty());
    assert_eq!(env.task_definition_revisions().await, 1, "no revision was registered");
    assert!(env.store().lock(&env.sample.policy.service.key()).await.unwrap().is_none());
}

/// Issue 16 #6: one push, two matching services, one of which cannot start (its team deleted
/// the service, not the policy; its policy comes first in Parameter Store). The other still rolls
/// out. The event fails with each service's outcome, so Lambda retries it (then the dead-letter
/// queue has it): every retry reports the working service's rollout as a duplicate and starts
/// nothing twice. Before: the first failure ended the invocation and the retries, and the
/// working service never started.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_that_cannot_start_does_not_keep_another_from_rolling_out() {
    let env = start(quick_canary()).await;
    let ctx = env.local.ctx();
    let prefix = &ctx.settings.policy_prefix;
    let ghost = kanaria::policy::parse("ghost", &env.sample.policy_yaml.replace("cluster: demo, name: web", "cluster: shop, name: ghost"))
        .expect("the ghost policy is valid");
    // Parameter Store returns parameters in the order they were stored: the ghost's first.
    let web_parameter = kanaria::aws::policies::parameter_name(prefix, &env.sample.policy);
    ctx.clients.ssm.delete_parameter().name(&web_parameter).send().await.unwrap();
    kanaria::aws::policies::put(&ctx.clients.ssm, prefix, &ghost).await.unwrap();
    kanaria::aws::policies::put(&ctx.clients.ssm, prefix, &env.sample.policy).await.unwrap();
    // policy-sync indexes both from their change events (on AWS too, a push seconds after a
    // change to a parameter may not see it yet; `kanaria policy apply` indexes at once).
    let index = kanaria::aws::policy_index::PolicyIndex::new(&ctx.clients.dynamodb, &ctx.settings.table);
    env.eventually("both policies indexed", Duration::from_secs(30), async || {
        let found = index.services_for_repository(&env.sample.options.repository).await.unwrap();
        matches!(found, kanaria::aws::policy_index::Lookup::Indexed(ref entries) if entries.len() == 2).then_some(())
    })
    .await;

    let digest = fixture::new_digest("two-services");
    env.push("v2", &digest).await;
    // The delivery and Lambda's two retries.
    env.wait_invocations(Function::OnImagePush, 3).await;
    let executions = env.executions().await;
    assert_eq!(executions.len(), 1, "the working service rolls out, once, never restarted by the retries: {executions:?}");
    env.assert_promoted(&executions[0].0, &digest).await;
    for (attempt, result) in env.results_of(Function::OnImagePush).iter().enumerate() {
        let e = result.as_ref().expect_err("the event fails while a service did not start");
        assert_eq!(e.error_type, "Kanaria.ServicesNotStarted", "{e}");
        assert!(e.message.contains("1 of 2 services matching the push did not start a rollout; a retry starts nothing twice"), "{e}");
        assert!(e.message.contains("shop/ghost: did not start: Kanaria."), "{e}");
        let web = if attempt == 0 { "demo/web: started arn:aws:states:" } else { "demo/web: already started arn:aws:states:" };
        assert!(e.message.contains(web), "attempt {attempt}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_ends_with_all_traffic_on_the_new_primary_task_set() {
    let env = start(quick_canary()).await;
    let [blue, green] = env.sample.target_groups.clone();
    let digest = fixture::new_digest("canary");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;

    let (status, error, cause) = env.wait_for_end(&execution, RUN_LIMIT).await.unwrap();
    assert_eq!(status, "SUCCEEDED", "{error}: {cause}");
    let weights = env.weights().await;
    assert_eq!((Env::weight_of(&weights, &green), Env::weight_of(&weights, &blue)), (100, 0), "{weights:?}");
    let sets = env.task_sets_after_draining().await;
    assert_eq!(sets.len(), 1, "exactly one task set is left: {sets:?}");
    assert_eq!(sets[0].status, "PRIMARY");
    assert_eq!(sets[0].target_group_arn.as_deref(), Some(green.as_str()));
    assert_eq!(env.images_of(&sets[0].task_definition_arn).await, vec![env.image_uri(&digest)], "pinned to the pushed digest");
    assert!(env.store().lock(&env.sample.policy.service.key()).await.unwrap().is_none(), "lock released");
    assert_eq!(env.store().last(&env.sample.policy.service.key()).await.unwrap().unwrap().outcome, "SUCCEEDED");

    // Every step crossed the traffic weights of the policy, in order, each read back.
    let shifted = env.shifted_weights();
    assert_eq!(shifted, vec![10, 50]);
    // Clients on the production listener were served throughout, by both images.
    env.assert_no_client_errors();
    let traffic = env.traffic();
    assert!(traffic.by_image.contains_key(&env.image_uri(&digest)), "the new image answered: {traffic:?}");
    assert!(traffic.by_image.contains_key(&env.sample.initial_image), "the old image answered: {traffic:?}");

    // Rollout metrics (CloudWatch Embedded Metric Format lines of the functions, issue 16 #14).
    let started = env.metrics("RolloutsStarted");
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0]["service"], "demo/web");
    let promoted = env.metrics("RolloutsPromoted");
    assert_eq!(promoted.len(), 1, "{promoted:?}");
    assert_eq!((promoted[0]["service"].as_str(), promoted[0]["RolloutsPromoted"].as_f64()), (Some("demo/web"), Some(1.0)));
    assert!(promoted[0]["RolloutDuration"].as_f64().is_some_and(|s| s >= 2.0), "two 1s bakes at least: {promoted:?}");
    assert!(env.metrics("RolloutsRolledBack").is_empty());

    // The next release goes the other way: back onto the blue target group.
    let next = fixture::new_digest("next");
    env.push("v3", &next).await;
    env.wait_invocations(Function::OnImagePush, 2).await;
    let out = env.results_of(Function::OnImagePush).pop().unwrap().unwrap();
    let second = out["rollouts"][0]["execution"].as_str().unwrap().to_string();
    assert_eq!(env.wait_for_end(&second, RUN_LIMIT).await.unwrap().0, "SUCCEEDED");
    let weights = env.weights().await;
    assert_eq!(Env::weight_of(&weights, &blue), 100, "{weights:?}");
    let sets = env.task_sets_after_draining().await;
    assert_eq!(sets.len(), 1);
    assert_eq!(env.images_of(&sets[0].task_definition_arn).await, vec![env.image_uri(&next)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_tasks_that_start_slowly_are_awaited_within_one_readiness_check() {
    // Polled only by the state machine (2, 5, 10 s apart), a 9 s start took three checks, nine
    // state transitions; a 60 s start on Fargate took six. The check now looks again within its
    // invocation.
    let env = start(quick_canary()).await;
    let digest = fixture::new_digest("slow");
    let start_time = Duration::from_secs(9);
    env.local.simulator.slow_start_images(&digest, start_time);
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;

    let (status, error, cause) = env.wait_for_end(&execution, RUN_LIMIT).await.unwrap();
    assert_eq!(status, "SUCCEEDED", "{error}: {cause}");
    let checks: Vec<_> = env
        .local
        .shared
        .invocations()
        .into_iter()
        .filter(|i| i.function == Function::RolloutStep && i.input["action"] == "checkGreen")
        .collect();
    let answers: Vec<_> = checks
        .iter()
        .map(|c| (c.duration, c.result.as_ref().map(|r| (r["verdict"].clone(), r["checks"].clone())).map_err(|e| e.to_string())))
        .collect();
    assert_eq!(checks.len(), 1, "one readiness check: {answers:?}");
    // It did wait for the slow tasks (the check starts ~2 s after the task set is created).
    assert!(checks[0].duration >= start_time - Duration::from_secs(3), "the check answered after {:?}", checks[0].duration);
    let output = checks[0].result.as_ref().expect("the check succeeded");
    assert_eq!((output["verdict"].as_str(), output["checks"].as_u64()), (Some("ready"), Some(1)), "{output}");
    // No client saw an error: traffic only ever moved to healthy tasks.
    env.assert_no_client_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn green_tasks_stopping_during_a_bake_roll_back_to_the_stable_task_set() {
    let env = start(SampleOptions { steps: vec![(10, 4), (50, 1)], ..SampleOptions::default() }).await;
    let blue = env.sample.target_groups[0].clone();
    let digest = fixture::new_digest("crash");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;

    // Once 10% is on the new task set (the bake has begun), one of its tasks exits with code 1.
    env.local
        .shared
        .wait_for_invocations("the first shift", RUN_LIMIT, |inv| {
            inv.iter().any(|i| i.function == Function::RolloutStep && i.input["action"] == "shift" && i.result.is_ok())
        })
        .await
        .unwrap();
    let green = env.task_sets().await.into_iter().find(|t| t.status != "PRIMARY").expect("the new task set exists");
    let tasks = env
        .local
        .ctx()
        .clients
        .ecs
        .list_tasks()
        .cluster(&env.sample.options.cluster)
        .started_by(&green.id)
        .send()
        .await
        .unwrap()
        .task_arns()
        .to_vec();
    assert!(!tasks.is_empty(), "the simulator runs the new task set's tasks");
    let stopped = serde_json::json!({
        "version": "0", "id": "1", "detail-type": "ECS Task State Change", "source": "aws.ecs",
        "account": kanaria_local::ACCOUNT, "region": kanaria_local::REGION, "resources": [tasks[0]],
        "detail": {
            "clusterArn": format!("arn:aws:ecs:us-east-1:{}:cluster/{}", kanaria_local::ACCOUNT, env.sample.options.cluster),
            "taskArn": tasks[0], "taskDefinitionArn": green.task_definition_arn, "group": "service:web",
            "startedBy": green.id, "lastStatus": "STOPPED", "desiredStatus": "STOPPED",
            "stopCode": "EssentialContainerExited", "stoppedReason": "Essential container in task exited",
            "containers": [{"name": "web", "exitCode": 1, "lastStatus": "STOPPED"}], "version": 4
        }
    });
    // Delivered twice, as EventBridge may: counted once.
    fixture::put_event(&env.local.config, &stopped).await.unwrap();
    fixture::put_event(&env.local.config, &stopped).await.unwrap();

    let (status, error, cause) = env.wait_for_end(&execution, RUN_LIMIT).await.unwrap();
    assert_eq!((status.as_str(), error.as_str()), ("FAILED", "Kanaria.RolledBack"), "{cause}");
    assert!(cause.contains("Essential container in task exited") && cause.contains("exit 1"), "{cause}");
    let weights = env.weights().await;
    assert_eq!(Env::weight_of(&weights, &blue), 100, "{weights:?}");
    let sets = env.task_sets_after_draining().await;
    assert_eq!(sets.len(), 1, "the new task set is gone: {sets:?}");
    assert_eq!((sets[0].id.as_str(), sets[0].status.as_str()), (env.sample.initial_task_set.as_str(), "PRIMARY"));
    assert!(env.store().lock(&env.sample.policy.service.key()).await.unwrap().is_none(), "lock released");
    let rollout_id = env.results_of(Function::RolloutStep)[0].as_ref().unwrap()["id"].as_str().unwrap().to_string();
    let failures = env.store().failures(&rollout_id).await.unwrap();
    assert_eq!(failures.len(), 1, "a duplicate delivery is counted once: {failures:?}");
    assert_eq!(env.store().last(&env.sample.policy.service.key()).await.unwrap().unwrap().outcome, "ROLLED_BACK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_events_and_invalid_policies_change_nothing() {
    let env = start(quick_canary()).await;
    let before = env.weights().await;

    // A push event whose digest is not a digest.
    let mut bad = fixture::ecr_push_event("demo/web", "v2", "sha256:nope");
    fixture::put_event(&env.local.config, &bad).await.unwrap();
    // An event that is not an ECR event at all, sent straight to the function.
    let garbage = env.local.shared.invoke(Function::OnImagePush, serde_json::json!({"hello": "world"})).await;
    let err = garbage.unwrap_err();
    assert_eq!(err.error_type, "Kanaria.InvalidInput");
    assert!(err.message.contains("nothing was changed"), "{}", err.message);
    env.wait_invocations(Function::OnImagePush, 2).await;
    let from_bus = env
        .results_of(Function::OnImagePush)
        .into_iter()
        .find(|r| r.is_err() && !r.as_ref().unwrap_err().message.contains("detail-type"))
        .unwrap();
    assert!(from_bus.unwrap_err().message.contains("is not a sha256 digest"));

    // A policy edited by hand into something invalid never starts a rollout.
    let name = kanaria::aws::policies::parameter_name(&env.local.ctx().settings.policy_prefix, &env.sample.policy);
    let broken = env.sample.policy_yaml.replace("weight: 10,", "weight: 0,");
    env.local.ctx().clients.ssm.put_parameter().name(&name).value(broken).overwrite(true).send().await.unwrap();
    bad["detail"]["image-digest"] = serde_json::json!(fixture::new_digest("valid"));
    fixture::put_event(&env.local.config, &bad).await.unwrap();
    env.wait_invocations(Function::OnImagePush, 3).await;
    let last = env.results_of(Function::OnImagePush).pop().unwrap().unwrap();
    assert_eq!(last["ignored"], "no policy matches", "{last}");

    assert!(env.executions().await.is_empty());
    assert_eq!(env.task_definition_revisions().await, 1);
    assert_eq!(env.weights().await, before);
    assert_eq!(env.task_sets_after_draining().await.len(), 1);
    assert!(env.store().lock(&env.sample.policy.service.key()).await.unwrap().is_none());

    // rollout-step refuses input it does not understand.
    let err = env.local.shared.invoke(Function::RolloutStep, serde_json::json!({"action": "launch", "rollout": {}})).await.unwrap_err();
    assert_eq!(err.error_type, "Kanaria.InvalidInput");
}

/// A policy stored under another service's parameter is invalid wherever policies are loaded
/// (issue 16 #8): a team that may write only under its own prefix cannot deploy into another
/// team's service by naming it. A push starts nothing with it, and the daily resync creates none
/// of its schedules.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_stored_under_another_services_parameter_deploys_nothing() {
    let env = start(quick_canary()).await;
    let ctx = env.local.ctx();
    let prefix = &ctx.settings.policy_prefix;
    let own = kanaria::aws::policies::parameter_name(prefix, &env.sample.policy);
    let other = format!("{prefix}team-b/api");
    let schedule = "schedules:\n  - { name: night, cron: \"cron(0 22 * * ? *)\", timezone: UTC, desiredCount: 3 }\n";
    ctx.clients
        .ssm
        .put_parameter()
        .name(&other)
        .value(format!("{}{schedule}", env.sample.policy_yaml))
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    ctx.clients.ssm.delete_parameter().name(&own).send().await.unwrap();
    let before = env.weights().await;

    env.push("v2", &fixture::new_digest("foreign")).await;
    env.wait_invocations(Function::OnImagePush, 1).await;
    let out = env.results_of(Function::OnImagePush).pop().unwrap().expect("on-image-push succeeded");
    assert_eq!(out["ignored"], "no policy matches", "{out}");
    assert!(env.executions().await.is_empty());
    assert_eq!(env.task_definition_revisions().await, 1, "no revision was registered");
    assert_eq!(env.weights().await, before);

    let out = env.local.shared.invoke(Function::PolicySync, serde_json::json!({"syncAll": true})).await.expect("policy-sync succeeded");
    assert_eq!(out["report"]["created"], serde_json::json!([]), "{out}");
    let group = &ctx.settings.scheduler.group;
    let listed = ctx.clients.scheduler.list_schedules().group_name(group).send().await.unwrap();
    assert!(listed.schedules().is_empty(), "no schedule of the foreign policy: {:?}", listed.schedules());
}
