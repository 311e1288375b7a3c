//! Restart-loop alerts, for every ECS service in the account (with or without a kanaria policy,
//! EXTERNAL or ECS controller; opt out with the service tag `kanaria:restart-alerts=off`).
//!
//! A service is in a restart loop when `failures` of its tasks stop for failure reasons within
//! `window` (policy `restartLoop`, else the account defaults), or when ECS says
//! SERVICE_TASK_START_IMPAIRED. Each failed stop is recorded once (keyed by task ARN, kept at the
//! highest `detail.version`); the first caller to open the episode for the service and
//! task-definition revision sends the one alert; a sweep sends one "recovered" message when the
//! service runs its desired count with no failed stop for `window`.

use serde_json::{json, Value};
use tracing::{info, warn};

use super::on_task_event::{self, FailedTask, Triage};
use super::HandlerError;
use crate::aws::notify::{self, Notice};
use crate::aws::policy_index::{Lookup, PolicyIndex, ServiceEntry};
use crate::aws::store::{Episode, StopRecord, Store};
use crate::aws::{ecs, now_unix, policies, AwsError, Context};
use crate::diagnosis::{diagnose, Kind, StoppedTask};
use crate::events::{unix_seconds, EcsServiceAction, EcsTaskStateChange, Envelope, TaskFailure};

/// The opt-out tag.
pub const OPT_OUT_TAG: &str = "kanaria:restart-alerts";

/// The opt-in tag for the crashed task's last log lines in an alert (`on`). Off by default: an
/// alert goes to an SNS topic and a Slack channel, and log lines can carry what a service's logs
/// keep to fewer people. Lines that are included are redacted ([`crate::redact`]).
pub const LOG_LINES_TAG: &str = "kanaria:restart-alerts-log-lines";

/// The longest `restartLoop.window` a policy may set (policy validation) and the fewest
/// failures: below that many recent stops no threshold can be reached, so no policy is read.
const MAX_WINDOW_SECONDS: u64 = 24 * 3600;
const MIN_FAILURES: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub failures: u32,
    pub window_seconds: u64,
}

/// Account defaults: `KANARIA_RESTART_FAILURES` (3) stops within `KANARIA_RESTART_WINDOW` (10m).
pub fn account_defaults() -> Thresholds {
    let failures = std::env::var("KANARIA_RESTART_FAILURES").ok().and_then(|v| v.parse().ok()).filter(|f| *f >= 2).unwrap_or(3);
    let window_seconds = std::env::var("KANARIA_RESTART_WINDOW")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .map(|d| d.as_secs())
        .filter(|s| *s >= 60)
        .unwrap_or(600);
    Thresholds { failures, window_seconds }
}

/// The service's `restartLoop` thresholds, else the account defaults: from the policy index (one
/// BatchGetItem, however many policies there are: no Parameter Store read in a flood of failed
/// tasks, which would compete with ECS's secret injection at task start). Until the index has
/// been built, from the service's own parameter (one GetParameters call).
async fn thresholds_for(ctx: &Context, service_key: &str, policy: Lookup<Option<ServiceEntry>>) -> Result<Thresholds, AwsError> {
    let custom = match policy {
        Lookup::Indexed(entry) => entry.filter(|e| e.valid).and_then(|e| e.restart_loop),
        Lookup::NotBuilt => {
            info!(service = %service_key, "the policy index has not been built yet: thresholds read from the service's policy parameter");
            let stored = policies::get_for_service(&ctx.clients.ssm, &ctx.settings.policy_prefix, service_key).await?;
            stored.and_then(|s| s.policy.ok()).and_then(|p| p.restart_loop).map(|r| (r.failures, r.window.secs()))
        }
    };
    Ok(custom.map(|(failures, window_seconds)| Thresholds { failures, window_seconds }).unwrap_or_else(account_defaults))
}

