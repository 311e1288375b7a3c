//! What template.yaml creates for scheduled capacity, in emulated AWS: kanaria's EventBridge
//! Scheduler group and the dead-letter queue of its schedules; and the settings the functions
//! get from the template in AWS (the scale function's ARN, Scheduler's role, the queue).
//! moto never fires schedules: tests invoke the target with the schedule's input themselves.

use anyhow::{bail, Context as _, Result};
use aws_config::SdkConfig;
use kanaria::aws::scheduler::{SchedulerSettings, DEFAULT_GROUP};
use kanaria::aws::Context;
use kanaria::handlers::Function;

use crate::template::Template;
use crate::{function_arn, ACCOUNT, REGION};

pub const DEAD_LETTER_QUEUE: &str = "kanaria-scheduler-dlq";

/// The settings template.yaml gives the functions (`KANARIA_SCALE_FUNCTION_ARN`, ...).
pub fn settings(template: &Template) -> SchedulerSettings {
    SchedulerSettings {
        group: DEFAULT_GROUP.into(),
        function_arn: template.functions.iter().find(|f| f.function == Function::ScheduledScale).map(|f| function_arn(&f.logical_id)),
        role_arn: Some(format!("arn:aws:iam::{ACCOUNT}:role/kanaria-scheduler")),
        dead_letter_arn: Some(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{DEAD_LETTER_QUEUE}")),
    }
}

/// The schedule group and the dead-letter queue.
pub async fn create_resources(config: &SdkConfig, ctx: &Context) -> Result<()> {
    let settings = &ctx.settings.scheduler;
    ctx.clients
        .scheduler
        .create_schedule_group()
        .name(&settings.group)
        .send()
        .await
        .with_context(|| format!("creating schedule group {}", settings.group))?;
    let sqs = aws_sdk_sqs::Client::new(config);
    let (_, arn) = crate::bridge::create_queue(&sqs, DEAD_LETTER_QUEUE, None).await.context("creating the Scheduler dead-letter queue")?;
    if Some(&arn) != settings.dead_letter_arn.as_ref() {
        bail!("moto named the dead-letter queue {arn} (expected {:?})", settings.dead_letter_arn);
    }
    Ok(())
}
