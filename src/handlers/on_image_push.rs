//! `on-image-push`: an ECR push (EventBridge `ECR Image Action`) starts a rollout for every
//! service whose policy names that repository and a matching tag. CloudTrail's record of the
//! same push (`AWS API Call via CloudTrail`, `PutImage`) records who pushed it.
//!
//! Duplicate deliveries start exactly one rollout: the rollout id and execution name derive from
//! service and digest, the service lock is one conditional write, and StartExecution with an
//! existing name is recognised as the duplicate it is.
//!
//! While a rollout is in flight for a service, a push of a **newer** image (by the ECR event's
//! time; a late delivery of an older push is refused) either supersedes it — the circuit breaker
//! rolls the old one back, then the new one takes the lock and starts — or, with
//! `onNewerPush: queue`, waits for it to end (the newest queued push wins).

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use super::{circuit_breaker, lease, HandlerError};
use crate::aws::approvals::Approvals;
use crate::aws::policy_index::{Lookup, PolicyIndex};
use crate::aws::store::{Acquire, DigestAttempt, LastRollout, LockRecord, Store};
use crate::aws::{ecs, now_unix, policies, sfn, Context};
use crate::events::{CloudTrailPutImage, EcrImageAction, Envelope};
use crate::policy::{NewerPush, Policy};
use crate::rollout::{Image, Rollout};

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Outcome {
    Started {
        service: String,
        execution: String,
    },
    Duplicate {
        service: String,
        execution: String,
    },
    AlreadyRunning {
        service: String,
    },
    Refused {
        service: String,
        held_by: String,
    },
    AlreadyRolledOut {
        service: String,
        execution: String,
        status: String,
    },
    Superseded {
        service: String,
        execution: String,
        superseded: String,
    },
    Queued {
        service: String,
        behind: String,
    },
    /// Nothing to roll out to (the service runs no task).
    NotRunning {
        service: String,
        reason: String,
    },
}

const CLOUDTRAIL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// CloudTrail's record of ECR `PutImage`: remember who pushed the image, for approval steps with
/// `forbidSelfApproval` (the `ECR Image Action` event does not say who pushed). It may arrive
/// before or after the push's own event; a duplicate delivery keeps the first record.
async fn record_pusher(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    let event = Envelope::<CloudTrailPutImage>::parse(event, "aws.ecr", CLOUDTRAIL_DETAIL_TYPE)
        .map_err(|e| HandlerError::invalid_input("on-image-push", e))?;
    let (repository, digest, arn) = match event.detail.push() {
        Ok(push) => push,
        Err(why) => {
            info!(reason = %why, "ignored: not a successful ECR PutImage");
            return Ok(json!({ "ignored": why }));
        }
    };
    let approvals = Approvals::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let recorded = approvals.record_pusher(repository, digest, arn, now_unix()).await?;
    info!(repository, digest, pusher = %arn, recorded, "who pushed recorded");
    Ok(json!({ "pusher": arn, "repository": repository, "digest": digest, "recorded": recorded }))
}

/// A push waiting for the in-flight rollout of its service to end.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedPush {
    pub image: Image,
    pub pushed_at: u64,
    /// The push event's id (a redelivery of it must not start the digest again).
    #[serde(default)]
    pub push_id: String,
}

/// One push of an image to roll out: what, when, and which event (or `kanaria deploy`) asked.
#[derive(Debug, Clone)]
pub struct Push {
    pub image: Image,
    pub pushed_at: u64,
    pub push_id: String,
}

