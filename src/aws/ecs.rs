//! ECS adapter: task sets of EXTERNAL-controller services, task-definition revisions, tasks.

use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::operation::create_task_set::builders::CreateTaskSetFluentBuilder;
use aws_sdk_ecs::operation::register_task_definition::builders::{RegisterTaskDefinitionFluentBuilder, RegisterTaskDefinitionInputBuilder};
use aws_sdk_ecs::types::{
    DesiredStatus, LaunchType, LoadBalancer, Scale, ScaleUnit, Tag, TaskDefinition, TaskDefinitionField, TaskDefinitionStatus, TaskSet,
    TaskSetField,
};
use aws_sdk_ecs::Client;
use tracing::warn;

use super::AwsError;
use crate::policy::ServiceRef;
use crate::rollout::{Stability, TaskSetView};

/// The tag on services, listeners, rules and task sets that lets kanaria change them (the IAM
/// conditions in template.yaml). Every task set kanaria creates carries it.
pub const MANAGED_TAG: (&str, &str) = ("kanaria:managed", "true");
/// The tag naming the rollout that created a task set (its externalId too), for people reading
/// the console or Cost Explorer.
pub const ROLLOUT_TAG_KEY: &str = "kanaria:rollout";

/// What kanaria reads of a service: its desired count, deployment controller and task sets.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub desired_count: u32,
    pub deployment_controller: String,
    pub task_sets: Vec<TaskSetView>,
}

pub async fn describe_service(ecs: &Client, service: &ServiceRef) -> Result<ServiceView, AwsError> {
    let out = ecs
        .describe_services()
        .cluster(&service.cluster)
        .services(&service.name)
        .send()
        .await
        .map_err(|e| AwsError::new("ECS", "DescribeServices", service.key(), e))?;
    let svc = out.services().iter().find(|s| s.status() == Some("ACTIVE")).ok_or_else(|| AwsError {
        service: "ECS",
        operation: "DescribeServices",
        resource: service.key(),
        message: "the service does not exist or is not ACTIVE; check the policy's service.cluster and service.name".into(),
        transient: false,
    })?;
    let deployment_controller = svc.deployment_controller().map(|d| d.r#type().as_str().to_string()).unwrap_or_else(|| "ECS".into());
    let task_sets = ecs
        .describe_task_sets()
        .cluster(&service.cluster)
        .service(&service.name)
        .send()
        .await
        .map_err(|e| AwsError::new("ECS", "DescribeTaskSets", service.key(), e))?
        .task_sets()
        .iter()
        .map(task_set_view)
        .collect();
    Ok(ServiceView { desired_count: svc.desired_count().max(0) as u32, deployment_controller, task_sets })
}

fn task_set_view(t: &aws_sdk_ecs::types::TaskSet) -> TaskSetView {
    // ECS reports 0 for both counts until it has computed them; treat a task set that claims
    // to want 0 tasks while scaled above 0% as "not reported".
    let scale = t.scale().map(|s| s.value()).unwrap_or(100.0);
    let reported = t.computed_desired_count() > 0 || scale == 0.0;
    TaskSetView {
        id: t.id().unwrap_or_default().to_string(),
        arn: t.task_set_arn().unwrap_or_default().to_string(),
        external_id: t.external_id().filter(|s| !s.is_empty()).map(str::to_string),
        status: t.status().unwrap_or_default().to_string(),
        target_group_arn: t.load_balancers().first().and_then(|lb| lb.target_group_arn()).map(str::to_string),
        task_definition_arn: t.task_definition().unwrap_or_default().to_string(),
        scale_percent: scale,
        computed_desired_count: reported.then(|| t.computed_desired_count().max(0) as u32),
        running_count: reported.then(|| t.running_count().max(0) as u32),
        pending_count: reported.then(|| t.pending_count().max(0) as u32),
        stability: t.stability_status().map(|s| match s {
            aws_sdk_ecs::types::StabilityStatus::SteadyState => Stability::SteadyState,
            _ => Stability::Stabilizing,
        }),
    }
}

/// RUNNING tasks a task set started (tasks of a task set carry its id in `startedBy`).
pub async fn running_tasks_of(ecs: &Client, cluster: &str, task_set_id: &str) -> Result<u32, AwsError> {
    Ok(running_task_ips(ecs, cluster, task_set_id).await?.len() as u32)
}

/// The private IPs (awsvpc: the target ids in an `ip` target group) of the RUNNING tasks a task
/// set started that ECS wants to keep running.
pub async fn running_task_ips(ecs: &Client, cluster: &str, task_set_id: &str) -> Result<Vec<String>, AwsError> {
    let mut arns = Vec::new();
    let mut pages =
        ecs.list_tasks().cluster(cluster).started_by(task_set_id).desired_status(DesiredStatus::Running).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::new("ECS", "ListTasks", format!("{cluster} startedBy {task_set_id}"), e))?;
        arns.extend(page.task_arns().iter().cloned());
    }
    let mut ips = Vec::new();
    for chunk in arns.chunks(100) {
        let out = ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::new("ECS", "DescribeTasks", cluster, e))?;
        for task in out.tasks().iter().filter(|t| t.last_status() == Some("RUNNING") && t.started_by() == Some(task_set_id)) {
            let ip = task
                .attachments()
                .iter()
                .flat_map(|a| a.details())
                .find(|d| d.name() == Some("privateIPv4Address"))
                .and_then(|d| d.value())
                .unwrap_or_default();
            ips.push(ip.to_string());
        }
    }
    Ok(ips)
}

