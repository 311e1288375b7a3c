//! What the new task set and the new revision carry over from the ones they copy, and that an
//! ECS call which took effect but answered with an error leaves no second copy behind, end to end
//! on emulated AWS (the ECS API reference is the truth: CreateTaskSet, RegisterTaskDefinition,
//! DescribeTaskDefinition).

mod common;

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{TaskDefinition, TaskSet, TaskSetField};
use common::{start, Env};
use kanaria::handlers::Function;
use kanaria_local::faults::{FaultKind, FaultRule};
use kanaria_local::fixture::{self, SampleOptions};

/// Wait until `check` answers, re-checking whenever emulated ECS changes (at least every 500 ms).
async fn eventually<T>(env: &Env, what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::timeout(Duration::from_millis(500), env.local.simulator.changed()).await.ok();
    }
}

/// The service's task sets as ECS describes them, tags included.
async fn described_task_sets(env: &Env) -> Vec<TaskSet> {
    let (cluster, service) = (&env.sample.options.cluster, &env.sample.options.service);
    let out = env
        .local
        .ctx()
        .clients
        .ecs
        .describe_task_sets()
        .cluster(cluster)
        .service(service)
        .include(TaskSetField::Tags)
        .send()
        .await
        .unwrap();
    out.task_sets().to_vec()
}

/// Push a new digest and wait for the rollout to promote it; returns the one task set left, as
/// ECS describes it.
async fn roll_out(env: &Env, seed: &str) -> TaskSet {
    let digest = fixture::new_digest(seed);
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    env.assert_promoted(&execution, &digest).await;
    let mut sets = described_task_sets(env).await;
    assert_eq!(sets.len(), 1, "{sets:?}");
    sets.remove(0)
}

/// CreateTaskSet takes `serviceRegistries` and several `loadBalancers` (ECS API reference); the
/// new task set must keep the primary's service discovery registration and its other load
/// balancers (here a Network Load Balancer's target group), only the production one moving to
/// the other target group of the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_task_set_keeps_the_primarys_service_registries_and_other_load_balancers() {
    let env =
        start(SampleOptions { service_registry: true, extra_target_group_protocol: Some("TCP".into()), ..SampleOptions::default() }).await;
    let registry = env.sample.registry_arn.clone().expect("the sample registers in Cloud Map");
    let nlb_target_group = env.sample.extra_target_group.clone().expect("the sample has an NLB target group");
    let before = described_task_sets(&env).await.remove(0);
    assert_eq!(before.service_registries().len(), 1, "emulated ECS keeps the primary's registry: {before:?}");

    let promoted = roll_out(&env, "registries").await;
    assert_ne!(promoted.id(), before.id(), "a new task set is primary");
    assert_eq!(promoted.service_registries(), before.service_registries(), "service registries are kept");
    assert_eq!(promoted.service_registries()[0].registry_arn(), Some(registry.as_str()));
    let lbs: Vec<(Option<&str>, Option<&str>, Option<i32>)> =
        promoted.load_balancers().iter().map(|l| (l.target_group_arn(), l.container_name(), l.container_port())).collect();
    assert_eq!(
        lbs,
        vec![
            (Some(env.sample.target_groups[1].as_str()), Some("web"), Some(8080)),
            (Some(nlb_target_group.as_str()), Some("web"), Some(9000))
        ],
        "the production load balancer moved to the other target group, the NLB's is kept"
    );
    assert_eq!(promoted.network_configuration(), before.network_configuration());
    assert_eq!((promoted.launch_type(), promoted.platform_version()), (before.launch_type(), before.platform_version()));
}

/// The primary task set's tags go to the new one, with kanaria's own: `kanaria:managed=true`
/// (UpdateTaskSet and DeleteTaskSet are allowed only on task sets tagged so) and
/// `kanaria:rollout`, the rollout's id. Creating with tags needs `ecs:TagResource` (with
/// `ecs:CreateAction` CreateTaskSet) besides `ecs:CreateTaskSet` (ECS developer guide, "Grant
/// permission to tag resources on creation"): template.yaml's RolloutStepRole allows it, and the
/// IAM evaluator of the local runtime checks exactly that. A second rollout replaces the first
/// one's `kanaria:rollout` instead of adding another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_task_set_keeps_the_primarys_tags_and_carries_kanarias() {
    let env = start(SampleOptions { task_set_tags: vec![("team".into(), "payments".into())], ..SampleOptions::default() }).await;
    let tags = |t: &TaskSet| -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> =
            t.tags().iter().map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string())).collect();
        all.sort();
        all
    };
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let before = described_task_sets(&env).await.remove(0);
    assert_eq!(tags(&before), vec![pair("kanaria:managed", "true"), pair("team", "payments")], "emulated ECS keeps the tags");
    for (i, seed) in ["tags", "tags-again"].into_iter().enumerate() {
        let digest = fixture::new_digest(seed);
        env.push("v2", &digest).await;
        env.wait_invocations(Function::OnImagePush, i + 1).await;
        let execution = env.started_executions().get(i).cloned().expect("the push started a rollout");
        env.assert_promoted(&execution, &digest).await;
        let promoted = described_task_sets(&env).await.remove(0);
        let rollout = promoted.external_id().unwrap().to_string();
        assert!(kanaria::rollout::is_rollout_id(&rollout), "{promoted:?}");
        assert_eq!(tags(&promoted), vec![pair("kanaria:managed", "true"), pair("kanaria:rollout", &rollout), pair("team", "payments")]);
    }
}

