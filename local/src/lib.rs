//! kanaria's local runtime: emulated AWS for tests and the demo.
//!
//! One process:
//! - starts **moto** (`moto_server`) on a private port, with real Step Functions execution on;
//! - serves a front port (moto's `MOTO_PORT`) that answers the **Lambda Invoke API** with
//!   kanaria's real handlers and forwards every other request to moto ([`server`]);
//! - creates what `template.yaml` declares ([`template`]): the table, the state machines with
//!   their substitutions, and for every `EventBridgeRule` of a function an EventBridge rule with
//!   the **same pattern** and an SQS target that it drains into the function ([`bridge`]);
//! - runs the ECS task **simulator** ([`ecs`]): moto does not run containers, so task-set
//!   changes become tasks with AWS's timing, target registration and health checks, staged stops
//!   and `ECS Task State Change` events here; the front server answers ECS and ELB calls from it
//!   where moto would answer differently from AWS.
//!
//! [`fixture`] provisions a sample service behind an ALB (used by the demo and the tests).

pub mod bench;
pub mod bridge;
pub mod call;
pub mod coldstart;
pub mod ecs;
pub mod faults;
pub mod fixture;
pub mod iam;
pub mod probe;
pub mod scheduling;
pub mod server;
pub mod sfn_events;
pub mod slack;
pub mod ssm_events;
pub mod template;

pub use ecs::simulator;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use kanaria::aws::{Clients, Context, Settings};
use kanaria::handlers::{Function, HandlerError};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
/// The CloudFormation stack the local runtime stands for (`${AWS::StackName}` in template.yaml).
pub const STACK_NAME: &str = "kanaria";

/// One handled invocation, kept so tests and the demo can wait on and inspect what happened.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: Function,
    pub input: Value,
    pub result: Result<Value, HandlerError>,
    /// How long the handler ran (benchmarks: Lambda GB-seconds).
    pub duration: Duration,
}

/// A function hosted for tests (a blue/green validation hook, say): JSON in, JSON out.
pub type ExtraFunction = Arc<dyn Fn(Value) -> Value + Send + Sync>;

/// What an invocation is routed to.
#[derive(Clone)]
pub enum Target {
    Kanaria(Function),
    Extra(ExtraFunction),
}

/// What the front server, the queue drainers and the simulator share.
pub struct Shared {
    pub ctx: Context,
    /// What the hosted functions run with: `ctx` with each function's name in its clients' app
    /// id, so the front server knows which function made each AWS call ([`call`], [`iam`]).
    function_ctx: Vec<(Function, Context)>,
    pub moto_addr: SocketAddr,
    /// Function name (the template's logical id) → handler.
    functions: HashMap<String, Function>,
    extra: Mutex<HashMap<String, ExtraFunction>>,
    invocations: Mutex<Vec<Invocation>>,
    /// Bumped after every invocation and Slack call, so waiters wake without polling.
    generation: watch::Sender<u64>,
    /// What kanaria sent to "Slack".
    pub slack: slack::SlackRecorder,
    /// ECS's scheduler and the ALB's health checks (moto has neither).
    pub simulator: Arc<ecs::Simulator>,
    pub(crate) ecs_front: ecs::front::EcsFront,
    /// Bumped after every change to a listener or rule (the traffic probe re-reads them).
    elb_changes: watch::Sender<u64>,
    /// IAM as AWS evaluates it, for every call of a function and invoke of the state machine.
    pub iam: iam::IamGate,
    /// Faults a test asked for ([`faults`]).
    pub faults: faults::Faults,
    /// Parameter Store's change events ([`ssm_events`]).
    pub(crate) ssm_events: ssm_events::SsmEvents,
    /// Every AWS API call of a hosted function, counted by function and action (tests and
    /// benchmarks: what an event costs).
    function_calls: Mutex<HashMap<(String, String), u64>>,
    /// Function (logical id) → its URL's AuthType, for functions with a URL.
    pub(crate) url_auth: HashMap<String, String>,
}