async fn describe_task_definition(ecs: &Client, arn_or_family: &str) -> Result<(TaskDefinition, Vec<Tag>), AwsError> {
    let out = ecs
        .describe_task_definition()
        .task_definition(arn_or_family)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(|e| AwsError::new("ECS", "DescribeTaskDefinition", arn_or_family, e))?;
    let td = out.task_definition().cloned().ok_or_else(|| AwsError {
        service: "ECS",
        operation: "DescribeTaskDefinition",
        resource: arn_or_family.into(),
        message: "no task definition in the answer".into(),
        transient: true,
    })?;
    Ok((td, out.tags().to_vec()))
}

fn image_of<'a>(td: &'a TaskDefinition, container: &str) -> Option<&'a str> {
    td.container_definitions().iter().find(|c| c.name() == Some(container)).and_then(|c| c.image())
}

/// `td` with `container` running `image`; nothing else changes.
fn with_image(td: &TaskDefinition, container: &str, image: &str) -> Result<TaskDefinition, AwsError> {
    let mut changed = td.clone();
    let target = changed.container_definitions.iter_mut().flatten().find(|c| c.name() == Some(container)).ok_or_else(|| AwsError {
        service: "ECS",
        operation: "RegisterTaskDefinition",
        resource: td.task_definition_arn().or(td.family()).unwrap_or_default().to_string(),
        message: format!("the task definition has no container named {container:?}; fix the policy's `container`"),
        transient: false,
    })?;
    target.image = Some(image.to_string());
    Ok(changed)
}

fn non_empty<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    Some(items.to_vec()).filter(|v| !v.is_empty())
}

/// The RegisterTaskDefinition request that registers `td` (as DescribeTaskDefinition returned
/// it, with `tags`) again: every field RegisterTaskDefinition accepts (ECS API reference,
/// RegisterTaskDefinition), copied as it is. The other fields of a TaskDefinition are ECS's own
/// record of the revision (taskDefinitionArn, revision, status, requiresAttributes,
/// compatibilities, registeredAt, registeredBy, deregisteredAt, deleteRequestedAt) and are not
/// inputs. `new_revisions_carry_every_field_register_task_definition_takes` fails when the
/// SDK gains a field this does not set.
///
/// Two revisions whose requests are equal are the same task definition: this is also how a
/// revision kanaria registered is recognised again ([`equal_revision`]).
// `inferenceAccelerators` is deprecated (Elastic Inference is no longer offered): a revision
// that has them is still copied as it is, and ECS's answer to registering it says what to do.
#[allow(deprecated)]
fn revision_request(
    request: RegisterTaskDefinitionFluentBuilder,
    td: &TaskDefinition,
    tags: &[Tag],
) -> RegisterTaskDefinitionFluentBuilder {
    request
        .set_family(td.family.clone())
        .set_task_role_arn(td.task_role_arn.clone())
        .set_execution_role_arn(td.execution_role_arn.clone())
        .set_network_mode(td.network_mode.clone())
        .set_container_definitions(td.container_definitions.clone())
        .set_volumes(non_empty(td.volumes()))
        .set_placement_constraints(non_empty(td.placement_constraints()))
        .set_requires_compatibilities(non_empty(td.requires_compatibilities()))
        .set_cpu(td.cpu.clone())
        .set_memory(td.memory.clone())
        .set_tags(non_empty(tags))
        .set_pid_mode(td.pid_mode.clone())
        .set_ipc_mode(td.ipc_mode.clone())
        .set_proxy_configuration(td.proxy_configuration.clone())
        .set_inference_accelerators(non_empty(td.inference_accelerators()))
        .set_ephemeral_storage(td.ephemeral_storage.clone())
        .set_runtime_platform(td.runtime_platform.clone())
        // "The default value is false" (RegisterTaskDefinition): revisions described without the
        // field and with `false` are the same.
        .set_enable_fault_injection(Some(td.enable_fault_injection().unwrap_or(false)))
}

/// How many revisions of a family, newest first, are compared with the one kanaria would
/// register. A revision kanaria registered for this rollout is newer than the one it copied,
/// and only other registrations in between push it down.
const REVISIONS_COMPARED: i32 = 10;

