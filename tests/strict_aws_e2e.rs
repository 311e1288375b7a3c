//! The local runtime behaves as AWS does where kanaria depends on it (`../shared/reference/
//! real-aws.md`), not as moto alone would: each test shows one modelled behaviour through real
//! SDK clients, with the AWS documentation it follows.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{LoadBalancer, Scale, ScaleUnit};
use common::{start, Env};
use kanaria::handlers::Function;
use kanaria_local::faults::{FaultKind, FaultRule};
use kanaria_local::fixture::SampleOptions;

/// A second task set of the sample service on its green target group, created as a test
/// (not kanaria) would: returns its id.
async fn create_green_task_set(env: &Env, client_token: Option<&str>) -> aws_sdk_ecs::operation::create_task_set::CreateTaskSetOutput {
    let ecs = &env.local.ctx().clients.ecs;
    let primary = env.task_sets().await.into_iter().find(|t| t.status == "PRIMARY").unwrap();
    let described = ecs.describe_task_sets().cluster("demo").service("web").task_sets(&primary.arn).send().await.unwrap();
    let network = described.task_sets()[0].network_configuration().cloned();
    ecs.create_task_set()
        .cluster("demo")
        .service("web")
        .task_definition(&primary.task_definition_arn)
        .external_id("test")
        .set_client_token(client_token.map(str::to_string))
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .set_network_configuration(network)
        .load_balancers(
            LoadBalancer::builder().target_group_arn(&env.sample.target_groups[1]).container_name("web").container_port(8080).build(),
        )
        .scale(Scale::builder().unit(ScaleUnit::Percent).value(100.0).build())
        .send()
        .await
        .unwrap()
}

/// ECS API reference, TaskSet: STEADY_STATE only when runningCount = computedDesiredCount,
/// pendingCount = 0 and every task is healthy in the load balancer. ECS developer guide, task
/// lifecycle: the target is registered as the task activates; ELB health checks: `initial` until
/// HealthyThresholdCount checks passed (5 × 30 s by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_tasks_start_over_time_and_turn_healthy_after_the_health_check_threshold() {
    let env = start(SampleOptions::default()).await;
    let created = create_green_task_set(&env, None).await;
    let set = created.task_set().unwrap();
    assert_eq!(set.stability_status().map(|s| s.as_str()), Some("STABILIZING"), "CreateTaskSet returns before tasks run");
    assert_eq!((set.running_count(), set.computed_desired_count()), (0, 0));
    let id = set.id().unwrap().to_string();
    let ecs = &env.local.ctx().clients.ecs;
    let elb = &env.local.ctx().clients.elb;

    // Pending first, never RUNNING at once.
    let pending = env
        .eventually("tasks pending", Duration::from_secs(5), async || {
            let out = ecs.describe_task_sets().cluster("demo").service("web").task_sets(&id).send().await.unwrap();
            let s = out.task_sets()[0].clone();
            (s.pending_count() > 0).then_some(s)
        })
        .await;
    assert_eq!((pending.running_count(), pending.computed_desired_count()), (0, 2));
    // Running, registered, but `initial`: still STABILIZING.
    let initial = env
        .eventually("targets registered", Duration::from_secs(5), async || {
            let health = elb.describe_target_health().target_group_arn(&env.sample.target_groups[1]).send().await.unwrap();
            let states: Vec<String> = health
                .target_health_descriptions()
                .iter()
                .filter_map(|d| d.target_health()?.state().map(|s| s.as_str().to_string()))
                .collect();
            (states.len() == 2).then_some(states)
        })
        .await;
    assert_eq!(initial, ["initial", "initial"]);
    let out = ecs.describe_task_sets().cluster("demo").service("web").task_sets(&id).send().await.unwrap();
    assert_eq!(out.task_sets()[0].stability_status().map(|s| s.as_str()), Some("STABILIZING"));
    // Healthy after the threshold, and only then STEADY_STATE.
    env.eventually("STEADY_STATE", Duration::from_secs(10), async || {
        let out = ecs.describe_task_sets().cluster("demo").service("web").task_sets(&id).send().await.unwrap();
        (out.task_sets()[0].stability_status().map(|s| s.as_str()) == Some("STEADY_STATE")).then_some(())
    })
    .await;
    let health = elb.describe_target_health().target_group_arn(&env.sample.target_groups[1]).send().await.unwrap();
    assert!(health
        .target_health_descriptions()
        .iter()
        .all(|d| d.target_health().and_then(|h| h.state()).map(|s| s.as_str()) == Some("healthy")));
}

