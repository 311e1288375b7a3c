//! The circuit breaker and the other ways a rollout ends early, end to end on emulated AWS:
//! failed tasks (crash after RUNNING, CannotPullContainerError), an alarm, canary analysis,
//! a newer push; duplicate and out-of-order events; linear and blue/green strategies.

mod common;

use std::time::Duration;

use common::{start, task_event, Env};
use kanaria::handlers::Function;
use kanaria_local::fixture::{self, SampleOptions};

fn long_bake() -> SampleOptions {
    // A bake long enough that only the circuit breaker can end it within the test's limits.
    SampleOptions { steps: vec![(10, 600), (50, 1)], ..SampleOptions::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_crashing_after_running_rolls_back_during_the_bake() {
    let env = start(long_bake()).await;
    let digest = fixture::new_digest("crash");
    env.local.simulator.crash_images(&digest, 1, Duration::from_secs(1));
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;

    env.assert_rolled_back(&execution, "Essential container in task exited").await;
    // The 10-minute bake never ran out: the event handler rolled back, not a verify step.
    assert_eq!(env.action_count("verify"), 0);
    let cause = env.wait_for_end(&execution, Duration::from_secs(1)).await.unwrap().2;
    assert!(cause.contains("exit 1"), "{cause}");

    // Rollout metrics (issue 16 #14): one rollback, by its cause.
    let rolled_back = env.metrics("RolloutsRolledBack");
    assert_eq!(rolled_back.len(), 1, "{rolled_back:?}");
    assert_eq!((rolled_back[0]["service"].as_str(), rolled_back[0]["cause"].as_str()), (Some("demo/web"), Some("failed-tasks")));
    assert!(env.metrics("RolloutsPromoted").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cannot_pull_container_at_start_rolls_back_before_any_traffic_moves() {
    let env = start(long_bake()).await;
    let digest = fixture::new_digest("pull");
    let reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref 123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web@sha256:...: not found";
    env.local.simulator.fail_to_start_images(&digest, reason);
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;

    env.assert_rolled_back(&execution, "CannotPullContainerError").await;
    assert_eq!(env.action_count("shift"), 0, "no traffic was ever moved to the new task set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alarm_going_to_alarm_rolls_back() {
    let env = start(SampleOptions { extra_policy_yaml: "alarms: [web-5xx]\n".into(), ..long_bake() }).await;
    env.create_alarm("web-5xx").await;
    let cw = &env.local.ctx().clients.cloudwatch;
    let digest = fixture::new_digest("alarm");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    env.wait_action("shift", 1).await;

    // CloudWatch changes the alarm's state and tells EventBridge.
    cw.set_alarm_state()
        .alarm_name("web-5xx")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("Threshold Crossed: 1 datapoint [42.0] was greater than the threshold (10.0).")
        .send()
        .await
        .unwrap();
    let event = serde_json::json!({
        "source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change",
        "detail": {"alarmName": "web-5xx", "state": {"value": "ALARM", "reason": "Threshold Crossed: 1 datapoint [42.0] was greater than the threshold (10.0)."},
                   "previousState": {"value": "OK"}}
    });
    fixture::put_event(&env.local.config, &event).await.unwrap();

    env.assert_rolled_back(&execution, "alarm web-5xx went to ALARM").await;
    assert_eq!(env.action_count("verify"), 0, "rolled back by the alarm event, not at the end of the bake");
    // No client saw an error: traffic only ever moved to healthy tasks.
    env.assert_no_client_errors();

    // Rollout metrics (issue 16 #14): the rollback by its cause, and how long the 10% of traffic
    // on the new task set took to be back on the stable one (read back).
    let rolled_back = env.metrics("RolloutsRolledBack");
    assert_eq!(rolled_back.iter().map(|d| d["cause"].as_str()).collect::<Vec<_>>(), [Some("alarm")], "{rolled_back:?}");
    let restored = env.metrics("TimeToRollBack");
    assert_eq!(restored.len(), 1, "traffic was moved back once: {restored:?}");
    assert_eq!(restored[0]["service"], "demo/web");
    assert!(restored[0]["TimeToRollBack"].as_f64().is_some_and(|s| s > 0.0 && s < 30.0), "{restored:?}");
}

/// Issue 16 #4. A policy may name a composite alarm. DescribeAlarms returns composite alarms only
/// when asked for them (AlarmTypes) and only to callers allowed it on "*" (the local runtime
/// answers both as AWS does): before, rollout-step asked for metric alarms only, so a composite
/// alarm in ALARM never stopped a rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_composite_alarm_in_alarm_rolls_back() {
    let env =
        start(SampleOptions { steps: vec![(10, 1), (50, 1)], extra_policy_yaml: "alarms: [web-health]\n".into(), ..Default::default() })
            .await;
    env.create_alarm("web-5xx").await;
    let cw = &env.local.ctx().clients.cloudwatch;
    cw.put_composite_alarm().alarm_name("web-health").alarm_rule("ALARM(\"web-5xx\")").send().await.unwrap();
    // The web team's health is already bad (CloudWatch evaluated the rule): no traffic may move.
    cw.set_alarm_state()
        .alarm_name("web-health")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("web-5xx is in ALARM")
        .send()
        .await
        .unwrap();
    let digest = fixture::new_digest("composite");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;

    env.assert_rolled_back(&execution, "alarm web-health is in ALARM").await;
    assert_eq!(env.action_count("promote"), 0, "never promoted");
    let rolled_back = env.metrics("RolloutsRolledBack");
    assert_eq!(rolled_back.iter().map(|d| d["cause"].as_str()).collect::<Vec<_>>(), [Some("alarm")], "{rolled_back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canary_analysis_failing_on_5xx_rolls_back() {
    // The new image answers 15% of its requests with a 500; the stable one none. The traffic
    // probe's clients send the requests and the ALB's CloudWatch metrics report them.
    let options = SampleOptions {
        steps: vec![(50, 3), (100, 1)],
        extra_policy_yaml: "analysis: { minRequests: 10 }\n".into(),
        ..SampleOptions::default()
    };
    let env = start(options).await;
    let digest = fixture::new_digest("5xx");
    env.local.simulator.failing_requests_images(&digest, 0.15);
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;

    let cause = env.assert_rolled_back(&execution, "canary analysis at 50%").await;
    assert!(cause.contains("5xx rate") && cause.contains("above the allowed"), "{cause}");
    let traffic = env.traffic();
    assert!(traffic.target_errors > 0, "clients saw the new image fail requests: {traffic:?}");
    assert_eq!(env.action_count("shift"), 1, "never went on to 100%");
}

/// Issue 15 #3. Before: at a 100% step the stable target group gets no requests, so the
/// comparison was always "too little traffic", a hold, then a rollback: an analysed canary with
/// a 100% step could not promote. Now the stable group's baseline is the window before the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_analysed_canary_goes_through_a_100_percent_step_and_promotes() {
    let options = SampleOptions {
        steps: vec![(50, 3), (100, 3)],
        extra_policy_yaml: "analysis: { minRequests: 10, inconclusive: rollback }\n".into(),
        ..SampleOptions::default()
    };
    let env = start(options).await;
    let digest = fixture::new_digest("analysed");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    env.assert_promoted(&execution, &digest).await;
    let verified: Vec<String> = env
        .local
        .shared
        .invocations()
        .into_iter()
        .filter(|i| i.function == Function::RolloutStep && i.input["action"] == "verify")
        .filter_map(|i| i.result.ok().and_then(|r| r["analysis"].as_str().map(str::to_string)))
        .collect();
    assert_eq!(verified.len(), 2, "both steps were analysed: {verified:?}");
    assert!(verified.iter().all(|a| a.starts_with("5xx rate 0.00% vs stable 0.00%")), "{verified:?}");
    env.assert_no_client_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newer_push_supersedes_the_rollout_in_flight_and_a_late_older_push_is_refused() {
    let env = start(SampleOptions { steps: vec![(10, 3), (50, 1)], ..SampleOptions::default() }).await;
    let old = fixture::new_digest("old");
    env.push("v2", &old).await;
    let first = env.started_execution().await;
    env.wait_action("shift", 1).await;

    let new = fixture::new_digest("new");
    env.push("v3", &new).await;
    env.wait_invocations(Function::OnImagePush, 2).await;
    let out = env.results_of(Function::OnImagePush).pop().unwrap().unwrap();
    assert_eq!(out["rollouts"][0]["outcome"], "superseded", "{out}");
    let second = out["rollouts"][0]["execution"].as_str().unwrap().to_string();

    let (status, error, cause) = env.wait_for_end(&first, Duration::from_secs(60)).await.unwrap();
    assert_eq!((status.as_str(), error.as_str()), ("FAILED", "Kanaria.RolledBack"));
    assert!(cause.contains("superseded by a newer push") && cause.contains(&new), "{cause}");

    // The older push, delivered late, must not supersede the newer one.
    let mut late = fixture::ecr_push_event(&env.sample.options.repository, "v2", &fixture::new_digest("older"));
    late["time"] = humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(3600)).to_string().into();
    fixture::put_event(&env.local.config, &late).await.unwrap();
    env.wait_invocations(Function::OnImagePush, 3).await;
    let out = env.results_of(Function::OnImagePush).pop().unwrap().unwrap();
    assert_eq!(out["rollouts"][0]["outcome"], "refused", "{out}");

    env.assert_promoted(&second, &new).await;
    let history = env.store().history(&env.sample.policy.service.key(), 5).await.unwrap();
    let outcomes: Vec<(&str, &str)> = history.iter().map(|h| (h.digest.as_str(), h.outcome.as_str())).collect();
    assert_eq!(outcomes, vec![(new.as_str(), "SUCCEEDED"), (old.as_str(), "ROLLED_BACK")]);
    // No client saw an error: traffic only ever moved to healthy tasks.
    env.assert_no_client_errors();

    // Rollout metrics (issue 16 #14): two started, the first rolled back as superseded (once,
    // though both its own RollBack state and the newer push end it), the second promoted.
    assert_eq!(env.metrics("RolloutsStarted").len(), 2);
    let rolled_back = env.metrics("RolloutsRolledBack");
    assert_eq!(rolled_back.iter().map(|d| d["cause"].as_str()).collect::<Vec<_>>(), [Some("superseded")], "{rolled_back:?}");
    assert_eq!(env.metrics("RolloutsPromoted").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_events_delivered_twice_and_out_of_order_are_counted_once() {
    let env = start(SampleOptions { extra_policy_yaml: "failureThreshold: 3\n".into(), ..long_bake() }).await;
    let digest = fixture::new_digest("dedupe");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    env.wait_action("shift", 1).await;
    let green = env.green_task_set().await;
    let tasks = env.task_arns_of(&green.id).await;
    assert!(tasks.len() >= 2, "{tasks:?}");
    let crashed = |task: &str, version| {
        task_event(
            &env,
            task,
            &green.id,
            "STOPPED",
            version,
            Some(("EssentialContainerExited", "Essential container in task exited", Some(1))),
        )
    };

    // Two failed tasks, each delivered twice, and an older STOPPED of the first task (version 3)
    // arriving after its newer one (version 4).
    for event in [crashed(&tasks[0], 4), crashed(&tasks[1], 3), crashed(&tasks[0], 3), crashed(&tasks[1], 3), crashed(&tasks[0], 4)] {
        fixture::put_event(&env.local.config, &event).await.unwrap();
    }
    env.wait_invocations(Function::OnTaskEvent, 5).await;
    let rollout_id = env.store().lock(&env.sample.policy.service.key()).await.unwrap().unwrap().rollout_id;
    let failures = env.store().failures(&rollout_id).await.unwrap();
    assert_eq!(failures.len(), 2, "each failed task counted once: {failures:?}");
    let first = failures.iter().find(|f| f.task_arn == tasks[0]).unwrap();
    assert_eq!(first.version, 4, "the record keeps the newest version of the task's state");
    let lock = env.store().lock(&env.sample.policy.service.key()).await.unwrap().unwrap();
    assert_eq!(lock.status, "IN_FLIGHT", "2 failures are below failureThreshold 3");
    assert_eq!(Env::weight_of(&env.weights().await, &env.sample.target_groups[1]), 10);

    // The third distinct failure reaches the threshold.
    let third =
        format!("arn:aws:ecs:us-east-1:{}:task/{}/0123456789abcdef0123456789abcdef", kanaria_local::ACCOUNT, env.sample.options.cluster);
    fixture::put_event(&env.local.config, &crashed(&third, 3)).await.unwrap();
    let cause = env.assert_rolled_back(&execution, "3 task(s) of the new task set failed").await;
    assert_eq!(cause.matches("exit 1").count(), 3, "{cause}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linear_rollout_promotes_and_rolls_back() {
    let linear = SampleOptions { strategy_yaml: Some("  linear: { stepPercent: 40, interval: 1s }\n".into()), ..SampleOptions::default() };
    let env = start(linear.clone()).await;
    let digest = fixture::new_digest("linear");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    env.assert_promoted(&execution, &digest).await;
    let shifted = env.shifted_weights();
    assert_eq!(shifted, vec![40, 80, 100]);

    let env = start(SampleOptions { strategy_yaml: Some("  linear: { stepPercent: 20, interval: 600s }\n".into()), ..linear }).await;
    let bad = fixture::new_digest("linear-bad");
    env.local.simulator.crash_images(&bad, 137, Duration::from_secs(1));
    env.push("v2", &bad).await;
    let execution = env.started_execution().await;
    env.assert_rolled_back(&execution, "exit 137").await;
}

fn blue_green(validation: &str) -> SampleOptions {
    SampleOptions {
        strategy_yaml: Some(format!(
            "  blueGreen:\n    testListenerArn: TEST_LISTENER\n    validation: {validation}\n    keepOldFor: 1s\n"
        )),
        ..SampleOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blue_green_with_a_bake_gate_cuts_over_at_once() {
    let env = start(blue_green("{ bake: 1s }")).await;
    let digest = fixture::new_digest("bg");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    env.wait_action("testTraffic", 1).await;
    // The test listener sends everything to the new task set; production is untouched.
    let test_weights = kanaria::aws::elb::read_weights(
        &env.local.ctx().clients.elb,
        &kanaria::policy::TrafficRoute::Listener(env.sample.test_listener_arn.clone()),
    )
    .await
    .unwrap();
    assert_eq!(Env::weight_of(&test_weights, &env.sample.target_groups[1]), 100, "{test_weights:?}");

    env.assert_promoted(&execution, &digest).await;
    let shifted = env.shifted_weights();
    assert_eq!(shifted, vec![100], "one cutover");
    // No client saw an error: traffic only ever moved to healthy tasks.
    env.assert_no_client_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blue_green_hook_decides_pass_and_fail() {
    let hook = format!("arn:aws:lambda:us-east-1:{}:function:kanaria-hook-smoke", kanaria_local::ACCOUNT);
    let env = start(blue_green(&format!("{{ hook: {hook} }}"))).await;
    let verdicts = std::sync::Arc::new(std::sync::Mutex::new(vec![false, true])); // first fails, then passes
    let v = verdicts.clone();
    env.local.shared.register_function(
        "kanaria-hook-smoke",
        std::sync::Arc::new(move |_input: serde_json::Value| {
            let pass = v.lock().unwrap().remove(0);
            // `reason` is optional: a passing hook here gives none.
            if pass {
                serde_json::json!({"pass": true})
            } else {
                serde_json::json!({"pass": false, "reason": "GET /healthz on the test listener returned 503"})
            }
        }),
    );

    let bad = fixture::new_digest("hook-bad");
    env.push("v2", &bad).await;
    let first = env.started_execution().await;
    env.assert_rolled_back(&first, "the validation hook failed the release: GET /healthz on the test listener returned 503").await;
    assert_eq!(env.action_count("shift"), 0, "production traffic never moved");
    // The test listener is back on the stable target group, not on the deleted one's.
    let test_route = kanaria::policy::TrafficRoute::Listener(env.sample.test_listener_arn.clone());
    let test_weights = kanaria::aws::elb::read_weights(&env.local.ctx().clients.elb, &test_route).await.unwrap();
    assert_eq!(Env::weight_of(&test_weights, &env.sample.target_groups[0]), 100, "{test_weights:?}");

    let good = fixture::new_digest("hook-good");
    env.push("v3", &good).await;
    env.wait_invocations(Function::OnImagePush, 2).await;
    let out = env.results_of(Function::OnImagePush).pop().unwrap().unwrap();
    let second = out["rollouts"][0]["execution"].as_str().unwrap().to_string();
    env.assert_promoted(&second, &good).await;
    assert!(verdicts.lock().unwrap().is_empty(), "the hook was asked twice");
    // No client saw an error: traffic only ever moved to healthy tasks.
    env.assert_no_client_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_queue_a_newer_push_waits_for_the_rollout_in_flight_then_starts() {
    let env = start(SampleOptions {
        steps: vec![(10, 2), (50, 1)],
        extra_policy_yaml: "onNewerPush: queue\n".into(),
        ..SampleOptions::default()
    })
    .await;
    let first_digest = fixture::new_digest("first");
    env.push("v2", &first_digest).await;
    let first = env.started_execution().await;
    env.wait_action("shift", 1).await;

    let second_digest = fixture::new_digest("second");
    env.push("v3", &second_digest).await;
    env.wait_invocations(Function::OnImagePush, 2).await;
    let out = env.results_of(Function::OnImagePush).pop().unwrap().unwrap();
    assert_eq!(out["rollouts"][0]["outcome"], "queued", "{out}");

    // The first rollout goes on undisturbed, then the queued push starts by itself.
    let (status, error, cause) = env.wait_for_end(&first, Duration::from_secs(60)).await.unwrap();
    assert_eq!(status, "SUCCEEDED", "{error}: {cause}");
    let sfn = aws_sdk_sfn::Client::new(&env.local.config);
    let mut second = None;
    env.local
        .shared
        .wait_for_invocations("the queued rollout to start", Duration::from_secs(60), |inv| {
            inv.iter().filter(|i| i.function == Function::RolloutStep && i.input["action"] == "createGreen" && i.result.is_ok()).count()
                >= 2
        })
        .await
        .unwrap();
    for (arn, _) in env.executions().await {
        if arn != first {
            second = Some(arn);
        }
    }
    let second = second.expect("a second execution started");
    assert!(sfn.describe_execution().execution_arn(&second).send().await.unwrap().input().unwrap_or_default().contains(&second_digest));
    env.assert_promoted(&second, &second_digest).await;
}

/// Issue 16 #5: ALB group stickiness beats weights. Clients that landed on the canary during a
/// sticky bake must leave it with the rollback's ModifyListener, not when their cookie expires:
/// with stickiness left on they would keep reaching the new target group at weight 0 and get
/// 503s once its task set drains. The rollback turns stickiness off in that same call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_moves_sticky_clients_off_the_canary_at_once() {
    use aws_sdk_elasticloadbalancingv2::types::{
        Action, ActionTypeEnum, ForwardActionConfig, TargetGroupStickinessConfig, TargetGroupTuple,
    };
    let env = start(SampleOptions {
        steps: vec![(50, 600), (100, 1)],
        extra_policy_yaml: "alarms: [web-5xx]\n".into(),
        ..SampleOptions::default()
    })
    .await;
    let [blue, green] = env.sample.target_groups.clone();
    env.create_alarm("web-5xx").await;
    let digest = fixture::new_digest("sticky");
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    env.wait_action("shift", 1).await;
    assert_eq!(Env::weight_of(&env.weights().await, &green), 50);

    // During the bake the listener has group stickiness on, for an hour (36 s at the runtime's
    // time scale: longer than this test). Turned on now, the probe's clients choose by weight
    // afresh, as new clients would, and half of them stick to the canary; the weights stay
    // kanaria's.
    let sticky = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(TargetGroupTuple::builder().target_group_arn(&blue).weight(50).build())
                .target_groups(TargetGroupTuple::builder().target_group_arn(&green).weight(50).build())
                .target_group_stickiness_config(TargetGroupStickinessConfig::builder().enabled(true).duration_seconds(3600).build())
                .build(),
        )
        .build();
    env.local.ctx().clients.elb.modify_listener().listener_arn(&env.sample.listener_arn).default_actions(sticky).send().await.unwrap();
    let sticky_from = std::time::Instant::now();
    env.eventually("sticky clients on the canary", Duration::from_secs(10), async || {
        let on_green: std::collections::BTreeSet<usize> = env
            .local
            .probe
            .requests_since(sticky_from)
            .iter()
            .filter(|r| r.listener == env.sample.listener_arn && r.outcome.target_group() == Some(green.as_str()))
            .map(|r| r.client)
            .collect();
        (on_green.len() >= 4).then_some(())
    })
    .await;

    let alarmed = std::time::Instant::now();
    env.fire_alarm("web-5xx").await;
    env.assert_rolled_back(&execution, "alarm web-5xx").await;

    // The rollback's ModifyListener, as the probe followed it: from then on no client reaches
    // the canary (and none saw an error, before or after its task set drained away)...
    let changes = env.local.probe.listener_changes(&env.sample.listener_arn);
    let back = changes
        .iter()
        .find(|c| c.at >= alarmed && c.forward.weight_of(&green) == Some(0))
        .unwrap_or_else(|| panic!("no change to 0% on the canary after the alarm: {changes:?}"));
    let after: Vec<_> = env
        .local
        .probe
        .requests_since(back.at)
        .into_iter()
        .filter(|r| r.listener == env.sample.listener_arn && r.outcome.target_group() == Some(green.as_str()))
        .collect();
    assert!(
        after.is_empty(),
        "{} requests reached the canary after the rollback's ModifyListener, first: {:?}",
        after.len(),
        after.first()
    );
    env.assert_no_client_errors();
    // ...because that call turned stickiness off with the weights.
    assert_eq!(back.forward.sticky_seconds, None, "stickiness is off in the same call: {back:?}");
}