/// The `restart-loop` function: failed stops of any service's tasks, ECS Service Action
/// SERVICE_TASK_START_IMPAIRED, and the scheduled sweep that sends "recovered" messages. It has
/// its own concurrency, apart from the circuit breaker's `on-task-event`.
pub async fn handle(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    match event.get("detail-type").and_then(Value::as_str) {
        Some("ECS Service Action") => return service_action(ctx, event).await,
        Some("Scheduled Event") => return sweep(ctx).await,
        _ => {}
    }
    match on_task_event::triage(event)? {
        Triage::Ignored(why) => Ok(json!({ "ignored": why })),
        Triage::Failed(FailedTask { event, failure, service_key }) => {
            // One read: whether a rollout's new task set started the task, and the thresholds.
            let (lock, policy) = PolicyIndex::new(&ctx.clients.dynamodb, &ctx.settings.table).service_and_lock(&service_key).await?;
            if lock.is_some_and(|l| on_task_event::is_green_task(&l, &event.detail)) {
                return Ok(json!({ "ignored": "a task of a rollout's new task set: the circuit breaker's" }));
            }
            on_failed_stop(ctx, &event.region, &service_key, &event.detail, &failure, policy).await
        }
    }
}

async fn service_action(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    let resources: Vec<String> = event.get("resources").and_then(|r| serde_json::from_value(r.clone()).ok()).unwrap_or_default();
    let event = Envelope::<EcsServiceAction>::parse(event, "aws.ecs", "ECS Service Action")
        .map_err(|e| HandlerError::invalid_input("restart-loop", e))?;
    if event.detail.event_name != "SERVICE_TASK_START_IMPAIRED" {
        return Ok(json!({ "ignored": event.detail.event_name }));
    }
    let service_arn = resources
        .iter()
        .find(|r| r.contains(":service/"))
        .ok_or_else(|| HandlerError::invalid_input("ECS Service Action event", "no service ARN in resources"))?;
    let at = event.detail.created_at.as_deref().or(event.time.as_deref()).and_then(unix_seconds).unwrap_or_else(now_unix);
    on_start_impaired(ctx, service_arn, at).await
}

/// A task of `service_key` stopped for a failure (not a task of a rollout's new task set: those
/// are the circuit breaker's). `policy`: the service's policy index entry.
pub async fn on_failed_stop(
    ctx: &Context,
    region: &str,
    service_key: &str,
    task: &EcsTaskStateChange,
    failure: &TaskFailure,
    policy: Lookup<Option<ServiceEntry>>,
) -> Result<Value, HandlerError> {
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    // The same in every event of one stop (when the task stopped, not when its target finished
    // draining), so a later event of the stop does not move the time.
    let stopped_at = task.stop_time().unwrap_or_else(now_unix);
    let record = StopRecord {
        task_arn: failure.task_arn.clone(),
        task_definition_arn: task.task_definition_arn.clone(),
        version: failure.version,
        stopped_at,
    };
    // Kept for the longest window a policy may set, plus an hour.
    if !store.record_stop(service_key, &record, stopped_at + MAX_WINDOW_SECONDS + 3600).await? {
        info!(service = %service_key, task = %failure.task_arn, "failed stop recorded already; counted once");
    }
    // Every delivery goes on to the count: an alert that failed to go out after the stop was
    // recorded is sent by the next delivery (opening the episode is what happens once).
    let recent = store.recent_stops(service_key, stopped_at.saturating_sub(MAX_WINDOW_SECONDS)).await?;
    if (recent.len() as u32) < MIN_FAILURES {
        return Ok(json!({ "restartLoop": "counted", "stops": recent.len() }));
    }
    let thresholds = thresholds_for(ctx, service_key, policy).await?;
    let stops: Vec<&StopRecord> = recent.iter().filter(|s| s.stopped_at >= stopped_at.saturating_sub(thresholds.window_seconds)).collect();
    let in_window = stops.iter().filter(|s| s.stopped_at <= stopped_at + thresholds.window_seconds).count() as u32;
    if in_window < thresholds.failures {
        return Ok(json!({ "restartLoop": "counted", "stops": in_window, "threshold": thresholds.failures }));
    }
    let (cluster, service) = service_key.split_once('/').unwrap_or(("", service_key));
    let tags = alert_tags(ctx, cluster, service).await?;
    if tags.opted_out {
        info!(service = %service_key, "restart loop, but the service opted out of alerts");
        return Ok(json!({ "restartLoop": "opted out" }));
    }
    let alert = build_alert(ctx, region, service_key, task, failure, in_window, thresholds, tags.log_lines).await?;
    let episode = Episode {
        service: service_key.to_string(),
        task_definition_arn: task.task_definition_arn.clone(),
        opened_at: stopped_at,
        window_seconds: thresholds.window_seconds,
        summary: alert.subject.clone(),
    };
    if !store.open_episode(&episode).await? {
        return Ok(json!({ "restartLoop": "episode already alerted" }));
    }
    ctx.metrics.emit(&crate::metrics::Event::RestartLoopEpisode { service: &episode.service });
    let sent = notify::send(ctx, &alert).await;
    warn!(service = %service_key, subject = %alert.subject, sent, "restart loop alert");
    Ok(json!({ "restartLoop": "alerted", "stops": in_window, "sent": sent }))
}