pub async fn handle(ctx: &Context, event: Value) -> Result<Value, HandlerError> {
    if event.get("detail-type").and_then(Value::as_str) == Some(CLOUDTRAIL_DETAIL_TYPE) {
        return record_pusher(ctx, event).await;
    }
    let event = Envelope::<EcrImageAction>::parse(event, "aws.ecr", "ECR Image Action")
        .map_err(|e| HandlerError::invalid_input("on-image-push", e))?;
    let push = &event.detail;
    if event.account.len() != 12 || !event.account.chars().all(|c| c.is_ascii_digit()) || event.region.is_empty() {
        return Err(HandlerError::invalid_input(
            "ECR event",
            format!("account {:?} / region {:?} do not name the registry the image is in", event.account, event.region),
        ));
    }
    if !push.is_successful_push() {
        info!(action = %push.action_type, result = %push.result, repository = %push.repository_name, "ignored: not a successful push");
        return Ok(json!({ "ignored": "not a successful push" }));
    }
    if !push.digest_is_valid() {
        return Err(HandlerError::invalid_input("ECR event", format!("image-digest {:?} is not a sha256 digest", push.image_digest)));
    }
    let Some(tag) = push.image_tag.as_deref().filter(|t| !t.is_empty()) else {
        info!(repository = %push.repository_name, digest = %push.image_digest, "ignored: push without a tag matches no policy");
        return Ok(json!({ "ignored": "push without a tag" }));
    };

    let matching = matching_policies(ctx, &push.repository_name, tag).await?;
    if matching.is_empty() {
        info!(repository = %push.repository_name, tag, "ignored: no policy matches this repository and tag");
        return Ok(json!({ "ignored": "no policy matches", "repository": push.repository_name, "tag": tag }));
    }

    let image = Image {
        repository: push.repository_name.clone(),
        tag: Some(tag.to_string()),
        digest: push.image_digest.clone(),
        uri: format!("{}.dkr.ecr.{}.amazonaws.com/{}@{}", event.account, event.region, push.repository_name, push.image_digest),
    };
    let pushed_at = event.time.as_deref().and_then(|t| humantime::parse_rfc3339_weak(t).ok()).map(unix_secs).unwrap_or_else(now_unix);
    // A redelivered event keeps its id; without one (never from EventBridge), the time stands in.
    let push_id = if event.id.is_empty() { format!("{}@{pushed_at}", image.digest) } else { event.id.clone() };
    let push = Push { image, pushed_at, push_id };
    report(start_each(ctx, matching, &push).await)
}

/// The valid policies a push of `repository:tag` starts, as their parameters are now. The policy
/// index says which parameters name the repository (one DynamoDB read), GetParameters reads those
/// (one SSM call per ten services matched): the cost does not grow with the number of policies.
/// Until the index has been built, every policy is read instead, and the log says so.
async fn matching_policies(ctx: &Context, repository: &str, tag: &str) -> Result<Vec<Policy>, HandlerError> {
    let prefix = &ctx.settings.policy_prefix;
    let index = PolicyIndex::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let (stored, indexed) = match index.services_for_repository(repository).await? {
        Lookup::Indexed(entries) if entries.is_empty() => return Ok(Vec::new()),
        Lookup::Indexed(entries) => {
            let parameters: Vec<String> = entries.iter().map(|(_, parameter)| parameter.clone()).collect();
            let stored = policies::get_many(&ctx.clients.ssm, prefix, &parameters).await?;
            for (service, parameter) in entries.iter().filter(|(_, p)| !stored.iter().any(|s| s.parameter == *p)) {
                warn!(%service, %parameter, repository, "stale policy index entry: the parameter is gone, so nothing is deployed to the service; policy-sync removes the entry");
            }
            (stored, true)
        }
        Lookup::NotBuilt => {
            warn!(repository, "the policy index has not been built yet (policy-sync's first daily sweep, or `{{\"syncAll\": true}}`, builds it): every policy was read to find this push's services");
            (policies::load_all_stored(&ctx.clients.ssm, prefix).await?, false)
        }
    };
    let mut matching = Vec::new();
    for s in stored {
        match s.policy {
            Ok(policy) if policy.matches(repository, tag) => matching.push(policy),
            Ok(policy) if indexed && policy.trigger.repository != repository => warn!(
                parameter = %s.parameter,
                repository,
                now = %policy.trigger.repository,
                "stale policy index entry: the policy no longer names this repository, so nothing is deployed with it; policy-sync re-indexes it"
            ),
            Ok(_) => {}
            // A broken policy, or one stored under another service's parameter, must never start
            // a rollout, and must not hide the others.
            Err(e) => {
                error!(parameter = %s.parameter, problems = %e, "invalid policy skipped: it starts no rollout until each problem is fixed as it says")
            }
        }
    }
    Ok(matching)
}