/// The newest ACTIVE revision of `base`'s family whose content equals `wanted` (the request
/// kanaria would send), among the [`REVISIONS_COMPARED`] newest revisions down to `base`.
///
/// RegisterTaskDefinition has no idempotency token (ECS API reference, RegisterTaskDefinition;
/// CreateTaskSet has `clientToken`, this has none), so a call that took effect but answered with
/// an error, or timed out, is recognised by its content: registering again would leave a second,
/// identical revision.
async fn equal_revision(
    ecs: &Client,
    base: &TaskDefinition,
    wanted: &RegisterTaskDefinitionInputBuilder,
) -> Result<Option<String>, AwsError> {
    let family = base.family().unwrap_or_default();
    // Without a revision, DescribeTaskDefinition answers the family's latest ACTIVE revision.
    let (latest, latest_tags) = describe_task_definition(ecs, family).await?;
    let newest = latest.revision();
    let oldest = base.revision().max(newest - REVISIONS_COMPARED + 1).max(1);
    for revision in (oldest..=newest).rev() {
        let (td, tags) = if revision == newest {
            (latest.clone(), latest_tags.clone())
        } else {
            match describe_task_definition(ecs, &format!("{family}:{revision}")).await {
                Ok(found) => found,
                // A revision deleted with DeleteTaskDefinitions is no longer there to describe.
                Err(e) if e.is_code("ClientException") => continue,
                Err(e) => return Err(e),
            }
        };
        if td.status() != Some(&TaskDefinitionStatus::Active) {
            continue;
        }
        if revision_request(ecs.register_task_definition(), &td, &tags).as_input() == wanted {
            return Ok(td.task_definition_arn().map(str::to_string));
        }
    }
    Ok(None)
}

/// The revision to run `image` in `container`, if one is registered already: `based_on` itself
/// when it runs `image` there (a re-tag of the image that runs), else the newest ACTIVE revision
/// of its family with exactly the content kanaria would register ([`equal_revision`]). This makes
/// registering idempotent: a retried rollout step reuses the revision it made.
/// Also returns the image `based_on` runs in `container` (the stable image, for people).
pub async fn revision_with_image(
    ecs: &Client,
    based_on: &str,
    container: &str,
    image: &str,
) -> Result<(Option<String>, Option<String>), AwsError> {
    let (base, tags) = describe_task_definition(ecs, based_on).await?;
    let base_image = image_of(&base, container).map(str::to_string);
    if base_image.as_deref() == Some(image) {
        return Ok((base.task_definition_arn().map(str::to_string), base_image));
    }
    // No such container: registering reports it, with what to fix.
    let Ok(wanted) = with_image(&base, container, image) else { return Ok((None, base_image)) };
    let wanted = revision_request(ecs.register_task_definition(), &wanted, &tags).as_input().clone();
    Ok((equal_revision(ecs, &base, &wanted).await?, base_image))
}

/// Attempts at RegisterTaskDefinition, each after looking for the revision an earlier one may
/// have registered.
const REGISTER_ATTEMPTS: u32 = 3;