/// ECS says the service cannot consistently start tasks.
pub async fn on_start_impaired(ctx: &Context, service_arn: &str, at: u64) -> Result<Value, HandlerError> {
    let parts: Vec<&str> = service_arn.rsplit('/').take(2).collect();
    let [service, cluster] = parts[..] else {
        return Err(HandlerError::invalid_input("ECS Service Action event", format!("resource {service_arn:?} is not a service ARN")));
    };
    let service_key = format!("{cluster}/{service}");
    if alert_tags(ctx, cluster, service).await?.opted_out {
        return Ok(json!({ "restartLoop": "opted out" }));
    }
    let policy = PolicyIndex::new(&ctx.clients.dynamodb, &ctx.settings.table).service(&service_key).await?;
    let thresholds = thresholds_for(ctx, &service_key, policy).await?;
    let task_definition = current_task_definition(ctx, cluster, service).await?.unwrap_or_else(|| "unknown".into());
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let recent = store.recent_stops(&service_key, at.saturating_sub(thresholds.window_seconds)).await?.len();
    let notice = Notice {
        subject: format!("kanaria: {service_key} cannot start its tasks (SERVICE_TASK_START_IMPAIRED)"),
        body: format!(
            "ECS reports that {service_key} cannot consistently start tasks (SERVICE_TASK_START_IMPAIRED) and has started throttling its attempts.\nTask definition: {task_definition}\nFailed stops recorded in the last {}: {recent}\nLook at the service's events and stopped tasks: {}",
            humantime::format_duration(std::time::Duration::from_secs(thresholds.window_seconds)),
            service_console_link(&ctx_region(service_arn), cluster, service)
        ),
        attributes: vec![("kind".into(), "restart-loop".into()), ("service".into(), service_key.clone())],
    };
    let episode = Episode {
        service: service_key.clone(),
        task_definition_arn: task_definition,
        opened_at: at,
        window_seconds: thresholds.window_seconds,
        summary: notice.subject.clone(),
    };
    if !store.open_episode(&episode).await? {
        return Ok(json!({ "restartLoop": "episode already alerted" }));
    }
    ctx.metrics.emit(&crate::metrics::Event::RestartLoopEpisode { service: &episode.service });
    let sent = notify::send(ctx, &notice).await;
    Ok(json!({ "restartLoop": "alerted", "sent": sent }))
}

/// Close every open episode whose service has run its desired count with no failed stop for
/// the episode's window, with one "recovered" message each.
pub async fn sweep(ctx: &Context) -> Result<Value, HandlerError> {
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let now = now_unix();
    let mut recovered = Vec::new();
    for episode in store.open_episodes().await? {
        if now < episode.opened_at + episode.window_seconds {
            continue;
        }
        if !store.recent_stops(&episode.service, now.saturating_sub(episode.window_seconds)).await?.is_empty() {
            continue;
        }
        let (cluster, service) = episode.service.split_once('/').unwrap_or(("", &episode.service));
        let Some((running, desired)) = running_and_desired(ctx, cluster, service).await? else { continue };
        if desired == 0 || running < desired {
            continue;
        }
        if store.close_episode(&episode, now).await? {
            let notice = Notice {
                subject: format!("kanaria: {} recovered", episode.service),
                body: format!(
                    "{} has recovered: {running} of {desired} tasks running and no task failed in the last {}.\nIt had been in a restart loop since {} ({}).",
                    episode.service,
                    humantime::format_duration(std::time::Duration::from_secs(episode.window_seconds)),
                    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(episode.opened_at)),
                    episode.summary
                ),
                attributes: vec![("kind".into(), "recovered".into()), ("service".into(), episode.service.clone())],
            };
            notify::send(ctx, &notice).await;
            recovered.push(episode.service.clone());
        }
    }
    Ok(json!({ "recovered": recovered }))
}

