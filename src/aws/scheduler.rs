//! EventBridge Scheduler adapter: the schedules kanaria owns — those in its schedule group whose
//! names start with [`NAME_PREFIX`] — read as [`ObservedSchedule`]s and written from
//! [`DesiredSchedule`]s. Which ones to create, update or delete is decided in
//! [`crate::schedule::plan`]; nothing here touches a schedule kanaria does not own.

use aws_sdk_scheduler::types::{DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, ScheduleState, Target};
use aws_sdk_scheduler::Client;

use super::AwsError;
use crate::schedule::{DesiredSchedule, ObservedSchedule, SchedulerTarget, MAX_EVENT_AGE_SECONDS, NAME_PREFIX, RETRY_ATTEMPTS};

/// kanaria's schedule group unless configured otherwise (template parameter `ScheduleGroupName`).
pub const DEFAULT_GROUP: &str = "kanaria";

/// Where kanaria's schedules live and what they invoke (from the environment in Lambda, from
/// options in the CLI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerSettings {
    /// `KANARIA_SCHEDULE_GROUP`
    pub group: String,
    /// The scheduled-scale function (`KANARIA_SCALE_FUNCTION_ARN`).
    pub function_arn: Option<String>,
    /// The role Scheduler assumes to invoke it (`KANARIA_SCHEDULER_ROLE_ARN`).
    pub role_arn: Option<String>,
    /// Where Scheduler puts what it could not deliver (`KANARIA_SCHEDULER_DLQ_ARN`).
    pub dead_letter_arn: Option<String>,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings { group: DEFAULT_GROUP.into(), function_arn: None, role_arn: None, dead_letter_arn: None }
    }
}

impl SchedulerSettings {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        SchedulerSettings {
            group: var("KANARIA_SCHEDULE_GROUP").unwrap_or_else(|| DEFAULT_GROUP.into()),
            function_arn: var("KANARIA_SCALE_FUNCTION_ARN"),
            role_arn: var("KANARIA_SCHEDULER_ROLE_ARN"),
            dead_letter_arn: var("KANARIA_SCHEDULER_DLQ_ARN"),
        }
    }

    /// The target every schedule gets, or which settings are missing (as their variable names).
    pub fn target(&self) -> Result<SchedulerTarget, Vec<&'static str>> {
        match (&self.function_arn, &self.role_arn, &self.dead_letter_arn) {
            (Some(f), Some(r), Some(d)) => Ok(SchedulerTarget { function_arn: f.clone(), role_arn: r.clone(), dead_letter_arn: d.clone() }),
            (f, r, d) => Err([
                (f.is_none(), "KANARIA_SCALE_FUNCTION_ARN"),
                (r.is_none(), "KANARIA_SCHEDULER_ROLE_ARN"),
                (d.is_none(), "KANARIA_SCHEDULER_DLQ_ARN"),
            ]
            .into_iter()
            .filter_map(|(missing, name)| missing.then_some(name))
            .collect()),
        }
    }
}

fn resource(group: &str, name: &str) -> String {
    format!("schedule {group}/{name}")
}

fn group_hint(mut e: AwsError, group: &str) -> AwsError {
    if e.is_code("ResourceNotFoundException") {
        e.message = format!(
            "{}; the schedule group {group:?} does not exist: deploy kanaria's template (it creates the group) or give the group \
             it created (KANARIA_SCHEDULE_GROUP, --schedule-group)",
            e.message
        );
    }
    e
}

/// The names of the schedules kanaria owns: in `group`, named `kanaria.…`.
pub async fn list_owned(client: &Client, group: &str) -> Result<Vec<String>, AwsError> {
    let mut names = Vec::new();
    let mut pages = client.list_schedules().group_name(group).name_prefix(NAME_PREFIX).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| group_hint(AwsError::new("Scheduler", "ListSchedules", format!("group {group}"), e), group))?;
        for s in page.schedules() {
            // Filter again: the ownership rule must not depend on the API honouring the filters.
            if s.group_name() == Some(group) {
                if let Some(name) = s.name().filter(|n| n.starts_with(NAME_PREFIX)) {
                    names.push(name.to_string());
                }
            }
        }
    }
    names.sort();
    Ok(names)
}

