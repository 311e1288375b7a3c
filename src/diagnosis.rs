//! Why do a service's tasks keep dying, and what should a person do about it? A table of
//! diagnoses matched against what ECS reports about a stopped task (pure: no AWS, no I/O).
//!
//! The rules are tried in order; the first that matches wins. Each names a classification,
//! the likely cause and the fix, worded for the engineer who gets the alert.

use serde::Serialize;

/// What the diagnosis looks at: one stopped task, plus what the task definition says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoppedTask<'a> {
    pub stopped_reason: &'a str,
    pub stop_code: &'a str,
    /// (container name, exit code, container reason)
    pub containers: Vec<(&'a str, Option<i64>, &'a str)>,
    /// Seconds from start to stop, when the task started at all.
    pub ran_seconds: Option<u64>,
    pub execution_role_arn: Option<&'a str>,
    pub task_role_arn: Option<&'a str>,
    /// The task uses awsvpc networking (Fargate always does).
    pub awsvpc: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    EcrNetwork,
    ImageNotFound,
    RegistryAccessDenied,
    SecretsAccessDenied,
    SecretsNetwork,
    EnvFileUnavailable,
    OutOfMemory,
    Segfault,
    CrashOnStart,
    AppExited,
    ElbHealthCheck,
    ContainerHealthCheck,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    pub kind: Kind,
    pub title: String,
    pub likely_cause: String,
    pub fix: String,
}

type Rule = (Kind, fn(&StoppedTask) -> bool, fn(&StoppedTask) -> (String, String, String));

fn has(t: &StoppedTask, needle: &str) -> bool {
    t.stopped_reason.contains(needle) || t.containers.iter().any(|(_, _, reason)| reason.contains(needle))
}

fn has_any(t: &StoppedTask, needles: &[&str]) -> bool {
    needles.iter().any(|n| has(t, n))
}

fn exit_code(t: &StoppedTask, code: i64) -> bool {
    t.containers.iter().any(|(_, c, _)| *c == Some(code))
}

fn timeout(t: &StoppedTask) -> bool {
    has_any(t, &["i/o timeout", "context deadline exceeded", "Client.Timeout", "connection timed out", "dial tcp"])
}

fn execution_role(t: &StoppedTask) -> String {
    t.execution_role_arn
        .map(|r| format!("the execution role {r}"))
        .unwrap_or_else(|| "the task definition's execution role (none is set!)".into())
}

/// AccessDenied naming the task role for something ECS fetches with the execution role.
fn task_role_confusion(t: &StoppedTask) -> Option<String> {
    let task_role = t.task_role_arn?;
    let name = task_role.rsplit('/').next()?;
    has(t, &format!("assumed-role/{name}/")).then(|| {
        format!(
            " The denied call was made as the task role {task_role}: ECS pulls images, reads secrets and env files and writes logs with the execution role, not the task role (the task role is for your application's own AWS calls)."
        )
    })
}

