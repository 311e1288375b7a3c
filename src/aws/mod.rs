//! Adapters: the only place that speaks AWS. Each turns SDK types into the domain's views
//! (see [`crate::rollout::Observation`]) and domain commands into API calls.

pub mod cloudwatch;
pub mod ecs;
pub mod elb;
pub mod inspect;
pub mod notify;
pub mod policies;
pub mod scale_log;
pub mod scaling;
pub mod scheduler;
pub mod sfn;
pub mod store;

use std::time::{SystemTime, UNIX_EPOCH};

/// Every AWS client a kanaria function may use, built once per process (Lambda init) and shared.
/// Clients are cheap handles; building one per invocation would redo config loading and TLS.
#[derive(Clone, Debug)]
pub struct Clients {
    pub autoscaling: aws_sdk_applicationautoscaling::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub scheduler: aws_sdk_scheduler::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub sns: aws_sdk_sns::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ssm: aws_sdk_ssm::Client,
}

impl Clients {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Clients {
            autoscaling: aws_sdk_applicationautoscaling::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            ecs: aws_sdk_ecs::Client::new(config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
            scheduler: aws_sdk_scheduler::Client::new(config),
            sfn: aws_sdk_sfn::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
        }
    }
}

/// Where kanaria's own resources are, from the function's environment (set by template.yaml).
#[derive(Clone, Debug)]
pub struct Settings {
    /// DynamoDB table for locks and rollout records (`KANARIA_TABLE`).
    pub table: String,
    /// SSM Parameter Store path under which policies live (`KANARIA_POLICY_PREFIX`).
    pub policy_prefix: String,
    /// The rollout state machine (`KANARIA_STATE_MACHINE_ARN`); only on-image-push needs it.
    pub state_machine_arn: String,
    /// SNS topic for alerts and notices (`KANARIA_ALERT_TOPIC_ARN`), if any.
    pub alert_topic_arn: Option<String>,
    /// EventBridge Scheduler: kanaria's schedule group and what its schedules invoke.
    pub scheduler: scheduler::SchedulerSettings,
}

pub const DEFAULT_TABLE: &str = "kanaria";
pub const DEFAULT_POLICY_PREFIX: &str = "/kanaria/policies/";

impl Settings {
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| std::env::var(k).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| d.to_string());
        Settings {
            table: var("KANARIA_TABLE", DEFAULT_TABLE),
            policy_prefix: normalize_prefix(&var("KANARIA_POLICY_PREFIX", DEFAULT_POLICY_PREFIX)),
            state_machine_arn: var("KANARIA_STATE_MACHINE_ARN", ""),
            alert_topic_arn: std::env::var("KANARIA_ALERT_TOPIC_ARN").ok().filter(|v| !v.is_empty()),
            scheduler: scheduler::SchedulerSettings::from_env(),
        }
    }
}

pub fn normalize_prefix(prefix: &str) -> String {
    let mut p = prefix.trim().to_string();
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    if !p.ends_with('/') {
        p.push('/');
    }
    p
}

/// Clients and settings: what every handler gets.
#[derive(Clone, Debug)]
pub struct Context {
    pub clients: Clients,
    pub settings: Settings,
}

impl Context {
    /// Load AWS config the standard way (env, profile, IMDS/Lambda role; `AWS_ENDPOINT_URL`
    /// points it at emulated AWS) and build every client once.
    pub async fn from_env() -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Context { clients: Clients::new(&config), settings: Settings::from_env() }
    }
}

/// Unix seconds now. Handlers read the clock; the domain is given `now`.
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// An AWS call failed: which service, which resource, what it said, and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{service} {operation} on {resource} failed: {message}")]
pub struct AwsError {
    pub service: &'static str,
    pub operation: &'static str,
    pub resource: String,
    pub message: String,
    /// Throttling, 5xx, timeouts: the caller may retry.
    pub transient: bool,
}

impl AwsError {
    pub fn new<E, R>(
        service: &'static str,
        operation: &'static str,
        resource: impl Into<String>,
        err: aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> Self
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        use aws_smithy_runtime_api::client::result::SdkError;
        let transient = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
            SdkError::ResponseError(_) => true,
            SdkError::ServiceError(se) => {
                let code = se.err().code().unwrap_or("");
                code.contains("Throttl")
                    || code.contains("TooManyRequests")
                    || code == "ServiceUnavailable"
                    || code == "InternalFailure"
                    || code == "ServerException"
            }
            _ => false,
        };
        let message = match err.as_service_error() {
            Some(se) => format!("{}: {}", se.code().unwrap_or("error"), se.message().unwrap_or("no message")),
            None => aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
        };
        AwsError { service, operation, resource: resource.into(), message, transient }
    }

    /// The service answered with this error code.
    pub fn is_code(&self, code: &str) -> bool {
        self.message.starts_with(&format!("{code}:"))
    }
}
