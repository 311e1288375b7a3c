//! The EventBridge events kanaria reacts to, parsed tolerantly: unknown fields are ignored
//! (AWS adds fields over time) and only what a decision needs is required.

use serde::{Deserialize, Serialize};

/// The envelope of every EventBridge event (only the fields kanaria uses).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Envelope<D> {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub time: Option<String>,
    pub detail: D,
}

impl<D: serde::de::DeserializeOwned> Envelope<D> {
    /// Parse an EventBridge event that must come from `source` with `detail_type`. The error
    /// says what was received instead.
    pub fn parse(event: serde_json::Value, source: &str, detail_type: &str) -> Result<Self, String> {
        let envelope: Envelope<D> = serde_json::from_value(event).map_err(|e| format!("not a {detail_type} event: {e}"))?;
        if envelope.source != source || envelope.detail_type != detail_type {
            return Err(format!(
                "not a {detail_type} event: source {:?}, detail-type {:?} (expected {source:?}, {detail_type:?})",
                envelope.source, envelope.detail_type
            ));
        }
        Ok(envelope)
    }
}

/// `detail` of an `ECR Image Action` event.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EcrImageAction {
    #[serde(rename = "action-type")]
    pub action_type: String,
    pub result: String,
    #[serde(rename = "repository-name")]
    pub repository_name: String,
    #[serde(rename = "image-digest")]
    pub image_digest: String,
    /// Absent for a push by digest only.
    #[serde(rename = "image-tag", default)]
    pub image_tag: Option<String>,
}

impl EcrImageAction {
    pub fn is_successful_push(&self) -> bool {
        self.action_type == "PUSH" && self.result == "SUCCESS"
    }

    pub fn digest_is_valid(&self) -> bool {
        let Some(hex) = self.image_digest.strip_prefix("sha256:") else { return false };
        hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())
    }
}

/// `detail` of an `AWS API Call via CloudTrail` event for ECR's `PutImage` (source `aws.ecr`):
/// who pushed an image. Only the fields kanaria reads.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CloudTrailPutImage {
    pub event_source: String,
    pub event_name: String,
    /// Set when the call failed (then there is no image).
    pub error_code: Option<String>,
    pub user_identity: CloudTrailUserIdentity,
    pub response_elements: Option<PutImageResponse>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CloudTrailUserIdentity {
    /// `IAMUser`, `AssumedRole`, `FederatedUser`, `Root`, `AWSService`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub arn: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PutImageResponse {
    pub image: PutImageImage,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PutImageImage {
    pub repository_name: String,
    pub image_id: PutImageId,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PutImageId {
    pub image_digest: String,
    pub image_tag: Option<String>,
}

impl CloudTrailPutImage {
    /// `(repository, digest, pusher ARN)` of a successful push, else why not.
    pub fn push(&self) -> Result<(&str, &str, &str), String> {
        if self.event_source != "ecr.amazonaws.com" || self.event_name != "PutImage" {
            return Err(format!("{} {} is not ECR's PutImage", self.event_source, self.event_name));
        }
        if let Some(code) = &self.error_code {
            return Err(format!("PutImage failed ({code})"));
        }
        let image = &self.response_elements.as_ref().ok_or("PutImage without responseElements")?.image;
        let digest = image.image_id.image_digest.as_str();
        let valid = digest.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if image.repository_name.is_empty() || !valid {
            return Err(format!("PutImage names no repository and sha256 digest ({:?}, {digest:?})", image.repository_name));
        }
        let arn = self.user_identity.arn.as_deref().filter(|a| a.starts_with("arn:")).ok_or("PutImage without userIdentity.arn")?;
        Ok((&image.repository_name, digest, arn))
    }
}

/// `detail` of an `ECS Task State Change` event.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EcsTaskStateChange {
    pub cluster_arn: String,
    pub task_arn: String,
    pub task_definition_arn: String,
    /// `service:NAME` for service tasks, `family:NAME` for standalone tasks.
    pub group: Option<String>,
    /// For tasks of an EXTERNAL-controller task set: the task set's id (`ecs-svc/...`).
    pub started_by: Option<String>,
    pub last_status: String,
    /// STOPPED from the first event of a stop on: ECS sets it (with `stopCode`, `stoppedReason`
    /// and the containers' exit codes) while `lastStatus` is still RUNNING, then emits an event
    /// for each of DEACTIVATING, STOPPING, DEPROVISIONING and STOPPED.
    pub desired_status: Option<String>,
    pub stopped_reason: Option<String>,
    /// Absent in older event shapes and from some agents.
    pub stop_code: Option<String>,
    pub containers: Vec<ContainerState>,
    pub version: u64,
    pub started_at: Option<String>,
    /// When the task's containers stopped running (set from the first event of a stop).
    pub execution_stopped_at: Option<String>,
    /// When the task began to stop (set from the first event of a stop).
    pub stopping_at: Option<String>,
    /// When the task reached STOPPED: after the load balancer's deregistration delay, so tens of
    /// seconds to minutes after it stopped running. Only in the last event of a stop.
    pub stopped_at: Option<String>,
}

/// `detail` of an `ECS Service Action` event (e.g. SERVICE_TASK_START_IMPAIRED).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EcsServiceAction {
    pub event_type: String,
    pub event_name: String,
    pub cluster_arn: String,
    pub created_at: Option<String>,
}