const RULES: &[Rule] = &[
    (
        Kind::ImageNotFound,
        |t| has(t, "CannotPullContainerError") && has_any(t, &[": not found", "manifest unknown", "does not exist"]),
        |_| {
            (
                "The image does not exist: wrong tag or repository".into(),
                "The task definition names an image tag or digest that is not in the repository (deleted by a lifecycle policy, a typo, or pushed to another repository or region).".into(),
                "Check the image in the task definition against `aws ecr describe-images`; deploy a tag that exists (kanaria pins digests, so a rollout never loses its image to a moved tag).".into(),
            )
        },
    ),
    (
        Kind::RegistryAccessDenied,
        |t| has(t, "CannotPullContainerError") && has_any(t, &["AccessDenied", "403 Forbidden", "not authorized", "denied: "]),
        |t| {
            (
                "The task cannot pull its image: access denied".into(),
                format!("{} may not pull from this repository.{}", execution_role(t), task_role_confusion(t).unwrap_or_default()),
                "Attach AmazonECSTaskExecutionRolePolicy (ecr:GetAuthorizationToken, ecr:BatchGetImage, ecr:GetDownloadUrlForLayer) to the execution role, and for another account's repository add a repository policy allowing it.".into(),
            )
        },
    ),
    (
        Kind::EcrNetwork,
        |t| has(t, "CannotPullContainerError") && timeout(t),
        |t| {
            let s3 = has_any(t, &["starport-layer-bucket", ".s3."]);
            (
                "The task cannot reach ECR to pull its image (network timeout)".into(),
                format!(
                    "The task's subnets have no route to {}. In a private subnet that needs a NAT gateway, or VPC endpoints for com.amazonaws.REGION.ecr.api, com.amazonaws.REGION.ecr.dkr and the S3 gateway endpoint (image layers come from S3){}.",
                    if s3 { "S3, where ECR keeps image layers" } else { "the ECR API" },
                    if t.awsvpc { "; in a public subnet the task needs assignPublicIp ENABLED" } else { "" }
                ),
                "Give the service's subnets a path to ECR: assignPublicIp ENABLED in a public subnet, or a NAT gateway route, or the ecr.api + ecr.dkr interface endpoints plus the S3 gateway endpoint (security groups must allow 443 to the interface endpoints).".into(),
            )
        },
    ),
    (
        Kind::SecretsAccessDenied,
        |t| {
            has(t, "ResourceInitializationError")
                && has_any(t, &["AccessDenied", "not authorized", "KMS"])
                && has_any(t, &["secret", "ssm", "parameter", "asm"])
        },
        |t| {
            (
                "The task cannot read its secrets: access denied".into(),
                format!("{} may not read a secret or parameter the task definition references (or decrypt it with its KMS key).{}", execution_role(t), task_role_confusion(t).unwrap_or_default()),
                "Allow the execution role secretsmanager:GetSecretValue / ssm:GetParameters on the referenced ARNs (and kms:Decrypt on a customer-managed key).".into(),
            )
        },
    ),
    (
        Kind::SecretsNetwork,
        |t| has(t, "ResourceInitializationError") && timeout(t) && has_any(t, &["secret", "ssm", "asm"]),
        |_| {
            (
                "The task cannot reach Secrets Manager or SSM (network timeout)".into(),
                "The task's subnets have no route to Secrets Manager / SSM Parameter Store, which ECS calls before starting containers.".into(),
                "Add a NAT gateway route or VPC interface endpoints for secretsmanager and ssm (security groups must allow 443), or run in a public subnet with assignPublicIp ENABLED.".into(),
            )
        },
    ),
    (
        Kind::EnvFileUnavailable,
        |t| has(t, "ResourceInitializationError") && has_any(t, &["env file", "envfile", "environmentFiles"]),
        |t| {
            (
                "The task cannot download its environment file from S3".into(),
                format!(
                    "{} cannot read the S3 object listed in environmentFiles{}.{}",
                    execution_role(t),
                    if timeout(t) { ", or the subnets have no route to S3 (the call timed out)" } else { "" },
                    task_role_confusion(t).unwrap_or_default()
                ),
                "Allow the execution role s3:GetObject (and s3:GetBucketLocation) on the file; give the subnets a path to S3 (S3 gateway endpoint or NAT).".into(),
            )
        },
    ),
    (
        Kind::OutOfMemory,
        |t| has(t, "OutOfMemory") || exit_code(t, 137),
        |_| {
            (
                "A container ran out of memory (OOM-killed, exit 137)".into(),
                "The container used more memory than its hard limit (container `memory`, or the task size), so the kernel killed it. Exit 137 without OutOfMemoryError can also mean it ignored SIGTERM and was killed after stopTimeout.".into(),
                "Raise the container's memory (and the task's), or find the leak: compare the MemoryUtilization metric with the limit before the kill.".into(),
            )
        },
    ),
    (
        Kind::Segfault,
        |t| exit_code(t, 139),
        |_| {
            (
                "A container crashed with a segmentation fault (exit 139)".into(),
                "The process accessed invalid memory: a native library bug, an image built for another CPU architecture or libc, or stack exhaustion.".into(),
                "Check the image's platform against the task's runtimePlatform (ARM64 vs X86_64) and the last log lines; reproduce with the same image locally.".into(),
            )
        },
    ),
    (
        Kind::ElbHealthCheck,
        |t| has(t, "ELB health checks"),
        |t| {
            (
                "Tasks fail the load balancer's health checks".into(),
                format!(
                    "The target group's health check never passes: wrong path or port, the app starting slower than the grace period, or a security group not allowing the ALB in{}.",
                    if t.awsvpc { "; awsvpc tasks need a target group of target type `ip`" } else { "" }
                ),
                "Check the target group's health-check path/port/matcher against the app, set the service's healthCheckGracePeriodSeconds above the startup time, and allow the ALB's security group to the container port.".into(),
            )
        },
    ),
    (
        Kind::ContainerHealthCheck,
        |t| has(t, "failed container health checks"),
        |_| {
            (
                "Tasks fail their container health check".into(),
                "The task definition's healthCheck command fails (or takes longer than its timeout) until ECS replaces the task.".into(),
                "Run the health-check command in the image by hand; raise startPeriod for slow starts; make sure the tool it calls (curl, wget) exists in the image.".into(),
            )
        },
    ),
    (
        Kind::CrashOnStart,
        |t| {
            t.stop_code == "EssentialContainerExited"
                && t.containers.iter().any(|(_, c, _)| matches!(c, Some(c) if *c != 0))
                && t.ran_seconds.is_some_and(|s| s < 120)
        },
        |t| {
            let codes: Vec<String> =
                t.containers.iter().filter_map(|(n, c, _)| c.filter(|c| *c != 0).map(|c| format!("{n} exited {c}"))).collect();
            (
                format!("The application crashes right after starting ({})", codes.join(", ")),
                "The essential container exits with an error within two minutes of starting: usually missing configuration (environment variables, secrets), a dependency it cannot reach, or a bad release.".into(),
                "Read the last log lines below; roll back to the previous image if this started with a release.".into(),
            )
        },
    ),
    (
        Kind::AppExited,
        |t| t.stop_code == "EssentialContainerExited" && t.containers.iter().any(|(_, c, _)| matches!(c, Some(c) if *c != 0)),
        |t| {
            let codes: Vec<String> =
                t.containers.iter().filter_map(|(n, c, _)| c.filter(|c| *c != 0).map(|c| format!("{n} exited {c}"))).collect();
            (
                format!("The essential container keeps exiting ({})", codes.join(", ")),
                "The application exits with an error after running for a while.".into(),
                "Read the container's logs around the exit; check memory and dependencies.".into(),
            )
        },
    ),
];

