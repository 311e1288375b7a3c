//! `scheduled-scale`: an EventBridge Scheduler schedule of a policy fired; its input is a
//! [`ScaleAction`]. The service's capacity changes, a one-line notice goes out, and the run is
//! recorded (`kanaria schedules` shows it).
//!
//! - With an Application Auto Scaling scalable target, the target's `MinCapacity`/`MaxCapacity`
//!   change (so target tracking does not undo the change; Application Auto Scaling moves the
//!   desired count inside the new bounds). A `desiredCount` in the schedule is then not applied.
//! - Without one, the service's desired count is set to the schedule's `desiredCount`.
//!
//! Either way only the service (or its scalable target) changes: never task sets or listener
//! weights. During a rollout the task sets keep their scale percentages and so follow the new
//! desired count, and the rollout's traffic split is untouched.
//!
//! Scheduler invokes the function asynchronously. A failure that retrying cannot fix (a missing
//! service, a missing permission, an invalid input) is reported in a notice and returned as an
//! error (`Kanaria.ScheduledScaleFailed`, `Kanaria.InvalidInput`); the function's asynchronous
//! invocation config allows no retries and sends the failed event to the dead-letter queue, so
//! one bad schedule is one notice, not a retry storm.

use serde_json::{json, Value};
use tracing::{info, warn};

use super::HandlerError;
use crate::aws::notify::{self, Notice};
use crate::aws::scale_log::{self, ScaleRecord};
use crate::aws::scaling::{self, Bounds};
use crate::aws::{now_unix, AwsError, Context};
use crate::policy::ServiceRef;
use crate::schedule::ScaleAction;

pub const FAILED: &str = "Kanaria.ScheduledScaleFailed";

/// What a run changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Bounds { before: Bounds, after: Bounds, desired_count_ignored: Option<u32> },
    DesiredCount { before: u32, after: u32 },
}

pub async fn handle(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    let action: ScaleAction = match serde_json::from_value(event.clone()) {
        Ok(a) => a,
        Err(e) => {
            let service = event.get("service").and_then(Value::as_str).unwrap_or("(unknown service)").to_string();
            let schedule = event.get("schedule").and_then(Value::as_str).unwrap_or("(unknown schedule)").to_string();
            let message = format!("the schedule's input is not a scaling action: {e}");
            return Err(fail(
                ctx,
                &service,
                &schedule,
                "Kanaria.InvalidInput",
                &message,
                "run `kanaria policy apply` for the service: it rewrites its schedules",
            )
            .await);
        }
    };
    let problems = action.problems();
    let Some(service) = action.service_ref().filter(|_| problems.is_empty()) else {
        let message = format!("the schedule's input is invalid: {}", problems.join("; "));
        return Err(fail(
            ctx,
            &action.service,
            &action.schedule,
            "Kanaria.InvalidInput",
            &message,
            "fix the schedule in the policy and apply it again",
        )
        .await);
    };
    match apply(ctx, &service, &action).await {
        Ok((applied, desired)) => {
            let rollout = desired.task_sets > 1;
            let line = describe(&action, &applied, rollout);
            info!(service = %action.service, schedule = %action.schedule, %line, "scheduled scaling applied");
            let record = ScaleRecord {
                service: action.service.clone(),
                schedule: action.schedule.clone(),
                at: now_unix(),
                outcome: scale_log::APPLIED.into(),
                summary: line.clone(),
            };
            let recorded = record_run(ctx, &record).await;
            let notice = Notice {
                subject: format!("kanaria: {} scaled by schedule {}", action.service, action.schedule),
                body: line.clone(),
                attributes: vec![("kind".into(), "scheduled-scale".into()), ("service".into(), action.service.clone())],
            };
            let notified = notify::send(ctx, &notice).await;
            let mut out = json!({
                "service": action.service,
                "schedule": action.schedule,
                "summary": line,
                "desiredCount": desired.desired,
                "rolloutInFlight": rollout,
                "recorded": recorded,
                "notified": notified,
            });
            match applied {
                Applied::Bounds { before, after, desired_count_ignored } => {
                    out["applied"] = json!("scalableTarget");
                    out["before"] = json!(before);
                    out["after"] = json!(after);
                    if let Some(d) = desired_count_ignored {
                        out["desiredCountIgnored"] = json!(d);
                    }
                }
                Applied::DesiredCount { before, after } => {
                    out["applied"] = json!("desiredCount");
                    out["before"] = json!({ "desiredCount": before });
                    out["after"] = json!({ "desiredCount": after });
                }
            }
            Ok(out)
        }
        Err(Failure { error_type, message, fix }) => Err(fail(ctx, &action.service, &action.schedule, error_type, &message, &fix).await),
    }
}