fn ctx_region(arn: &str) -> String {
    arn.split(':').nth(3).unwrap_or("us-east-1").to_string()
}

/// The service as ECS describes it (with its tags), if it exists.
async fn describe(ctx: &Context, cluster: &str, service: &str) -> Result<Option<aws_sdk_ecs::types::Service>, AwsError> {
    let out = ctx
        .clients
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .include(aws_sdk_ecs::types::ServiceField::Tags)
        .send()
        .await
        .map_err(|e| AwsError::new("ECS", "DescribeServices", format!("{cluster}/{service}"), e))?;
    Ok(out.services().first().cloned())
}

/// What the service's tags say about its alerts.
#[derive(Debug, Clone, Copy, Default)]
struct AlertTags {
    opted_out: bool,
    log_lines: bool,
}

async fn alert_tags(ctx: &Context, cluster: &str, service: &str) -> Result<AlertTags, AwsError> {
    let Some(svc) = describe(ctx, cluster, service).await? else { return Ok(AlertTags::default()) };
    let tag_is = |key: &str, value: &str| {
        svc.tags().iter().any(|t| t.key() == Some(key) && t.value().is_some_and(|v| v.eq_ignore_ascii_case(value)))
    };
    Ok(AlertTags { opted_out: tag_is(OPT_OUT_TAG, "off"), log_lines: tag_is(LOG_LINES_TAG, "on") })
}

async fn current_task_definition(ctx: &Context, cluster: &str, service: &str) -> Result<Option<String>, AwsError> {
    let Some(svc) = describe(ctx, cluster, service).await? else { return Ok(None) };
    Ok(svc
        .task_definition()
        .map(str::to_string)
        .or_else(|| svc.task_sets().iter().find(|t| t.status() == Some("PRIMARY")).and_then(|t| t.task_definition()).map(str::to_string)))
}

/// Running and desired task counts. ECS reports the service's running count; for EXTERNAL
/// services whose count is not reported, count the task sets' running tasks.
async fn running_and_desired(ctx: &Context, cluster: &str, service: &str) -> Result<Option<(u32, u32)>, AwsError> {
    let Some(svc) = describe(ctx, cluster, service).await? else { return Ok(None) };
    let desired = svc.desired_count().max(0) as u32;
    let mut running = svc.running_count().max(0) as u32;
    if running < desired {
        let sets = ecs::describe_service(&ctx.clients.ecs, &crate::policy::ServiceRef { cluster: cluster.into(), name: service.into() })
            .await?
            .task_sets;
        let mut counted = 0;
        for ts in sets.iter().filter(|t| t.status != "DRAINING") {
            counted += ecs::running_tasks_of(&ctx.clients.ecs, cluster, &ts.id).await?;
        }
        running = running.max(counted);
    }
    Ok(Some((running, desired)))
}

fn task_console_link(region: &str, cluster: &str, task_id: &str) -> String {
    format!("https://{region}.console.aws.amazon.com/ecs/v2/clusters/{cluster}/tasks/{task_id}/configuration?region={region}")
}

fn service_console_link(region: &str, cluster: &str, service: &str) -> String {
    format!("https://{region}.console.aws.amazon.com/ecs/v2/clusters/{cluster}/services/{service}/events?region={region}")
}

/// The console's URL encoding for log group and stream names inside its fragment.
fn console_escape(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c.to_string() } else { format!("$25{:02X}", c as u32) })
        .collect()
}

