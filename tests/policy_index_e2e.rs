//! The policy index on the strict emulated AWS: what a push and a failed task cost, with few and
//! with many policies; how Parameter Store's change events keep the index in step; what a stale
//! or missing index does.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{start, Env};
use kanaria::aws::policy_index::{Lookup, PolicyIndex};
use kanaria::handlers::Function;
use kanaria_local::faults::{FaultKind, FaultRule};
use kanaria_local::fixture::{self, SampleOptions};
use serde_json::json;

fn options() -> SampleOptions {
    SampleOptions { steps: vec![(100, 1)], drain_seconds: 1, stabilization_seconds: 60, ..SampleOptions::default() }
}

/// Store `count` more valid policies, each for its own service and repository (`other-N`).
async fn add_policies(env: &Env, from: usize, count: usize) {
    let ssm = &env.local.ctx().clients.ssm;
    let prefix = &env.local.ctx().settings.policy_prefix;
    for i in from..from + count {
        let yaml = env
            .sample
            .policy_yaml
            .replace(&format!("name: {}", env.sample.options.service), &format!("name: other-{i}"))
            .replace(&format!("repository: {}", env.sample.options.repository), &format!("repository: team/other-{i}"));
        ssm.put_parameter()
            .name(format!("{prefix}{}/other-{i}", env.sample.options.cluster))
            .value(yaml)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await
            .expect("PutParameter");
    }
}

/// Rebuild the index as the daily sweep does.
async fn sweep(env: &Env) -> serde_json::Value {
    env.local.shared.invoke(Function::PolicySync, json!({"syncAll": true})).await.expect("the sweep succeeded")
}

fn index(env: &Env) -> PolicyIndex<'_> {
    let ctx = env.local.ctx();
    PolicyIndex::new(&ctx.clients.dynamodb, &ctx.settings.table)
}

/// The calls to SSM and DynamoDB reads `function` made between two snapshots.
fn reads(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(action, _)| {
            action.starts_with("ssm:")
                || ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"].contains(&action.as_str())
        })
        .map(|(action, n)| (action.clone(), n - before.get(action).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Push to the sample service's repository; the reads on-image-push made to find its policy.
async fn push_reads(env: &Env, tag: &str, pushes_so_far: usize) -> (BTreeMap<String, u64>, serde_json::Value) {
    let before = env.local.shared.calls_of("on-image-push");
    env.push(tag, &fixture::new_digest(tag)).await;
    env.wait_invocations(Function::OnImagePush, pushes_so_far + 1).await;
    let out = env.results_of(Function::OnImagePush).pop().unwrap().expect("on-image-push succeeded");
    let after = env.local.shared.calls_of("on-image-push");
    (reads(&before, &after), out)
}

/// A push costs the same reads with 10 and with 60 policies in the account: one Query of the
/// index and one GetParameters of the matched policy (or, when no policy names the repository,
/// one GetItem: has the index been built?), never a page through every policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_costs_the_same_reads_however_many_policies_there_are() {
    let env = start(options()).await;
    add_policies(&env, 0, 9).await;
    sweep(&env).await;
    // A push of a repository no policy names.
    let before = env.local.shared.calls_of("on-image-push");
    fixture::put_event(&env.local.config, &fixture::ecr_push_event("team/nobody", "v1", &fixture::new_digest("nobody"))).await.unwrap();
    env.wait_invocations(Function::OnImagePush, 1).await;
    let unmatched_10 = reads(&before, &env.local.shared.calls_of("on-image-push"));
    assert_eq!(
        unmatched_10,
        BTreeMap::from([("dynamodb:Query".to_string(), 1), ("dynamodb:GetItem".to_string(), 1)]),
        "a push no policy wants: the index's Query, and whether it has been built"
    );

    let (matched_10, out) = push_reads(&env, "v2", 1).await;
    assert_eq!(out["rollouts"][0]["outcome"], "started", "{out}");
    let ssm: Vec<(&String, &u64)> = matched_10.iter().filter(|(a, _)| a.starts_with("ssm:")).collect();
    assert_eq!(ssm, [(&"ssm:GetParameters".to_string(), &1)], "a push to one service reads that service's policy only: {matched_10:?}");
    assert_eq!(matched_10.get("dynamodb:Query"), Some(&1), "and the index, once: {matched_10:?}");
    let execution = out["rollouts"][0]["execution"].as_str().unwrap().to_string();
    env.wait_for_end(&execution, Duration::from_secs(90)).await.unwrap();

    add_policies(&env, 9, 50).await;
    sweep(&env).await;
    let before = env.local.shared.calls_of("on-image-push");
    fixture::put_event(&env.local.config, &fixture::ecr_push_event("team/nobody", "v2", &fixture::new_digest("nobody-2"))).await.unwrap();
    env.wait_invocations(Function::OnImagePush, 3).await;
    assert_eq!(reads(&before, &env.local.shared.calls_of("on-image-push")), unmatched_10, "the same with 60 policies");
    let (matched_60, out) = push_reads(&env, "v3", 3).await;
    assert_eq!(out["rollouts"][0]["outcome"], "started", "{out}");
    assert_eq!(matched_60, matched_10, "the same with 60 policies");
    assert!(env.local.shared.iam.denials().is_empty(), "IAM refused: {:?}", env.local.shared.iam.denials());
}

/// Before the first sweep has built the index, a push still finds its policy (by reading every
/// policy) and the log says why; the sweep builds the index and marks it built.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_before_the_index_is_built_falls_back_to_reading_every_policy() {
    let env = start(options()).await;
    // The sample policy's own change event indexes it; a policy stored before kanaria was
    // installed never had one: remove its entry as if so.
    let service = env.sample.policy.service.key();
    env.eventually("the sample policy indexed from its change event", Duration::from_secs(30), async || {
        matches!(index(&env).service(&service).await.unwrap(), Lookup::Indexed(Some(_))).then_some(())
    })
    .await;
    index(&env).put(&service, None, true, 0).await.unwrap();
    assert_eq!(index(&env).services_for_repository(&env.sample.options.repository).await.unwrap(), Lookup::NotBuilt);

    let (reads, out) = push_reads(&env, "v2", 0).await;
    assert_eq!(out["rollouts"][0]["outcome"], "started", "{out}");
    assert_eq!(reads.get("ssm:GetParametersByPath"), Some(&1), "fell back to reading every policy: {reads:?}");
    let execution = env.started_execution().await;
    env.wait_for_end(&execution, Duration::from_secs(90)).await.unwrap();

    let out = sweep(&env).await;
    assert_eq!(out["report"]["indexed"], 1, "the sweep indexed the sample policy: {out}");
    let found = index(&env).services_for_repository(&env.sample.options.repository).await.unwrap();
    assert_eq!(
        found,
        Lookup::Indexed(vec![(
            service.clone(),
            kanaria::aws::policies::parameter_name(&env.local.ctx().settings.policy_prefix, &env.sample.policy)
        )])
    );
    assert!(env.local.shared.iam.denials().is_empty(), "IAM refused: {:?}", env.local.shared.iam.denials());
}

