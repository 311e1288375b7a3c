//! A rollout's lifecycle as AWS would run it (issue 15), end to end on the strict emulated AWS:
//! promotion ends the rollout, a lock never outlives its execution, digests can be rolled out
//! again, queued pushes are not lost, and the circuit breaker acts on the first sign of a
//! failure and finishes what a fault interrupted. Each test failed on the code before its fix.

mod common;

use std::time::{Duration, Instant};

use common::start;
use kanaria::handlers::Function;
use kanaria_local::faults::{FaultKind, FaultRule};
use kanaria_local::fixture::{self, SampleOptions};

const LIMIT: Duration = Duration::from_secs(90);

fn long_bake() -> SampleOptions {
    // A bake only the circuit breaker can end within the tests' limits.
    SampleOptions { steps: vec![(10, 600), (50, 1)], ..SampleOptions::default() }
}

/// Issue 15 #1. Before: the lock lived until the drain ended, so an alarm during the drain ran
/// the restore — the old task set scaled up and got all traffic at once, with no healthy task.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_promotion_alarms_aborts_and_newer_pushes_leave_production_alone() {
    let env = start(SampleOptions {
        steps: vec![(50, 1)],
        drain_seconds: 20,
        extra_policy_yaml: "alarms: [web-5xx]\n".into(),
        ..SampleOptions::default()
    })
    .await;
    env.create_alarm("web-5xx").await;
    let first = fixture::new_digest("promoted");
    env.push("v2", &first).await;
    let execution = env.started_execution().await;
    env.wait_action("promote", 1).await;
    // Promoted: the rollout is done, the service released, its history written.
    let service = env.sample.policy.service.key();
    assert!(env.store().lock(&service).await.unwrap().is_none(), "the lock goes at promotion");
    assert_eq!(env.store().last(&service).await.unwrap().unwrap().outcome, "SUCCEEDED");

    // During the drain, an alarm the policy lists fires: nothing is rolled back.
    env.fire_alarm("web-5xx").await;
    env.wait_invocations(Function::OnAlarm, 1).await;
    let out = env.results_of(Function::OnAlarm).pop().unwrap().unwrap();
    assert_eq!(out["rolledBack"], serde_json::json!([]), "{out}");
    // A person's abort finds no rollout in flight.
    let abort = env.kanaria(&["abort", &service]).await;
    assert!(!abort.status.success(), "{}", String::from_utf8_lossy(&abort.stdout));
    // A newer push starts a rollout of its own (not a supersede of a finished one), which promotes
    // once the alarm is back to OK (a rollout never starts shifting while a listed alarm fires).
    env.local
        .ctx()
        .clients
        .cloudwatch
        .set_alarm_state()
        .alarm_name("web-5xx")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Ok)
        .state_reason("recovered")
        .send()
        .await
        .unwrap();
    let second = fixture::new_digest("after");
    env.push("v3", &second).await;
    env.wait_invocations(Function::OnImagePush, 2).await;
    let out = env.results_of(Function::OnImagePush).pop().unwrap().unwrap();
    assert_eq!(out["rollouts"][0]["outcome"], "started", "{out}");
    let next = out["rollouts"][0]["execution"].as_str().unwrap().to_string();
    env.assert_promoted(&next, &second).await;
    // The first execution ended as it should, its clean-up after the drain changing nothing.
    let (status, error, cause) = env.wait_for_end(&execution, LIMIT).await.unwrap();
    assert_eq!(status, "SUCCEEDED", "{error}: {cause}");
    env.assert_no_client_errors();
}