/// Services whose rollouts one invocation starts at the same time: enough that a push matching
/// many services starts them well within the function's 30 s, few enough not to burst past
/// ECS's and DynamoDB's request rates.
const CONCURRENT_STARTS: usize = 8;

/// Start the rollout of each matched service on its own, at most [`CONCURRENT_STARTS`] at a
/// time: one service's failure (its service deleted, a throttled call, a denied permission) never
/// keeps another from starting. Results in the policies' order.
async fn start_each(ctx: &Context, policies: Vec<Policy>, push: &Push) -> Vec<(String, Result<Outcome, HandlerError>)> {
    let services: Vec<String> = policies.iter().map(|p| p.service.key()).collect();
    let mut results: Vec<Option<Result<Outcome, HandlerError>>> = services.iter().map(|_| None).collect();
    let mut running = tokio::task::JoinSet::new();
    let mut waiting = policies.into_iter().enumerate();
    loop {
        while running.len() < CONCURRENT_STARTS {
            let Some((i, policy)) = waiting.next() else { break };
            let (ctx, push) = (ctx.clone(), push.clone());
            running.spawn(async move { (i, start_rollout(&ctx, policy, &push).await) });
        }
        let Some(joined) = running.join_next().await else { break };
        match joined {
            Ok((i, result)) => results[i] = Some(result),
            // Its service is the one left without a result below.
            Err(e) => error!(error = %e, "starting a rollout panicked"),
        }
    }
    services
        .into_iter()
        .zip(results)
        .map(|(service, result)| {
            let result = result.unwrap_or_else(|| {
                Err(HandlerError::new(
                    "Kanaria.Internal",
                    format!("starting the rollout of {service} stopped unexpectedly (a bug: the function's log has the panic); push again"),
                ))
            });
            (service, result)
        })
        .collect()
}

/// The invocation's answer: every service's outcome. When a service did not start, the event
/// fails — Lambda retries it, then it goes to the dead-letter queue with this message, which
/// names each service's outcome or error. A retry starts nothing twice: a started service finds
/// its lock and its execution (same push, same execution name) and reports a duplicate. The
/// error is `Kanaria.Transient` when a retry may help (a throttled or failed call), else
/// `Kanaria.ServicesNotStarted`.
fn report(results: Vec<(String, Result<Outcome, HandlerError>)>) -> Result<Value, HandlerError> {
    let mut rollouts = Vec::new();
    let mut lines = Vec::new();
    let (mut failed, mut transient) = (0, false);
    for (service, result) in &results {
        match result {
            Ok(outcome) => {
                rollouts.push(serde_json::to_value(outcome).expect("an outcome serialises"));
                lines.push(format!("{service}: {}", outcome.summary()));
            }
            Err(e) => {
                failed += 1;
                transient |= e.error_type == "Kanaria.Transient";
                error!(%service, error_type = %e.error_type, error = %e.message, "the rollout of this service did not start");
                rollouts.push(json!({ "outcome": "failed", "service": service, "errorType": e.error_type, "error": e.message }));
                lines.push(format!("{service}: did not start: {e}"));
            }
        }
    }
    if failed == 0 {
        return Ok(json!({ "rollouts": rollouts }));
    }
    let (error_type, next) = if transient {
        (
            "Kanaria.Transient",
            "the event is retried, and a retry starts only those (the others' rollouts are found by their lock and execution name)",
        )
    } else {
        (
            "Kanaria.ServicesNotStarted",
            "a retry starts nothing twice but will not help them: fix what each error says, then push the image again or run \
             kanaria deploy",
        )
    };
    Err(HandlerError::new(
        error_type,
        format!("{failed} of {} services matching the push did not start a rollout; {next}. {}", results.len(), lines.join("; ")),
    ))
}

impl Outcome {
    /// One line for people: what became of the service's rollout.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Started { execution, .. } => format!("started {execution}"),
            Outcome::Duplicate { execution, .. } => format!("already started {execution}"),
            Outcome::AlreadyRunning { .. } => "runs this digest already".into(),
            Outcome::Refused { held_by, .. } => format!("refused ({held_by})"),
            Outcome::AlreadyRolledOut { execution, status, .. } => format!("rolled out already by {execution} ({status})"),
            Outcome::Superseded { execution, superseded, .. } => format!("started {execution}, superseding {superseded}"),
            Outcome::Queued { behind, .. } => format!("queued behind {behind}"),
            Outcome::NotRunning { reason, .. } => format!("not started: {reason}"),
        }
    }
}