impl Shared {
    /// A function name or ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`).
    pub fn function_for(&self, target: &str) -> Option<Target> {
        let name = match target.split_once(":function:") {
            Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
            None => target,
        };
        if let Some(f) = self.functions.get(name) {
            return Some(Target::Kanaria(*f));
        }
        self.extra.lock().expect("extra functions").get(name).cloned().map(Target::Extra)
    }

    /// The context a hosted function runs with (its clients carry its app id, so its calls are
    /// authorized against its role and faults aimed at it apply).
    pub fn function_context(&self, function: Function) -> &Context {
        self.function_ctx.iter().find(|(f, _)| *f == function).map(|(_, c)| c).unwrap_or(&self.ctx)
    }

    /// Count one AWS API call of a hosted function (`function`: its crate name; `action`:
    /// `service:Operation`).
    pub(crate) fn count_call(&self, function: &str, action: String) {
        *self.function_calls.lock().expect("call counts").entry((function.to_string(), action)).or_default() += 1;
    }

    /// The AWS API calls `function` (a crate name, `on-image-push`) has made so far, by action
    /// (`ssm:GetParameters`), including calls refused by IAM or an injected fault.
    pub fn calls_of(&self, function: &str) -> std::collections::BTreeMap<String, u64> {
        let counts = self.function_calls.lock().expect("call counts");
        counts.iter().filter(|((f, _), _)| f == function).map(|((_, action), n)| (action.clone(), *n)).collect()
    }

    /// Host another function under `name` (tests: validation hooks).
    pub fn register_function(&self, name: &str, function: ExtraFunction) {
        self.extra.lock().expect("extra functions").insert(name.to_string(), function);
    }

    pub async fn invoke(&self, function: Function, payload: Value) -> Result<Value, HandlerError> {
        let started = Instant::now();
        let ctx = self.function_context(function);
        let result = function.handle(ctx, payload.clone()).await;
        let duration = started.elapsed();
        if let Err(e) = &result {
            warn!(function = function.crate_name(), error_type = %e.error_type, error = %e.message, "function error");
        }
        self.invocations.lock().expect("invocation log").push(Invocation { function, input: payload, result: result.clone(), duration });
        self.generation.send_modify(|g| *g += 1);
        result
    }

    /// A listener or rule changed.
    pub fn notify_elb_change(&self) {
        self.elb_changes.send_modify(|g| *g += 1);
    }

    /// Changes to listeners and rules, as a counter to watch.
    pub fn elb_changes(&self) -> watch::Receiver<u64> {
        self.elb_changes.subscribe()
    }

    /// Call moto itself with a JSON API of `service` (its SigV4 signing name; `target`: the
    /// `X-Amz-Target`). The strict front and the IAM gate answer from what moto stores.
    pub async fn moto_json(&self, service: &str, target: &str, body: &Value) -> Result<Value> {
        use http_body_util::BodyExt;
        let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let req = hyper::Request::builder()
            .method("POST")
            .uri(format!("http://{}/", self.moto_addr))
            .header("authorization", moto_authorization(service))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target)
            .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))?;
        let resp = client.request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("moto answered {target} with HTTP {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Call moto itself with a query API of `service` (ELBv2, SNS, CloudWatch); the XML answer.
    pub async fn moto_query(&self, service: &str, params: &[(&str, &str)]) -> Result<String> {
        use http_body_util::BodyExt;
        let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let req = hyper::Request::builder()
            .method("POST")
            .uri(format!("http://{}/", self.moto_addr))
            .header("authorization", moto_authorization(service))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        let resp = client.request(req).await?;
        let status = resp.status();
        let text = String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
        if !status.is_success() {
            bail!("moto answered {:?} with HTTP {status}: {text}", params.first());
        }
        Ok(text)
    }

    /// Wake everyone waiting on invocations or Slack calls.
    pub fn notify_waiters(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Wait until `done` holds for the Slack calls so far (re-checked after each call).
    pub async fn wait_for_slack(&self, what: &str, timeout: Duration, done: impl Fn(&[slack::SlackCall]) -> bool) -> Result<()> {
        let mut rx = self.generation.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(&self.slack.calls()) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; Slack calls so far: {:?}",
                    self.slack.calls().iter().map(|c| &c.method).collect::<Vec<_>>()
                );
            }
        }
    }

    pub fn invocations(&self) -> Vec<Invocation> {
        self.invocations.lock().expect("invocation log").clone()
    }

    /// Wait until `done` holds for the invocations so far (re-checked after each invocation).
    pub async fn wait_for_invocations(&self, what: &str, timeout: Duration, done: impl Fn(&[Invocation]) -> bool) -> Result<()> {
        let mut rx = self.generation.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(&self.invocations.lock().expect("invocation log")) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The project root (template.yaml, statemachines/).
    pub root: PathBuf,
    /// The `moto_server` executable.
    pub moto_server: PathBuf,
    /// Front port (0 picks a free one).
    pub port: u16,
    /// Where moto's output goes (None: discarded).
    pub moto_log: Option<PathBuf>,
    /// How fast emulated ECS and the ALB run (start delays, health checks, deregistration).
    pub timing: ecs::Timing,
}

