//! ChatOps end to end on emulated AWS: a rollout pauses at its approval step (the execution
//! waits on a task token that stays in DynamoDB), the Slack message shows Approve / Roll back,
//! and a correctly signed click from an approver — through the slack-interactions Function URL —
//! lets it reach 100% or rolls it back; a timeout does what the policy says. A recording Slack
//! server shows one message per rollout, updated in place, and never a task token.

mod common;

use std::time::Duration;

use common::{start, Env};
use kanaria::aws::approvals::Approvals;
use kanaria::handlers::Function;
use kanaria::slack::request::sign;
use kanaria_local::faults::{FaultKind, FaultRule};
use kanaria_local::fixture::{self, SampleOptions};
use kanaria_local::slack::{SlackCall, APP_ID, CHANNEL, SIGNING_SECRET, TEAM_ID};
use serde_json::{json, Value};

const APPROVER: &str = "U0APPROVER";
const STRANGER: &str = "U0STRANGER";

/// 10% baked, then an approval with `approval` settings, then 50%.
fn with_approval(approval: &str) -> SampleOptions {
    SampleOptions {
        strategy_yaml: Some(format!(
            "  canary:\n    steps:\n      - {{ weight: 10, bake: 1s }}\n      - approval: {approval}\n      - {{ weight: 50, bake: 1s }}\n"
        )),
        extra_policy_yaml: format!("slack: {{ approvers: [{APPROVER}] }}\n"),
        ..SampleOptions::default()
    }
}

/// Wait until the rollout's Slack message offers the buttons; returns the approval id the
/// buttons carry (what a person's click sends back).
async fn approval_id_from_slack(env: &Env) -> String {
    let has_buttons = |c: &SlackCall| button_value(&c.json()).is_some();
    env.local
        .shared
        .wait_for_slack("the message with approval buttons", Duration::from_secs(60), |calls| calls.iter().any(has_buttons))
        .await
        .unwrap();
    env.local.shared.slack.calls().iter().find_map(|c| button_value(&c.json())).unwrap()
}

fn button_value(message: &Value) -> Option<String> {
    message["blocks"].as_array()?.iter().find_map(|b| {
        b["elements"].as_array()?.iter().find(|e| e["action_id"] == "kanaria.approve").and_then(|e| e["value"].as_str().map(str::to_string))
    })
}

/// A `block_actions` click as Slack sends it: form body `payload=<JSON>`, signed.
fn click_body(env: &Env, user: &str, action: &str, approval_id: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "kanaria-local"},
        "api_app_id": APP_ID,
        "user": {"id": user, "username": "someone", "name": "someone", "team_id": TEAM_ID},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": CHANNEL, "is_ephemeral": false},
        "channel": {"id": CHANNEL, "name": "deploys"},
        "trigger_id": "123.456.abc",
        "response_url": format!("{}/slack/response/T0LOCAL01/1/abc", env.local.endpoint),
        "actions": [{"type": "button", "action_id": action, "block_id": "kanaria.approval", "value": approval_id, "action_ts": "1700000001.000002"}],
    });
    form_urlencoded::Serializer::new(String::new()).append_pair("payload", &payload.to_string()).finish()
}

/// POST to the slack-interactions Function URL; returns the HTTP status.
async fn post(env: &Env, body: &str, secret: &str, age_seconds: u64) -> u16 {
    let ts = (kanaria::aws::now_unix() - age_seconds).to_string();
    let signature = sign(secret.as_bytes(), &ts, body.as_bytes());
    let url = format!("{}/function-url/SlackInteractionsFunction", env.local.endpoint);
    let client = reqwest::Client::new();
    let resp = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", signature)
        .body(body.to_string())
        .send()
        .await
        .expect("the Function URL answers");
    resp.status().as_u16()
}

async fn click(env: &Env, user: &str, action: &str, approval_id: &str) -> u16 {
    post(env, &click_body(env, user, action, approval_id), SIGNING_SECRET, 0).await
}

/// The execution history shows the approval state entered and not yet left.
async fn waiting_at_approval(env: &Env, execution: &str) -> bool {
    let sfn = aws_sdk_sfn::Client::new(&env.local.config);
    let history = sfn.get_execution_history().execution_arn(execution).max_results(1000).send().await.unwrap();
    let entered =
        history.events().iter().filter(|e| e.state_entered_event_details().is_some_and(|d| d.name() == "WaitForApproval")).count();
    let exited = history.events().iter().filter(|e| e.state_exited_event_details().is_some_and(|d| d.name() == "WaitForApproval")).count();
    entered == 1 && exited == 0
}

/// The approval's record (with the task token, which must never reach Slack).
async fn token_of(env: &Env, approval_id: &str) -> String {
    let approvals = Approvals::new(&env.local.ctx().clients.dynamodb, &env.local.ctx().settings.table);
    approvals.get(approval_id).await.unwrap().expect("the approval is recorded").token.0
}