/// Deterministic rollout id and execution name for a service, digest and attempt: every
/// delivery of one push names the same execution; a later push of the same digest (the usual
/// recovery: re-push the last good image) is the next attempt and gets a new name, since Step
/// Functions keeps a name taken for 90 days after its execution ended.
pub fn rollout_names(policy: &Policy, digest: &str, attempt: u32) -> (String, String) {
    let hash = Sha256::digest(format!("{}@{digest}#{attempt}", policy.service.key()));
    let id: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let short_digest: String = digest.trim_start_matches("sha256:").chars().take(12).collect();
    let attempt = attempt.to_string();
    // Step Functions names: at most 80 characters of letters, digits, - and _.
    let service: String = policy
        .service
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .take(80 - 1 - 12 - 1 - attempt.len() - 1 - 16)
        .collect();
    (id.clone(), format!("{service}-{short_digest}-{attempt}-{id}"))
}

fn unix_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Start the push queued behind the service's rollout, once that rollout has released the
/// service (with the policy as it is now). Idempotent: a second call finds the push started (a
/// duplicate of its own execution) or no push queued. The queued item goes only once its rollout
/// started, so a failure here leaves it for the next caller (the rollout's end, a later push).
pub async fn start_queued_push(ctx: &Context, service_key: &str) -> Result<Option<Outcome>, HandlerError> {
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let Some(json) = store.queued(service_key).await? else { return Ok(None) };
    let Ok(queued) = serde_json::from_str::<QueuedPush>(&json) else {
        warn!(service = %service_key, "a queued push could not be read and was dropped; push the image again");
        store.dequeue(service_key, &json).await?;
        return Ok(None);
    };
    let policy = policies::get_for_service(&ctx.clients.ssm, &ctx.settings.policy_prefix, service_key).await?.and_then(|s| s.policy.ok());
    let Some(policy) = policy else {
        warn!(service = %service_key, "the policy of the service is gone or invalid; its queued push was dropped");
        store.dequeue(service_key, &json).await?;
        return Ok(None);
    };
    let push = Push { image: queued.image, pushed_at: queued.pushed_at, push_id: queued.push_id };
    let outcome = start_rollout(ctx, policy, &push).await?;
    if !matches!(outcome, Outcome::Queued { .. }) {
        store.dequeue(service_key, &json).await?;
    }
    info!(service = %service_key, ?outcome, "the queued push was started");
    Ok(Some(outcome))
}

/// `kanaria deploy`: roll `digest` of the policy's repository out to the service now, as a push
/// of it would (the usual recovery: the last good image), whatever its tags. The image comes
/// from the registry the service runs its current image from.
pub async fn deploy(ctx: &Context, service_key: &str, digest: &str, tag: Option<&str>) -> Result<Outcome, HandlerError> {
    let valid = digest.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
    if !valid {
        return Err(HandlerError::invalid_input("kanaria deploy", format!("{digest:?} is not an image digest (sha256:<64 hex digits>)")));
    }
    let policy = policies::get_for_service(&ctx.clients.ssm, &ctx.settings.policy_prefix, service_key)
        .await?
        .and_then(|s| s.policy.ok())
        .ok_or_else(|| {
        HandlerError::new(
            "Kanaria.NoPolicy",
            format!("no valid policy for {service_key} under {}; store one with kanaria policy put", ctx.settings.policy_prefix),
        )
    })?;
    let view = ecs::describe_service(&ctx.clients.ecs, &policy.service).await?;
    let primary = view.task_sets.iter().find(|t| t.status == "PRIMARY").ok_or_else(|| {
        HandlerError::new("Kanaria.ServiceNotReady", format!("{service_key} has no primary task set to learn its image registry from"))
    })?;
    let (_, current) = ecs::revision_with_image(&ctx.clients.ecs, &primary.task_definition_arn, &policy.container, "").await?;
    let registry =
        current.as_deref().and_then(|image| image.split_once('/').map(|(host, _)| host)).filter(|host| host.contains(".dkr.ecr."));
    let Some(registry) = registry else {
        return Err(HandlerError::new(
            "Kanaria.ServiceNotReady",
            format!(
                "container {} of {service_key} does not run an ECR image ({current:?}); kanaria deploys images from ECR",
                policy.container
            ),
        ));
    };
    let repository = policy.trigger.repository.clone();
    let image =
        Image { uri: format!("{registry}/{repository}@{digest}"), repository, tag: tag.map(str::to_string), digest: digest.to_string() };
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| HandlerError::new("Kanaria.Transient", format!("no randomness for the deploy's id: {e}")))?;
    let push_id = format!("deploy-{}", id.iter().map(|b| format!("{b:02x}")).collect::<String>());
    start_rollout(ctx, policy, &Push { image, pushed_at: now_unix(), push_id }).await
}