/// Issue 15 #2. Before: a lock outlived an execution stopped by hand, and the next failed task of
/// the current primary, an alarm or an abort rolled production back to an old image.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_stopped_by_hand_releases_its_service_and_an_old_lock_is_never_acted_on() {
    let env = start(SampleOptions { extra_policy_yaml: "alarms: [web-5xx]\n".into(), ..long_bake() }).await;
    env.create_alarm("web-5xx").await;
    env.push("v2", &fixture::new_digest("stopped")).await;
    let execution = env.started_execution().await;
    env.wait_action("shift", 1).await;
    let service = env.sample.policy.service.key();
    let lock = env.store().lock(&service).await.unwrap().unwrap();
    let sfn = aws_sdk_sfn::Client::new(&env.local.config);
    sfn.stop_execution().execution_arn(&execution).send().await.unwrap();
    let rollbacks_before = env.action_count("rollback");
    // Step Functions' status event reaches rollout-step, which releases the lock.
    env.eventually("the lock released", LIMIT, async || env.store().lock(&service).await.unwrap().is_none().then_some(())).await;
    let last = env.store().last(&service).await.unwrap().unwrap();
    assert_eq!((last.outcome.as_str(), last.rollout_id.as_str()), ("ABORTED", lock.rollout_id.as_str()));
    let notices = env.local.notices().await.unwrap();
    assert!(notices.iter().any(|(subject, _)| subject.contains("ended without cleaning up")), "{notices:?}");
    assert_eq!(env.action_count("rollback"), rollbacks_before, "nothing of a stopped execution runs");
    assert_eq!(env.wait_for_end(&execution, LIMIT).await.unwrap().0, "ABORTED");

    // A lock the event never cleared (lost, say): the next alarm finds its execution over and
    // releases it instead of rolling back.
    let weights = env.weights().await;
    env.store().acquire(&lock).await.unwrap();
    env.fire_alarm("web-5xx").await;
    env.wait_invocations(Function::OnAlarm, 1).await;
    assert!(env.store().lock(&service).await.unwrap().is_none(), "the left-over lock is released");
    assert_eq!(env.weights().await, weights, "traffic was not touched");
    let last = env.store().last(&service).await.unwrap().unwrap();
    assert_eq!(last.outcome, "ABORTED", "{last:?}");
}

/// Issue 15 #6. Before: execution names came from service and digest, and Step Functions keeps
/// a name 90 days: re-pushing the last good image was ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_good_image_can_be_pushed_again_but_a_redelivered_push_starts_nothing() {
    let env = start(SampleOptions::default()).await;
    let good = fixture::new_digest("good");
    let bad = fixture::new_digest("bad");
    env.push("v2", &good).await;
    env.assert_promoted(&env.started_execution().await, &good).await;
    env.push("v3", &bad).await;
    env.wait_invocations(Function::OnImagePush, 2).await;
    let second = env.started_executions()[1].clone();
    env.assert_promoted(&second, &bad).await;
    // The usual recovery: push the last good image again.
    env.push("v2", &good).await;
    env.wait_invocations(Function::OnImagePush, 3).await;
    let started = env.started_executions();
    assert_eq!(started.len(), 3, "{:?}", env.results_of(Function::OnImagePush));
    assert!(started[2].contains("-2-"), "the second attempt at this digest: {}", started[2]);
    env.assert_promoted(&started[2], &good).await;

    // EventBridge delivers the event of the second push again, long after: one push, one rollout
    // (its execution ended; nothing starts again).
    let redelivered = env
        .local
        .shared
        .invocations()
        .into_iter()
        .filter(|i| i.function == Function::OnImagePush && i.input["detail"]["image-digest"] == bad.as_str())
        .map(|i| i.input)
        .next()
        .unwrap();
    let out = env.local.shared.invoke(Function::OnImagePush, redelivered).await.unwrap();
    assert_eq!(out["rollouts"][0]["outcome"], "alreadyRolledOut", "{out}");
    assert_eq!(env.executions().await.len(), 3);
}

