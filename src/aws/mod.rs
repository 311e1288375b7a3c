//! Adapters: the only place that speaks AWS. Each turns SDK types into the domain's views
//! (see [`crate::rollout::Observation`]) and domain commands into API calls.

pub mod approvals;
pub mod cloudwatch;
pub mod ecs;
pub mod elb;
pub mod inspect;
pub mod notify;
pub mod policies;
pub mod policy_index;
pub mod scale_log;
pub mod scaling;
pub mod scheduler;
pub mod secrets;
pub mod sfn;
pub mod store;

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Every AWS client a kanaria function may use. Each is built from the shared configuration the
/// first time a handler touches it (`ctx.clients.ecs.describe_services()`, `&ctx.clients.dynamodb`
/// where a `&aws_sdk_dynamodb::Client` is expected: [`LazyClient`] derefs to the SDK client), and
/// then reused for the life of the process. Building all of them at init cost every function the
/// clients it never calls (BENCHMARKS.md, cold start); building per invocation would be worse.
///
/// To add a client: a field here, a line in [`Clients::new`] and one in the `sdk_clients!` list.
#[derive(Clone, Debug)]
pub struct Clients {
    pub autoscaling: LazyClient<aws_sdk_applicationautoscaling::Client>,
    pub cloudwatch: LazyClient<aws_sdk_cloudwatch::Client>,
    pub logs: LazyClient<aws_sdk_cloudwatchlogs::Client>,
    pub ecs: LazyClient<aws_sdk_ecs::Client>,
    pub elb: LazyClient<aws_sdk_elasticloadbalancingv2::Client>,
    pub scheduler: LazyClient<aws_sdk_scheduler::Client>,
    pub sfn: LazyClient<aws_sdk_sfn::Client>,
    pub sns: LazyClient<aws_sdk_sns::Client>,
    pub dynamodb: LazyClient<aws_sdk_dynamodb::Client>,
    pub ssm: LazyClient<aws_sdk_ssm::Client>,
    pub secrets: LazyClient<aws_sdk_secretsmanager::Client>,
    pub sqs: LazyClient<aws_sdk_sqs::Client>,
}

impl Clients {
    /// Nothing is built here: each client is built on its first use, from `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        let config = Arc::new(config.clone());
        Clients {
            autoscaling: LazyClient::new(&config),
            cloudwatch: LazyClient::new(&config),
            logs: LazyClient::new(&config),
            ecs: LazyClient::new(&config),
            elb: LazyClient::new(&config),
            scheduler: LazyClient::new(&config),
            sfn: LazyClient::new(&config),
            sns: LazyClient::new(&config),
            dynamodb: LazyClient::new(&config),
            ssm: LazyClient::new(&config),
            secrets: LazyClient::new(&config),
            sqs: LazyClient::new(&config),
        }
    }
}

/// An SDK client that kanaria builds from the shared [`aws_config::SdkConfig`] on first use.
pub trait SdkClient: Send + Sync + 'static {
    fn from_sdk_config(config: &aws_config::SdkConfig) -> Self;
}

macro_rules! sdk_clients {
    ($($krate:ident),* $(,)?) => {
        $(impl SdkClient for $krate::Client {
            fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
                $krate::Client::new(config)
            }
        })*
    };
}

sdk_clients!(
    aws_sdk_applicationautoscaling,
    aws_sdk_cloudwatch,
    aws_sdk_cloudwatchlogs,
    aws_sdk_ecs,
    aws_sdk_elasticloadbalancingv2,
    aws_sdk_scheduler,
    aws_sdk_secretsmanager,
    aws_sdk_sfn,
    aws_sdk_sns,
    aws_sdk_dynamodb,
    aws_sdk_ssm,
    aws_sdk_sqs,
);

/// One SDK client, built the first time it is dereferenced. Clones share it (a cloned
/// [`Context`] does not build its clients again). Building is generic over the client type, so a
/// function binary links the constructor, endpoint rules and operations of the clients its
/// handler uses only: the others are never instantiated.
pub struct LazyClient<C> {
    inner: Arc<LazyInner<C>>,
}

struct LazyInner<C> {
    config: Arc<aws_config::SdkConfig>,
    client: OnceLock<C>,
}

impl<C> LazyClient<C> {
    pub fn new(config: &Arc<aws_config::SdkConfig>) -> Self {
        LazyClient { inner: Arc::new(LazyInner { config: config.clone(), client: OnceLock::new() }) }
    }

    /// Whether the client has been built yet (it is on first use).
    pub fn is_built(&self) -> bool {
        self.inner.client.get().is_some()
    }
}

impl<C: SdkClient> std::ops::Deref for LazyClient<C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.inner.client.get_or_init(|| C::from_sdk_config(&self.inner.config))
    }
}

impl<C> Clone for LazyClient<C> {
    fn clone(&self) -> Self {
        LazyClient { inner: self.inner.clone() }
    }
}

