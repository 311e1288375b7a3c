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
    pub desired_status: Option<String>,
    pub stopped_reason: Option<String>,
    pub stop_code: Option<String>,
    pub containers: Vec<ContainerState>,
    pub version: u64,
    pub started_at: Option<String>,
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

impl EcsTaskStateChange {
    /// Seconds the task ran before it stopped, when it started at all.
    pub fn ran_seconds(&self) -> Option<u64> {
        let started = unix_seconds(self.started_at.as_deref()?)?;
        let stopped = unix_seconds(self.stopped_at.as_deref()?)?;
        Some(stopped.saturating_sub(started))
    }

    /// Cluster name from the cluster ARN (`arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`).
    pub fn cluster_name(&self) -> &str {
        self.cluster_arn.rsplit('/').next().unwrap_or(&self.cluster_arn)
    }

    pub fn service_name(&self) -> Option<&str> {
        self.group.as_deref()?.strip_prefix("service:")
    }

    /// Is this a task that stopped because something is wrong with it (as opposed to a task
    /// that was scaled in, replaced by a deployment or stopped by a person)?
    pub fn failure(&self) -> Option<TaskFailure> {
        if self.last_status != "STOPPED" {
            return None;
        }
        let reason = self.stopped_reason.clone().unwrap_or_default();
        let crashed: Vec<ContainerState> = self
            .containers
            .iter()
            .filter(|c| matches!(c.exit_code, Some(code) if code != 0) || c.reason.as_deref().is_some_and(|r| r.contains("OutOfMemory")))
            .cloned()
            .collect();
        let kind = match self.stop_code.as_deref() {
            Some("TaskFailedToStart") => FailureKind::FailedToStart,
            Some("EssentialContainerExited") if !crashed.is_empty() => FailureKind::ContainerExited,
            // Scale-in, deployments, people and Spot reclaiming capacity are not the image's fault,
            // unless the reason says the load balancer found the task unhealthy.
            _ if reason.contains("ELB health checks") || reason.contains("failed container health checks") => FailureKind::HealthCheck,
            _ if reason.contains("OutOfMemory")
                || crashed.iter().any(|c| c.reason.as_deref().is_some_and(|r| r.contains("OutOfMemory"))) =>
            {
                FailureKind::OutOfMemory
            }
            _ => return None,
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