/// One message per rollout: exactly one chat.postMessage, every chat.update on its ts; and no
/// task token anywhere in what was sent to Slack.
fn assert_one_message_no_token(calls: &[SlackCall], token: &str) {
    let posts: Vec<&SlackCall> = calls.iter().filter(|c| c.method == "chat.postMessage").collect();
    assert_eq!(posts.len(), 1, "one message per rollout: {:?}", calls.iter().map(|c| &c.method).collect::<Vec<_>>());
    let updates: Vec<Value> = calls.iter().filter(|c| c.method == "chat.update").map(SlackCall::json).collect();
    assert!(!updates.is_empty(), "the message is updated in place");
    assert!(updates.iter().all(|u| u["ts"] == "1700000000.000001" && u["channel"] == CHANNEL), "{updates:?}");
    assert!(!token.is_empty());
    for c in calls {
        assert!(!c.body.contains(token), "a task token reached Slack in {}", c.method);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approvers_click_lets_the_rollout_reach_100_percent() {
    let env = start(with_approval("{ timeout: 10m }")).await;
    let digest = fixture::new_digest("approve");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    let approval_id = approval_id_from_slack(&env).await;
    assert!(waiting_at_approval(&env, &execution).await, "the execution waits at the approval step");
    assert_eq!(env.shifted_weights(), vec![10], "traffic holds at 10% while it waits");

    // Refused, each with nothing changed: a forged signature, a stale request, a non-approver.
    let body = click_body(&env, APPROVER, "kanaria.approve", &approval_id);
    assert_eq!(post(&env, &body, "not-the-signing-secret", 0).await, 401);
    assert_eq!(post(&env, &body, SIGNING_SECRET, 6 * 60).await, 401);
    assert_eq!(click(&env, STRANGER, "kanaria.approve", &approval_id).await, 403);
    assert!(waiting_at_approval(&env, &execution).await, "refused clicks change nothing");
    let approvals = Approvals::new(&env.local.ctx().clients.dynamodb, &env.local.ctx().settings.table);
    assert_eq!(approvals.get(&approval_id).await.unwrap().unwrap().status, "PENDING");

    assert_eq!(click(&env, APPROVER, "kanaria.approve", &approval_id).await, 200);
    env.assert_promoted(&execution, &digest).await;
    assert_eq!(env.shifted_weights(), vec![10, 50]);
    let record = approvals.get(&approval_id).await.unwrap().unwrap();
    assert_eq!((record.status.as_str(), record.decided_by.as_deref()), ("APPROVED", Some(APPROVER)));

    // A double click (or a replay with a fresh signature) cannot decide twice.
    assert_eq!(click(&env, APPROVER, "kanaria.approve", &approval_id).await, 403);
    assert_eq!(click(&env, APPROVER, "kanaria.reject", &approval_id).await, 403);

    // The message the button was on now says who approved; the rollout's message ends promoted.
    let calls = env.local.shared.slack.calls();
    let replaced = calls.iter().find(|c| c.method == "response_url" && c.json()["replace_original"] == true).expect("message replaced");
    assert!(replaced.body.contains(&format!("<@{APPROVER}>")), "{}", replaced.body);
    assert!(button_value(&replaced.json()).is_none(), "no buttons once decided");
    env.local
        .shared
        .wait_for_slack("the promoted message", Duration::from_secs(30), |calls| {
            calls.iter().rev().find(|c| c.method == "chat.update").is_some_and(|c| c.body.to_lowercase().contains("promoted"))
        })
        .await
        .unwrap();
    assert_one_message_no_token(&env.local.shared.slack.calls(), &token_of(&env, &approval_id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_roll_back_click_rolls_back_at_once() {
    let env = start(with_approval("{ timeout: 10m }")).await;
    let digest = fixture::new_digest("reject");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    let approval_id = approval_id_from_slack(&env).await;

    assert_eq!(click(&env, APPROVER, "kanaria.reject", &approval_id).await, 200);
    let cause = env.assert_rolled_back(&execution, &format!("rolled back by <@{APPROVER}>")).await;
    assert!(cause.contains("approval step"), "{cause}");
    assert_eq!(env.shifted_weights(), vec![10], "never went past 10%");
    assert_eq!(click(&env, APPROVER, "kanaria.approve", &approval_id).await, 403, "decided once");
    env.local
        .shared
        .wait_for_slack("the rolled-back message", Duration::from_secs(30), |calls| {
            calls.iter().rev().find(|c| c.method == "chat.update").is_some_and(|c| c.body.to_lowercase().contains("rolled back"))
        })
        .await
        .unwrap();
    assert_one_message_no_token(&env.local.shared.slack.calls(), &token_of(&env, &approval_id).await);
}

/// Slack gets its answer before the decision's work is done (Slack wants one within 3 s; a
/// rollback may take longer): the decision goes through the decision queue. When the rollback
/// fails half way (the listener change refused), the click was still answered 200, and the
/// queue's retry finishes the rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_roll_back_click_is_answered_at_once_and_a_broken_off_rollback_is_finished_from_the_queue() {
    let env = start(with_approval("{ timeout: 10m }")).await;
    let digest = fixture::new_digest("reject-queued");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    let approval_id = approval_id_from_slack(&env).await;

    // Every attempt (the SDK's three) of the decision's first listener change fails.
    let fault = env
        .local
        .shared
        .faults
        .add(FaultRule::new("slack-interactions", "elasticloadbalancing:ModifyListener", FaultKind::ServerError).times(3));
    assert_eq!(click(&env, APPROVER, "kanaria.reject", &approval_id).await, 200, "answered before the rollback");
    let cause = env.assert_rolled_back(&execution, &format!("rolled back by <@{APPROVER}>")).await;
    assert!(cause.contains("approval step"), "{cause}");
    assert_eq!(env.local.shared.faults.fired(fault), 3, "the first attempt's listener change failed");
    let invocations: Vec<_> = env.local.shared.invocations().into_iter().filter(|i| i.function == Function::SlackInteractions).collect();
    let from_queue: Vec<_> = invocations.iter().filter(|i| i.input.get("Records").is_some()).collect();
    assert!(from_queue.len() >= 2 && from_queue[0].result.is_err(), "decided from the queue, retried after the failure: {from_queue:?}");
    assert!(from_queue.last().unwrap().result.is_ok());
    assert_eq!(Env::weight_of(&env.weights().await, &env.sample.target_groups[0]), 100);
    assert_one_message_no_token(&env.local.shared.slack.calls(), &token_of(&env, &approval_id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nobody_answering_rolls_back_by_default() {
    let env = start(with_approval("{ timeout: 2s }")).await;
    let digest = fixture::new_digest("timeout");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    let approval_id = approval_id_from_slack(&env).await;

    env.assert_rolled_back(&execution, "nobody approved within 2s").await;
    // A click after the deadline is refused and changes nothing.
    assert_eq!(click(&env, APPROVER, "kanaria.approve", &approval_id).await, 403);
    let approvals = Approvals::new(&env.local.ctx().clients.dynamodb, &env.local.ctx().settings.table);
    assert_eq!(approvals.get(&approval_id).await.unwrap().unwrap().status, "PENDING", "expired, not decided");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_timeout_promote_goes_on_without_an_answer() {
    let env = start(with_approval("{ timeout: 2s, onTimeout: promote }")).await;
    let digest = fixture::new_digest("timeout-promote");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    approval_id_from_slack(&env).await;

    env.assert_promoted(&execution, &digest).await;
    assert_eq!(env.shifted_weights(), vec![10, 50]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kanaria_approve_is_decided_server_side_for_a_verified_caller_even_when_slack_is_down() {
    let env = start(with_approval("{ timeout: 10m }")).await;
    env.local.shared.slack.set_down(true);
    let digest = fixture::new_digest("cli-approve");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    env.wait_action("approval", 1).await;
    assert!(waiting_at_approval(&env, &execution).await);

    let service = env.sample.policy.service.key();
    // The decide function's URL takes only SigV4-signed requests (AuthType AWS_IAM): an unsigned
    // one, even with a body that claims an identity, is refused before the function runs.
    let url = format!("{}/function-url/DecideFunction", env.local.endpoint);
    let unsigned = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(json!({"service": service, "decision": "approve", "requestContext": {"authorizer": {"iam": {"userArn": "arn:aws:iam::123456789012:user/mallory"}}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    // Without the URL the CLI does not decide in its own process (it would need the task token).
    let ran = tokio::task::spawn_blocking({
        let endpoint = env.local.endpoint.clone();
        let service = service.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_kanaria"))
                .args(["approve", &service, "--endpoint-url", &endpoint, "--region", "us-east-1"])
                .env_remove("KANARIA_DECIDE_URL")
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(ran.status.code(), Some(2), "{}", String::from_utf8_lossy(&ran.stderr));
    assert!(String::from_utf8_lossy(&ran.stderr).contains("--decide-url"), "{}", String::from_utf8_lossy(&ran.stderr));
    assert!(env.results_of(Function::Decide).is_empty(), "nothing reached the decide function");
    assert!(waiting_at_approval(&env, &execution).await, "nothing was decided");
    let id = env.store().lock(&service).await.unwrap().and_then(|l| l.approval_id).expect("an approval waits");

    let out = env.kanaria(&["approve", &service]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("approved rollout"), "{}", String::from_utf8_lossy(&out.stdout));
    env.assert_promoted(&execution, &digest).await;
    // Decided by the decide function, for the caller STS names.
    assert_eq!(env.results_of(Function::Decide).len(), 1);
    let caller = aws_sdk_sts::Client::new(&env.local.config).get_caller_identity().send().await.unwrap().arn().unwrap().to_string();
    let approvals = Approvals::new(&env.local.ctx().clients.dynamodb, &env.local.ctx().settings.table);
    assert_eq!(approvals.get(&id).await.unwrap().unwrap().decided_by.as_deref(), Some(caller.as_str()));

    // Nothing waits any more: approving again says so and exits 1.
    let out = env.kanaria(&["reject", &service]).await;
    assert_eq!(out.status.code(), Some(1));
    // Slack was down throughout: kanaria tried, and the rollout never depended on it.
    assert!(env.local.shared.slack.calls().iter().any(|c| c.method == "chat.postMessage"));
    assert!(env.results_of(Function::RolloutStep).iter().all(|r| r.is_ok()), "no rollout step failed over Slack");
}

/// `forbidSelfApproval`: who pushed comes from CloudTrail's PutImage record. The pusher cannot
/// approve (rolling back stays open to them: it is the safe direction) — in Slack (matched by the email Slack has for them) nor with `kanaria approve`
/// (matched by IAM identity) — and neither can someone Slack gives no email for, since the rule
/// could not be checked; each refusal changes nothing. Another approver's click goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pusher_may_not_approve_their_own_push() {
    const OTHER: &str = "U0OTHER01";
    const NO_EMAIL: &str = "U0NOEMAIL";
    let options = SampleOptions {
        strategy_yaml: Some(
            "  canary:\n    steps:\n      - { weight: 10, bake: 1s }\n      - approval: { timeout: 10m, forbidSelfApproval: true }\n      - { weight: 50, bake: 1s }\n"
                .into(),
        ),
        extra_policy_yaml: format!("slack: {{ approvers: [{APPROVER}, {OTHER}, {NO_EMAIL}] }}\n"),
        ..SampleOptions::default()
    };
    let env = start(options).await;
    // The IAM identity `kanaria approve` runs as here is the one that pushed.
    let sts = aws_sdk_sts::Client::new(&env.local.config);
    let pusher = sts.get_caller_identity().send().await.unwrap().arn().unwrap().to_string();
    let person = kanaria::identity::Principal::from_arn(&pusher).person.expect("the caller names a person");
    env.local.shared.slack.set_user_email(APPROVER, &format!("{person}@example.com"));
    env.local.shared.slack.set_user_email(OTHER, "someone.else@example.com");

    let digest = fixture::new_digest("self-approval");
    env.push("v2", &digest).await;
    env.cloudtrail_put_image("v2", &digest, &pusher).await;
    env.wait_invocations(Function::OnImagePush, 2).await;
    assert!(
        env.results_of(Function::OnImagePush).iter().any(|r| r.as_ref().is_ok_and(|v| v["pusher"] == pusher.as_str())),
        "the CloudTrail record is taken: {:?}",
        env.results_of(Function::OnImagePush)
    );
    let execution = env.started_execution().await;
    let approval_id = approval_id_from_slack(&env).await;
    let approvals = Approvals::new(&env.local.ctx().clients.dynamodb, &env.local.ctx().settings.table);

    // The pusher, in Slack: refused, told why.
    assert_eq!(click(&env, APPROVER, "kanaria.approve", &approval_id).await, 403);
    let told =
        env.local.shared.slack.calls().iter().filter(|c| c.method == "response_url").any(|c| c.body.contains("You pushed this image"));
    assert!(told, "the pusher is told why");
    // Someone Slack has no email for: the rule cannot be checked, so refused too.
    assert_eq!(click(&env, NO_EMAIL, "kanaria.approve", &approval_id).await, 403);
    // The pusher, with kanaria approve.
    let out = env.kanaria(&["approve", &env.sample.policy.service.key()]).await;
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("forbids approving your own push"), "{said}");

    assert!(waiting_at_approval(&env, &execution).await, "refusals change nothing");
    assert_eq!(approvals.get(&approval_id).await.unwrap().unwrap().status, "PENDING");
    assert_eq!(env.shifted_weights(), vec![10]);

    // Another approver.
    assert_eq!(click(&env, OTHER, "kanaria.approve", &approval_id).await, 200);
    env.assert_promoted(&execution, &digest).await;
    let record = approvals.get(&approval_id).await.unwrap().unwrap();
    assert_eq!((record.status.as_str(), record.decided_by.as_deref()), ("APPROVED", Some(OTHER)));
    assert_one_message_no_token(&env.local.shared.slack.calls(), &record.token.0);
}