/// ECS developer guide, task state change events: a task ECS stops emits desiredStatus STOPPED
/// (with stopCode, stoppedReason and exit codes) first, while lastStatus is still RUNNING; it is
/// DEACTIVATING while its target drains for the deregistration delay, and STOPPED after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_is_announced_before_the_task_stops_and_stops_after_the_deregistration_delay() {
    let env = start(SampleOptions::default()).await;
    // Tasks started from now on (the new task set's) crash 200 ms after RUNNING.
    env.local.simulator.crash_images("demo/web:v1", 3, Duration::from_millis(200));
    create_green_task_set(&env, None).await;
    let crashed = env
        .eventually("a crash", Duration::from_secs(10), async || {
            env.local.simulator.events_sent().into_iter().find(|e| e["desiredStatus"] == "STOPPED")
        })
        .await;
    assert_eq!(crashed["lastStatus"], "RUNNING", "{crashed}");
    assert_eq!(crashed["stopCode"], "EssentialContainerExited");
    assert_eq!(crashed["containers"][0]["exitCode"], 3);
    let task = crashed["taskArn"].as_str().unwrap().to_string();
    let seen_at = Instant::now();
    let stopped = env
        .eventually("STOPPED", Duration::from_secs(10), async || {
            let events = env.local.simulator.events_sent();
            let of_task: Vec<String> =
                events.iter().filter(|e| e["taskArn"] == task.as_str()).map(|e| e["lastStatus"].as_str().unwrap().to_string()).collect();
            of_task.contains(&"STOPPED".to_string()).then_some(of_task)
        })
        .await;
    // The default deregistration delay, 300 s, at the runtime's 1:100 time scale.
    assert!(seen_at.elapsed() >= Duration::from_millis(2500), "STOPPED came {:?} after the crash", seen_at.elapsed());
    let after_crash: Vec<&str> = stopped.iter().map(String::as_str).skip_while(|s| *s != "DEACTIVATING").collect();
    assert_eq!(after_crash, ["DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"]);
}

/// ECS API reference: DeleteTaskSet leaves the set DRAINING while its tasks stop and targets
/// deregister; one that is gone is TaskSetNotFoundException. CreateTaskSet's clientToken makes
/// a retried create return the set the first call made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleted_task_sets_drain_gone_ones_are_not_found_and_creates_are_idempotent() {
    let env = start(SampleOptions::default()).await;
    let first = create_green_task_set(&env, Some("token-1")).await;
    let again = create_green_task_set(&env, Some("token-1")).await;
    let id = first.task_set().unwrap().id().unwrap().to_string();
    assert_eq!(again.task_set().unwrap().id(), Some(id.as_str()), "the same client token creates one task set");
    assert_eq!(env.task_sets().await.len(), 2);

    let ecs = &env.local.ctx().clients.ecs;
    let deleted = ecs.delete_task_set().cluster("demo").service("web").task_set(&id).force(true).send().await.unwrap();
    assert_eq!(deleted.task_set().unwrap().status(), Some("DRAINING"));
    assert!(env.task_sets().await.iter().any(|t| t.id == id && t.status == "DRAINING"));
    env.task_sets_after_draining().await;
    let err = ecs.delete_task_set().cluster("demo").service("web").task_set(&id).force(true).send().await.unwrap_err();
    let code = aws_sdk_ecs::error::ProvideErrorMetadata::code(&err.into_service_error()).map(str::to_string);
    assert_eq!(code.as_deref(), Some("TaskSetNotFoundException"));
}