/// Which attempt at rolling `push` out to the service this push is: the attempt of the digest's
/// latest rollout when this is the push that started it again (a redelivery) or while that
/// rollout is in flight (the same digest pushed under another tag is a duplicate, never its own
/// supersede); the next attempt when the digest is pushed again after its rollout ended (the
/// usual recovery: re-push the last good image). None: a late delivery of an older push.
async fn attempt_for(store: &Store<'_>, policy: &Policy, push: &Push) -> Result<Option<u32>, HandlerError> {
    let service = policy.service.key();
    let service = service.as_str();
    loop {
        let previous = store.digest_attempt(service, &push.image.digest).await?;
        let next = match &previous {
            None => 1,
            Some(p) if p.push_id == push.push_id => return Ok(Some(p.attempt)),
            Some(p) if push.pushed_at < p.pushed_at => return Ok(None),
            Some(p) => {
                let (in_flight, _) = rollout_names(policy, &push.image.digest, p.attempt);
                if store.lock(service).await?.is_some_and(|l| l.rollout_id == in_flight) {
                    return Ok(Some(p.attempt));
                }
                p.attempt + 1
            }
        };
        let record = DigestAttempt { attempt: next, push_id: push.push_id.clone(), pushed_at: push.pushed_at };
        if store.record_digest_attempt(service, &push.image.digest, previous.as_ref(), &record).await? {
            return Ok(Some(next));
        }
        // Another delivery recorded an attempt meanwhile: read it again.
    }
}