struct Failure {
    error_type: &'static str,
    message: String,
    fix: String,
}

impl From<AwsError> for Failure {
    fn from(e: AwsError) -> Self {
        let fix = if e.is_code("AccessDeniedException") || e.is_code("AccessDenied") || e.is_code("UnauthorizedOperation") {
            format!(
                "allow kanaria's scheduled-scale function {} {} (template.yaml grants it for the services of this account)",
                e.service, e.operation
            )
        } else if e.message.contains("does not exist") || e.is_code("ServiceNotFoundException") || e.is_code("ClusterNotFoundException") {
            "check the policy's service.cluster and service.name, or remove the schedule from the policy".into()
        } else if e.transient {
            "nothing to change: AWS was briefly unavailable; the failed event is in kanaria's Scheduler dead-letter queue to replay".into()
        } else {
            "fix the cause above; the failed event is in kanaria's Scheduler dead-letter queue to replay".into()
        };
        Failure { error_type: if e.transient { "Kanaria.Transient" } else { FAILED }, message: e.to_string(), fix }
    }
}

fn refused(message: String, fix: &str) -> Failure {
    Failure { error_type: FAILED, message, fix: fix.into() }
}

/// Change the capacity and read it back. Returns what changed and the service afterwards.
async fn apply(ctx: &Context, service: &ServiceRef, action: &ScaleAction) -> Result<(Applied, scaling::Capacity), Failure> {
    let ecs = &ctx.clients.ecs;
    let aas = &ctx.clients.autoscaling;
    let before = scaling::capacity(ecs, service).await?;
    match scaling::scalable_target(aas, service).await? {
        Some(current) => {
            if action.min_capacity.is_none() && action.max_capacity.is_none() {
                return Err(refused(
                    format!(
                        "{service} has an Application Auto Scaling scalable target (min {}, max {}): a desiredCount alone would be \
                         undone by its scaling policies",
                        current.min, current.max
                    ),
                    "give the schedule minCapacity/maxCapacity instead of desiredCount",
                ));
            }
            let wanted = Bounds { min: action.min_capacity.unwrap_or(current.min), max: action.max_capacity.unwrap_or(current.max) };
            if wanted.min > wanted.max {
                return Err(refused(
                    format!(
                        "{service}: the new bounds would be min {} > max {} (the scalable target's other bound is kept)",
                        wanted.min, wanted.max
                    ),
                    "give the schedule both minCapacity and maxCapacity",
                ));
            }
            if wanted != current {
                scaling::set_bounds(aas, service, wanted).await?;
            }
            let read = scaling::scalable_target(aas, service).await?;
            if read != Some(wanted) {
                return Err(Failure {
                    error_type: "Kanaria.Transient",
                    message: format!("{service}: the scalable target reads back as {read:?} after setting {wanted:?}"),
                    fix: "check `aws application-autoscaling describe-scalable-targets --service-namespace ecs`".into(),
                });
            }
            let after = scaling::capacity(ecs, service).await?;
            Ok((Applied::Bounds { before: current, after: wanted, desired_count_ignored: action.desired_count }, after))
        }
        None => {
            let Some(count) = action.desired_count else {
                return Err(refused(
                    format!("{service} has no Application Auto Scaling scalable target, so minCapacity/maxCapacity cannot be applied"),
                    "register a scalable target for the service, or give the schedule desiredCount",
                ));
            };
            if before.desired != count {
                scaling::set_desired_count(ecs, service, count).await?;
            }
            let after = scaling::capacity(ecs, service).await?;
            if after.desired != count {
                return Err(Failure {
                    error_type: "Kanaria.Transient",
                    message: format!("{service}: the desired count reads back as {} after setting {count}", after.desired),
                    fix: "check the service with `aws ecs describe-services`".into(),
                });
            }
            Ok((Applied::DesiredCount { before: before.desired, after: count }, after))
        }
    }
}

/// The one line the notice and the record carry.
pub fn describe(action: &ScaleAction, applied: &Applied, rollout_in_flight: bool) -> String {
    let mut line = match applied {
        Applied::Bounds { before, after, desired_count_ignored } => {
            let mut l = if before == after {
                format!(
                    "{}: schedule {} found the scalable target at min {}, max {} already",
                    action.service, action.schedule, after.min, after.max
                )
            } else {
                format!(
                    "{}: schedule {} set the scalable target to min {}, max {} (was min {}, max {})",
                    action.service, action.schedule, after.min, after.max, before.min, before.max
                )
            };
            if let Some(d) = desired_count_ignored {
                l.push_str(&format!("; desiredCount {d} not applied: the scalable target manages the desired count"));
            }
            l
        }
        Applied::DesiredCount { before, after } if before == after => {
            format!("{}: schedule {} found the desired count at {after} already", action.service, action.schedule)
        }
        Applied::DesiredCount { before, after } => {
            format!("{}: schedule {} set the desired count to {after} (was {before})", action.service, action.schedule)
        }
    };
    if rollout_in_flight {
        line.push_str("; a rollout is in flight: its task sets scale by percent, traffic weights unchanged");
    }
    line
}