impl<C> std::fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the client's own Debug: that would build it.
        f.debug_struct("LazyClient").field("client", &std::any::type_name::<C>()).field("built", &self.is_built()).finish()
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
    /// SNS topic for every rollout state change (`KANARIA_EVENTS_TOPIC_ARN`): the Slack message
    /// of each rollout is rendered from these; dashboards may subscribe too.
    pub events_topic_arn: Option<String>,
    /// EventBridge Scheduler: kanaria's schedule group and what its schedules invoke.
    pub scheduler: scheduler::SchedulerSettings,
    /// The SQS queue of Slack decisions (`KANARIA_DECISION_QUEUE_URL`): slack-interactions
    /// answers Slack at once and decides from the queue.
    pub decision_queue_url: Option<String>,
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
            events_topic_arn: std::env::var("KANARIA_EVENTS_TOPIC_ARN").ok().filter(|v| !v.is_empty()),
            scheduler: scheduler::SchedulerSettings::from_env(),
            decision_queue_url: std::env::var("KANARIA_DECISION_QUEUE_URL").ok().filter(|v| !v.is_empty()),
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
    /// Slack configuration and cached credentials (used by the Slack functions only).
    pub chatops: std::sync::Arc<crate::slack::api::ChatOps>,
    /// Where rollout metrics go (standard output in Lambda).
    pub metrics: crate::telemetry::MetricsSink,
}

impl Context {
    /// Load AWS config the standard way (env, profile, IMDS/Lambda role; `AWS_ENDPOINT_URL`
    /// points it at emulated AWS). Clients are built on first use ([`Clients`]). For the Lambda
    /// functions: metrics go to standard output.
    pub async fn from_env() -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Context {
            clients: Clients::new(&config),
            settings: Settings::from_env(),
            chatops: std::sync::Arc::new(crate::slack::api::ChatOps::from_env()),
            metrics: crate::telemetry::MetricsSink::Stdout,
        }
    }
}

/// Unix seconds now. Handlers read the clock; the domain is given `now`.
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The raw HTTP response of an SDK call (what every `aws-sdk-*` operation's error carries).
pub type HttpResponse = aws_smithy_runtime_api::client::orchestrator::HttpResponse;

/// An AWS call failed: which service, which resource, what it said, and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{service} {operation} on {resource} failed: {message}")]
pub struct AwsError {
    pub service: &'static str,
    pub operation: &'static str,
    pub resource: String,
    pub message: String,
    /// Throttling, 5xx, timeouts, unreadable responses: the caller may retry.
    pub transient: bool,
}

/// Error codes of a request refused for its rate or for capacity of the moment: the AWS SDK's own
/// list (aws-runtime `retries::classifiers::THROTTLING_ERRORS`), plus `Throttled`, the query-protocol
/// code of SNS's `ThrottledException`. `LimitExceededException` is on the SDK's list because several
/// services (Kinesis, DynamoDB control plane) use it for a rate.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "Throttled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes of a failure on the service's side, or of a conflict that ends by itself: the SDK's
/// `TRANSIENT_ERRORS` (RequestTimeout*), the services' internal-error codes (some arrive without a
/// 5xx status through proxies), and DynamoDB's `TransactionConflictException` ("Operation was
/// rejected because there is an ongoing transaction for the item": it ends with that transaction).
const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "InternalServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ServerException",
    "TransactionConflictException",
];

/// May a request that failed with this error code succeed if sent again?
pub fn is_transient_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
        || TRANSIENT_CODES.contains(&code)
        // Service-specific throttling codes the SDK list does not name (Step Functions'
        // KmsThrottlingException, say).
        || code.contains("Throttl")
}

/// May the request succeed if sent again? True when it may never have reached the service
/// (dispatch failure, timeout), when the service answered with a throttling or server-side error
/// (code, HTTP 5xx or 429), and when the answer could not be read: a 2xx response the SDK cannot
/// deserialize surfaces as a `ServiceError` with no code (the generated deserializers map parse
/// failures to the operation's `unhandled` error) and an unreadable error response as a
/// `ResponseError`. Never the request's own fault (validation, access denied, not found).
fn is_transient<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, HttpResponse>,
) -> bool {
    use aws_smithy_runtime_api::client::result::SdkError;
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(se) => {
            let status = se.raw().status();
            status.is_success() || status.is_server_error() || status.as_u16() == 429 || se.err().code().is_some_and(is_transient_code)
        }
        // ConstructionFailure: the request could not be built; sending it again builds it again.
        _ => false,
    }
}