/// One schedule as it is, or None when it does not exist.
pub async fn get(client: &Client, group: &str, name: &str) -> Result<Option<ObservedSchedule>, AwsError> {
    let out = match client.get_schedule().group_name(group).name(name).send().await {
        Ok(out) => out,
        Err(e) => {
            let e = AwsError::new("Scheduler", "GetSchedule", resource(group, name), e);
            return if e.is_code("ResourceNotFoundException") { Ok(None) } else { Err(e) };
        }
    };
    let target = out.target();
    Ok(Some(ObservedSchedule {
        name: out.name().unwrap_or(name).to_string(),
        expression: out.schedule_expression().unwrap_or_default().to_string(),
        timezone: out.schedule_expression_timezone().map(str::to_string),
        state: out.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
        flexible_window_off: out.flexible_time_window().is_some_and(|w| w.mode() == &FlexibleTimeWindowMode::Off),
        target_arn: target.map(|t| t.arn().to_string()).unwrap_or_default(),
        role_arn: target.map(|t| t.role_arn().to_string()).unwrap_or_default(),
        input: target.and_then(|t| t.input()).map(str::to_string),
        dead_letter_arn: target.and_then(|t| t.dead_letter_config()).and_then(|d| d.arn()).map(str::to_string),
        retry: target
            .and_then(|t| t.retry_policy())
            .map(|r| (r.maximum_retry_attempts().unwrap_or(0).max(0) as u32, r.maximum_event_age_in_seconds().unwrap_or(0).max(0) as u32)),
        description: out.description().map(str::to_string),
    }))
}

fn target_of(desired: &DesiredSchedule, target: &SchedulerTarget) -> Target {
    Target::builder()
        .arn(&target.function_arn)
        .role_arn(&target.role_arn)
        .input(desired.action.to_input())
        .dead_letter_config(DeadLetterConfig::builder().arn(&target.dead_letter_arn).build())
        .retry_policy(
            RetryPolicy::builder()
                .maximum_retry_attempts(RETRY_ATTEMPTS as i32)
                .maximum_event_age_in_seconds(MAX_EVENT_AGE_SECONDS as i32)
                .build(),
        )
        .build()
        .expect("arn and role are set")
}

fn window_off() -> FlexibleTimeWindow {
    FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().expect("mode is set")
}

/// Create the schedule. Returns false when it already exists (someone created it meanwhile).
pub async fn create(client: &Client, group: &str, desired: &DesiredSchedule, target: &SchedulerTarget) -> Result<bool, AwsError> {
    let result = client
        .create_schedule()
        .group_name(group)
        .name(&desired.name)
        .description(&desired.description)
        .schedule_expression(&desired.expression)
        .schedule_expression_timezone(&desired.timezone)
        .flexible_time_window(window_off())
        .state(ScheduleState::Enabled)
        .target(target_of(desired, target))
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = group_hint(AwsError::new("Scheduler", "CreateSchedule", resource(group, &desired.name), e), group);
            if e.is_code("ConflictException") {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Replace the schedule's definition with the wanted one (UpdateSchedule sets every field).
pub async fn update(client: &Client, group: &str, desired: &DesiredSchedule, target: &SchedulerTarget) -> Result<(), AwsError> {
    client
        .update_schedule()
        .group_name(group)
        .name(&desired.name)
        .description(&desired.description)
        .schedule_expression(&desired.expression)
        .schedule_expression_timezone(&desired.timezone)
        .flexible_time_window(window_off())
        .state(ScheduleState::Enabled)
        .target(target_of(desired, target))
        .send()
        .await
        .map_err(|e| AwsError::new("Scheduler", "UpdateSchedule", resource(group, &desired.name), e))?;
    Ok(())
}

/// Delete the schedule. Returns false when it was already gone.
pub async fn delete(client: &Client, group: &str, name: &str) -> Result<bool, AwsError> {
    if !name.starts_with(NAME_PREFIX) {
        // Never reached through the plan; a guard against deleting what kanaria does not own.
        return Err(AwsError {
            service: "Scheduler",
            operation: "DeleteSchedule",
            resource: resource(group, name),
            message: format!("refused: kanaria only deletes schedules named {NAME_PREFIX}…"),
            transient: false,
        });
    }
    match client.delete_schedule().group_name(group).name(name).send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = AwsError::new("Scheduler", "DeleteSchedule", resource(group, name), e);
            if e.is_code("ResourceNotFoundException") {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}
