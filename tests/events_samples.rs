//! The sample events in `events/` are real EventBridge events (full envelope) that kanaria's
//! event types parse, and the task events classify as expected.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kanaria::events::{CloudTrailPutImage, EcrImageAction, EcsTaskStateChange, Envelope, FailureKind};
use serde_json::Value;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

fn samples() -> BTreeMap<String, Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("events");
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        found.insert(path.file_name().unwrap().to_string_lossy().into_owned(), value);
    }
    found
}

fn ecr(name: &str) -> Envelope<EcrImageAction> {
    serde_json::from_value(samples()[name].clone()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ecs(name: &str) -> Envelope<EcsTaskStateChange> {
    serde_json::from_value(samples()[name].clone()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_sample_is_a_full_eventbridge_event_kanaria_parses() {
    let samples = samples();
    for expected in [
        "ecr-push.json",
        "ecr-push-digest-only.json",
        "ecr-delete.json",
        "ecs-task-running.json",
        "ecs-task-stopped.json",
        "ecs-task-stopped-cannot-pull.json",
        "ecr-put-image-cloudtrail.json",
        "slack-interaction-function-url.json",
        "sns-rollout-card.json",
    ] {
        assert!(samples.contains_key(expected), "events/{expected} is missing");
    }
    for (name, event) in &samples {
        // The Slack functions' samples are not EventBridge events: a Function URL request and
        // an SNS notification (read by the handlers in local/src/coldstart.rs's tests).
        if name.starts_with("slack-interaction") {
            assert_eq!(event["version"], "2.0", "{name}: a Function URL (payload 2.0) request");
            assert_eq!(event["requestContext"]["http"]["method"], "POST", "{name}");
            continue;
        }
        if name.starts_with("sns-") {
            assert_eq!(event["Records"][0]["EventSource"], "aws:sns", "{name}");
            assert!(event["Records"][0]["Sns"]["Message"].is_string(), "{name}");
            continue;
        }
        for field in ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"] {
            assert!(event.get(field).is_some(), "{name}: no `{field}`");
        }
        assert_eq!(event["version"], "0", "{name}");
        assert_eq!(event["account"], ACCOUNT, "{name}");
        assert_eq!(event["region"], REGION, "{name}");
        assert!(event["resources"].is_array(), "{name}");
        let time = event["time"].as_str().unwrap();
        assert!(
            time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{name}: time {time:?} is not like 2025-03-14T09:21:07Z"
        );
        match (event["source"].as_str().unwrap(), event["detail-type"].as_str().unwrap()) {
            ("aws.ecr", "ECR Image Action") => {
                let e: Envelope<EcrImageAction> = serde_json::from_value(event.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(e.detail.digest_is_valid(), "{name}: digest {:?}", e.detail.image_digest);
                assert_eq!(e.detail.repository_name, "demo/web", "{name}");
            }
            ("aws.ecr", "AWS API Call via CloudTrail") => {
                let e: Envelope<CloudTrailPutImage> = serde_json::from_value(event.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
                let (repository, _, pusher) = e.detail.push().unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(repository, "demo/web", "{name}");
                assert!(pusher.starts_with(&format!("arn:aws:sts::{ACCOUNT}:")), "{name}: {pusher}");
            }
            ("aws.ecs", "ECS Task State Change") => {
                let e: Envelope<EcsTaskStateChange> = serde_json::from_value(event.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(e.detail.cluster_name(), "demo", "{name}");
                assert_eq!(e.detail.service_name(), Some("web"), "{name}");
                assert_eq!(event["resources"], serde_json::json!([e.detail.task_arn]), "{name}");
            }
            other => panic!("{name}: unexpected source/detail-type {other:?}"),
        }
    }
}

#[test]
fn ecr_push_is_a_successful_tagged_push() {
    let e = ecr("ecr-push.json");
    assert_eq!(e.source, "aws.ecr");
    assert_eq!(e.detail_type, "ECR Image Action");
    assert_eq!(e.account, ACCOUNT);
    assert_eq!(e.region, REGION);
    assert!(e.detail.is_successful_push());
    assert_eq!(e.detail.action_type, "PUSH");
    assert_eq!(e.detail.result, "SUCCESS");
    assert_eq!(e.detail.image_tag.as_deref(), Some("v2"));
    assert_eq!(e.detail.image_digest, "sha256:0f6f3104d35c0913022f8d9e3cbabc13c828ef7fbd37bd466d9a34b72bc023be");
}

#[test]
fn ecr_push_by_digest_has_no_tag() {
    let e = ecr("ecr-push-digest-only.json");
    assert!(e.detail.is_successful_push());
    assert_eq!(e.detail.image_tag, None);
    assert!(samples()["ecr-push-digest-only.json"]["detail"].get("image-tag").is_none());
}

#[test]
fn ecr_delete_is_not_a_push() {
    let e = ecr("ecr-delete.json");
    assert_eq!(e.detail.action_type, "DELETE");
    assert_eq!(e.detail.result, "SUCCESS");
    assert!(!e.detail.is_successful_push());
}

#[test]
fn running_task_is_not_a_failure() {
    let e = ecs("ecs-task-running.json");
    let t = &e.detail;
    assert_eq!(e.source, "aws.ecs");
    assert_eq!(e.detail_type, "ECS Task State Change");
    assert_eq!(t.last_status, "RUNNING");
    assert_eq!(t.desired_status.as_deref(), Some("RUNNING"));
    assert_eq!(t.cluster_arn, "arn:aws:ecs:us-east-1:123456789012:cluster/demo");
    assert_eq!(t.started_by.as_deref(), Some("ecs-svc/1234567890123456789"));
    assert_eq!(t.group.as_deref(), Some("service:web"));
    assert_eq!(t.containers.len(), 1);
    assert_eq!(t.containers[0].name, "app");
    assert_eq!(t.containers[0].exit_code, None);
    assert_eq!(t.stop_code, None);
    assert!(t.failure().is_none());
}

#[test]
fn stopped_task_is_a_container_exit_with_code_1() {
    let e = ecs("ecs-task-stopped.json");
    let t = &e.detail;
    assert_eq!(t.last_status, "STOPPED");
    assert_eq!(t.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(t.stopped_reason.as_deref(), Some("Essential container in task exited"));
    assert!(t.stopped_at.is_some());
    assert_eq!(t.task_arn, ecs("ecs-task-running.json").detail.task_arn, "the running task is the one that stopped");
    assert!(t.version > ecs("ecs-task-running.json").detail.version);
    let f = t.failure().expect("a crashed container is a failure");
    assert_eq!(f.kind, FailureKind::ContainerExited);
    assert_eq!(f.exit_codes, vec![("app".to_string(), 1)]);
    assert_eq!(f.task_arn, t.task_arn);
    assert_eq!(f.describe(), "task 6b4e398eca2e296d13bc8ffb2441f75c: Essential container in task exited (app exit 1)");
}

#[test]
fn cannot_pull_is_a_failure_to_start() {
    let e = ecs("ecs-task-stopped-cannot-pull.json");
    let t = &e.detail;
    assert_eq!(t.stop_code.as_deref(), Some("TaskFailedToStart"));
    let reason = t.stopped_reason.as_deref().unwrap();
    assert!(
        reason.starts_with("CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref "),
        "{reason}"
    );
    assert_eq!(t.containers[0].exit_code, None);
    let f = t.failure().expect("a task that cannot pull its image is a failure");
    assert_eq!(f.kind, FailureKind::FailedToStart);
    assert!(f.exit_codes.is_empty());
    assert_eq!(f.stopped_reason, reason);
}