pub async fn start_rollout(ctx: &Context, policy: Policy, push: &Push) -> Result<Outcome, HandlerError> {
    let service = policy.service.key();
    let image = &push.image;
    let pushed_at = push.pushed_at;

    // Pushing a new tag onto the digest that already runs is not a release.
    let view = ecs::describe_service(&ctx.clients.ecs, &policy.service).await?;
    if let Some(primary) = view.task_sets.iter().find(|t| t.status == "PRIMARY") {
        if ecs::revision_with_image(&ctx.clients.ecs, &primary.task_definition_arn, &policy.container, &image.uri).await?.0.as_deref()
            == Some(primary.task_definition_arn.as_str())
        {
            info!(%service, image = %image.uri, "ignored: the service already runs this digest");
            return Ok(Outcome::AlreadyRunning { service });
        }
    }
    // A service that runs no task cannot show whether the image works: every step would wait
    // for tasks that never start, and time out.
    if view.desired_count == 0 {
        warn!(%service, image = %image.uri, "refused: the service's desired count is 0");
        return Ok(Outcome::NotRunning {
            service,
            reason: "the service's desired count is 0: scale it up, then push the image again (or run kanaria deploy)".into(),
        });
    }

    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
    let Some(attempt) = attempt_for(&store, &policy, push).await? else {
        warn!(%service, digest = %image.digest, "refused: a later push of this digest started a rollout already (this push was delivered late)");
        return Ok(Outcome::Refused { service, held_by: "a later push of the same digest".into() });
    };
    let (id, name) = rollout_names(&policy, &image.digest, attempt);
    let now = now_unix();
    let lock = LockRecord {
        service: service.clone(),
        rollout_id: id.clone(),
        digest: image.digest.clone(),
        image: image.uri.clone(),
        execution_name: name.clone(),
        execution_arn: None,
        started_at: now,
        phase: "starting".into(),
        step: 0,
        weight: 0,
        green_task_set_id: None,
        updated_at: now,
        status: crate::aws::store::IN_FLIGHT.into(),
        pushed_at,
        alarms: policy.alarms.clone(),
        // The execution's first step must run within the margin.
        lease_until: now + lease::MARGIN_SECONDS,
        ..Default::default()
    };
    let mut superseded = None;
    let known_execution = match store.acquire(&lock).await? {
        Acquire::Acquired => None,
        // A duplicate delivery, or a retry after StartExecution failed: the execution this lock
        // waits for is started below either way (an existing one is found by its name).
        Acquire::AlreadyOurs(held) => Some(held.execution_arn.filter(|a| !a.is_empty())),
        Acquire::HeldBy(held) => {
            if !lease::still_running(ctx, &held).await? {
                // Released just now: its rollout had ended.
                if !store.take_over(&held.rollout_id, &lock, None).await? {
                    return Ok(refused(&service, image, &held, "another push took the service first"));
                }
                warn!(%service, stale_rollout = %held.rollout_id, "took over the lock of a rollout that had ended without releasing it");
            } else if pushed_at < held.pushed_at {
                return Ok(refused(&service, image, &held, "this push is older than the one rolling out (delivered late)"));
            } else if policy.on_newer_push == NewerPush::Queue {
                let queued = QueuedPush { image: image.clone(), pushed_at, push_id: push.push_id.clone() };
                let queued = serde_json::to_string(&queued).expect("a push serialises");
                if !store.queue_push(&service, &queued, pushed_at).await? {
                    return Ok(refused(&service, image, &held, "a newer push is queued already"));
                }
                info!(%service, queued_digest = %image.digest, in_flight_rollout = %held.rollout_id, "push queued behind the rollout in flight");
                // The rollout may have released the service between our two reads: then nobody
                // would start the queued push but us.
                if store.lock(&service).await?.is_none() {
                    if let Some(started) = Box::pin(start_queued_push(ctx, &service)).await? {
                        return Ok(started);
                    }
                }
                return Ok(Outcome::Queued { service, behind: held.rollout_id });
            } else {
                let cause = format!(
                    "superseded by a newer push of {}:{} ({})",
                    image.repository,
                    image.tag.as_deref().unwrap_or("-"),
                    image.digest
                );
                circuit_breaker::trip(ctx, &service, &held.rollout_id, &cause, circuit_breaker::Pace::Policy).await?;
                let ended = LastRollout {
                    service: service.clone(),
                    rollout_id: held.rollout_id.clone(),
                    image: held.image.clone(),
                    digest: held.digest.clone(),
                    outcome: "ROLLED_BACK".into(),
                    cause: Some(cause.clone()),
                    started_at: held.started_at,
                    ended_at: now,
                };
                if !store.take_over(&held.rollout_id, &lock, Some(&ended)).await? {
                    return Ok(refused(&service, image, &held, "another push took the service first"));
                }
                // The superseded rollout is counted here, once: its own RollBack state releases
                // the service only when it gets there first (take_over then finds no lock), and
                // never counts a superseded rollback (rollout_step, ReleaseLock).
                let superseded_cause = crate::metrics::RollbackCause::Superseded;
                ctx.metrics.emit(&crate::metrics::Event::RolloutRolledBack { service: &service, cause: superseded_cause });
                info!(%service, superseded_rollout = %held.rollout_id, "superseded the rollout in flight");
                superseded = Some(held.rollout_id.clone());
            }
            None
        }
    };

    let rollout = Rollout::new(id.clone(), policy, image.clone());
    let input = serde_json::to_string(&rollout).expect("a rollout serialises");
    match sfn::start_once(&ctx.clients.sfn, &ctx.settings.state_machine_arn, &name, &input).await? {
        sfn::Started::Running(arn) if known_execution.as_ref().is_some_and(|k| k.as_deref() == Some(arn.as_str())) => {
            info!(%service, rollout = %id, execution = %name, "duplicate delivery: the rollout is already running");
            Ok(Outcome::Duplicate { service, execution: arn })
        }
        sfn::Started::Running(arn) => {
            if arn.is_empty() {
                return Err(HandlerError::new(
                    "Kanaria.Transient",
                    format!("Step Functions StartExecution of {name} returned no execution ARN; retry"),
                ));
            }
            store.set_execution_arn(&service, &id, &arn).await?;
            info!(%service, rollout = %id, execution = %name, image = %image.uri, attempt, "rollout started");
            Ok(match (superseded, known_execution) {
                (Some(old), _) => Outcome::Superseded { service, execution: arn, superseded: old },
                // The lock was ours but its execution had not started (a retried delivery).
                (None, Some(_)) => Outcome::Started { service, execution: arn },
                (None, None) => Outcome::Started { service, execution: arn },
            })
        }
        sfn::Started::Ended { arn, status } => {
            // This attempt's execution ran and ended: a redelivery of the push that started it.
            store.release(&service, &id, None).await?;
            info!(%service, execution = %arn, %status, "ignored: a redelivery of the push that started this rollout, which has ended; push the image again to roll it out again");
            Ok(Outcome::AlreadyRolledOut { service, execution: arn, status })
        }
    }
}