/// ELB: a request goes to a target group by weight unless a stickiness cookie names one that is
/// still in the action; a group with no healthy target answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_probe_follows_weights_and_stickiness_and_sees_503_without_healthy_targets() {
    let env = start(SampleOptions::default()).await;
    let [blue, green] = env.sample.target_groups.clone();
    let route = env.sample.policy.traffic.route().unwrap();
    let elb = &env.local.ctx().clients.elb;
    let t0 = Instant::now();
    env.eventually("requests served", Duration::from_secs(5), async || {
        (env.local.probe.summary(&env.sample.listener_arn, t0, None).ok >= 20).then_some(())
    })
    .await;
    let s = env.local.probe.summary(&env.sample.listener_arn, t0, None);
    assert_eq!((s.errors(), s.by_target_group.get(&blue).copied()), (0, Some(s.requests)), "{s:?}");

    // Half the traffic to a group with no targets: those clients get 503s.
    kanaria::aws::elb::set_weights(elb, &route, &[(blue.clone(), 50), (green.clone(), 50)]).await.unwrap();
    let t1 = Instant::now();
    env.eventually("503s", Duration::from_secs(5), async || {
        (env.local.probe.summary(&env.sample.listener_arn, t1, None).no_healthy_target >= 10).then_some(())
    })
    .await;
    let s = env.local.probe.summary(&env.sample.listener_arn, t1, None);
    assert_eq!(s.errors_by_target_group.get(&green).copied(), Some(s.no_healthy_target));
    assert!(s.by_target_group.get(&blue).is_some_and(|n| *n >= 9), "{s:?}");

    // With group stickiness on, clients that landed on green stay there after its weight goes to
    // 0 (stickiness beats weights), until the group leaves the action.
    use aws_sdk_elasticloadbalancingv2::types::{
        Action, ActionTypeEnum, ForwardActionConfig, TargetGroupStickinessConfig, TargetGroupTuple,
    };
    let forward = |weights: &[(&str, i32)]| {
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .set_target_groups(Some(
                        weights.iter().map(|(tg, w)| TargetGroupTuple::builder().target_group_arn(*tg).weight(*w).build()).collect(),
                    ))
                    .target_group_stickiness_config(TargetGroupStickinessConfig::builder().enabled(true).duration_seconds(3600).build())
                    .build(),
            )
            .build()
    };
    elb.modify_listener()
        .listener_arn(&env.sample.listener_arn)
        .default_actions(forward(&[(&blue, 50), (&green, 50)]))
        .send()
        .await
        .unwrap();
    let t2 = Instant::now();
    env.eventually("sticky clients on green", Duration::from_secs(5), async || {
        (env.local.probe.summary(&env.sample.listener_arn, t2, None).requests >= 32).then_some(())
    })
    .await;
    elb.modify_listener()
        .listener_arn(&env.sample.listener_arn)
        .default_actions(forward(&[(&blue, 100), (&green, 0)]))
        .send()
        .await
        .unwrap();
    let t3 = Instant::now();
    env.eventually("a round of requests", Duration::from_secs(5), async || {
        (env.local.probe.summary(&env.sample.listener_arn, t3, None).requests >= 32).then_some(())
    })
    .await;
    let s = env.local.probe.summary(&env.sample.listener_arn, t3, None);
    assert!(s.errors_by_target_group.get(&green).is_some_and(|n| *n >= 8), "sticky clients still reach green at weight 0: {s:?}");
    elb.modify_listener().listener_arn(&env.sample.listener_arn).default_actions(forward(&[(&blue, 100)])).send().await.unwrap();
    let t4 = Instant::now();
    env.eventually("a round of requests", Duration::from_secs(5), async || {
        (env.local.probe.summary(&env.sample.listener_arn, t4, None).requests >= 32).then_some(())
    })
    .await;
    assert_eq!(env.local.probe.summary(&env.sample.listener_arn, t4, None).errors(), 0, "green left the action: stickiness to it ends");
}

/// IAM: a call the function's role does not allow is refused, in the service's own error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn iam_refuses_what_a_functions_role_does_not_allow() {
    let mut env = start(SampleOptions::default()).await;
    env.local.expect_iam_denials();
    // on-alarm may roll back, never create task sets.
    let ctx = env.local.shared.function_context(Function::OnAlarm);
    let err = ctx.clients.ecs.create_task_set().cluster("demo").service("web").task_definition("web:1").send().await.unwrap_err();
    let code = aws_sdk_ecs::error::ProvideErrorMetadata::code(&err.into_service_error()).map(str::to_string);
    assert_eq!(code.as_deref(), Some("AccessDeniedException"));
    let denials = env.local.shared.iam.take_denials();
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!((denials[0].principal.starts_with("on-alarm"), denials[0].action.as_str()), (true, "ecs:CreateTaskSet"));
    assert_eq!(denials[0].resource, "arn:aws:ecs:us-east-1:123456789012:task-set/demo/web/*");
    // The same call by the function whose role allows it gets through IAM (and fails in ECS
    // for its own reasons, not AccessDenied).
    let ctx = env.local.shared.function_context(Function::RolloutStep);
    let err = ctx.clients.ecs.create_task_set().cluster("demo").service("web").task_definition("nope:9").send().await.unwrap_err();
    let code = aws_sdk_ecs::error::ProvideErrorMetadata::code(&err.into_service_error()).map(str::to_string);
    assert_ne!(code.as_deref(), Some("AccessDeniedException"));
    assert!(env.local.shared.iam.denials().is_empty());
}