impl Default for Options {
    fn default() -> Self {
        Options { root: project_root(), moto_server: default_moto_server(), port: 0, moto_log: None, timing: ecs::Timing::default() }
    }
}

/// The project root: `KANARIA_ROOT`, else the workspace this crate was built in.
pub fn project_root() -> PathBuf {
    std::env::var_os("KANARIA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("local/ has a parent").to_path_buf())
}

/// `KANARIA_MOTO_SERVER`, else the project venv that `scripts/setup` creates, else PATH.
pub fn default_moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("KANARIA_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = std::env::var_os("KANARIA_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kanaria/venv")));
    if let Some(candidate) = venv.map(|v| v.join("bin/moto_server")).filter(|p| p.exists()) {
        return candidate;
    }
    PathBuf::from("moto_server")
}

/// A running local AWS. Dropping it stops moto and every background task.
pub struct LocalAws {
    pub endpoint: String,
    pub config: SdkConfig,
    pub shared: Arc<Shared>,
    pub simulator: Arc<simulator::Simulator>,
    /// Simulated clients on every listener ([`probe`]).
    pub probe: Arc<probe::Probe>,
    pub state_machine_arn: String,
    /// The SQS queue subscribed to the alert topic: every notice sent, as SNS delivers it.
    pub alert_queue_url: String,
    tasks: Vec<JoinHandle<()>>,
    _moto: Child,
    /// The test provokes IAM denials on purpose ([`LocalAws::expect_iam_denials`]).
    expect_denials: bool,
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // A call IAM would refuse is a defect of the template or the code, even when the test
        // did not notice (a refused notice is only logged): fail the test that made it.
        self.shared.iam.log_summary();
        let denials = self.shared.iam.denials();
        if !denials.is_empty() && !std::thread::panicking() && !self.expect_denials {
            let lines: Vec<String> = denials.iter().map(|d| format!("  - {d}")).collect();
            panic!("IAM would refuse {} call(s) kanaria made in this test:\n{}", denials.len(), lines.join("\n"));
        }
    }
}

/// moto routes a request by the service in its SigV4 credential scope (it checks no signature).
fn moto_authorization(service: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
}

/// The SDK config every client of the local runtime uses: the front endpoint, a fixed region,
/// static test credentials.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_ecs::config::Credentials::new("test", "test", None, None, "kanaria-local"))
        .load()
        .await
}

/// The SDK config of the functions' clients: `config` with their app id in the user agent
/// (one function's, or that of all of them).
fn function_config(config: &SdkConfig, function: Option<Function>) -> SdkConfig {
    let name = function
        .map(|f| format!("{}.{}", server::FUNCTION_APP_NAME, f.crate_name()))
        .unwrap_or_else(|| server::FUNCTION_APP_NAME.to_string());
    config.to_builder().app_name(aws_config::AppName::new(name).expect("a valid app name")).build()
}

async fn moto_api(
    client: &hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>,
    moto: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<u16> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{moto}{path}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))?;
    let resp = client.request(req).await?;
    Ok(resp.status().as_u16())
}

