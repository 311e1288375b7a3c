//! Capacity of an ECS service: its Application Auto Scaling scalable target (namespace `ecs`,
//! resource `service/CLUSTER/SERVICE`, dimension `ecs:service:DesiredCount`) and its desired
//! count. Nothing here touches task sets or listener weights: an EXTERNAL service's task sets
//! scale by percent of the desired count on their own.

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};

use super::AwsError;
use crate::policy::ServiceRef;

/// The bounds Application Auto Scaling keeps the desired count within.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
}

/// `service/CLUSTER/SERVICE`, the scalable target's resource id.
pub fn resource_id(service: &ServiceRef) -> String {
    format!("service/{}/{}", service.cluster, service.name)
}

/// The service's scalable target, if it has one.
pub async fn scalable_target(aas: &aws_sdk_applicationautoscaling::Client, service: &ServiceRef) -> Result<Option<Bounds>, AwsError> {
    let id = resource_id(service);
    let out = aas
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_ids(&id)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .send()
        .await
        .map_err(|e| AwsError::new("ApplicationAutoScaling", "DescribeScalableTargets", &id, e))?;
    Ok(out
        .scalable_targets()
        .iter()
        .find(|t| t.resource_id() == id && t.scalable_dimension() == &ScalableDimension::EcsServiceDesiredCount)
        .map(|t| Bounds { min: t.min_capacity().max(0) as u32, max: t.max_capacity().max(0) as u32 }))
}

/// Update the scalable target's bounds (Application Auto Scaling then moves the desired count
/// inside them, and scaling policies stay inside them).
pub async fn set_bounds(aas: &aws_sdk_applicationautoscaling::Client, service: &ServiceRef, bounds: Bounds) -> Result<(), AwsError> {
    let id = resource_id(service);
    aas.register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&id)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .min_capacity(bounds.min as i32)
        .max_capacity(bounds.max as i32)
        .send()
        .await
        .map_err(|e| AwsError::new("ApplicationAutoScaling", "RegisterScalableTarget", &id, e))?;
    Ok(())
}

/// What the scale function reads of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub desired: u32,
    pub running: u32,
    /// More than one task set: a rollout is in flight (EXTERNAL deployment controller).
    pub task_sets: usize,
}

pub async fn capacity(ecs: &aws_sdk_ecs::Client, service: &ServiceRef) -> Result<Capacity, AwsError> {
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
        message: "the service does not exist or is not ACTIVE".into(),
        transient: false,
    })?;
    Ok(Capacity {
        desired: svc.desired_count().max(0) as u32,
        running: svc.running_count().max(0) as u32,
        task_sets: svc.task_sets().iter().filter(|t| t.status() != Some("DRAINING")).count(),
    })
}

/// Set the service's desired count (UpdateService changes nothing else).
pub async fn set_desired_count(ecs: &aws_sdk_ecs::Client, service: &ServiceRef, count: u32) -> Result<(), AwsError> {
    ecs.update_service()
        .cluster(&service.cluster)
        .service(&service.name)
        .desired_count(count as i32)
        .send()
        .await
        .map_err(|e| AwsError::new("ECS", "UpdateService", service.key(), e))?;
    Ok(())
}
