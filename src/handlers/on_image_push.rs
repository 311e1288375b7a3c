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

use super::{circuit_breaker, HandlerError};
use crate::aws::approvals::Approvals;
use crate::aws::store::{Acquire, LastRollout, LockRecord, Store};
use crate::aws::{ecs, now_unix, policies, sfn, Context};
use crate::events::{CloudTrailPutImage, EcrImageAction, Envelope};
use crate::policy::{NewerPush, Policy};
use crate::rollout::{Image, Rollout};

/// A lock whose execution never appeared for this long is abandoned (the function that took it
/// died before StartExecution) and may be taken over.
const ORPHAN_LOCK_SECONDS: u64 = 900;

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Outcome {
    Started { service: String, execution: String },
    Duplicate { service: String, execution: String },
    AlreadyRunning { service: String },
    Refused { service: String, held_by: String },
    AlreadyRolledOut { service: String, execution: String, status: String },
    Superseded { service: String, execution: String, superseded: String },
    Queued { service: String, behind: String },
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

    let mut matching = Vec::new();
    for (name, parsed) in policies::load_all(&ctx.clients.ssm, &ctx.settings.policy_prefix).await? {
        match parsed {
            Ok(policy) if policy.matches(&push.repository_name, tag) => matching.push(policy),
            Ok(_) => {}
            // A broken policy must never start a rollout, and must not hide the others.
            Err(e) => error!(parameter = %name, problems = %e, "invalid policy skipped; fix it with `kanaria policy validate`"),
        }
    }
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
    let mut outcomes = Vec::new();
    for policy in matching {
        outcomes.push(start_rollout(ctx, policy, &image, pushed_at).await?);
    }
    Ok(json!({ "rollouts": outcomes }))
}

/// Deterministic rollout id and execution name for a service and digest.
pub fn rollout_names(policy: &Policy, digest: &str) -> (String, String) {
    let hash = Sha256::digest(format!("{}@{digest}", policy.service.key()));
    let id: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let short_digest: String = digest.trim_start_matches("sha256:").chars().take(12).collect();
    let service: String = policy
        .service
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .take(80 - 1 - 12 - 1 - 16)
        .collect();
    (id.clone(), format!("{service}-{short_digest}-{id}"))
}

fn unix_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Start a push that was queued behind a rollout that has now ended (with the policy as it is
/// now).
pub async fn start_queued(ctx: &Context, service_key: &str, queued: &QueuedPush) -> Result<Outcome, HandlerError> {
    let policy = policies::load_all(&ctx.clients.ssm, &ctx.settings.policy_prefix)
        .await?
        .into_iter()
        .filter_map(|(_, p)| p.ok())
        .find(|p| p.service.key() == service_key)
        .ok_or_else(|| {
            HandlerError::new("Kanaria.PolicyGone", format!("the policy of {service_key} is gone or invalid; the queued push was dropped"))
        })?;
    start_rollout(ctx, policy, &queued.image, queued.pushed_at).await
}

async fn start_rollout(ctx: &Context, policy: Policy, image: &Image, pushed_at: u64) -> Result<Outcome, HandlerError> {
    let service = policy.service.key();
    let (id, name) = rollout_names(&policy, &image.digest);

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

    let now = now_unix();
    let store = Store::new(&ctx.clients.dynamodb, &ctx.settings.table);
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
        ..Default::default()
    };
    let mut superseded = None;
    let duplicate = match store.acquire(&lock).await? {
        Acquire::Acquired => false,
        Acquire::AlreadyOurs(_) => true,
        Acquire::HeldBy(held) => {
            let arn =
                held.execution_arn.clone().unwrap_or_else(|| sfn::execution_arn(&ctx.settings.state_machine_arn, &held.execution_name));
            let status = sfn::status(&ctx.clients.sfn, &arn).await?;
            let stale = match status.as_deref() {
                Some(s) => !sfn::is_running(s),
                None => now.saturating_sub(held.started_at) > ORPHAN_LOCK_SECONDS,
            };
            if stale {
                if !store.take_over(&held.rollout_id, &lock, None).await? {
                    return Ok(refused(&service, image, &held, "another push took the service first"));
                }
                warn!(%service, stale_rollout = %held.rollout_id, "took over the lock of a rollout that had ended without releasing it");
            } else if pushed_at < held.pushed_at {
                return Ok(refused(&service, image, &held, "this push is older than the one rolling out (delivered late)"));
            } else if policy.on_newer_push == NewerPush::Queue {
                let queued = serde_json::to_string(&QueuedPush { image: image.clone(), pushed_at }).expect("a push serialises");
                if !store.queue_push(&service, &queued, pushed_at).await? {
                    return Ok(refused(&service, image, &held, "a newer push is queued already"));
                }
                info!(%service, queued_digest = %image.digest, in_flight_rollout = %held.rollout_id, "push queued behind the rollout in flight");
                return Ok(Outcome::Queued { service, behind: held.rollout_id });
            } else {
                let cause = format!(
                    "superseded by a newer push of {}:{} ({})",
                    image.repository,
                    image.tag.as_deref().unwrap_or("-"),
                    image.digest
                );
                circuit_breaker::trip(ctx, &service, &held.rollout_id, &cause).await?;
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
                info!(%service, superseded_rollout = %held.rollout_id, "superseded the rollout in flight");
                superseded = Some(held.rollout_id.clone());
            }
            false
        }
    };

    let rollout = Rollout::new(id.clone(), policy, image.clone());
    let input = serde_json::to_string(&rollout).expect("a rollout serialises");
    match sfn::start_once(&ctx.clients.sfn, &ctx.settings.state_machine_arn, &name, &input).await? {
        sfn::Started::Running(arn) if duplicate => {
            info!(%service, rollout = %id, execution = %name, "duplicate delivery: the rollout is already running");
            Ok(Outcome::Duplicate { service, execution: arn })
        }
        sfn::Started::Running(arn) => {
            store.set_execution_arn(&service, &id, &arn).await?;
            info!(%service, rollout = %id, execution = %name, image = %image.uri, "rollout started");
            Ok(match superseded {
                Some(old) => Outcome::Superseded { service, execution: arn, superseded: old },
                None => Outcome::Started { service, execution: arn },
            })
        }
        sfn::Started::Ended { arn, status } => {
            // This digest was rolled out (or rolled back) before; a re-push does not retry it.
            store.release(&service, &id, None).await?;
            warn!(%service, execution = %arn, %status, "ignored: this digest was already rolled out for this service; push a new image to release again");
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
