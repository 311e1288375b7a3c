//! The `kanaria` command against emulated AWS: policy validate/apply and status of a rollout
//! in flight.

mod common;

use std::process::{Command, Output};

use common::start;
use kanaria::handlers::Function;
use kanaria_local::fixture::{self, SampleOptions};

fn kanaria(endpoint: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kanaria"));
    cmd.args(args).env_remove("AWS_ENDPOINT_URL").env("AWS_ACCESS_KEY_ID", "test").env("AWS_SECRET_ACCESS_KEY", "test");
    if let Some(e) = endpoint {
        cmd.args(["--endpoint-url", e, "--region", "us-east-1"]);
        // approve, reject, promote and abort are carried out by the decide function (AWS_IAM URL).
        cmd.env("KANARIA_DECIDE_URL", format!("{e}/function-url/DecideFunction"));
    }
    cmd.output().expect("kanaria runs")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn validate_reports_every_problem_with_path_and_fix() {
    let ok = kanaria(None, &["policy", "validate", "--offline", concat!(env!("CARGO_MANIFEST_DIR"), "/policies/example.yaml")]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));

    let dir = std::env::temp_dir().join(format!("kanaria-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/example.yaml")).unwrap();
    std::fs::write(&bad, example.replace("weight: 5,", "weight: 500,").replace("tags: [\"v*\", \"release-*\"]", "tags: []")).unwrap();
    let out = kanaria(None, &["policy", "validate", "--offline", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let report = text(&out.stdout) + &text(&out.stderr);
    assert!(report.contains("trigger.tags"), "{report}");
    assert!(report.contains("strategy.canary.steps[1].weight"), "{report}");
    assert!(report.matches("fix:").count() >= 2, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_refuses_invalid_policies_and_status_shows_a_rollout_in_flight() {
    let env = start(SampleOptions { steps: vec![(10, 60)], ..SampleOptions::default() }).await;
    let endpoint = env.local.endpoint.clone();
    let parameter = kanaria::aws::policies::parameter_name(&env.local.ctx().settings.policy_prefix, &env.sample.policy);
    let stored = || async {
        env.local.ctx().clients.ssm.get_parameter().name(&parameter).send().await.unwrap().parameter().unwrap().value().unwrap().to_string()
    };
    let before = stored().await;

    let dir = std::env::temp_dir().join(format!("kanaria-cli-apply-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, env.sample.policy_yaml.replace("weight: 10,", "weight: 0,")).unwrap();
    let e = endpoint.clone();
    let out = tokio::task::spawn_blocking(move || kanaria(Some(&e), &["policy", "apply", bad.to_str().unwrap()])).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(stored().await, before, "an invalid policy is never stored");

    let good = dir.join("good.yaml");
    std::fs::write(&good, env.sample.policy_yaml.replace("bake: 60s", "bake: 61s")).unwrap();
    let e = endpoint.clone();
    let out = tokio::task::spawn_blocking(move || kanaria(Some(&e), &["policy", "apply", good.to_str().unwrap()])).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stored().await.contains("1m 1s"), "the new policy is stored");

    env.push("v2", &fixture::new_digest("status")).await;
    env.local
        .shared
        .wait_for_invocations("the first shift", std::time::Duration::from_secs(60), |inv| {
            inv.iter().any(|i| i.function == Function::RolloutStep && i.input["action"] == "shift" && i.result.is_ok())
        })
        .await
        .unwrap();
    let e = endpoint.clone();
    let out = tokio::task::spawn_blocking(move || kanaria(Some(&e), &["status", "demo/web", "--output", "json"])).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let svc = &status["services"][0];
    assert_eq!(svc["service"], "demo/web");
    assert_eq!(svc["inFlight"]["weight"], 10, "{svc}");
    assert_eq!(svc["inFlight"]["phase"], "baking", "{svc}");
    let live = svc["liveTraffic"]["weights"].as_array().unwrap();
    let green = live.iter().find(|w| w["targetGroup"] == "web-green").unwrap();
    assert_eq!(green["percent"], 10, "read back from the listener: {live:?}");

    let e = endpoint.clone();
    let out = tokio::task::spawn_blocking(move || kanaria(Some(&e), &["status"])).await.unwrap();
    let table = text(&out.stdout);
    assert!(table.contains("demo/web") && table.contains("10%"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abort_rolls_back_now_and_history_shows_it() {
    let env = start(SampleOptions { steps: vec![(10, 600), (50, 600)], ..SampleOptions::default() }).await;
    env.push("v2", &fixture::new_digest("abort")).await;
    let execution = env.started_execution().await;
    env.wait_action("shift", 1).await;

    let e = env.local.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || kanaria(Some(&e), &["abort", "demo/web"])).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("100% on the stable task set"), "{}", text(&out.stdout));
    env.assert_rolled_back(&execution, "aborted by").await;

    let e = env.local.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || kanaria(Some(&e), &["history", "demo/web", "--output", "json"])).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history["rollouts"][0]["outcome"], "ROLLED_BACK", "{history}");
    assert!(history["rollouts"][0]["cause"].as_str().unwrap().contains("aborted by"), "{history}");

    // Nothing in flight any more: abort says so and fails.
    let e = env.local.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || kanaria(Some(&e), &["abort", "demo/web"])).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    // No client saw an error: traffic only ever moved to healthy tasks.
    env.assert_no_client_errors();
}

/// Issue 15 #1: with `shiftBack`, an abort takes traffic back step by step, each step held so
/// the stable tasks warm up; `abort --now` moves the rest at once. Before: all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abort_shifts_back_gradually_when_the_policy_paces_and_abort_now_finishes_at_once() {
    let options = SampleOptions {
        steps: vec![(60, 600)],
        extra_policy_yaml: "shiftBack: { steps: [30, 10], interval: 4s }\n".into(),
        ..SampleOptions::default()
    };
    let env = start(options).await;
    let (stable_tg, green_tg) = (env.sample.target_groups[0].clone(), env.sample.target_groups[1].clone());
    env.push("v2", &fixture::new_digest("paced")).await;
    let execution = env.started_execution().await;
    env.wait_action("shift", 1).await;

    let e = env.local.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || kanaria(Some(&e), &["abort", "demo/web"])).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("step by step"), "{}", text(&out.stdout));
    let aborted = std::time::Instant::now();
    // The first step at once, read back: 30% stays on the healthy new task set.
    let w = env.weights().await;
    assert_eq!((common::Env::weight_of(&w, &stable_tg), common::Env::weight_of(&w, &green_tg)), (70, 30), "{w:?}");
    // Then 10%, after the first step was held.
    env.eventually("the second step", std::time::Duration::from_secs(30), async || {
        let w = env.weights().await;
        (common::Env::weight_of(&w, &green_tg) == 10).then_some(())
    })
    .await;
    // Held for the 4 s interval, counted in whole seconds from the rollback's first look, which
    // can come a moment before `abort` returns (the unit tests pin the exact rule).
    assert!(aborted.elapsed() >= std::time::Duration::from_secs(3), "the 30% step was held for the interval: {:?}", aborted.elapsed());

    // A person who wants it over now: the rest at once.
    let e = env.local.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || kanaria(Some(&e), &["abort", "demo/web", "--now"])).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let w = env.weights().await;
    assert_eq!(common::Env::weight_of(&w, &stable_tg), 100, "--now moved the rest at once: {w:?}");
    env.assert_rolled_back(&execution, "aborted by").await;
    // Every step went to healthy tasks: no client saw an error.
    env.assert_no_client_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promote_skips_the_remaining_steps() {
    let env = start(SampleOptions { steps: vec![(10, 600), (50, 600)], ..SampleOptions::default() }).await;
    let digest = fixture::new_digest("promote");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    env.wait_action("shift", 1).await;

    let e = env.local.endpoint.clone();
    let refused = tokio::task::spawn_blocking(move || kanaria(Some(&e), &["promote", "demo/web"])).await.unwrap();
    assert_eq!(refused.status.code(), Some(2), "no --yes and no terminal: refused");
    let e = env.local.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || kanaria(Some(&e), &["promote", "demo/web", "--yes"])).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    env.assert_promoted(&execution, &digest).await;
    assert_eq!(env.action_count("shift"), 1, "the 50% step was skipped");
    // No client saw an error: traffic only ever moved to healthy tasks.
    env.assert_no_client_errors();
}

