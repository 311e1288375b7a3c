//! ECS adapter: task sets of EXTERNAL-controller services, task-definition revisions, tasks.

use aws_sdk_ecs::types::{DesiredStatus, LaunchType, LoadBalancer, Scale, ScaleUnit, TaskDefinition, TaskDefinitionField};
use aws_sdk_ecs::Client;

use super::AwsError;
use crate::policy::ServiceRef;
use crate::rollout::{Stability, TaskSetView};

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

async fn describe_task_definition(ecs: &Client, arn_or_family: &str) -> Result<(TaskDefinition, Vec<aws_sdk_ecs::types::Tag>), AwsError> {
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

/// The latest ACTIVE revision of `based_on`'s family, if its `container` already runs `image`.
/// This makes registering idempotent: a retried rollout step reuses the revision it made.
/// Also returns the image `based_on` runs in `container` (the stable image, for people).
pub async fn revision_with_image(
    ecs: &Client,
    based_on: &str,
    container: &str,
    image: &str,
) -> Result<(Option<String>, Option<String>), AwsError> {
    let (base, _) = describe_task_definition(ecs, based_on).await?;
    let base_image = image_of(&base, container).map(str::to_string);
    let family = base.family().unwrap_or_default();
    let (latest, _) = describe_task_definition(ecs, family).await?;
    let revision = (image_of(&latest, container) == Some(image)).then(|| latest.task_definition_arn().unwrap_or_default().to_string());
    Ok((revision, base_image))
}

/// Register a new revision of `based_on` that differs only in `container`'s image.
pub async fn register_revision(ecs: &Client, based_on: &str, container: &str, image: &str) -> Result<String, AwsError> {
    let (td, tags) = describe_task_definition(ecs, based_on).await?;
    let mut containers = td.container_definitions().to_vec();
    let target = containers.iter_mut().find(|c| c.name() == Some(container)).ok_or_else(|| AwsError {
        service: "ECS",
        operation: "RegisterTaskDefinition",
        resource: based_on.into(),
        message: format!("the task definition has no container named {container:?}; fix the policy's `container`"),
        transient: false,
    })?;
    target.image = Some(image.to_string());
    let out = ecs
        .register_task_definition()
        .family(td.family().unwrap_or_default())
        .set_task_role_arn(td.task_role_arn().map(str::to_string))
        .set_execution_role_arn(td.execution_role_arn().map(str::to_string))
        .set_network_mode(td.network_mode().cloned())
        .set_container_definitions(Some(containers))
        .set_volumes(Some(td.volumes().to_vec()).filter(|v| !v.is_empty()))
        .set_placement_constraints(Some(td.placement_constraints().to_vec()).filter(|v| !v.is_empty()))
        .set_requires_compatibilities(Some(td.requires_compatibilities().to_vec()).filter(|v| !v.is_empty()))
        .set_cpu(td.cpu().map(str::to_string))
        .set_memory(td.memory().map(str::to_string))
        .set_pid_mode(td.pid_mode().cloned())
        .set_ipc_mode(td.ipc_mode().cloned())
        .set_proxy_configuration(td.proxy_configuration().cloned())
        .set_ephemeral_storage(td.ephemeral_storage().cloned())
        .set_runtime_platform(td.runtime_platform().cloned())
        .set_tags(Some(tags).filter(|t| !t.is_empty()))
        .send()
        .await
        .map_err(|e| AwsError::new("ECS", "RegisterTaskDefinition", td.family().unwrap_or_default(), e))?;
    Ok(out.task_definition().and_then(|t| t.task_definition_arn()).unwrap_or_default().to_string())
}

/// Create the new task set with the primary task set's network, launch type and load balancer
/// container, but the new task definition and target group, at 0% traffic and 100% scale.
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
    let lb = primary.load_balancers().first();
    let load_balancer = LoadBalancer::builder()
        .target_group_arn(target_group_arn)
        .set_container_name(lb.and_then(|l| l.container_name()).map(str::to_string))
        .set_container_port(lb.and_then(|l| l.container_port()))
        .build();
    let launch_type = if primary.capacity_provider_strategy().is_empty() {
        Some(primary.launch_type().cloned().unwrap_or(LaunchType::Fargate))
    } else {
        None
    };
    let out = ecs
        .create_task_set()
        .cluster(&service.cluster)
        .service(&service.name)
        .task_definition(task_definition_arn)
        .external_id(external_id)
        .client_token(external_id)
        .load_balancers(load_balancer)
        .set_network_configuration(primary.network_configuration().cloned())
        .set_launch_type(launch_type)
        .set_capacity_provider_strategy(Some(primary.capacity_provider_strategy().to_vec()).filter(|c| !c.is_empty()))
        .set_platform_version(primary.platform_version().map(str::to_string))
        .scale(Scale::builder().unit(ScaleUnit::Percent).value(100.0).build())
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