/// Parameter Store's change events keep the index in step: a policy that moves to another
/// repository leaves the old one's entry, a deleted policy leaves the index. A stale entry (its
/// event lost) starts nothing its policy no longer asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn change_events_keep_the_index_in_step_and_a_stale_entry_starts_nothing() {
    let env = start(options()).await;
    sweep(&env).await;
    let ctx = env.local.ctx();
    let service = env.sample.policy.service.key();
    let parameter = kanaria::aws::policies::parameter_name(&ctx.settings.policy_prefix, &env.sample.policy);
    let repository = env.sample.options.repository.clone();
    let put = async |yaml: String| {
        ctx.clients
            .ssm
            .put_parameter()
            .name(&parameter)
            .value(yaml)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .unwrap()
    };
    let moved = env.sample.policy_yaml.replace(&format!("repository: {repository}"), "repository: team/moved");
    put(moved.clone()).await;
    env.eventually("the index follows the policy to team/moved", Duration::from_secs(30), async || {
        let old = index(&env).services_for_repository(&repository).await.unwrap();
        let new = index(&env).services_for_repository("team/moved").await.unwrap();
        (old == Lookup::Indexed(vec![]) && new == Lookup::Indexed(vec![(service.clone(), parameter.clone())])).then_some(())
    })
    .await;

    // The change back is stored, but its event is lost: the index still points team/moved at the
    // service. A push to team/moved reads the policy as it is now and starts nothing.
    let failed_before = env.results_of(Function::PolicySync).iter().filter(|r| r.is_err()).count();
    env.local.shared.faults.add(FaultRule::new("policy-sync", "ssm:GetParameters", FaultKind::ServerError).times(1000));
    put(env.sample.policy_yaml.clone()).await;
    env.eventually("policy-sync gave the change event up (3 attempts)", Duration::from_secs(60), async || {
        (env.results_of(Function::PolicySync).iter().filter(|r| r.is_err()).count() >= failed_before + 3).then_some(())
    })
    .await;
    env.local.shared.faults.clear();
    assert_eq!(
        index(&env).services_for_repository("team/moved").await.unwrap(),
        Lookup::Indexed(vec![(service.clone(), parameter.clone())])
    );
    let before = env.local.shared.calls_of("on-image-push");
    let pushes = env.results_of(Function::OnImagePush).len();
    fixture::put_event(&env.local.config, &fixture::ecr_push_event("team/moved", "v9", &fixture::new_digest("moved"))).await.unwrap();
    env.wait_invocations(Function::OnImagePush, pushes + 1).await;
    let out = env.results_of(Function::OnImagePush).pop().unwrap().expect("on-image-push succeeded");
    assert_eq!(out["ignored"], "no policy matches", "{out}");
    assert!(env.executions().await.is_empty(), "a stale entry started nothing");
    assert_eq!(reads(&before, &env.local.shared.calls_of("on-image-push")).get("ssm:GetParameters"), Some(&1));

    // The next sweep repairs it; deleting the policy takes it out of the index.
    sweep(&env).await;
    assert_eq!(index(&env).services_for_repository("team/moved").await.unwrap(), Lookup::Indexed(vec![]));
    ctx.clients.ssm.delete_parameter().name(&parameter).send().await.unwrap();
    env.eventually("the deleted policy leaves the index", Duration::from_secs(30), async || {
        (index(&env).service(&service).await.unwrap() == Lookup::Indexed(None)
            && index(&env).services_for_repository(&repository).await.unwrap() == Lookup::Indexed(vec![]))
        .then_some(())
    })
    .await;
}