/// Issue 15 #9. Before: the queued push lived on the lock and was lost on any retry or error of
/// the finish; now it has its own item, and failing to start it never fails the rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_push_starts_after_the_promotion_even_when_starting_it_fails_at_first() {
    let env = start(SampleOptions {
        steps: vec![(10, 3), (50, 1)],
        extra_policy_yaml: "onNewerPush: queue\n".into(),
        ..SampleOptions::default()
    })
    .await;
    let first = fixture::new_digest("first");
    env.push("v2", &first).await;
    let execution = env.started_execution().await;
    env.wait_action("shift", 1).await;
    // Step Functions throttles rollout-step's first attempt to start the queued push.
    let throttled = env.local.shared.faults.add(FaultRule::new("rollout-step", "states:StartExecution", FaultKind::Throttle).times(3));
    let queued = fixture::new_digest("queued");
    env.push("v3", &queued).await;
    env.wait_invocations(Function::OnImagePush, 2).await;
    let out = env.results_of(Function::OnImagePush).pop().unwrap().unwrap();
    assert_eq!(out["rollouts"][0]["outcome"], "queued", "{out}");
    let (status, error, cause) = env.wait_for_end(&execution, LIMIT).await.unwrap();
    assert_eq!(status, "SUCCEEDED", "{error}: {cause}");
    assert_eq!(env.local.shared.faults.fired(throttled), 3);
    // Started after all (by the clean-up after the drain, or the execution's end), and promoted.
    let sfn = aws_sdk_sfn::Client::new(&env.local.config);
    let next = env
        .eventually("the queued push started", LIMIT, async || {
            let list = sfn.list_executions().state_machine_arn(&env.local.state_machine_arn).send().await.unwrap();
            list.executions().iter().find(|e| e.execution_arn() != execution).map(|e| e.execution_arn().to_string())
        })
        .await;
    env.assert_promoted(&next, &queued).await;
    assert!(env.store().queued(&env.sample.policy.service.key()).await.unwrap().is_none(), "dequeued once started");
}

/// Issue 15 #7, #16. Before: on-task-event recorded the failed task with a conditional write
/// before acting; with the reply lost, the SDK's retry found it recorded and the handler
/// returned as for a duplicate — the crashing canary kept its traffic until the bake ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_reply_while_recording_a_failed_task_still_trips_the_breaker() {
    let env = start(long_bake()).await;
    let digest = fixture::new_digest("lost-reply");
    // Crashes once it serves 10% (RUNNING at 1 s, healthy 1.5 s later, then shifted).
    env.local.simulator.crash_images(&digest, 1, Duration::from_secs(5));
    let lost = env.local.shared.faults.add(FaultRule::new("on-task-event", "dynamodb:PutItem", FaultKind::AppliedThenError));
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    let cause = env.assert_rolled_back(&execution, "Essential container in task exited").await;
    assert_eq!(env.local.shared.faults.fired(lost), 1);
    assert_eq!(env.action_count("verify"), 0, "the breaker ended the bake, not its timeout");
    assert!(cause.contains("failed at 10% traffic"), "the weight read back from the ALB: {cause}");
}

/// Issue 15 #16. Before: a failed SendTaskFailure was logged as "the waiting state had already
/// ended": traffic was restored, but the execution and the lock waited for the bake's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttled_end_of_the_bake_is_retried_so_the_execution_ends_at_once() {
    let env = start(long_bake()).await;
    let digest = fixture::new_digest("send-failure");
    // Crashes during the bake, while the execution waits on its task token.
    env.local.simulator.crash_images(&digest, 1, Duration::from_secs(5));
    let throttled = env.local.shared.faults.add(FaultRule::new("on-task-event", "states:SendTaskFailure", FaultKind::Throttle).times(3));
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    env.assert_rolled_back(&execution, "Essential container in task exited").await;
    assert_eq!(env.local.shared.faults.fired(throttled), 3);
    assert_eq!(env.action_count("verify"), 0);
}

/// Issue 15 #11. Before: the rule matched `lastStatus: STOPPED`, which ECS sends after the
/// target's deregistration delay; the first event (`desiredStatus: STOPPED`, with the stop code)
/// comes as the task fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_breaker_acts_on_the_first_stop_event_not_after_the_deregistration_delay() {
    let env = start(long_bake()).await;
    // The new task set's target group keeps a draining target for 50 minutes (30 s here).
    env.local
        .ctx()
        .clients
        .elb
        .modify_target_group_attributes()
        .target_group_arn(&env.sample.target_groups[1])
        .attributes(
            aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value("3000")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let digest = fixture::new_digest("first-event");
    env.local.simulator.crash_images(&digest, 2, Duration::from_secs(1));
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    let started = Instant::now();
    let (status, _, cause) = env.wait_for_end(&execution, LIMIT).await.unwrap();
    assert_eq!(status, "FAILED", "{cause}");
    let stopped_yet =
        env.local.simulator.events_sent().iter().any(|e| e["lastStatus"] == "STOPPED" && e["stopCode"] == "EssentialContainerExited");
    assert!(!stopped_yet, "rolled back {:?} after the push, before any crashed task reached lastStatus STOPPED", started.elapsed());
    // Then the deleted new task set drains for the whole deregistration delay.
    env.assert_rolled_back(&execution, "exit 2").await;
}

