//! Restart-loop alerts end to end: realistic ECS event sequences through EventBridge into the
//! handler, DynamoDB in moto, and the alert topic's recorded notices.

mod common;

use std::time::{Duration, SystemTime};

use common::{start, Env};
use kanaria::handlers::Function;
use kanaria_local::fixture::{self, SampleOptions};
use serde_json::json;

const PULL_TIMEOUT: &str = "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref 123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web:v1: failed to do request: Head \"https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/demo/web/manifests/v1\": dial tcp 10.0.12.7:443: i/o timeout";

fn at(seconds_ago: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(seconds_ago)).to_string()
}

fn task_arn(env: &Env, n: u32) -> String {
    format!("arn:aws:ecs:us-east-1:{}:task/{}/{:032x}", kanaria_local::ACCOUNT, env.sample.options.cluster, 0xabc000 + n)
}

/// A STOPPED event of a task of the service's (stable) task set.
fn stopped(env: &Env, n: u32, version: u64, seconds_ago: u64, stop_code: &str, reason: &str, exit: Option<i64>) -> serde_json::Value {
    let mut container = json!({"name": "web", "lastStatus": "STOPPED", "image": env.sample.initial_image});
    if let Some(code) = exit {
        container["exitCode"] = code.into();
    }
    if stop_code == "TaskFailedToStart" {
        container["reason"] = reason.into();
    }
    json!({
        "version": "0", "detail-type": "ECS Task State Change", "source": "aws.ecs", "time": at(seconds_ago),
        "detail": {
            "clusterArn": format!("arn:aws:ecs:us-east-1:{}:cluster/{}", kanaria_local::ACCOUNT, env.sample.options.cluster),
            "taskArn": task_arn(env, n),
            "taskDefinitionArn": format!("arn:aws:ecs:us-east-1:{}:task-definition/web:1", kanaria_local::ACCOUNT),
            "group": "service:web", "startedBy": env.sample.initial_task_set, "launchType": "FARGATE",
            "lastStatus": "STOPPED", "desiredStatus": "STOPPED", "stopCode": stop_code, "stoppedReason": reason,
            "containers": [container], "version": version,
            "createdAt": at(seconds_ago + 40), "stoppedAt": at(seconds_ago)
        }
    })
}

async fn deliver(env: &Env, events: &[serde_json::Value]) {
    for e in events {
        fixture::put_event(&env.local.config, e).await.unwrap();
    }
}

async fn loop_alerts(env: &Env) -> Vec<(String, String)> {
    env.local.notices().await.unwrap().into_iter().filter(|(subject, _)| subject.contains("restart loop")).collect()
}