/// The first matching diagnosis, or a generic one naming what ECS said.
pub fn diagnose(task: &StoppedTask) -> Diagnosis {
    for (kind, matches, describe) in RULES {
        if matches(task) {
            let (title, likely_cause, fix) = describe(task);
            return Diagnosis { kind: *kind, title, likely_cause, fix };
        }
    }
    Diagnosis {
        kind: Kind::Unknown,
        title: "Tasks keep stopping".into(),
        likely_cause: format!("ECS stopped the tasks with: {}", task.stopped_reason),
        fix: "Look at the stopped tasks' details and logs in the console (links below).".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: &str = "arn:aws:iam::123456789012:role/web-execution";
    const TASK: &str = "arn:aws:iam::123456789012:role/web-task";

    fn stopped(reason: &str, code: &str) -> StoppedTask<'static> {
        StoppedTask {
            stopped_reason: Box::leak(reason.to_string().into_boxed_str()),
            stop_code: Box::leak(code.to_string().into_boxed_str()),
            containers: vec![],
            ran_seconds: None,
            execution_role_arn: Some(EXEC),
            task_role_arn: Some(TASK),
            awsvpc: true,
        }
    }

    /// Real stoppedReason strings (as ECS reports them), the classification each must get, and
    /// a phrase its advice must contain.
    #[test]
    fn catalogue_classifies_real_stopped_reasons() {
        let cases: &[(&str, &str, Kind, &str)] = &[
            (
                "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref 123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v9: failed to do request: Head \"https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/web/manifests/v9\": dial tcp 10.0.12.7:443: i/o timeout",
                "TaskFailedToStart",
                Kind::EcrNetwork,
                "ecr.dkr",
            ),
            (
                "CannotPullContainerError: ref pull has been retried 5 time(s): failed to copy: httpReadSeeker: failed open: failed to do request: Get \"https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/a1b2-123456789012-c3d4/sha256:0f6f\": dial tcp 52.216.40.16:443: i/o timeout",
                "TaskFailedToStart",
                Kind::EcrNetwork,
                "S3 gateway endpoint",
            ),
            (
                "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref 123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v9: 123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v9: not found",
                "TaskFailedToStart",
                Kind::ImageNotFound,
                "describe-images",
            ),
            (
                "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref 123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v9: pulling from host 123456789012.dkr.ecr.us-east-1.amazonaws.com failed with status code [manifests v9]: 403 Forbidden",
                "TaskFailedToStart",
                Kind::RegistryAccessDenied,
                "AmazonECSTaskExecutionRolePolicy",
            ),
            (
                "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 5 time(s): failed to fetch secret arn:aws:secretsmanager:us-east-1:123456789012:secret:web/db-AbCdEf from secrets manager: AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/web-task/1a2b3c is not authorized to perform: secretsmanager:GetSecretValue on resource: arn:aws:secretsmanager:us-east-1:123456789012:secret:web/db-AbCdEf",
                "TaskFailedToStart",
                Kind::SecretsAccessDenied,
                "made as the task role",
            ),
            (
                "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secrets from ssm: service call has been retried 5 time(s): RequestError: send request failed caused by: Post \"https://ssm.us-east-1.amazonaws.com/\": dial tcp 10.0.8.2:443: i/o timeout",
                "TaskFailedToStart",
                Kind::SecretsNetwork,
                "secretsmanager and ssm",
            ),
            (
                "ResourceInitializationError: failed to download env files: file download command: non empty error stream: service call has been retried 5 time(s): AccessDenied: Access Denied status code: 403",
                "TaskFailedToStart",
                Kind::EnvFileUnavailable,
                "s3:GetObject",
            ),
            ("OutOfMemoryError: Container killed due to memory usage", "EssentialContainerExited", Kind::OutOfMemory, "Raise the container's memory"),
            ("Task failed ELB health checks in (target-group arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/73e2d6bc24d8a067)", "ServiceSchedulerInitiated", Kind::ElbHealthCheck, "target type `ip`"),
            ("Task failed container health checks", "ServiceSchedulerInitiated", Kind::ContainerHealthCheck, "startPeriod"),
        ];
        for (reason, code, kind, advice) in cases {
            let d = diagnose(&stopped(reason, code));
            assert_eq!(d.kind, *kind, "{reason}");
            let text = format!("{} {} {}", d.title, d.likely_cause, d.fix);
            assert!(text.contains(advice), "{kind:?}: {text:?} lacks {advice:?}");
        }
    }

    #[test]
    fn exit_codes_tell_oom_segfault_and_crashes_apart() {
        let mut t = stopped("Essential container in task exited", "EssentialContainerExited");
        t.containers = vec![("app", Some(137), "")];
        assert_eq!(diagnose(&t).kind, Kind::OutOfMemory);
        t.containers = vec![("app", Some(139), "")];
        assert_eq!(diagnose(&t).kind, Kind::Segfault);
        t.containers = vec![("app", Some(1), "")];
        t.ran_seconds = Some(4);
        let d = diagnose(&t);
        assert_eq!(d.kind, Kind::CrashOnStart);
        assert!(d.title.contains("app exited 1"), "{}", d.title);
        t.ran_seconds = Some(3 * 3600);
        assert_eq!(diagnose(&t).kind, Kind::AppExited);
        // Container-level OOM reason with the task-level generic reason.
        t.containers = vec![("app", Some(137), "OutOfMemoryError: Container killed due to memory usage")];
        assert_eq!(diagnose(&t).kind, Kind::OutOfMemory);
    }

    #[test]
    fn access_denied_as_the_execution_role_does_not_blame_the_task_role() {
        let reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s): AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/web-execution/abc is not authorized to perform: ecr:BatchGetImage";
        let d = diagnose(&stopped(reason, "TaskFailedToStart"));
        assert_eq!(d.kind, Kind::RegistryAccessDenied);
        assert!(!d.likely_cause.contains("task role"), "{}", d.likely_cause);
        assert!(d.likely_cause.contains(EXEC));
        let mut no_exec = stopped(reason, "TaskFailedToStart");
        no_exec.execution_role_arn = None;
        assert!(diagnose(&no_exec).likely_cause.contains("none is set"));
    }

    #[test]
    fn unknown_reasons_still_say_what_ecs_said() {
        let d = diagnose(&stopped("Timeout waiting for network interface provisioning to complete.", "TaskFailedToStart"));
        assert_eq!(d.kind, Kind::Unknown);
        assert!(d.likely_cause.contains("network interface provisioning"));
    }
}