/// Faults in each service's own error shape; "applied then error" takes effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_fail_calls_as_the_services_do() {
    let env = start(SampleOptions::default()).await;
    let faults = &env.local.shared.faults;
    let ctx = env.local.shared.function_context(Function::RolloutStep);
    // Throttled past the SDK's three attempts.
    let id = faults.add(FaultRule::new("rollout-step", "ecs:DescribeServices", FaultKind::Throttle).times(3));
    let err = ctx.clients.ecs.describe_services().cluster("demo").services("web").send().await.unwrap_err();
    let code = aws_sdk_ecs::error::ProvideErrorMetadata::code(&err.into_service_error()).map(str::to_string);
    assert_eq!((code.as_deref(), faults.fired(id)), (Some("ThrottlingException"), 3));
    // Throttled once: the SDK's retry hides it.
    let id = faults.add(FaultRule::new("rollout-step", "elasticloadbalancing:DescribeListeners", FaultKind::Throttle));
    kanaria::aws::elb::read_weights(&ctx.clients.elb, &env.sample.policy.traffic.route().unwrap()).await.unwrap();
    assert_eq!(faults.fired(id), 1);
    // A dropped connection is a dispatch failure.
    faults.add(FaultRule::new("rollout-step", "ecs:DescribeTaskSets", FaultKind::DropConnection).times(3));
    let err = ctx.clients.ecs.describe_task_sets().cluster("demo").service("web").send().await.unwrap_err();
    assert!(matches!(err, aws_sdk_ecs::error::SdkError::DispatchFailure(_) | aws_sdk_ecs::error::SdkError::ResponseError(_)), "{err:?}");
    // Applied, then an error: the change is made although the caller was told it failed.
    faults.add(FaultRule::new("rollout-step", "ecs:UpdateTaskSet", FaultKind::AppliedThenError).times(3));
    let set = env.task_sets().await.remove(0);
    let err = ctx
        .clients
        .ecs
        .update_task_set()
        .cluster("demo")
        .service("web")
        .task_set(&set.id)
        .scale(Scale::builder().unit(ScaleUnit::Percent).value(50.0).build())
        .send()
        .await;
    assert!(err.is_err());
    assert_eq!(env.task_sets().await[0].scale_percent, 50.0);
    // A transaction cancelled for a conflict, one reason per item.
    faults.add(FaultRule::new("rollout-step", "dynamodb:TransactWriteItems", FaultKind::TransactionCanceled("TransactionConflict".into())));
    let store = kanaria::aws::store::Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let err = store.release("demo/web", "nobody", None).await.unwrap_err();
    assert!(err.transient, "a conflict is transient: {err}");
    assert!(err.to_string().contains("TransactionConflict"), "{err}");
}

/// Step Functions: execution names are unique for 90 days after an execution ends (StartExecution
/// API reference); a TimeoutSecondsPath that is not a positive integer fails the execution with
/// States.Runtime, which no Catch catches (developer guide, error handling).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn step_functions_names_stay_taken_and_a_zero_timeout_path_fails_past_catch() {
    let env = start(SampleOptions::default()).await;
    let sfn = aws_sdk_sfn::Client::new(&env.local.config);
    let definition = serde_json::json!({
        "StartAt": "Wait",
        "States": {
            "Wait": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                     "Parameters": {"FunctionName": "nothing", "Payload": {"t.$": "$$.Task.Token"}},
                     "TimeoutSecondsPath": "$.seconds",
                     "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
            "Caught": {"Type": "Succeed"}
        }
    });
    let sm = sfn
        .create_state_machine()
        .name("strict")
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/x")
        .send()
        .await
        .unwrap();
    let run = sfn.start_execution().state_machine_arn(sm.state_machine_arn()).name("once").input(r#"{"seconds": 0}"#).send().await.unwrap();
    let ended = env
        .eventually("the execution ends", Duration::from_secs(10), async || {
            let d = sfn.describe_execution().execution_arn(run.execution_arn()).send().await.unwrap();
            (d.status().as_str() != "RUNNING").then_some(d)
        })
        .await;
    assert_eq!((ended.status().as_str(), ended.error()), ("FAILED", Some("States.Runtime")), "{:?}", ended.cause());
    let again =
        sfn.start_execution().state_machine_arn(sm.state_machine_arn()).name("once").input(r#"{"seconds": 0}"#).send().await.unwrap_err();
    let code = aws_sdk_sfn::error::ProvideErrorMetadata::code(&again.into_service_error()).map(str::to_string);
    assert_eq!(code.as_deref(), Some("ExecutionAlreadyExists"));
}