/// Issue 15 #6: `kanaria deploy` rolls a given digest out now, the last good image included
/// (its next attempt); a digest that is not one changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_rolls_the_last_good_digest_out_again() {
    let env = start(SampleOptions::default()).await;
    let good = fixture::new_digest("deploy-good");
    let newer = fixture::new_digest("deploy-newer");
    env.push("v2", &good).await;
    env.assert_promoted(&env.started_execution().await, &good).await;
    env.push("v3", &newer).await;
    env.wait_invocations(Function::OnImagePush, 2).await;
    env.assert_promoted(&env.started_executions()[1], &newer).await;

    let bad = env.kanaria(&["deploy", "demo/web", "--digest", "sha256:nothex", "--state-machine-arn", &env.local.state_machine_arn]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stdout));
    let out =
        env.kanaria(&["deploy", "demo/web", "--digest", &good, "--tag", "v2", "--state-machine-arn", &env.local.state_machine_arn]).await;
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains(&format!("rolling {good} out to demo/web")), "{said}");
    let execution = said.rsplit(": ").next().unwrap().trim().to_string();
    assert!(execution.contains("-2-"), "the digest's second attempt: {execution}");
    env.assert_promoted(&execution, &good).await;
    // The service runs it now: deploying it again changes nothing.
    let again = env.kanaria(&["deploy", "demo/web", "--digest", &good, "--state-machine-arn", &env.local.state_machine_arn]).await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stdout));
    env.assert_no_client_errors();
}