/// Unix seconds of an RFC 3339 time as ECS and EventBridge write them.
pub fn unix_seconds(time: &str) -> Option<u64> {
    humantime::parse_rfc3339_weak(time).ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs())
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerState {
    pub name: String,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub last_status: Option<String>,
    pub image: Option<String>,
}

/// Stop codes of a task stopped on purpose: by a person or the API (UserInitiated), by the
/// service scheduler for a scale-in or a deployment (ServiceSchedulerInitiated), or because EC2
/// takes the capacity back (SpotInterruption, TerminationNotice). Their containers exit with the
/// stop's signal (143 for SIGTERM, 137 for SIGKILL after the stop timeout): not the image's fault.
const DELIBERATE_STOP_CODES: &[&str] = &["UserInitiated", "ServiceSchedulerInitiated", "SpotInterruption", "TerminationNotice"];

/// Exit codes of a container ended by a stop's signal: 128 + SIGTERM (15), 128 + SIGKILL (9).
const STOP_SIGNAL_EXIT_CODES: &[i64] = &[143, 137];

/// Error prefixes ECS and its agents put in `stoppedReason` or a container's `reason` when a task
/// could not start (ECS developer guide, "Stopped tasks error codes"; `DockerTimeoutError` is the
/// platform 1.3 name of `ContainerRuntimeTimeoutError`). An event without `stopCode` says
/// TaskFailedToStart only this way. Not `CannotStopContainerError` (a stop, not a start) nor
/// `InternalError` (ECS's own).
const START_FAILURE_REASONS: &[&str] = &[
    "CannotPullContainerError",
    "CannotStartContainerError",
    "CannotCreateContainerError",
    "CannotInspectContainerError",
    "CannotCreateVolumeError",
    "ResourceInitializationError",
    "ContainerRuntimeError",
    "ContainerRuntimeTimeoutError",
    "DockerTimeoutError",
    "Task failed to start",
];

/// What `stoppedReason` says when the load balancer or the container's health check had the task
/// replaced (with stopCode ServiceSchedulerInitiated, as for a scale-in).
const HEALTH_CHECK_REASONS: &[&str] = &["ELB health checks", "failed container health checks"];

impl EcsTaskStateChange {
    /// Unix seconds at which the task stopped running: `executionStoppedAt` (when its containers
    /// stopped), else `stoppingAt`, else `stoppedAt`. The first two are in every event of a stop,
    /// from the first on; `stoppedAt` only in the last, after the deregistration delay.
    pub fn stop_time(&self) -> Option<u64> {
        [&self.execution_stopped_at, &self.stopping_at, &self.stopped_at].into_iter().find_map(|t| t.as_deref().and_then(unix_seconds))
    }

    /// Seconds the task ran before it stopped, when it started at all (the same in every event
    /// of one stop that carries a stop time).
    pub fn ran_seconds(&self) -> Option<u64> {
        let started = unix_seconds(self.started_at.as_deref()?)?;
        Some(self.stop_time()?.saturating_sub(started))
    }