impl AwsError {
    pub fn new<E>(
        service: &'static str,
        operation: &'static str,
        resource: impl Into<String>,
        err: aws_smithy_runtime_api::client::result::SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let transient = is_transient(&err);
        let message = match err.as_service_error() {
            Some(se) if se.code().is_some() => format!("{}: {}", se.code().unwrap_or("error"), se.message().unwrap_or("no message")),
            // No error code: the response could not be read (a success response kanaria cannot
            // parse, or an error body that is not the service's, such as a proxy's HTML page).
            Some(_) => format!(
                "unreadable response (HTTP {}; the call may have taken effect, retry it): {}",
                err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0),
                aws_smithy_types::error::display::DisplayErrorContext(&err)
            ),
            None => aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
        };
        AwsError { service, operation, resource: resource.into(), message, transient }
    }

    /// A failure kanaria found in what the service answered (not an error the service returned),
    /// worth retrying.
    pub fn message(service: &'static str, operation: &'static str, resource: impl Into<String>, message: impl Into<String>) -> Self {
        AwsError { service, operation, resource: resource.into(), message: message.into(), transient: true }
    }

    /// The service answered with this error code.
    pub fn is_code(&self, code: &str) -> bool {
        self.message.starts_with(&format!("{code}:"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .build()
    }

    #[test]
    fn clients_are_built_on_first_use_only_and_shared_by_clones() {
        let clients = Clients::new(&config());
        assert!(!clients.ecs.is_built() && !clients.dynamodb.is_built());
        // Field access and method calls reach the SDK client, built from the shared config.
        assert_eq!(clients.ecs.config().region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert!(clients.ecs.is_built());
        assert!(!clients.dynamodb.is_built(), "an unused client stays unbuilt");
        // Where a `&Client` is expected, `&clients.x` coerces.
        let ssm: &aws_sdk_ssm::Client = &clients.ssm;
        assert_eq!(ssm.config().region().map(|r| r.as_ref()), Some("eu-west-1"));
        let copy = clients.clone();
        assert!(copy.ecs.is_built() && copy.ssm.is_built());
        let _ = copy.dynamodb.config();
        assert!(clients.dynamodb.is_built(), "a clone builds for both");
    }

    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().expect("a valid status"), SdkBody::from("{}"))
    }

    /// A DynamoDB GetItem error as the SDK hands it over: `code` in the body (None when the body
    /// had none), `status` on the raw response.
    fn service_error(status: u16, code: Option<&str>) -> SdkError<GetItemError, HttpResponse> {
        let meta = match code {
            Some(code) => ErrorMetadata::builder().code(code).message("what the service said").build(),
            None => ErrorMetadata::builder().build(),
        };
        SdkError::service_error(GetItemError::generic(meta), response(status))
    }

    fn classify(err: SdkError<GetItemError, HttpResponse>) -> AwsError {
        AwsError::new("DynamoDB", "GetItem", "kanaria lock of prod/web", err)
    }

    #[test]
    fn unreadable_responses_timeouts_and_dispatch_failures_are_transient() {
        // A 2xx the generated deserializer cannot parse arrives as a ServiceError without a code.
        let unparsed = classify(SdkError::service_error(GetItemError::unhandled("expected '{' at offset 0"), response(200)));
        assert!(unparsed.transient, "{unparsed}");
        assert!(unparsed.message.starts_with("unreadable response (HTTP 200"), "{unparsed}");
        assert!(classify(SdkError::response_error("connection closed mid-body", response(200))).transient);
        assert!(classify(SdkError::timeout_error("operation timed out after 3.1s")).transient);
        assert!(classify(SdkError::dispatch_failure(ConnectorError::io("connection reset".into()))).transient);
    }

    #[test]
    fn server_errors_and_throttling_are_transient() {
        for status in [500, 502, 503, 504] {
            let e = classify(service_error(status, None));
            assert!(e.transient, "HTTP {status} without a code: {e}");
            assert!(classify(service_error(status, Some("InternalServerError"))).transient, "HTTP {status}");
        }
        assert!(classify(service_error(429, None)).transient, "HTTP 429");
        for code in [
            "Throttling",
            "ThrottlingException",
            "ThrottledException",
            "Throttled",
            "TooManyRequestsException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
            "TransactionInProgressException",
            "TransactionConflictException",
            "LimitExceededException",
            "RequestThrottled",
            "SlowDown",
            "RequestTimeout",
            "ServerException",
            "ServiceUnavailable",
            "KmsThrottlingException",
        ] {
            let e = classify(service_error(400, Some(code)));
            assert!(e.transient, "{code} at HTTP 400: {e}");
            assert!(e.is_code(code), "{e}");
        }
    }

    #[test]
    fn request_errors_are_not_transient() {
        for code in [
            "ValidationException",
            "AccessDeniedException",
            "ResourceNotFoundException",
            "ConditionalCheckFailedException",
            "TransactionCanceledException",
            "InvalidParameterException",
        ] {
            let e = classify(service_error(400, Some(code)));
            assert!(!e.transient, "{code}: {e}");
            assert_eq!(e.message, format!("{code}: what the service said"));
        }
        assert!(!classify(service_error(403, None)).transient, "HTTP 403 without a code");
        assert!(!classify(SdkError::construction_failure("missing table name")).transient);
    }

    #[test]
    fn debug_does_not_build_a_client() {
        let clients = Clients::new(&config());
        let text = format!("{clients:?}");
        assert!(text.contains("aws_sdk_sns::client::Client") && text.contains("built: false"), "{text}");
        assert!(!clients.sns.is_built());
    }
}
