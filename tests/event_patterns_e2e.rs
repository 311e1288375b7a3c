//! The EventBridge pattern that selects failed tasks (template.yaml, on-task-event's and
//! restart-loop's `EcsTaskFailed` rules) against kanaria's own classifier
//! (`EcsTaskStateChange::failure`), through EventBridge's matching on the emulated AWS: every stop
//! the classifier calls a failure reaches the functions, and the events that make up most of an
//! account's stream (tasks starting, scale-ins, deployments, people, Spot, standalone tasks)
//! never invoke them.

use kanaria::events::EcsTaskStateChange;
use kanaria_local::{LocalAws, Options};
use serde_json::{json, Value};

fn failed_task_pattern() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml");
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let pattern = &template["Resources"]["OnTaskEventFunction"]["Properties"]["Events"]["EcsTaskFailed"]["Properties"]["Pattern"];
    serde_json::to_value(pattern).unwrap()
}

const STOP_CODES: &[Option<&str>] = &[
    None,
    Some("TaskFailedToStart"),
    Some("EssentialContainerExited"),
    Some("UserInitiated"),
    Some("ServiceSchedulerInitiated"),
    Some("SpotInterruption"),
    Some("TerminationNotice"),
];

const REASONS: &[Option<&str>] = &[
    None,
    Some("Essential container in task exited"),
    Some("Task failed ELB health checks in (target-group arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/1)"),
    Some("Task failed container health checks"),
    Some("Scaling activity initiated by (deployment ecs-svc/1234567890123456789)"),
    Some("Task stopped by user"),
    Some("CannotPullContainerError: pull image manifest has been retried 5 time(s): not found"),
    Some("OutOfMemoryError: Container killed due to memory usage"),
];

/// Every combination of group, desired status, stop code, reason, exit code and container reason
/// that shapes the decision: (event, is a failure by the classifier).
fn corpus() -> Vec<(Value, bool)> {
    let mut events = Vec::new();
    for group in ["service:web", "family:batch-job"] {
        for desired in ["STOPPED", "RUNNING"] {
            for stop_code in STOP_CODES {
                for reason in REASONS {
                    for exit in [None, Some(0), Some(1), Some(137), Some(143)] {
                        for container_reason in [None, Some("OutOfMemoryError: Container killed due to memory usage")] {
                            let n = events.len();
                            let mut container = json!({"name": "app", "lastStatus": "RUNNING"});
                            if let Some(code) = exit {
                                container["exitCode"] = code.into();
                            }
                            if let Some(r) = container_reason {
                                container["reason"] = r.into();
                            }
                            let mut detail = json!({
                                "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
                                "taskArn": format!("arn:aws:ecs:us-east-1:123456789012:task/prod/{n:032x}"),
                                "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:7",
                                "group": group, "startedBy": "ecs-svc/1234567890123456789", "launchType": "FARGATE",
                                "lastStatus": "RUNNING", "desiredStatus": desired, "containers": [container], "version": 3,
                            });
                            if let Some(code) = stop_code {
                                detail["stopCode"] = (*code).into();
                            }
                            if let Some(r) = reason {
                                detail["stoppedReason"] = (*r).into();
                            }
                            let task: EcsTaskStateChange = serde_json::from_value(detail.clone()).expect("the corpus is in ECS's shape");
                            let failure = task.failure().is_some() && group.starts_with("service:");
                            events.push((detail, failure));
                        }
                    }
                }
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_task_pattern_selects_every_failure_and_leaves_the_routine_out() {
    let local = LocalAws::start(Options::default()).await.expect("local AWS starts (run scripts/setup first)");
    let events = aws_sdk_eventbridge::Client::new(&local.config);
    let sqs = aws_sdk_sqs::Client::new(&local.config);
    // A bus of its own, so the template's rules (and the functions) see none of this.
    let bus = "pattern-check";
    events.create_event_bus().name(bus).send().await.unwrap();
    let (queue_url, queue_arn) = kanaria_local::bridge::create_queue(&sqs, "pattern-check", None).await.unwrap();
    events.put_rule().name("failed-tasks").event_bus_name(bus).event_pattern(failed_task_pattern().to_string()).send().await.unwrap();
    events
        .put_targets()
        .rule("failed-tasks")
        .event_bus_name(bus)
        .targets(aws_sdk_eventbridge::types::Target::builder().id("q").arn(queue_arn).build().unwrap())
        .send()
        .await
        .unwrap();

    let corpus = corpus();
    for chunk in corpus.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .map(|(detail, _)| {
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(bus)
                    .source("aws.ecs")
                    .detail_type("ECS Task State Change")
                    .detail(detail.to_string())
                    .build()
            })
            .collect();
        let out = events.put_events().set_entries(Some(entries)).send().await.unwrap();
        assert_eq!(out.failed_entry_count(), 0);
    }
    // EventBridge (moto) has routed every matching event by the time PutEvents answered.
    let mut matched = std::collections::HashSet::new();
    loop {
        let out = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).send().await.unwrap();
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            let event: Value = serde_json::from_str(m.body().unwrap_or_default()).unwrap();
            matched.insert(event["detail"]["taskArn"].as_str().unwrap().to_string());
            sqs.delete_message().queue_url(&queue_url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
        }
    }

    let arn = |detail: &Value| detail["taskArn"].as_str().unwrap().to_string();
    let missed: Vec<&Value> = corpus.iter().filter(|(d, failure)| *failure && !matched.contains(&arn(d))).map(|(d, _)| d).collect();
    assert!(missed.is_empty(), "{} failures the pattern would never deliver, e.g. {}", missed.len(), missed[0]);
    let routine = |d: &Value| {
        let deliberate = ["UserInitiated", "ServiceSchedulerInitiated", "SpotInterruption", "TerminationNotice"]
            .contains(&d["stopCode"].as_str().unwrap_or(""));
        let said = d["stoppedReason"].as_str().unwrap_or("");
        d["group"].as_str().unwrap().starts_with("family:")
            || d["desiredStatus"] == "RUNNING"
            || (deliberate && !said.contains("health checks") && !said.contains("OutOfMemory"))
    };
    let invoked: Vec<&Value> = corpus.iter().map(|(d, _)| d).filter(|d| routine(d) && matched.contains(&arn(d))).collect();
    assert!(invoked.is_empty(), "{} routine events would invoke the functions, e.g. {}", invoked.len(), invoked[0]);
    let failures = corpus.iter().filter(|(_, f)| *f).count();
    assert!(
        failures > 100 && matched.len() < corpus.len() / 4,
        "{failures} failures, {} of {} events matched",
        matched.len(),
        corpus.len()
    );
}