/// Register a new revision of `based_on` that differs only in `container`'s image, unless one
/// with exactly that content exists already (then that one is returned).
///
/// The SDK's own retries are off for this call: a retry after an answer that was lost (a 5xx
/// after the revision was registered, a timeout) would register a second, identical revision,
/// since RegisterTaskDefinition has no idempotency token. Each further attempt first looks for
/// the revision the one before may have registered.
pub async fn register_revision(ecs: &Client, based_on: &str, container: &str, image: &str) -> Result<String, AwsError> {
    let (base, tags) = describe_task_definition(ecs, based_on).await?;
    let request = revision_request(ecs.register_task_definition(), &with_image(&base, container, image)?, &tags);
    let family = base.family().unwrap_or_default().to_string();
    let mut attempt = 1;
    loop {
        let sent = request
            .clone()
            .customize()
            .config_override(aws_sdk_ecs::config::Builder::default().retry_config(RetryConfig::disabled()))
            .send()
            .await;
        let err = match sent {
            Ok(out) => return Ok(out.task_definition().and_then(|t| t.task_definition_arn()).unwrap_or_default().to_string()),
            Err(e) => AwsError::new("ECS", "RegisterTaskDefinition", &family, e),
        };
        if !err.transient || attempt >= REGISTER_ATTEMPTS {
            return Err(err);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
        if let Some(arn) = equal_revision(ecs, &base, request.as_input()).await? {
            warn!(family = %family, revision = %arn, error = %err, "RegisterTaskDefinition answered with an error but had registered the revision; using it");
            return Ok(arn);
        }
        attempt += 1;
    }
}

/// The CreateTaskSet request for the new task set: a copy of the primary task set — everything
/// CreateTaskSet accepts (ECS API reference, CreateTaskSet) — with the new task definition, at
/// 100% scale (0% of traffic until the listener says otherwise):
/// - load balancers: the first is the one traffic moves on (kanaria reads a task set's target
///   group from its first load balancer, and CreateGreen checks that it is one of the policy's
///   target groups); it goes to `target_group_arn`. Any other (a Network Load Balancer's target
///   group, say) is copied unchanged: it serves the new tasks too. "If you're using an
///   Application Load Balancer, only one Application Load Balancer target group is allowed per
///   task set" (ECS developer guide, External deployment), which `kanaria verify` checks.
/// - service registries, network configuration, launch type or capacity provider strategy,
///   platform version, as they are;
/// - tags: the primary's, with [`MANAGED_TAG`] (UpdateTaskSet and DeleteTaskSet are allowed
///   only on task sets that carry it) and [`ROLLOUT_TAG_KEY`] set to the rollout's id.
///
/// `new_task_sets_carry_every_field_create_task_set_takes` fails when the SDK gains a field this does not set.
fn new_task_set_request(
    request: CreateTaskSetFluentBuilder,
    service: &ServiceRef,
    primary: &TaskSet,
    task_definition_arn: &str,
    target_group_arn: &str,
    external_id: &str,
) -> CreateTaskSetFluentBuilder {
    let mut load_balancers = primary.load_balancers().to_vec();
    match load_balancers.first_mut() {
        Some(production) => production.target_group_arn = Some(target_group_arn.to_string()),
        None => load_balancers.push(LoadBalancer::builder().target_group_arn(target_group_arn).build()),
    }
    // "If a launchType is specified, the capacityProviderStrategy parameter must be omitted."
    let launch_type = if primary.capacity_provider_strategy().is_empty() {
        Some(primary.launch_type().cloned().unwrap_or(LaunchType::Fargate))
    } else {
        None
    };
    request
        .cluster(&service.cluster)
        .service(&service.name)
        .task_definition(task_definition_arn)
        .external_id(external_id)
        // A retried create returns the task set the first call made (ECS API reference,
        // CreateTaskSet: clientToken; the rollout id is 16 hex digits, within its 36).
        .client_token(external_id)
        .set_load_balancers(Some(load_balancers))
        .set_service_registries(non_empty(primary.service_registries()))
        .set_network_configuration(primary.network_configuration().cloned())
        .set_launch_type(launch_type)
        .set_capacity_provider_strategy(non_empty(primary.capacity_provider_strategy()))
        .set_platform_version(primary.platform_version().map(str::to_string))
        .set_tags(Some(new_task_set_tags(primary.tags(), external_id)))
        .scale(Scale::builder().unit(ScaleUnit::Percent).value(100.0).build())
}

/// The primary's tags, kanaria's own replaced: [`MANAGED_TAG`] and the rollout that creates the set.
fn new_task_set_tags(primary: &[Tag], rollout_id: &str) -> Vec<Tag> {
    let ours = |t: &Tag| t.key() == Some(MANAGED_TAG.0) || t.key() == Some(ROLLOUT_TAG_KEY);
    let mut tags: Vec<Tag> = primary.iter().filter(|t| !ours(t)).cloned().collect();
    tags.push(Tag::builder().key(MANAGED_TAG.0).value(MANAGED_TAG.1).build());
    tags.push(Tag::builder().key(ROLLOUT_TAG_KEY).value(rollout_id).build());
    tags
}

/// Create the new task set ([`new_task_set_request`]): a copy of the primary task set on
/// `target_group_arn`, running `task_definition_arn`.
pub async fn create_task_set(
    ecs: &Client,
    service: &ServiceRef,
    task_definition_arn: &str,
    target_group_arn: &str,
    external_id: &str,
) -> Result<String, AwsError> {
    let sets = ecs
        .describe_task_sets()
        .cluster(&service.cluster)
        .service(&service.name)
        .include(TaskSetField::Tags)
        .send()
        .await
        .map_err(|e| AwsError::new("ECS", "DescribeTaskSets", service.key(), e))?;
    let primary = sets.task_sets().iter().find(|t| t.status() == Some("PRIMARY")).ok_or_else(|| AwsError {
        service: "ECS",
        operation: "CreateTaskSet",
        resource: service.key(),
        message: "the service has no primary task set to copy network and load balancer settings from".into(),
        transient: false,
    })?;
    // Creating with the primary's tags needs ecs:TagResource with ecs:CreateAction CreateTaskSet
    // as well (ECS developer guide, "Grant permission to tag resources on creation"): template.yaml
    // grants it to rollout-step.
    let out = new_task_set_request(ecs.create_task_set(), service, primary, task_definition_arn, target_group_arn, external_id)
        .send()
        .await
        .map_err(|e| AwsError::new("ECS", "CreateTaskSet", service.key(), e))?;
    Ok(out.task_set().and_then(|t| t.id()).unwrap_or_default().to_string())
}

pub async fn make_primary(ecs: &Client, service: &ServiceRef, task_set_arn: &str) -> Result<(), AwsError> {
    ecs.update_service_primary_task_set()
        .cluster(&service.cluster)
        .service(&service.name)
        // ECS accepts the id or the ARN; the ARN works everywhere (moto needs it).
        .primary_task_set(task_set_arn)
        .send()
        .await
        .map_err(|e| AwsError::new("ECS", "UpdateServicePrimaryTaskSet", task_set_arn, e))?;
    Ok(())
}

pub async fn scale_task_set(ecs: &Client, service: &ServiceRef, task_set_id: &str, percent: f64) -> Result<(), AwsError> {
    ecs.update_task_set()
        .cluster(&service.cluster)
        .service(&service.name)
        .task_set(task_set_id)
        .scale(Scale::builder().unit(ScaleUnit::Percent).value(percent).build())
        .send()
        .await
        .map_err(|e| AwsError::new("ECS", "UpdateTaskSet", task_set_id, e))?;
    Ok(())
}

pub async fn delete_task_set(ecs: &Client, service: &ServiceRef, task_set_id: &str) -> Result<(), AwsError> {
    match ecs.delete_task_set().cluster(&service.cluster).service(&service.name).task_set(task_set_id).force(true).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let err = AwsError::new("ECS", "DeleteTaskSet", task_set_id, e);
            // Already gone is what we wanted.
            if err.is_code("TaskSetNotFoundException") {
                Ok(())
            } else {
                Err(err)
            }
        }
    }
}