    /// Is ECS stopping the task (or has it stopped)? `desiredStatus` turns STOPPED in the first
    /// event of a stop, tens of seconds before `lastStatus` does (ECS developer guide, "Task state
    /// change events"; the task stays in DEACTIVATING for the target group's deregistration
    /// delay). A task whose desired status is RUNNING is not being stopped, whatever else the
    /// event says. Without `desiredStatus` (not in every shape), `lastStatus` decides.
    pub fn is_stopping(&self) -> bool {
        match self.desired_status.as_deref() {
            Some(desired) => desired == "STOPPED",
            None => self.last_status == "STOPPED",
        }
    }

    /// Cluster name from the cluster ARN (`arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`).
    pub fn cluster_name(&self) -> &str {
        self.cluster_arn.rsplit('/').next().unwrap_or(&self.cluster_arn)
    }

    pub fn service_name(&self) -> Option<&str> {
        self.group.as_deref()?.strip_prefix("service:")
    }

    /// Is this a task that is stopping because something is wrong with it (as opposed to a task
    /// that is scaled in, replaced by a deployment, stopped by a person or reclaimed by EC2)?
    /// Known from the first event of the stop (see [`Self::is_stopping`]); every later event of
    /// the same stop describes the same failure of the same task ARN, at a higher
    /// `detail.version`, so a record keyed by task ARN counts it once.
    ///
    /// With `stopCode` absent (older event shapes, some agents) the reason and the exit codes
    /// decide: a start failure's error in `stoppedReason` or a container's `reason`, "Essential
    /// container in task exited" with a non-zero exit code, or no reason at all with a container
    /// that exited non-zero other than by a stop's signal.
    pub fn failure(&self) -> Option<TaskFailure> {
        if !self.is_stopping() {
            return None;
        }
        let reason = self.stopped_reason.clone().unwrap_or_default();
        let stop_code = self.stop_code.as_deref().filter(|c| !c.is_empty());
        let deliberate = stop_code.is_some_and(|c| DELIBERATE_STOP_CODES.contains(&c));
        let mentions = |needles: &[&str]| {
            std::iter::once(reason.as_str())
                .chain(self.containers.iter().filter_map(|c| c.reason.as_deref()))
                .any(|text| needles.iter().any(|n| text.contains(n)))
        };
        let exited_non_zero: Vec<&ContainerState> = self.containers.iter().filter(|c| c.exit_code.is_some_and(|code| code != 0)).collect();
        let crashed: Vec<&ContainerState> = self
            .containers
            .iter()
            .filter(|c| c.exit_code.is_some_and(|code| code != 0) || c.reason.as_deref().is_some_and(|r| r.contains("OutOfMemory")))
            .collect();
        let kind = if stop_code == Some("TaskFailedToStart") || (!deliberate && mentions(START_FAILURE_REASONS)) {
            FailureKind::FailedToStart
        } else if stop_code == Some("EssentialContainerExited") && !crashed.is_empty() {
            FailureKind::ContainerExited
        } else if HEALTH_CHECK_REASONS.iter().any(|r| reason.contains(r)) {
            // Even with ServiceSchedulerInitiated: the scheduler replaced an unhealthy task.
            FailureKind::HealthCheck
        } else if reason.contains("OutOfMemory") || (!deliberate && mentions(&["OutOfMemory"])) {
            // A container's own OOM under a deliberate stop (a scale-in's SIGTERM racing an OOM
            // kill) is the stop's, as its other exit codes are. This is also what the EventBridge
            // pattern of template.yaml can select without looking into the containers array.
            FailureKind::OutOfMemory
        } else if stop_code.is_none()
            && ((reason.contains("Essential container in task exited") && !exited_non_zero.is_empty())
                || (reason.trim().is_empty()
                    && exited_non_zero.iter().any(|c| c.exit_code.is_some_and(|code| !STOP_SIGNAL_EXIT_CODES.contains(&code)))))
        {
            FailureKind::ContainerExited
        } else {
            // Scale-in, deployments, people, Spot and ECS's own infrastructure are not the
            // image's fault, whatever the exit codes.
            return None;
        };
        Some(TaskFailure {
            task_arn: self.task_arn.clone(),
            kind,
            stopped_reason: reason,
            exit_codes: crashed.iter().filter_map(|c| c.exit_code.map(|code| (c.name.clone(), code))).collect(),
            version: self.version,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    FailedToStart,
    ContainerExited,
    OutOfMemory,
    HealthCheck,
}

/// A task of the new task set that stopped for a reason that counts against the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFailure {
    pub task_arn: String,
    pub kind: FailureKind,
    pub stopped_reason: String,
    /// (container name, exit code) of containers that exited non-zero.
    pub exit_codes: Vec<(String, i64)>,
    pub version: u64,
}

impl TaskFailure {
    /// One line a person can read: `task 1234abcd: Essential container in task exited (app exit 1)`.
    pub fn describe(&self) -> String {
        let id = self.task_arn.rsplit('/').next().unwrap_or(&self.task_arn);
        let codes: Vec<String> = self.exit_codes.iter().map(|(n, c)| format!("{n} exit {c}")).collect();
        if codes.is_empty() {
            format!("task {id}: {}", self.stopped_reason)
        } else {
            format!("task {id}: {} ({})", self.stopped_reason, codes.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(stop_code: &str, reason: &str, exit: Option<i64>) -> EcsTaskStateChange {
        EcsTaskStateChange {
            task_arn: "arn:aws:ecs:us-east-1:123456789012:task/prod/0123abcd".into(),
            last_status: "STOPPED".into(),
            stop_code: Some(stop_code.into()),
            stopped_reason: Some(reason.into()),
            containers: vec![ContainerState { name: "app".into(), exit_code: exit, ..Default::default() }],
            version: 5,
            ..Default::default()
        }
    }

    #[test]
    fn cloudtrail_put_image_says_who_pushed() {
        let text = include_str!("../events/ecr-put-image-cloudtrail.json");
        let event: Envelope<CloudTrailPutImage> =
            Envelope::parse(serde_json::from_str(text).unwrap(), "aws.ecr", "AWS API Call via CloudTrail").unwrap();
        let (repository, digest, arn) = event.detail.push().unwrap();
        assert_eq!(repository, "demo/web");
        assert_eq!(digest, format!("sha256:{}", "5f".repeat(32)));
        assert_eq!(arn, "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Deployers_0123456789abcdef/ana@example.com");

        let mut failed = event.detail.clone();
        failed.error_code = Some("ImageAlreadyExistsException".into());
        assert!(failed.push().is_err());
        let mut other = event.detail.clone();
        other.event_name = "BatchDeleteImage".into();
        assert!(other.push().is_err());
        let mut no_arn = event.detail.clone();
        no_arn.user_identity.arn = None;
        assert!(no_arn.push().is_err());
        let mut bad_digest = event.detail;
        bad_digest.response_elements.as_mut().unwrap().image.image_id.image_digest = "sha256:zz".into();
        assert!(bad_digest.push().is_err());
    }

    #[test]
    fn failures_are_classified() {
        let f = stopped("EssentialContainerExited", "Essential container in task exited", Some(1)).failure().unwrap();
        assert_eq!(f.kind, FailureKind::ContainerExited);
        assert_eq!(f.exit_codes, vec![("app".to_string(), 1)]);
        assert_eq!(f.describe(), "task 0123abcd: Essential container in task exited (app exit 1)");
        let f = stopped("TaskFailedToStart", "CannotPullContainerError: pull image manifest has been retried 5 time(s)", None)
            .failure()
            .unwrap();
        assert_eq!(f.kind, FailureKind::FailedToStart);
        let f = stopped("ServiceSchedulerInitiated", "Task failed ELB health checks in (target-group arn:...)", None).failure().unwrap();
        assert_eq!(f.kind, FailureKind::HealthCheck);
    }

    const TASK_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task/prod/0123abcd";

    /// One event of a task's stop, as ECS emits them: `desiredStatus` STOPPED from the first on,
    /// `lastStatus` moving RUNNING → DEACTIVATING → STOPPING → DEPROVISIONING → STOPPED.
    fn stopping(last_status: &str, version: u64, stop_code: Option<&str>, reason: Option<&str>, exit: Option<i64>) -> EcsTaskStateChange {
        EcsTaskStateChange {
            task_arn: TASK_ARN.into(),
            last_status: last_status.into(),
            desired_status: Some("STOPPED".into()),
            stop_code: stop_code.map(str::to_string),
            stopped_reason: reason.map(str::to_string),
            containers: vec![ContainerState { name: "app".into(), exit_code: exit, ..Default::default() }],
            version,
            started_at: Some("2025-03-14T09:24:27Z".into()),
            execution_stopped_at: Some("2025-03-14T09:26:04Z".into()),
            stopping_at: Some("2025-03-14T09:26:05Z".into()),
            stopped_at: (last_status == "STOPPED").then(|| "2025-03-14T09:31:06Z".into()),
            ..Default::default()
        }
    }

    const STAGES: [&str; 5] = ["RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"];

    #[test]
    fn the_first_event_of_a_crash_is_a_failure() {
        let first = stopping("RUNNING", 3, Some("EssentialContainerExited"), Some("Essential container in task exited"), Some(1));
        let f = first.failure().expect("desiredStatus STOPPED with an essential container exited 1 is a failure");
        assert_eq!((f.task_arn.as_str(), f.kind, f.version), (TASK_ARN, FailureKind::ContainerExited, 3));
        assert_eq!(f.exit_codes, vec![("app".to_string(), 1)]);
    }

    #[test]
    fn every_event_of_one_stop_describes_the_same_failure() {
        let failures: Vec<TaskFailure> = STAGES
            .iter()
            .enumerate()
            .map(|(i, stage)| {
                stopping(stage, 3 + i as u64, Some("EssentialContainerExited"), Some("Essential container in task exited"), Some(1))
                    .failure()
                    .unwrap_or_else(|| panic!("{stage} is not read as the failure"))
            })
            .collect();
        for f in &failures {
            assert_eq!(
                (f.task_arn.as_str(), f.kind, &f.exit_codes),
                (TASK_ARN, FailureKind::ContainerExited, &vec![("app".to_string(), 1)])
            );
        }
        assert_eq!(failures.iter().map(|f| f.version).collect::<Vec<_>>(), vec![3, 4, 5, 6, 7], "later events carry higher versions");
        // The task ran as long in every event, though only the last has stoppedAt (after the
        // deregistration delay).
        for stage in STAGES {
            assert_eq!(stopping(stage, 3, None, None, Some(1)).ran_seconds(), Some(97), "{stage}");
        }
    }

    #[test]
    fn a_scale_in_is_not_a_failure_at_any_stage() {
        let reason = "Scaling activity initiated by (deployment ecs-svc/1234567890123456789)";
        for (stage, exit) in STAGES.iter().zip([None, None, Some(143), Some(137), Some(137)]) {
            let event = stopping(stage, 3, Some("ServiceSchedulerInitiated"), Some(reason), exit);
            assert!(event.is_stopping());
            assert_eq!(event.failure(), None, "{stage} with exit {exit:?}");
        }
        for code in ["UserInitiated", "SpotInterruption", "TerminationNotice"] {
            assert_eq!(stopping("RUNNING", 3, Some(code), Some("Task stopped by user"), Some(137)).failure(), None, "{code}");
        }
    }

    #[test]
    fn a_task_ecs_wants_running_is_never_a_failure() {
        for last_status in ["PENDING", "RUNNING", "STOPPED"] {
            let mut event = stopping(last_status, 3, Some("EssentialContainerExited"), Some("Essential container in task exited"), Some(1));
            event.desired_status = Some("RUNNING".into());
            assert_eq!(event.failure(), None, "desiredStatus RUNNING, lastStatus {last_status}");
        }
    }

    #[test]
    fn without_stop_code_a_non_zero_exit_of_the_essential_container_is_a_failure() {
        for stage in STAGES {
            let f = stopping(stage, 3, None, Some("Essential container in task exited"), Some(1)).failure();
            assert_eq!(f.map(|f| f.kind), Some(FailureKind::ContainerExited), "{stage}");
            // Killed by a signal on its own (not a stop): still the essential container exiting.
            let f = stopping(stage, 3, None, Some("Essential container in task exited"), Some(137)).failure();
            assert_eq!(f.map(|f| f.kind), Some(FailureKind::ContainerExited), "{stage}, exit 137");
        }
        assert_eq!(stopping("STOPPED", 3, None, Some("Essential container in task exited"), Some(0)).failure(), None, "a clean exit");
        // Nothing said at all: a non-zero exit that no stop's signal explains.
        assert_eq!(stopping("RUNNING", 3, None, None, Some(2)).failure().map(|f| f.kind), Some(FailureKind::ContainerExited));
        assert_eq!(stopping("STOPPED", 3, None, None, Some(143)).failure(), None, "SIGTERM from a stop");
        assert_eq!(stopping("STOPPED", 3, None, None, Some(137)).failure(), None, "SIGKILL after the stop timeout");
    }

    #[test]
    fn without_stop_code_start_failures_oom_and_health_checks_are_failures() {
        let pull = "CannotPullContainerError: pull image manifest has been retried 5 time(s): not found";
        assert_eq!(stopping("STOPPED", 3, None, Some(pull), None).failure().map(|f| f.kind), Some(FailureKind::FailedToStart));
        for reason in [
            "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed",
            "CannotStartContainerError: failed to get container status: exec format error",
            "ContainerRuntimeTimeoutError: Could not transition to running; timed out after waiting 1m",
        ] {
            // In the container's reason, the task's own reason saying nothing more.
            let mut event = stopping("DEPROVISIONING", 3, None, Some("Task failed to start"), None);
            event.containers[0].reason = Some(reason.into());
            assert_eq!(event.failure().map(|f| f.kind), Some(FailureKind::FailedToStart), "{reason}");
            event.stopped_reason = None;
            assert_eq!(event.failure().map(|f| f.kind), Some(FailureKind::FailedToStart), "{reason}, no stoppedReason");
        }
        let mut oom = stopping("RUNNING", 3, None, Some("Essential container in task exited"), Some(137));
        oom.containers[0].reason = Some("OutOfMemoryError: Container killed due to memory usage".into());
        assert_eq!(oom.failure().map(|f| f.kind), Some(FailureKind::OutOfMemory));
        oom.stopped_reason = None;
        assert_eq!(oom.failure().map(|f| f.kind), Some(FailureKind::OutOfMemory));
        for reason in
            ["Task failed ELB health checks in (target-group arn:aws:elasticloadbalancing:...)", "Task failed container health checks"]
        {
            assert_eq!(
                stopping("RUNNING", 3, None, Some(reason), None).failure().map(|f| f.kind),
                Some(FailureKind::HealthCheck),
                "{reason}"
            );
        }
        // A start failure stopped on purpose is the person's or the scheduler's decision.
        assert_eq!(stopping("STOPPED", 3, Some("UserInitiated"), Some(pull), None).failure(), None);
    }

    #[test]
    fn the_first_event_of_the_sample_stop_is_the_same_failure_as_its_last() {
        let last: Envelope<EcsTaskStateChange> = Envelope::parse(
            serde_json::from_str(include_str!("../events/ecs-task-stopped.json")).unwrap(),
            "aws.ecs",
            "ECS Task State Change",
        )
        .unwrap();
        let mut first = last.detail.clone();
        first.last_status = "RUNNING".into();
        first.stopped_at = None;
        first.version = 3;
        let (from_first, from_last) = (first.failure().unwrap(), last.detail.failure().unwrap());
        assert_eq!((&from_first.task_arn, from_first.kind), (&from_last.task_arn, from_last.kind));
        assert_eq!((from_first.version, from_last.version), (3, 5));
        assert_eq!(first.ran_seconds(), last.detail.ran_seconds());
        assert_eq!(last.detail.ran_seconds(), Some(97), "from startedAt to executionStoppedAt, not to stoppedAt");
    }

    #[test]
    fn scale_in_user_stops_and_clean_exits_are_not_failures() {
        assert!(stopped("ServiceSchedulerInitiated", "Scaling activity initiated by deployment", Some(0)).failure().is_none());
        assert!(stopped("UserInitiated", "Task stopped by user", Some(137)).failure().is_none());
        assert!(stopped("SpotInterruption", "Your Spot Task was interrupted.", Some(143)).failure().is_none());
        assert!(stopped("EssentialContainerExited", "Essential container in task exited", Some(0)).failure().is_none());
        let mut running = stopped("EssentialContainerExited", "x", Some(1));
        running.last_status = "RUNNING".into();
        assert!(running.failure().is_none());
    }
}