async fn record_run(ctx: &Context, record: &ScaleRecord) -> bool {
    match scale_log::record(&ctx.clients.dynamodb, &ctx.settings.table, record).await {
        Ok(()) => true,
        Err(e) => {
            // The capacity change stands; a missing record only leaves `kanaria schedules` without it.
            warn!(error = %e, service = %record.service, schedule = %record.schedule, "scheduled scaling not recorded");
            false
        }
    }
}

/// Report a failure (notice, record) and build the error the function returns.
async fn fail(ctx: &Context, service: &str, schedule: &str, error_type: &str, message: &str, fix: &str) -> HandlerError {
    let line = format!("{service}: schedule {schedule} did not scale the service: {message} (fix: {fix})");
    warn!(%service, %schedule, error_type, %message, "scheduled scaling failed");
    if service.contains('/') {
        let record = ScaleRecord {
            service: service.to_string(),
            schedule: schedule.to_string(),
            at: now_unix(),
            outcome: scale_log::FAILED.into(),
            summary: line.clone(),
        };
        record_run(ctx, &record).await;
    }
    let notice = Notice {
        subject: format!("kanaria: scheduled scaling of {service} failed ({schedule})"),
        body: line.clone(),
        attributes: vec![("kind".into(), "scheduled-scale-failed".into()), ("service".into(), service.to_string())],
    };
    notify::send(ctx, &notice).await;
    HandlerError::new(error_type, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(min: Option<u32>, max: Option<u32>, desired: Option<u32>) -> ScaleAction {
        ScaleAction { service: "prod/web".into(), schedule: "peak".into(), min_capacity: min, max_capacity: max, desired_count: desired }
    }

    #[test]
    fn one_line_says_what_changed() {
        let a = action(Some(4), Some(10), None);
        let applied = Applied::Bounds { before: Bounds { min: 1, max: 4 }, after: Bounds { min: 4, max: 10 }, desired_count_ignored: None };
        assert_eq!(describe(&a, &applied, false), "prod/web: schedule peak set the scalable target to min 4, max 10 (was min 1, max 4)");
        let applied = Applied::DesiredCount { before: 2, after: 6 };
        let line = describe(&action(None, None, Some(6)), &applied, true);
        assert_eq!(
            line,
            "prod/web: schedule peak set the desired count to 6 (was 2); a rollout is in flight: its task sets scale by percent, \
             traffic weights unchanged"
        );
        assert!(!line.contains('\n'));
        let same = Applied::Bounds { before: Bounds { min: 4, max: 10 }, after: Bounds { min: 4, max: 10 }, desired_count_ignored: None };
        assert_eq!(describe(&a, &same, false), "prod/web: schedule peak found the scalable target at min 4, max 10 already");
        let same = Applied::DesiredCount { before: 6, after: 6 };
        assert_eq!(describe(&action(None, None, Some(6)), &same, false), "prod/web: schedule peak found the desired count at 6 already");
        let applied =
            Applied::Bounds { before: Bounds { min: 1, max: 4 }, after: Bounds { min: 2, max: 4 }, desired_count_ignored: Some(3) };
        assert!(describe(&action(Some(2), None, Some(3)), &applied, false)
            .ends_with("desiredCount 3 not applied: the scalable target manages the desired count"));
    }

    #[test]
    fn aws_failures_say_what_to_fix_and_whether_to_retry() {
        let denied = AwsError {
            service: "ECS",
            operation: "UpdateService",
            resource: "prod/web".into(),
            message: "AccessDeniedException: User is not authorized".into(),
            transient: false,
        };
        let f = Failure::from(denied);
        assert_eq!(f.error_type, FAILED);
        assert!(f.fix.contains("allow kanaria's scheduled-scale function ECS UpdateService"), "{}", f.fix);
        let missing = AwsError {
            service: "ECS",
            operation: "DescribeServices",
            resource: "prod/web".into(),
            message: "the service does not exist or is not ACTIVE".into(),
            transient: false,
        };
        assert!(Failure::from(missing).fix.contains("service.cluster and service.name"));
        let throttled = AwsError {
            service: "ApplicationAutoScaling",
            operation: "RegisterScalableTarget",
            resource: "service/prod/web".into(),
            message: "ThrottlingException: slow down".into(),
            transient: true,
        };
        assert_eq!(Failure::from(throttled).error_type, "Kanaria.Transient");
    }
}