#[cfg(test)]
// The fixtures set every field, deprecated ones (inferenceAccelerators) included.
#[allow(deprecated)]
mod tests {
    use super::*;
    use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_ecs::operation::create_task_set::CreateTaskSetOutput;
    use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
    use aws_sdk_ecs::operation::describe_task_sets::DescribeTaskSetsOutput;
    use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionOutput;
    use aws_sdk_ecs::types::{
        Attribute, AwsVpcConfiguration, CapacityProviderStrategyItem, Compatibility, ContainerDefinition, CpuArchitecture,
        EphemeralStorage, InferenceAccelerator, IpcMode, NetworkConfiguration, NetworkMode, OsFamily, PidMode, ProxyConfiguration,
        RuntimePlatform, ServiceRegistry, TaskDefinitionPlacementConstraint, TaskDefinitionPlacementConstraintType, Volume,
    };
    use aws_smithy_mocks::{mock, MockResponseInterceptor, Rule, RuleMode};

    const BLUE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/73e2d6bc24d8a067";
    const GREEN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/2453ed029918f21f";
    const NLB_TG: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-tcp/0123456789abcdef";
    const REGISTRY: &str = "arn:aws:servicediscovery:us-east-1:123456789012:service/srv-abcdefghijklmnop";
    const IMAGE: &str =
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web@sha256:2222222222222222222222222222222222222222222222222222222222222222";

    /// What the SDK reads from an error response: its code and message.
    fn error_meta(code: &str, message: &str) -> aws_smithy_types::error::ErrorMetadata {
        aws_smithy_types::error::ErrorMetadata::builder().code(code).message(message).build()
    }

    fn td_arn(revision: i32) -> String {
        format!("arn:aws:ecs:us-east-1:123456789012:task-definition/web:{revision}")
    }