impl LocalAws {
    pub async fn start(options: Options) -> Result<LocalAws> {
        let started = Instant::now();
        let listener =
            TcpListener::bind(("127.0.0.1", options.port)).await.with_context(|| format!("binding 127.0.0.1:{}", options.port))?;
        let front = listener.local_addr()?;
        let moto_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let endpoint = format!("http://127.0.0.1:{}", front.port());

        let (stdout, stderr) = match &options.moto_log {
            Some(path) => {
                let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
                (Stdio::from(f.try_clone()?), Stdio::from(f))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        // moto's server through local/moto/strict_moto.py, which adds Step Functions rules moto
        // skips (TimeoutSecondsPath must be a positive integer), with the Python moto runs on.
        let python =
            options.moto_server.parent().map(|bin| bin.join("python3")).filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("python3"));
        let strict_moto = options.root.join("local/moto/strict_moto.py");
        let moto = Command::new(&python)
            .arg(&strict_moto)
            .args(["-H", "127.0.0.1", "-p", &moto_addr.port().to_string()])
            // moto's Step Functions interpreter sends its Lambda invokes to localhost:MOTO_PORT.
            .env("MOTO_PORT", front.port().to_string())
            // AWS managed IAM policies (AmazonECSTaskExecutionRolePolicy) exist only with this.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("starting moto with {} {} (run `scripts/setup` to install moto)", python.display(), strict_moto.display())
            })?;