async fn build_alert(
    ctx: &Context,
    region: &str,
    service_key: &str,
    task: &EcsTaskStateChange,
    failure: &TaskFailure,
    stops: u32,
    thresholds: Thresholds,
    log_lines_opted_in: bool,
) -> Result<Notice, AwsError> {
    let td = ctx
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(&task.task_definition_arn)
        .send()
        .await
        .ok()
        .and_then(|o| o.task_definition().cloned());
    let containers: Vec<(&str, Option<i64>, &str)> =
        task.containers.iter().map(|c| (c.name.as_str(), c.exit_code, c.reason.as_deref().unwrap_or(""))).collect();
    let stopped = StoppedTask {
        stopped_reason: &failure.stopped_reason,
        stop_code: task.stop_code.as_deref().unwrap_or(""),
        containers,
        ran_seconds: task.ran_seconds(),
        execution_role_arn: td.as_ref().and_then(|t| t.execution_role_arn()),
        task_role_arn: td.as_ref().and_then(|t| t.task_role_arn()),
        awsvpc: td.as_ref().map(|t| t.network_mode() == Some(&aws_sdk_ecs::types::NetworkMode::Awsvpc)).unwrap_or(true),
    };
    let diagnosis = diagnose(&stopped);
    let cluster = task.cluster_name();
    let task_id = failure.task_arn.rsplit('/').next().unwrap_or(&failure.task_arn);
    let images: Vec<String> = td
        .as_ref()
        .map(|t| t.container_definitions().iter().map(|c| format!("{} = {}", c.name().unwrap_or("?"), c.image().unwrap_or("?"))).collect())
        .unwrap_or_else(|| task.containers.iter().filter_map(|c| c.image.clone().map(|i| format!("{} = {i}", c.name))).collect());
    let codes: Vec<String> = failure.exit_codes.iter().map(|(n, c)| format!("{n} exited {c}")).collect();

    // The failing container's awslogs stream: link always; its last lines, redacted, for
    // application crashes of a service that opted in.
    let mut log_lines = Vec::new();
    let mut log_link = None;
    let failing = failure.exit_codes.first().map(|(n, _)| n.as_str()).or_else(|| task.containers.first().map(|c| c.name.as_str()));
    if let Some(container) = td.as_ref().and_then(|t| t.container_definitions().iter().find(|c| c.name() == failing).cloned()) {
        if let Some(opts) = container.log_configuration().filter(|l| l.log_driver().as_str() == "awslogs").and_then(|l| l.options()) {
            if let (Some(group), Some(prefix)) = (opts.get("awslogs-group"), opts.get("awslogs-stream-prefix")) {
                let stream = format!("{prefix}/{}/{task_id}", container.name().unwrap_or_default());
                log_link = Some(format!(
                    "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{}/log-events/{}",
                    console_escape(group),
                    console_escape(&stream)
                ));
                let crashed = matches!(diagnosis.kind, Kind::CrashOnStart | Kind::AppExited | Kind::Segfault | Kind::Unknown);
                if crashed && log_lines_opted_in {
                    if let Ok(out) = ctx
                        .clients
                        .logs
                        .get_log_events()
                        .log_group_name(group)
                        .log_stream_name(&stream)
                        .limit(20)
                        .start_from_head(false)
                        .send()
                        .await
                    {
                        log_lines = out.events().iter().filter_map(|e| e.message().map(|m| crate::redact::redact(m.trim_end()))).collect();
                    }
                }
            }
        }
    }
    let window = humantime::format_duration(std::time::Duration::from_secs(thresholds.window_seconds));
    let mut body = format!(
        "{service_key} is in a restart loop: {stops} tasks stopped for failures within {window}.\n\
         Task definition: {}\nImage: {}\n\
         Last stop: task {task_id}: {}{}\n\n\
         Diagnosis ({}): {}\nLikely cause: {}\nFix: {}\n\n\
         Stopped task: {}\n",
        task.task_definition_arn.rsplit('/').next().unwrap_or(&task.task_definition_arn),
        images.join(", "),
        failure.stopped_reason,
        if codes.is_empty() { String::new() } else { format!(" ({})", codes.join(", ")) },
        serde_json::to_value(diagnosis.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        diagnosis.title,
        diagnosis.likely_cause,
        diagnosis.fix,
        task_console_link(region, cluster, task_id),
    );
    if let Some(link) = &log_link {
        body.push_str(&format!("Logs: {link}\n"));
    }
    if !log_lines.is_empty() {
        body.push_str("Last log lines (likely secrets redacted):\n");
        for line in &log_lines {
            body.push_str(&format!("  {line}\n"));
        }
    } else if log_link.is_some() && !log_lines_opted_in {
        body.push_str(&format!("(Tag the service {LOG_LINES_TAG}=on to include the crash's last log lines here, redacted.)\n"));
    }
    body.push_str(&format!("(Silence these alerts for the service with the tag {OPT_OUT_TAG}=off.)"));
    Ok(Notice {
        subject: format!("kanaria: {service_key} is in a restart loop: {}", diagnosis.title),
        body,
        attributes: vec![("kind".into(), "restart-loop".into()), ("service".into(), service_key.to_string())],
    })
}