fn refused(service: &str, image: &Image, held: &LockRecord, why: &str) -> Outcome {
    warn!(
        %service,
        refused_digest = %image.digest,
        in_flight_rollout = %held.rollout_id,
        in_flight_digest = %held.digest,
        "push refused: {why}"
    );
    Outcome::Refused { service: service.to_string(), held_by: held.rollout_id.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(service: &str) -> (String, Result<Outcome, HandlerError>) {
        (service.into(), Ok(Outcome::Started { service: service.into(), execution: format!("arn:exec:{service}") }))
    }

    #[test]
    fn every_service_started_is_the_invocations_answer() {
        let out = report(vec![started("prod/web"), started("prod/api")]).unwrap();
        assert_eq!(out["rollouts"].as_array().unwrap().len(), 2, "{out}");
        assert_eq!((out["rollouts"][1]["outcome"].as_str(), out["rollouts"][1]["service"].as_str()), (Some("started"), Some("prod/api")));
    }

    #[test]
    fn a_service_that_did_not_start_fails_the_event_naming_every_services_outcome() {
        let missing = HandlerError::new("Kanaria.AwsError", "ECS DescribeServices on shop/ghost failed: the service does not exist");
        let e = report(vec![("shop/ghost".into(), Err(missing)), started("prod/web")]).unwrap_err();
        assert_eq!(e.error_type, "Kanaria.ServicesNotStarted");
        assert!(e.message.starts_with("1 of 2 services matching the push did not start a rollout"), "{e}");
        assert!(e.message.contains("shop/ghost: did not start: Kanaria.AwsError: ECS DescribeServices on shop/ghost failed"), "{e}");
        assert!(e.message.contains("prod/web: started arn:exec:prod/web"), "{e}");
        assert!(e.message.contains("fix what each error says, then push the image again"), "{e}");

        // A throttled call may pass: the event's retry starts what did not start.
        let throttled = HandlerError::new("Kanaria.Transient", "ECS DescribeServices on shop/api failed: ThrottlingException");
        let e = report(vec![started("prod/web"), ("shop/api".into(), Err(throttled))]).unwrap_err();
        assert_eq!(e.error_type, "Kanaria.Transient");
        assert!(e.message.contains("a retry starts only those"), "{e}");
    }

    #[test]
    fn rollout_ids_are_what_kanaria_recognises_as_its_own_external_ids() {
        let policy = crate::policy::parse(
            "p",
            "service: { cluster: prod, name: web }\ncontainer: app\ntrigger: { repository: team/web, tags: [\"v*\"] }\ntraffic:\n  listenerArn: arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2\n  targetGroups:\n    - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/73e2d6bc24d8a067\n    - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/2453ed029918f21f\nstrategy:\n  canary:\n    steps:\n      - { weight: 10, bake: 1m }\n",
        )
        .unwrap();
        for attempt in 1..20 {
            let (id, _) = rollout_names(&policy, "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270", attempt);
            assert!(crate::rollout::is_rollout_id(&id) && crate::rollout::is_kanarias(Some(&id)), "{id}");
        }
    }
}