        let http: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match moto_api(&http, moto_addr, "GET", "/moto-api/", "").await {
                Ok(200) => break,
                _ if Instant::now() > deadline => bail!("moto did not start on {moto_addr} within 60s"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        for (path, body) in [
            ("/moto-api/config", r#"{"stepfunctions":{"execute_state_machine":true}}"#),
            // Tasks stay as the simulator puts them (moto otherwise moves them towards STOPPED on
            // every DescribeTasks).
            (
                "/moto-api/state-manager/set-transition",
                r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000}}"#,
            ),
        ] {
            let status = moto_api(&http, moto_addr, "POST", path, body).await?;
            if status != 200 && status != 201 {
                bail!("moto refused {path}: HTTP {status}");
            }
        }

        let config = sdk_config(&endpoint).await;
        let template_path = options.root.join("template.yaml");
        let template_text = std::fs::read_to_string(&template_path).with_context(|| format!("reading {}", template_path.display()))?;
        let template = template::parse(&template_text).with_context(|| format!("in {}", template_path.display()))?;
        // The simulator plays AWS itself: it talks to moto directly, not through the front;
        // so does the set-up of what the template creates before the front server answers.
        let moto_config = sdk_config(&format!("http://{moto_addr}")).await;
        // The functions get the secret's full ARN, as the template gives it to them.
        let slack_secret_arn = slack::create_secret(&moto_config).await?;
        // Queues that invoke functions (SQS event sources), named by their logical ids.
        let moto_sqs = aws_sdk_sqs::Client::new(&moto_config);
        let mut function_queues = Vec::new();
        for f in &template.functions {
            for (_, queue) in &f.queues {
                let (url, _) = bridge::create_queue(&moto_sqs, queue, Some(2)).await?;
                function_queues.push((f.function, queue.clone(), url));
            }
        }
        let decision_queue_url =
            function_queues.iter().find(|(f, _, _)| *f == kanaria::handlers::Function::SlackInteractions).map(|(_, _, url)| url.clone());
        let settings = Settings {
            table: "kanaria".into(),
            policy_prefix: kanaria::aws::DEFAULT_POLICY_PREFIX.into(),
            state_machine_arn: String::new(),
            // Notices go to an SNS topic whose SQS subscriber records them (see `notices`).
            alert_topic_arn: Some(format!("arn:aws:sns:{REGION}:{ACCOUNT}:kanaria-alerts")),
            events_topic_arn: Some(format!("arn:aws:sns:{REGION}:{ACCOUNT}:kanaria-events")),
            scheduler: scheduling::settings(&template),
            decision_queue_url,
        };
        // Step Functions ARNs are deterministic, so the handlers' settings are complete before
        // anything is created, and the front server can answer from the first call on.
        let rollout_sm = template.state_machines.first().ok_or_else(|| anyhow!("template.yaml declares no state machine"))?;
        let state_machine_arn = format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{}", rollout_sm.name);
        let settings = Settings { state_machine_arn: state_machine_arn.clone(), ..settings };
        let resolver = iam::local_resolver(&template, &settings, &slack_secret_arn);
        let iam = iam::IamGate::new(&template_text, &template, &resolver, &state_machine_arn)?;
        let functions: HashMap<String, Function> = template.functions.iter().map(|f| (f.logical_id.clone(), f.function)).collect();
        let (generation, _) = watch::channel(0);
        let (elb_changes, _) = watch::channel(0);
        let simulator = Arc::new(ecs::Simulator::new(&moto_config, options.timing.clone()));
        let chatops = Arc::new(local_chatops(&endpoint, &slack_secret_arn));
        // Every hosted function's metric documents, in one place (tests read them).
        let metrics = kanaria::telemetry::MetricsSink::memory();
        let function_ctx = Function::ALL
            .into_iter()
            .map(|f| {
                let clients = Clients::new(&function_config(&config, Some(f)));
                (f, Context { clients, settings: settings.clone(), chatops: chatops.clone(), metrics: metrics.clone() })
            })
            .collect();
        let shared = Arc::new(Shared {
            // The handlers' AWS calls carry the functions' app id, so the front server counts them.
            ctx: Context { clients: Clients::new(&function_config(&config, None)), settings, chatops, metrics },
            function_ctx,
            moto_addr,
            functions,
            extra: Mutex::new(HashMap::new()),
            invocations: Mutex::new(Vec::new()),
            generation,
            slack: Default::default(),
            simulator: simulator.clone(),
            ssm_events: ssm_events::SsmEvents::new(&moto_config),
            function_calls: Mutex::new(HashMap::new()),
            url_auth: template.functions.iter().filter_map(|f| Some((f.logical_id.clone(), f.url_auth.clone()?))).collect(),
            ecs_front: Default::default(),
            elb_changes,
            iam,
            faults: Default::default(),
        });
        let mut tasks = vec![tokio::spawn(server::serve(listener, shared.clone()))];

        create_table(&shared.ctx).await?;
        scheduling::create_resources(&config, &shared.ctx).await?;
        let alert_queue_url = record_notices(&config).await?;
        // Rollout cards and alerts reach slack-notify through SNS, as in AWS.
        let events_topic =
            aws_sdk_sns::Client::new(&config).create_topic().name("kanaria-events").send().await.context("creating the events topic")?;
        if let Some(notify) = template.functions.iter().find(|f| f.function == Function::SlackNotify) {
            let sqs = aws_sdk_sqs::Client::new(&config);
            let alerts = format!("arn:aws:sns:{REGION}:{ACCOUNT}:kanaria-alerts");
            for (topic, queue) in
                [(events_topic.topic_arn().unwrap_or_default(), "slack-notify-events"), (alerts.as_str(), "slack-notify-alerts")]
            {
                let queue_url = slack::subscribe_queue(&config, topic, queue).await?;
                tasks.push(tokio::spawn(slack::drain_sns(shared.clone(), sqs.clone(), queue_url, notify.function)));
            }
        }
        let sfn = aws_sdk_sfn::Client::new(&config);
        for sm in &template.state_machines {
            let mut definition =
                std::fs::read_to_string(options.root.join(&sm.definition_uri)).with_context(|| format!("reading {}", sm.definition_uri))?;
            for (key, sub) in &sm.substitutions {
                let value = match sub {
                    template::Substitution::FunctionArn(id) => {
                        template.function_by_logical_id(id).ok_or_else(|| anyhow!("{key} names {id}, not a function of the template"))?;
                        function_arn(id)
                    }
                    template::Substitution::Literal(s) => s.clone(),
                };
                definition = definition.replace(&format!("${{{key}}}"), &value);
            }
            let out = sfn
                .create_state_machine()
                .name(&sm.name)
                .definition(definition)
                .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/kanaria-local"))
                .send()
                .await
                .with_context(|| format!("creating state machine {}", sm.logical_id))?;
            if sm.logical_id == rollout_sm.logical_id && out.state_machine_arn() != state_machine_arn {
                bail!("moto named the state machine {} (expected {state_machine_arn})", out.state_machine_arn());
            }
        }

        let events = aws_sdk_eventbridge::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        for (function, queue, url) in function_queues {
            tasks.push(tokio::spawn(bridge::drain_event_source(shared.clone(), sqs.clone(), queue, url, function)));
        }
        for f in &template.functions {
            for (event_name, pattern) in &f.rules {
                let queue_url = bridge::route_rule(&events, &sqs, &f.logical_id, event_name, pattern).await?;
                tasks.push(tokio::spawn(bridge::drain(shared.clone(), sqs.clone(), queue_url, f.function)));
            }
        }
        tasks.push(tokio::spawn(simulator.clone().run()));
        let state_machines: Vec<String> =
            template.state_machines.iter().map(|sm| format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{}", sm.name)).collect();
        tasks.push(tokio::spawn(sfn_events::run(moto_config.clone(), state_machines)));
        let probe = Arc::new(probe::Probe::new(&moto_config, simulator.clone()));
        tasks.push(tokio::spawn(probe.clone().run(shared.elb_changes())));
        info!(%endpoint, moto = %moto_addr, elapsed_ms = started.elapsed().as_millis() as u64, "local AWS ready");
        Ok(LocalAws {
            endpoint,
            config,
            shared,
            simulator,
            probe,
            state_machine_arn,
            alert_queue_url,
            tasks,
            _moto: moto,
            expect_denials: false,
        })
    }

    pub fn ctx(&self) -> &Context {
        &self.shared.ctx
    }

    /// The metric documents (CloudWatch Embedded Metric Format lines) the hosted functions
    /// emitted so far, parsed.
    pub fn metric_documents(&self) -> Vec<serde_json::Value> {
        self.shared.ctx.metrics.lines().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// This test makes calls IAM refuses on purpose: do not fail it for them.
    pub fn expect_iam_denials(&mut self) {
        self.expect_denials = true;
        self.shared.iam.expect_denials();
    }

    /// Notices published to the alert topic since the last call: (subject, body).
    pub async fn notices(&self) -> Result<Vec<(String, String)>> {
        let sqs = aws_sdk_sqs::Client::new(&self.config);
        let mut notices = Vec::new();
        loop {
            let out = sqs.receive_message().queue_url(&self.alert_queue_url).max_number_of_messages(10).send().await?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(notices);
            }
            for m in messages {
                let envelope: Value = serde_json::from_str(m.body().unwrap_or_default()).unwrap_or(Value::Null);
                notices.push((
                    envelope["Subject"].as_str().unwrap_or_default().to_string(),
                    envelope["Message"].as_str().unwrap_or_default().to_string(),
                ));
                if let Some(h) = m.receipt_handle() {
                    sqs.delete_message().queue_url(&self.alert_queue_url).receipt_handle(h).send().await?;
                }
            }
        }
    }
}

/// Slack as the functions see it here: the recording stand-in on the front port.
fn local_chatops(endpoint: &str, secret_arn: &str) -> kanaria::slack::api::ChatOps {
    kanaria::slack::api::ChatOps::new(kanaria::slack::api::SlackConfig {
        secret_arn: Some(secret_arn.to_string()),
        team_id: slack::TEAM_ID.into(),
        app_id: slack::APP_ID.into(),
        default_channel: Some(slack::CHANNEL.into()),
        api_url: format!("{endpoint}/slack/api"),
        response_url_prefixes: vec![format!("{endpoint}/slack/response/")],
    })
}

/// The alert topic and an SQS queue subscribed to it (the recording notification sink).
async fn record_notices(config: &SdkConfig) -> Result<String> {
    let sns = aws_sdk_sns::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let topic = sns.create_topic().name("kanaria-alerts").send().await.context("creating the alert topic")?;
    let (queue_url, queue_arn) = bridge::create_queue(&sqs, "kanaria-alerts-recorded", None).await?;
    sns.subscribe().topic_arn(topic.topic_arn().unwrap_or_default()).protocol("sqs").endpoint(queue_arn).send().await?;
    Ok(queue_url)
}

async fn create_table(ctx: &Context) -> Result<()> {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    let ddb = &ctx.clients.dynamodb;
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let attr = |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    ddb.create_table()
        .table_name(&ctx.settings.table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .send()
        .await
        .context("creating the DynamoDB table")?;
    Ok(())
}