/// `td` without what ECS records about a revision (ARN, number, status, when and by whom) and
/// with `container`'s image cleared: what RegisterTaskDefinition was given.
fn registered_content(td: &TaskDefinition, container: &str) -> TaskDefinition {
    let mut content = td.clone();
    (content.task_definition_arn, content.revision, content.status) = (None, 0, None);
    (content.registered_at, content.registered_by, content.deregistered_at, content.delete_requested_at) = (None, None, None, None);
    for c in content.container_definitions.iter_mut().flatten().filter(|c| c.name() == Some(container)) {
        c.image = None;
    }
    content
}

/// RegisterTaskDefinition takes every field DescribeTaskDefinition shows (ECS API reference);
/// the promoted revision must equal the one it copies in all of them but the image. moto keeps
/// inferenceAccelerators, ephemeralStorage, volumes, pid/ipc mode and the runtime platform, but not
/// enableFaultInjection (its fidelity is unit-tested in src/aws/ecs.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_promoted_revision_keeps_every_field_of_the_one_it_copies() {
    let env = start(SampleOptions { task_definition_extras: true, ..SampleOptions::default() }).await;
    let ecs = &env.local.ctx().clients.ecs;
    let describe = async |arn: &str| {
        let out = ecs.describe_task_definition().task_definition(arn).send().await.unwrap();
        out.task_definition().unwrap().clone()
    };
    let base = describe(&env.task_sets().await[0].task_definition_arn).await;
    #[allow(deprecated)] // Elastic Inference: moto keeps the field, which makes it a field to check.
    let accelerators = base.inference_accelerators().len();
    assert_eq!(accelerators, 1, "emulated ECS kept the sample's inference accelerator: {base:?}");
    assert!(base.ephemeral_storage().is_some() && !base.volumes().is_empty(), "{base:?}");

    let promoted = roll_out(&env, "fields").await;
    let revision = describe(promoted.task_definition().unwrap()).await;
    assert_eq!(registered_content(&revision, "web"), registered_content(&base, "web"));
    assert_eq!(revision.revision(), base.revision() + 1);
}

/// ECS has no idempotency token for RegisterTaskDefinition. It registers the revision and the
/// caller gets HTTP 500: kanaria must find that revision, not register a second identical one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registration_answered_with_an_error_leaves_one_new_revision() {
    let env = start(SampleOptions::default()).await;
    let fault = env.local.shared.faults.add(FaultRule::new("rollout-step", "ecs:RegisterTaskDefinition", FaultKind::AppliedThenError));
    roll_out(&env, "register-500").await;
    assert_eq!(env.local.shared.faults.fired(fault), 1);
    assert_eq!(env.task_definition_revisions().await, 2, "the sample's revision and exactly one new one");
}

/// CreateTaskSet takes effect and answers 500 three times (the SDK's attempts, each with the
/// rollout's client token): the step fails, the state machine retries it, and the retry uses the
/// task set the first attempt made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_answered_with_errors_is_retried_and_leaves_one_task_set() {
    let env = start(SampleOptions::default()).await;
    let fault = env.local.shared.faults.add(FaultRule::new("rollout-step", "ecs:CreateTaskSet", FaultKind::AppliedThenError).times(3));
    roll_out(&env, "create-500").await;
    assert_eq!(env.local.shared.faults.fired(fault), 3);
    let creates: Vec<bool> = env
        .local
        .shared
        .invocations()
        .into_iter()
        .filter(|i| i.function == Function::RolloutStep && i.input["action"] == "createGreen")
        .map(|i| i.result.is_ok())
        .collect();
    assert_eq!(creates, [false, true], "the failed step, then the state machine's retry");
}