async fn sweep(env: &Env) -> serde_json::Value {
    let event = json!({"version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "account": kanaria_local::ACCOUNT, "region": "us-east-1", "detail": {}});
    env.local.shared.invoke(Function::RestartLoop, event).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cannot_pull_loop_alerts_once_with_the_network_diagnosis() {
    let env = start(SampleOptions::default()).await;
    let events: Vec<_> = (0..4).map(|n| stopped(&env, n, 2, 240 - 60 * n as u64, "TaskFailedToStart", PULL_TIMEOUT, None)).collect();
    deliver(&env, &events).await;
    env.wait_invocations(Function::RestartLoop, 4).await;

    let alerts = loop_alerts(&env).await;
    assert_eq!(alerts.len(), 1, "one alert per episode: {alerts:?}");
    let (subject, body) = &alerts[0];
    assert!(subject.contains("demo/web") && subject.contains("cannot reach ECR"), "{subject}");
    for expected in [
        "tasks stopped for failures within 10m",
        "web:1",
        "demo/web:v1",
        "Diagnosis (ecr-network)",
        "com.amazonaws.REGION.ecr.dkr",
        "assignPublicIp ENABLED",
        "i/o timeout",
        "https://us-east-1.console.aws.amazon.com/ecs/v2/clusters/demo/tasks/",
    ] {
        assert!(body.contains(expected), "alert lacks {expected:?}:\n{body}");
    }
    assert!(env.local.shared.iam.denials().is_empty(), "restart-loop's role lacks: {:?}", env.local.shared.iam.denials());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_duplicate_and_out_of_order_deliveries_still_alert_once() {
    let env = start(SampleOptions::default()).await;
    // Four crashing tasks; each STOPPED delivered many times with versions out of order.
    let mut events = Vec::new();
    for i in 0..50u32 {
        let n = (i * 7) % 4;
        let version = 2 + ((i * 3) % 3) as u64;
        events.push(stopped(
            &env,
            n,
            version,
            200 - 30 * n as u64,
            "EssentialContainerExited",
            "Essential container in task exited",
            Some(1),
        ));
    }
    deliver(&env, &events).await;
    env.wait_invocations(Function::RestartLoop, 50).await;
    let alerts = loop_alerts(&env).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].1.contains("Diagnosis (crash-on-start)") || alerts[0].1.contains("Diagnosis (app-exited)"), "{}", alerts[0].1);
    let errors: Vec<_> = env.results_of(Function::RestartLoop).into_iter().filter(|r| r.is_err()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    // One episode, one metric (issue 16 #14).
    let episodes = env.metrics("RestartLoopEpisodes");
    assert_eq!(episodes.len(), 1, "{episodes:?}");
    assert_eq!(episodes[0]["service"], "demo/web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_deployments_normal_stops_never_invoke_restart_loop_and_cost_no_write() {
    let env = start(SampleOptions::default()).await;
    let mut events = Vec::new();
    for n in 0..6 {
        events.push(stopped(
            &env,
            n,
            3,
            100 - n as u64,
            "ServiceSchedulerInitiated",
            "Scaling activity initiated by (deployment ecs-svc/1234567890123456789)",
            Some(0),
        ));
    }
    events.push(stopped(&env, 10, 3, 50, "UserInitiated", "Task stopped by user", Some(143)));
    events.push(stopped(&env, 11, 3, 40, "SpotInterruption", "Your Spot Task was interrupted.", Some(143)));
    events.push(stopped(&env, 12, 3, 30, "EssentialContainerExited", "Essential container in task exited", Some(0)));
    deliver(&env, &events).await;
    // EventBridge's pattern (template.yaml) leaves the scale-ins, the person's and Spot's stops
    // out: only the clean exit (EssentialContainerExited, exit 0) invokes the function, which
    // finds it is no failure. (moto routes events as PutEvents answers: nothing comes later.)
    env.wait_invocations(Function::RestartLoop, 1).await;
    let invoked: Vec<_> = env.local.shared.invocations().into_iter().filter(|i| i.function == Function::RestartLoop).collect();
    assert_eq!(
        invoked.len(),
        1,
        "routine stops invoked restart-loop: {:?}",
        invoked.iter().map(|i| &i.input["detail"]["stopCode"]).collect::<Vec<_>>()
    );
    assert_eq!(invoked[0].result.as_ref().unwrap()["ignored"], "not a failed task");

    assert!(loop_alerts(&env).await.is_empty());
    let items = env.local.ctx().clients.dynamodb.scan().table_name(&env.local.ctx().settings.table).send().await.unwrap();
    let loop_items: Vec<_> = items
        .items()
        .iter()
        .filter(|i| i.get("pk").and_then(|v| v.as_s().ok()).is_some_and(|pk| pk.starts_with("loop#") || pk == "episodes"))
        .collect();
    assert!(loop_items.is_empty(), "normal stops wrote {loop_items:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_sends_one_recovered_message() {
    let env = start(SampleOptions::default()).await;
    // A loop that ended half an hour ago.
    let events: Vec<_> = (0..3).map(|n| stopped(&env, n, 2, 1800 - 60 * n as u64, "TaskFailedToStart", PULL_TIMEOUT, None)).collect();
    deliver(&env, &events).await;
    env.wait_invocations(Function::RestartLoop, 3).await;
    assert_eq!(loop_alerts(&env).await.len(), 1);

    // The service runs its desired count now (the simulator started its tasks).
    let ecs = &env.local.ctx().clients.ecs;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while kanaria::aws::ecs::running_tasks_of(ecs, &env.sample.options.cluster, &env.sample.initial_task_set).await.unwrap() < 2 {
        assert!(std::time::Instant::now() < deadline, "the sample service's tasks did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sweep(&env).await["recovered"], json!(["demo/web"]));
    let notices = env.local.notices().await.unwrap();
    let recovered: Vec<_> = notices.iter().filter(|(s, _)| s.contains("recovered")).collect();
    assert_eq!(recovered.len(), 1, "{notices:?}");
    assert!(recovered[0].1.contains("2 of 2 tasks running"), "{}", recovered[0].1);
    assert_eq!(sweep(&env).await["recovered"], json!([]), "recovered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loop_still_failing_is_not_called_recovered() {
    let env = start(SampleOptions::default()).await;
    let events: Vec<_> = (0..3).map(|n| stopped(&env, n, 2, 700 - 60 * n as u64, "TaskFailedToStart", PULL_TIMEOUT, None)).collect();
    deliver(&env, &events).await;
    // And one more failure a minute ago: inside the window.
    deliver(&env, &[stopped(&env, 9, 2, 60, "TaskFailedToStart", PULL_TIMEOUT, None)]).await;
    env.wait_invocations(Function::RestartLoop, 4).await;
    assert_eq!(loop_alerts(&env).await.len(), 1);
    assert_eq!(sweep(&env).await["recovered"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_with_the_opt_out_tag_gives_no_alert() {
    let env = start(SampleOptions::default()).await;
    let service_arn =
        format!("arn:aws:ecs:us-east-1:{}:service/{}/{}", kanaria_local::ACCOUNT, env.sample.options.cluster, env.sample.options.service);
    env.local
        .ctx()
        .clients
        .ecs
        .tag_resource()
        .resource_arn(&service_arn)
        .tags(aws_sdk_ecs::types::Tag::builder().key(kanaria::handlers::restart_loop::OPT_OUT_TAG).value("off").build())
        .send()
        .await
        .unwrap();
    let events: Vec<_> = (0..4).map(|n| stopped(&env, n, 2, 240 - 60 * n as u64, "TaskFailedToStart", PULL_TIMEOUT, None)).collect();
    deliver(&env, &events).await;
    env.wait_invocations(Function::RestartLoop, 4).await;
    let alerts = loop_alerts(&env).await;
    assert!(alerts.is_empty(), "alerts {alerts:?}; on-task-event said {:?}", env.results_of(Function::RestartLoop));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_impaired_alerts_once() {
    let env = start(SampleOptions::default()).await;
    let service_arn =
        format!("arn:aws:ecs:us-east-1:{}:service/{}/{}", kanaria_local::ACCOUNT, env.sample.options.cluster, env.sample.options.service);
    let event = json!({
        "version": "0", "detail-type": "ECS Service Action", "source": "aws.ecs", "time": at(5), "resources": [service_arn],
        "detail": {"eventType": "WARN", "eventName": "SERVICE_TASK_START_IMPAIRED", "clusterArn": format!("arn:aws:ecs:us-east-1:{}:cluster/demo", kanaria_local::ACCOUNT), "createdAt": at(5)}
    });
    // Straight to the handler (PutEvents drops `resources` unless given; the rule is in template.yaml).
    for _ in 0..3 {
        env.local.shared.invoke(Function::RestartLoop, event.clone()).await.unwrap();
    }
    let alerts: Vec<_> =
        env.local.notices().await.unwrap().into_iter().filter(|(s, _)| s.contains("SERVICE_TASK_START_IMPAIRED")).collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].1.contains("task-definition/web:1"), "{}", alerts[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_of_a_rollouts_new_tasks_say_rolled_back_instead_of_a_loop_alert() {
    let env = start(SampleOptions { steps: vec![(10, 600)], ..SampleOptions::default() }).await;
    let digest = fixture::new_digest("loop-vs-breaker");
    env.local.simulator.crash_images(&digest, 1, Duration::from_secs(1));
    env.push("v2", &digest).await;
    let execution = env.started_execution().await;
    env.assert_rolled_back(&execution, "exit 1").await;

    // The notice goes out as the rollback ends, which may be just after the execution has.
    // Each read takes the notices off the queue: keep them all.
    let mut notices = Vec::new();
    env.eventually("the rolled-back notice", Duration::from_secs(30), async || {
        notices.extend(env.local.notices().await.unwrap());
        notices.iter().any(|(s, b)| s.contains("rolled back the rollout of demo/web") && b.contains("exit 1")).then_some(())
    })
    .await;
    assert!(!notices.iter().any(|(s, _)| s.contains("restart loop")), "{notices:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_right_after_start_alert_carries_the_last_log_lines_redacted_when_the_service_opts_in() {
    let body = crash_loop_alert_with_logs(true).await;
    assert!(body.contains("Last log lines (likely secrets redacted):") && body.contains("panic: DATABASE_URL is not set"), "{body}");
    // Issue 16 #10: what the crash printed of its configuration is not forwarded.
    assert!(!body.contains("hunter2") && !body.contains("AKIAIOSFODNN7EXAMPLE"), "{body}");
    assert!(body.contains("DB_PASSWORD=[REDACTED]") && body.contains("key [REDACTED]"), "{body}");
}

/// Issue 16 #10: without the opt-in tag an alert links the logs and carries no line of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_loop_alert_links_the_logs_without_lines_unless_the_service_opts_in() {
    let body = crash_loop_alert_with_logs(false).await;
    assert!(!body.contains("Last log lines") && !body.contains("DATABASE_URL"), "{body}");
    assert!(body.contains("log-group/$252Fecs$252Fweb/log-events/ecs$252Fweb$252F"), "{body}");
    assert!(body.contains("kanaria:restart-alerts-log-lines=on"), "{body}");
}

/// Three crashes right after start of a revision that logs to CloudWatch Logs; the alert's body.
async fn crash_loop_alert_with_logs(opt_in: bool) -> String {
    let env = start(SampleOptions::default()).await;
    let clients = &env.local.ctx().clients;
    if opt_in {
        let service_arn = format!(
            "arn:aws:ecs:us-east-1:{}:service/{}/{}",
            kanaria_local::ACCOUNT,
            env.sample.options.cluster,
            env.sample.options.service
        );
        clients
            .ecs
            .tag_resource()
            .resource_arn(service_arn)
            .tags(aws_sdk_ecs::types::Tag::builder().key(kanaria::handlers::restart_loop::LOG_LINES_TAG).value("on").build())
            .send()
            .await
            .unwrap();
    }
    // A revision that logs to CloudWatch Logs (awslogs), and what its crashing task wrote.
    let mut options = std::collections::HashMap::new();
    options.insert("awslogs-group".to_string(), "/ecs/web".to_string());
    options.insert("awslogs-region".to_string(), "us-east-1".to_string());
    options.insert("awslogs-stream-prefix".to_string(), "ecs".to_string());
    let td = clients
        .ecs
        .register_task_definition()
        .family("web")
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .execution_role_arn(format!("arn:aws:iam::{}:role/web-execution", kanaria_local::ACCOUNT))
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("web")
                .image(&env.sample.initial_image)
                .memory(512)
                .essential(true)
                .log_configuration(
                    aws_sdk_ecs::types::LogConfiguration::builder()
                        .log_driver(aws_sdk_ecs::types::LogDriver::Awslogs)
                        .set_options(Some(options))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let td_arn = td.task_definition().unwrap().task_definition_arn().unwrap().to_string();
    clients.logs.create_log_group().log_group_name("/ecs/web").send().await.unwrap();
    let mut events: Vec<serde_json::Value> = Vec::new();
    for n in 0..3u32 {
        let task_id = format!("{:032x}", 0xabc000 + n);
        let stream = format!("ecs/web/{task_id}");
        clients.logs.create_log_stream().log_group_name("/ecs/web").log_stream_name(&stream).send().await.unwrap();
        let now_ms = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        clients
            .logs
            .put_log_events()
            .log_group_name("/ecs/web")
            .log_stream_name(&stream)
            .log_events(
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(now_ms - 3)
                    .message("listening on :8080")
                    .build()
                    .unwrap(),
            )
            .log_events(
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(now_ms - 2)
                    .message("config: DB_PASSWORD=hunter2 key AKIAIOSFODNN7EXAMPLE")
                    .build()
                    .unwrap(),
            )
            .log_events(
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(now_ms - 1)
                    .message("panic: DATABASE_URL is not set")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let mut e = stopped(&env, n, 3, 200 - 60 * n as u64, "EssentialContainerExited", "Essential container in task exited", Some(2));
        e["detail"]["taskDefinitionArn"] = td_arn.clone().into();
        e["detail"]["startedAt"] = at(200 - 60 * n as u64 + 4).into();
        events.push(e);
    }
    deliver(&env, &events).await;
    env.wait_invocations(Function::RestartLoop, 3).await;
    let alerts = loop_alerts(&env).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let body = &alerts[0].1;
    assert!(body.contains("Diagnosis (crash-on-start)"), "{body}");
    assert!(body.contains("web exited 2"), "{body}");
    assert!(body.contains("log-group/$252Fecs$252Fweb/log-events/ecs$252Fweb$252F"), "{body}");
    body.clone()
}

/// A policy's own thresholds come from the policy index: no Parameter Store read per failed task
/// (a flood of them would compete with ECS's secret injection at task start).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policys_thresholds_come_from_the_index_without_reading_parameter_store() {
    let env =
        start(SampleOptions { extra_policy_yaml: "restartLoop: { failures: 5, window: 10m }\n".into(), ..SampleOptions::default() }).await;
    env.local.shared.invoke(Function::PolicySync, json!({"syncAll": true})).await.expect("the index is built");
    let crash =
        |n: u32| stopped(&env, n, 2, 200 - 30 * n as u64, "EssentialContainerExited", "Essential container in task exited", Some(1));
    deliver(&env, &(0..4).map(crash).collect::<Vec<_>>()).await;
    env.wait_invocations(Function::RestartLoop, 4).await;
    assert!(loop_alerts(&env).await.is_empty(), "4 failures are below the policy's 5 (the account default, 3, would alert)");
    deliver(&env, &[crash(4)]).await;
    env.wait_invocations(Function::RestartLoop, 5).await;
    assert_eq!(loop_alerts(&env).await.len(), 1, "the 5th failure alerts");
    let calls = env.local.shared.calls_of("restart-loop");
    assert!(calls.keys().all(|action| !action.starts_with("ssm:")), "no Parameter Store read: {calls:?}");
    assert!(env.local.shared.iam.denials().is_empty(), "IAM refused: {:?}", env.local.shared.iam.denials());
}