/// Issue 15 #12. Before: a stop without `stopCode` (older event shapes, some agents) was ignored
/// even with the essential container exiting non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_stop_without_a_stop_code_trips_the_breaker() {
    let env = start(long_bake()).await;
    env.push("v2", &fixture::new_digest("no-stop-code")).await;
    let execution = env.started_execution().await;
    env.wait_action("shift", 1).await;
    let green = env.green_task_set().await;
    let task = env.task_arns_of(&green.id).await.remove(0);
    let event = serde_json::json!({
        "source": "aws.ecs", "detail-type": "ECS Task State Change",
        "detail": {
            "clusterArn": format!("arn:aws:ecs:us-east-1:{}:cluster/{}", kanaria_local::ACCOUNT, env.sample.options.cluster),
            "taskArn": task, "taskDefinitionArn": green.task_definition_arn, "group": "service:web", "startedBy": green.id,
            "lastStatus": "RUNNING", "desiredStatus": "STOPPED", "stoppedReason": "Essential container in task exited",
            "containers": [{"name": "web", "exitCode": 139, "lastStatus": "STOPPED"}], "version": 50
        }
    });
    fixture::put_event(&env.local.config, &event).await.unwrap();
    env.assert_rolled_back(&execution, "exit 139").await;
}

/// Issue 15 #8. Before: a transaction cancelled for a conflict read as "the lock is held", and
/// the push was refused by a rollout that did not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_write_cancelled_for_a_conflict_is_retried_not_read_as_held() {
    let env = start(SampleOptions::default()).await;
    let conflict = env.local.shared.faults.add(FaultRule::new(
        "on-image-push",
        "dynamodb:TransactWriteItems",
        FaultKind::TransactionCanceled("TransactionConflict".into()),
    ));
    let digest = fixture::new_digest("conflict");
    env.push("v2", &digest).await;
    // The first delivery fails (transient); EventBridge's retry starts the rollout.
    env.eventually("a rollout started", LIMIT, async || env.started_executions().first().cloned()).await;
    assert_eq!(env.local.shared.faults.fired(conflict), 1);
    let first = &env.results_of(Function::OnImagePush)[0];
    assert!(first.as_ref().is_err_and(|e| e.error_type == "Kanaria.Transient"), "{first:?}");
    let execution = env.started_executions()[0].clone();
    env.assert_promoted(&execution, &digest).await;
    assert_eq!(env.executions().await.len(), 1);
}

/// Issue 15 #13. Before: Verify required every task of the new task set RUNNING, so a scale-out
/// during the bake (target tracking, a schedule) rolled a healthy release back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scale_out_during_a_bake_does_not_roll_back_a_healthy_release() {
    let env = start(SampleOptions { steps: vec![(10, 4), (50, 1)], ..SampleOptions::default() }).await;
    let digest = fixture::new_digest("scale-out");
    // The new image's tasks take 8 s to start: tasks added during the bake are still starting
    // when it ends.
    env.local.simulator.slow_start_images(&digest, Duration::from_secs(8));
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    env.wait_action("shift", 1).await;
    env.local.ctx().clients.ecs.update_service().cluster("demo").service("web").desired_count(4).send().await.unwrap();
    env.assert_promoted(&execution, &digest).await;
    env.assert_no_client_errors();
}

/// Issue 15 #16. A delivery of a push whose StartExecution failed for every retry left the lock
/// "starting" and the push lost; a retried delivery must start the execution its lock waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_delivery_starts_the_execution_its_lock_waits_for() {
    let env = start(SampleOptions::default()).await;
    let failed = env.local.shared.faults.add(FaultRule::new("on-image-push", "states:StartExecution", FaultKind::ServerError).times(3));
    let digest = fixture::new_digest("start-retry");
    env.push("v2", &digest).await;
    let execution = env.eventually("a rollout started", LIMIT, async || env.started_executions().first().cloned()).await;
    assert_eq!(env.local.shared.faults.fired(failed), 3);
    env.assert_promoted(&execution, &digest).await;
    assert_eq!(env.executions().await.len(), 1);
}