/// A set kanaria made for another rollout, which carries no traffic, is found next to this
/// rollout's own when CreateGreen is retried: it is deleted then, not left running tasks until
/// the rollout finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_create_removes_a_set_left_by_another_rollout() {
    let env = start(SampleOptions::default()).await;
    let faults = &env.local.shared.faults;
    let fault = faults.add(FaultRule::new("rollout-step", "ecs:CreateTaskSet", FaultKind::AppliedThenError).times(3));
    let digest = fixture::new_digest("stray");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    // The first attempt made this rollout's task set; before the state machine retries the step
    // (1 s later), a set of an earlier rollout appears on the spare target group.
    eventually(&env, "the first CreateTaskSet", Duration::from_secs(30), async || (faults.fired(fault) >= 1).then_some(())).await;
    let primary = described_task_sets(&env).await.into_iter().find(|t| t.status() == Some("PRIMARY")).unwrap();
    let stray = env
        .local
        .ctx()
        .clients
        .ecs
        .create_task_set()
        .cluster(&env.sample.options.cluster)
        .service(&env.sample.options.service)
        .task_definition(primary.task_definition().unwrap())
        .external_id("0123456789abcdef")
        .tags(aws_sdk_ecs::types::Tag::builder().key("kanaria:managed").value("true").build())
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .set_network_configuration(primary.network_configuration().cloned())
        .load_balancers(
            aws_sdk_ecs::types::LoadBalancer::builder()
                .target_group_arn(&env.sample.target_groups[1])
                .container_name("web")
                .container_port(8080)
                .build(),
        )
        .scale(aws_sdk_ecs::types::Scale::builder().unit(aws_sdk_ecs::types::ScaleUnit::Percent).value(100.0).build())
        .send()
        .await
        .unwrap();
    let stray = stray.task_set().unwrap().id().unwrap().to_string();

    env.wait_action("createGreen", 1).await;
    let sets = env.task_sets().await;
    let left = sets.iter().find(|t| t.id == stray);
    assert!(left.is_none_or(|t| t.status == "DRAINING"), "the other rollout's set is deleted by CreateGreen: {sets:?}");
    env.assert_promoted(&execution, &digest).await;
}

/// Issue 16 #11: kanaria deletes only task sets with its own externalId. The team's first task
/// set (externalId `initial`, not handed over) and another tool's idle one stay through a
/// promotion — even though both carry `kanaria:managed=true`, so IAM alone would let kanaria
/// delete them. The replaced one is left scaled to 0 without traffic. Before: CreateGreen deleted
/// the other tool's set as a "leftover" and Finish deleted the replaced one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn task_sets_kanaria_did_not_create_are_never_deleted() {
    let env = start(SampleOptions { initial_external_id: "initial".into(), ..SampleOptions::default() }).await;
    let ecs = &env.local.ctx().clients.ecs;
    let primary = described_task_sets(&env).await.into_iter().find(|t| t.status() == Some("PRIMARY")).unwrap();
    let other_tool = ecs
        .create_task_set()
        .cluster(&env.sample.options.cluster)
        .service(&env.sample.options.service)
        .task_definition(primary.task_definition().unwrap())
        .external_id("other-tool")
        .tags(aws_sdk_ecs::types::Tag::builder().key("kanaria:managed").value("true").build())
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .set_network_configuration(primary.network_configuration().cloned())
        .scale(aws_sdk_ecs::types::Scale::builder().unit(aws_sdk_ecs::types::ScaleUnit::Percent).value(0.0).build())
        .send()
        .await
        .unwrap();
    let other_tool = other_tool.task_set().unwrap().id().unwrap().to_string();

    let digest = fixture::new_digest("not-ours");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    let (status, error, cause) = env.wait_for_end(&execution, Duration::from_secs(90)).await.unwrap();
    assert_eq!(status, "SUCCEEDED", "{error}: {cause}");
    let sets = env.task_sets_after_draining().await;
    let find = |id: &str| sets.iter().find(|t| t.id == id).unwrap_or_else(|| panic!("task set {id} was deleted: {sets:?}"));
    let replaced = find(primary.id().unwrap());
    assert_eq!((replaced.status.as_str(), replaced.scale_percent), ("ACTIVE", 0.0), "the replaced set stays, scaled to 0");
    assert_eq!(find(&other_tool).status, "ACTIVE", "the other tool's set is not kanaria's to delete");
    let new_primary = sets.iter().find(|t| t.status == "PRIMARY").expect("a primary");
    assert!(new_primary.external_id.as_deref().is_some_and(kanaria::rollout::is_rollout_id), "{new_primary:?}");
    assert_eq!(sets.len(), 3, "{sets:?}");
    assert_eq!(Env::weight_of(&env.weights().await, new_primary.target_group_arn.as_deref().unwrap()), 100);
    env.assert_no_client_errors();
    assert!(env.local.shared.iam.denials().is_empty(), "{:?}", env.local.shared.iam.denials());
}