    /// A client whose calls are answered by `rules` (aws_smithy_mocks), with the SDK's standard
    /// retries: a test sees what a caller that does not turn them off would do.
    fn mock_ecs(rules: &[&Rule]) -> Client {
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for rule in rules {
            interceptor = interceptor.with_rule(rule);
        }
        Client::from_conf(
            aws_sdk_ecs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "test"))
                .http_client(aws_smithy_mocks::create_mock_http_client())
                .interceptor(interceptor)
                .build(),
        )
    }

    /// A client to build requests with, never to send them.
    fn offline_ecs() -> Client {
        Client::from_conf(aws_sdk_ecs::Config::builder().behavior_version(BehaviorVersion::latest()).build())
    }

    /// The top-level fields of a request that are not set, read from its `{:#?}` form, so a field
    /// the SDK gains shows up here without this test knowing its name.
    fn unset_fields(debug: &str) -> Vec<String> {
        debug
            .lines()
            .filter(|l| l.starts_with("    ") && !l.starts_with("     "))
            .filter_map(|l| l.trim().strip_suffix(": None,"))
            .map(str::to_string)
            .collect()
    }

    /// A revision with every field of TaskDefinition set, the way DescribeTaskDefinition returns it.
    fn every_field(revision: i32, image: &str) -> TaskDefinition {
        TaskDefinition::builder()
            .task_definition_arn(td_arn(revision))
            .family("web")
            .revision(revision)
            .status(TaskDefinitionStatus::Active)
            .container_definitions(ContainerDefinition::builder().name("web").image(image).essential(true).build())
            .container_definitions(
                ContainerDefinition::builder().name("envoy").image("public.ecr.aws/appmesh/aws-appmesh-envoy:v1").build(),
            )
            .task_role_arn("arn:aws:iam::123456789012:role/kanaria/web-task")
            .execution_role_arn("arn:aws:iam::123456789012:role/kanaria/web-execution")
            .network_mode(NetworkMode::Awsvpc)
            .volumes(Volume::builder().name("scratch").build())
            .requires_attributes(Attribute::builder().name("ecs.capability.task-eni").build().unwrap())
            .placement_constraints(
                TaskDefinitionPlacementConstraint::builder()
                    .r#type(TaskDefinitionPlacementConstraintType::MemberOf)
                    .expression("attribute:ecs.availability-zone in [us-east-1a]")
                    .build(),
            )
            .compatibilities(Compatibility::Ec2)
            .compatibilities(Compatibility::Fargate)
            .runtime_platform(
                RuntimePlatform::builder().operating_system_family(OsFamily::Linux).cpu_architecture(CpuArchitecture::Arm64).build(),
            )
            .requires_compatibilities(Compatibility::Fargate)
            .cpu("256")
            .memory("512")
            .inference_accelerators(InferenceAccelerator::builder().device_name("eia").device_type("eia2.medium").build().unwrap())
            .pid_mode(PidMode::Task)
            .ipc_mode(IpcMode::Task)
            .proxy_configuration(ProxyConfiguration::builder().container_name("envoy").build().unwrap())
            .registered_at(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .deregistered_at(aws_smithy_types::DateTime::from_secs(1_700_000_100))
            .delete_requested_at(aws_smithy_types::DateTime::from_secs(1_700_000_200))
            .registered_by("arn:aws:iam::123456789012:role/deployer")
            .ephemeral_storage(EphemeralStorage::builder().size_in_gib(30).build())
            .enable_fault_injection(true)
            .build()
    }

    fn tags() -> Vec<Tag> {
        vec![Tag::builder().key("team").value("payments").build()]
    }

    /// The request `send` makes, as `{:#?}`, captured by a mock rule that matches every call.
    type Captured = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

    #[tokio::test]
    async fn new_revisions_carry_every_field_register_task_definition_takes() {
        let td = every_field(1, "demo/web:v1");
        let captured = Captured::default();
        let keep = captured.clone();
        let register = mock!(Client::register_task_definition)
            .match_requests(move |r| {
                keep.lock().unwrap().push(format!("{r:#?}"));
                r.family() == Some("web")
                    && r.enable_fault_injection() == Some(true)
                    && r.inference_accelerators() == td.inference_accelerators()
                    && r.ephemeral_storage() == td.ephemeral_storage()
                    && r.volumes() == td.volumes()
                    && r.tags() == tags()
                    && r.proxy_configuration() == td.proxy_configuration()
                    && r.placement_constraints() == td.placement_constraints()
                    && r.runtime_platform() == td.runtime_platform()
                    && r.container_definitions().len() == 2
                    && r.container_definitions()[0].image() == Some(IMAGE)
                    && r.container_definitions()[1] == td.container_definitions()[1]
            })
            .then_output(|| {
                RegisterTaskDefinitionOutput::builder()
                    .task_definition(TaskDefinition::builder().task_definition_arn(td_arn(2)).build())
                    .build()
            });
        let rules = describes(vec![every_field(1, "demo/web:v1")]);
        let client = mock_ecs(&[&rules[0], &register]);
        let registered = register_revision(&client, &td_arn(1), "web", IMAGE).await;
        let sent = captured.lock().unwrap().first().cloned().expect("RegisterTaskDefinition was called");
        assert_eq!(unset_fields(&sent), Vec::<String>::new(), "fields of RegisterTaskDefinition left unset:\n{sent}");
        assert_eq!(registered.unwrap(), td_arn(2), "a field was not copied as it is:\n{sent}");
    }

    #[test]
    fn a_new_revision_changes_only_the_policys_container_image() {
        let td = every_field(1, "demo/web:v1");
        let changed = with_image(&td, "web", IMAGE).unwrap();
        assert_eq!(image_of(&changed, "web"), Some(IMAGE));
        assert_eq!(image_of(&changed, "envoy"), image_of(&td, "envoy"));
        let mut expected = td.clone();
        expected.container_definitions.as_mut().unwrap()[0].image = Some(IMAGE.into());
        assert_eq!(changed, expected);
        let err = with_image(&td, "app", IMAGE).unwrap_err();
        assert!(err.to_string().contains("no container named \"app\"") && err.to_string().contains("policy's `container`"), "{err}");
    }

    fn describes(revisions: Vec<TaskDefinition>) -> Vec<Rule> {
        let latest = revisions.iter().filter(|t| t.status() == Some(&TaskDefinitionStatus::Active)).map(|t| t.revision()).max();
        revisions
            .into_iter()
            .map(|td| {
                let (arn, short, family) = (td_arn(td.revision()), format!("web:{}", td.revision()), Some(td.revision()) == latest);
                let answer = td.clone();
                mock!(Client::describe_task_definition)
                    .match_requests(move |r| {
                        let asked = r.task_definition().unwrap_or_default();
                        asked == arn || asked == short || (family && asked == "web")
                    })
                    .then_output(move || {
                        DescribeTaskDefinitionOutput::builder().task_definition(answer.clone()).set_tags(Some(tags())).build()
                    })
            })
            .collect()
    }

    /// Kanaria's revision (web:3, the pushed digest) is found among others: a newer one by someone
    /// else that runs the same image but differs in CPU is not the same task definition, and an
    /// INACTIVE copy is not reused.
    #[tokio::test]
    async fn revision_with_image_finds_the_newest_revision_with_the_same_content() {
        let mut other = every_field(4, IMAGE);
        other.cpu = Some("512".into());
        let mut inactive = every_field(2, IMAGE);
        inactive.status = Some(TaskDefinitionStatus::Inactive);
        let rules = describes(vec![every_field(1, "demo/web:v1"), inactive, every_field(3, IMAGE), other]);
        let client = mock_ecs(&rules.iter().collect::<Vec<_>>());
        let (revision, stable) = revision_with_image(&client, &td_arn(1), "web", IMAGE).await.unwrap();
        assert_eq!(revision, Some(td_arn(3)));
        assert_eq!(stable.as_deref(), Some("demo/web:v1"));
        // None registered yet: someone else's revisions, and an INACTIVE copy.
        let mut other = every_field(4, IMAGE);
        other.cpu = Some("512".into());
        let mut inactive = every_field(2, IMAGE);
        inactive.status = Some(TaskDefinitionStatus::Inactive);
        let rules = describes(vec![every_field(1, "demo/web:v1"), inactive, every_field(3, "demo/web:v0"), other]);
        let client = mock_ecs(&rules.iter().collect::<Vec<_>>());
        assert_eq!(revision_with_image(&client, &td_arn(1), "web", IMAGE).await.unwrap().0, None);
        // A re-tag of the image that runs: the primary's own revision.
        let rules = describes(vec![every_field(1, IMAGE)]);
        let client = mock_ecs(&rules.iter().collect::<Vec<_>>());
        assert_eq!(revision_with_image(&client, &td_arn(1), "web", IMAGE).await.unwrap().0, Some(td_arn(1)));
    }

    /// RegisterTaskDefinition registers, then answers 500. The SDK's retry would register a second
    /// identical revision (it would get web:3 from the mock); kanaria finds web:2 instead.
    #[tokio::test]
    async fn a_registration_that_answered_with_an_error_is_found_not_repeated() {
        let mut rules = describes(vec![every_field(1, "demo/web:v1"), every_field(2, IMAGE)]);
        rules.push(
            mock!(Client::register_task_definition)
                .sequence()
                .http_status(500, None)
                .output(|| {
                    RegisterTaskDefinitionOutput::builder()
                        .task_definition(TaskDefinition::builder().task_definition_arn(td_arn(3)).build())
                        .build()
                })
                .build(),
        );
        let client = mock_ecs(&rules.iter().collect::<Vec<_>>());
        assert_eq!(register_revision(&client, &td_arn(1), "web", IMAGE).await.unwrap(), td_arn(2));
    }

    /// A refused registration is not retried; one that reached nothing is retried.
    #[tokio::test]
    async fn a_registration_that_failed_is_retried_only_when_it_may_succeed() {
        let rules = describes(vec![every_field(1, "demo/web:v1")]);
        let register = mock!(Client::register_task_definition)
            .sequence()
            .http_status(503, None)
            .output(|| {
                RegisterTaskDefinitionOutput::builder()
                    .task_definition(TaskDefinition::builder().task_definition_arn(td_arn(2)).build())
                    .build()
            })
            .build();
        let client = mock_ecs(&[&rules[0], &register]);
        assert_eq!(register_revision(&client, &td_arn(1), "web", IMAGE).await.unwrap(), td_arn(2));
        let refused = mock!(Client::register_task_definition).then_error(|| {
            aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionError::ClientException(
                aws_sdk_ecs::types::error::ClientException::builder()
                    .message("Invalid 'cpu' setting for task.")
                    .meta(error_meta("ClientException", "Invalid 'cpu' setting for task."))
                    .build(),
            )
        });
        let client = mock_ecs(&[&rules[0], &refused]);
        let err = register_revision(&client, &td_arn(1), "web", IMAGE).await.unwrap_err();
        assert!(err.to_string().starts_with("ECS RegisterTaskDefinition on web failed: ClientException"), "{err}");
        assert_eq!(refused.num_calls(), 1);
    }

    fn primary(capacity_providers: bool) -> TaskSet {
        let set = TaskSet::builder()
            .id("ecs-svc/1")
            .task_set_arn("arn:aws:ecs:us-east-1:123456789012:task-set/demo/web/ecs-svc/1")
            .status("PRIMARY")
            .external_id("initial")
            .task_definition(td_arn(1))
            .load_balancers(LoadBalancer::builder().target_group_arn(BLUE).container_name("web").container_port(8080).build())
            .load_balancers(LoadBalancer::builder().target_group_arn(NLB_TG).container_name("web").container_port(9000).build())
            .service_registries(ServiceRegistry::builder().registry_arn(REGISTRY).container_name("web").container_port(8080).build())
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(AwsVpcConfiguration::builder().subnets("subnet-a").security_groups("sg-1").build().unwrap())
                    .build(),
            )
            .platform_version("1.4.0")
            .tags(Tag::builder().key("team").value("payments").build())
            .scale(Scale::builder().unit(ScaleUnit::Percent).value(100.0).build());
        if capacity_providers {
            set.capacity_provider_strategy(
                CapacityProviderStrategyItem::builder().capacity_provider("FARGATE_SPOT").weight(1).build().unwrap(),
            )
            .build()
        } else {
            set.launch_type(LaunchType::Fargate).build()
        }
    }

    fn service() -> ServiceRef {
        ServiceRef { cluster: "demo".into(), name: "web".into() }
    }

    #[tokio::test]
    async fn new_task_sets_carry_every_field_create_task_set_takes() {
        for (capacity_providers, not_sent) in [(false, "capacity_provider_strategy"), (true, "launch_type")] {
            let primary = primary(capacity_providers);
            let answer = primary.clone();
            let describe =
                mock!(Client::describe_task_sets).then_output(move || DescribeTaskSetsOutput::builder().task_sets(answer.clone()).build());
            let captured = Captured::default();
            let keep = captured.clone();
            let create = mock!(Client::create_task_set)
                .match_requests(move |r| {
                    keep.lock().unwrap().push(format!("{r:#?}"));
                    true
                })
                .then_output(created);
            let client = mock_ecs(&[&describe, &create]);
            create_task_set(&client, &service(), &td_arn(2), GREEN, "0123456789abcdef").await.unwrap();
            let sent = captured.lock().unwrap().first().cloned().expect("CreateTaskSet was called");
            // ECS takes a launch type or a capacity provider strategy, never both.
            assert_eq!(unset_fields(&sent), vec![not_sent.to_string()], "fields of CreateTaskSet left unset:\n{sent}");
            let input = new_task_set_request(offline_ecs().create_task_set(), &service(), &primary, &td_arn(2), GREEN, "0123456789abcdef");
            let input = input.as_input();
            let lbs = input.get_load_balancers().clone().unwrap();
            assert_eq!(lbs[0], LoadBalancer::builder().target_group_arn(GREEN).container_name("web").container_port(8080).build());
            assert_eq!(lbs[1], primary.load_balancers()[1], "other load balancers are copied unchanged");
            assert_eq!(lbs.len(), 2);
            assert_eq!(input.get_service_registries().as_deref(), Some(primary.service_registries()));
            let mut tags = primary.tags().to_vec();
            tags.push(Tag::builder().key("kanaria:managed").value("true").build());
            tags.push(Tag::builder().key("kanaria:rollout").value("0123456789abcdef").build());
            assert_eq!(input.get_tags().as_deref(), Some(tags.as_slice()), "the primary's tags and kanaria's");
            assert_eq!(input.get_network_configuration().as_ref(), primary.network_configuration());
            assert_eq!(input.get_platform_version().as_deref(), Some("1.4.0"));
            assert_eq!(input.get_capacity_provider_strategy().as_deref().unwrap_or_default(), primary.capacity_provider_strategy());
            assert_eq!(input.get_task_definition().as_deref(), Some(td_arn(2).as_str()));
            assert_eq!(
                (input.get_external_id().as_deref(), input.get_client_token().as_deref()),
                (Some("0123456789abcdef"), Some("0123456789abcdef"))
            );
        }
    }

    fn describe_primary() -> Rule {
        mock!(Client::describe_task_sets)
            .match_requests(|r| r.include() == [TaskSetField::Tags])
            .then_output(|| DescribeTaskSetsOutput::builder().task_sets(primary(false)).build())
    }

    fn created() -> CreateTaskSetOutput {
        CreateTaskSetOutput::builder().task_set(TaskSet::builder().id("ecs-svc/2").build()).build()
    }

    #[test]
    fn new_task_sets_carry_the_primarys_tags_and_kanarias_own_once() {
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        // A primary kanaria created in an earlier rollout: its kanaria tags are replaced, not doubled.
        let primary = [tag("team", "payments"), tag("kanaria:managed", "true"), tag("kanaria:rollout", "e0e1e2e3e4e5e6e7")];
        assert_eq!(
            new_task_set_tags(&primary, "0123456789abcdef"),
            vec![tag("team", "payments"), tag("kanaria:managed", "true"), tag("kanaria:rollout", "0123456789abcdef")]
        );
        // An untagged primary: the new set still carries the tag IAM checks before changing it.
        assert_eq!(
            new_task_set_tags(&[], "0123456789abcdef"),
            vec![tag("kanaria:managed", "true"), tag("kanaria:rollout", "0123456789abcdef")]
        );
    }

    #[tokio::test]
    async fn create_task_set_copies_the_primary_onto_the_new_target_group() {
        let describe = describe_primary();
        let create = mock!(Client::create_task_set)
            .match_requests(|r| {
                r.load_balancers().iter().filter_map(|l| l.target_group_arn()).collect::<Vec<_>>() == [GREEN, NLB_TG]
                    && r.service_registries().len() == 1
                    && r.tags().len() == 3
                    && r.client_token() == Some("0123456789abcdef")
            })
            .then_output(created);
        let client = mock_ecs(&[&describe, &create]);
        assert_eq!(create_task_set(&client, &service(), &td_arn(2), GREEN, "0123456789abcdef").await.unwrap(), "ecs-svc/2");
        assert_eq!(create.num_calls(), 1);
    }
}
