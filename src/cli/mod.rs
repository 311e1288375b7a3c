//! The `kanaria` command (see `src/bin/kanaria.rs`): validate and store rollout policies, show
//! what kanaria is doing, and abort or promote a rollout by hand.
//!
//! - `kanaria policy validate FILE...`, `kanaria policy schema`, `kanaria policy apply FILE`
//! - `kanaria status [CLUSTER/SERVICE]`
//! - `kanaria history CLUSTER/SERVICE [--limit N]`
//! - `kanaria abort CLUSTER/SERVICE`, `kanaria promote CLUSTER/SERVICE [--yes]`
//! - `kanaria schedules CLUSTER/SERVICE [--count N]`
//! - `kanaria verify CLUSTER/SERVICE [--policy FILE]`
//!
//! [`run`] does the work and returns an [`Exit`]; formatting lives in pure functions
//! ([`policy_cmd`], [`status`], [`history`], [`manual_cmd`]) so it is unit-tested without AWS.

pub mod history;
pub mod manual_cmd;
pub mod policy_cmd;
pub mod schedules;
pub mod status;
pub mod verify;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::aws::{normalize_prefix, Clients, Settings, DEFAULT_POLICY_PREFIX, DEFAULT_TABLE};

/// Region used against an emulated AWS endpoint when none is given.
pub const LOCAL_DEFAULT_REGION: &str = "us-east-1";

#[derive(Debug, Parser)]
#[command(
    name = "kanaria",
    version,
    about = "Progressive delivery (canary, rollback) for Amazon ECS",
    long_about = "Progressive delivery (canary, rollback) for Amazon ECS.\n\n\
        Validate and store per-service rollout policies, show in-flight and past rollouts \
        with the live traffic split, and roll back (abort) or promote a rollout by hand.\n\n\
        Exit codes: 0 success, 1 failure (an AWS call failed, no rollout in flight, ...), \
        2 invalid policy or usage."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where kanaria's resources are and how to reach AWS. Each option can come from the environment.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Send every AWS call to this endpoint (an AWS emulator such as LocalStack). Uses region
    /// us-east-1 unless given and test credentials when none are in the environment.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region (otherwise the SDK's usual sources: AWS_REGION, profile, ...).
    #[arg(long, global = true, env = "AWS_REGION", value_name = "REGION")]
    pub region: Option<String>,
    /// DynamoDB table with kanaria's locks and rollout records.
    #[arg(long, global = true, env = "KANARIA_TABLE", default_value = DEFAULT_TABLE, value_name = "TABLE")]
    pub table: String,
    /// SSM Parameter Store path under which policies live (one parameter per CLUSTER/SERVICE).
    #[arg(long, global = true, env = "KANARIA_POLICY_PREFIX", default_value = DEFAULT_POLICY_PREFIX, value_name = "PATH")]
    pub policy_prefix: String,
    /// The stack's decide function URL (output DecideUrl): `approve` and `reject` are decided
    /// there, as your IAM identity, never in this process.
    #[arg(long, global = true, env = "KANARIA_DECIDE_URL", value_name = "URL")]
    pub decide_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate, describe or store rollout policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show each service's in-flight rollout, its last finished rollout and the live traffic split.
    Status {
        /// Only this service, as CLUSTER/SERVICE (or the service's ARN).
        #[arg(value_name = "CLUSTER/SERVICE")]
        service: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show how the service's recent rollouts ended, newest first.
    History {
        /// The service, as CLUSTER/SERVICE (or the service's ARN).
        #[arg(value_name = "CLUSTER/SERVICE")]
        service: String,
        /// How many rollouts to show (at most 1000).
        #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=history::MAX_LIMIT))]
        limit: i32,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Roll the service's in-flight rollout back: traffic returns to the stable task set (step by
    /// step if the policy's `shiftBack` asks and the new tasks are healthy) and the new one is
    /// deleted. Exits 1 when no rollout is in flight.
    Abort {
        /// The service, as CLUSTER/SERVICE (or the service's ARN).
        #[arg(value_name = "CLUSTER/SERVICE")]
        service: String,
        /// All traffic back at once, even if the policy paces rollbacks (`shiftBack`).
        #[arg(long)]
        now: bool,
    },
    /// Skip the in-flight rollout's remaining steps: its current bake ends now and it is promoted
    /// after a final check (failed tasks, alarms, analysis). Exits 1 when no rollout is in flight.
    Promote {
        /// The service, as CLUSTER/SERVICE (or the service's ARN).
        #[arg(value_name = "CLUSTER/SERVICE")]
        service: String,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Roll an image out to the service now, by digest, as a push of it would: the usual recovery
    /// is the last good image. A digest rolled out before gets a new rollout (its next attempt);
    /// while a rollout of the same digest is in flight, nothing new starts.
    Deploy {
        /// The service, as CLUSTER/SERVICE (or the service's ARN).
        #[arg(value_name = "CLUSTER/SERVICE")]
        service: String,
        /// The image digest, sha256:... (`aws ecr describe-images --repository-name REPO
        /// --image-ids imageTag=TAG --query 'imageDetails[0].imageDigest'` gives a tag's).
        #[arg(long, value_name = "DIGEST")]
        digest: String,
        /// A tag of the image, shown in the rollout's messages.
        #[arg(long, value_name = "TAG")]
        tag: Option<String>,
        /// The rollout state machine (otherwise the stack's: STACK-rollout in this account and
        /// region).
        #[arg(long, env = "KANARIA_STATE_MACHINE_ARN", value_name = "ARN")]
        state_machine_arn: Option<String>,
        /// The CloudFormation stack kanaria was deployed as.
        #[arg(long, env = "KANARIA_STACK", default_value = "kanaria", value_name = "STACK")]
        stack: String,
    },
    /// Approve the in-flight rollout's pending approval step (as the Slack Approve button does):
    /// the rollout goes on. Recorded with your IAM identity. Exits 1 when nothing waits.
    Approve {
        /// The service, as CLUSTER/SERVICE (or the service's ARN).
        #[arg(value_name = "CLUSTER/SERVICE")]
        service: String,
    },
    /// Reject the in-flight rollout's pending approval step (as the Slack Roll back button does):
    /// traffic returns to the stable task set now. Exits 1 when nothing waits.
    Reject {
        /// The service, as CLUSTER/SERVICE (or the service's ARN).
        #[arg(value_name = "CLUSTER/SERVICE")]
        service: String,
    },
    /// Show the service's capacity schedules: the next fire times in each schedule's time zone
    /// (with the UTC offset), whether the EventBridge Scheduler schedule is in step, the last run.
    Schedules {
        /// The service, as CLUSTER/SERVICE (or the service's ARN).
        #[arg(value_name = "CLUSTER/SERVICE")]
        service: String,
        /// How many fire times to show per schedule.
        #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=50))]
        count: u16,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(flatten)]
        scheduler: schedules::SchedulerArgs,
    },
    /// Check that a service is ready for kanaria (EXTERNAL controller, listener and ip target
    /// groups wired as the policy says, task size, execution role, network path to ECR, logs,
    /// the policy) and say what to change. Exits 0 when ready, 1 when a check fails, 2 when
    /// something could not be read.
    Verify {
        /// The service, as CLUSTER/SERVICE (or the service's ARN).
        #[arg(value_name = "CLUSTER/SERVICE")]
        service: String,
        /// Check against this policy file (YAML or JSON) instead of the one in Parameter Store.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Same as `--output json`.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate policy files (YAML or JSON); report every problem with its fix. The
    /// alarms they name are looked up in CloudWatch (cloudwatch:DescribeAlarms on "*"): a name
    /// CloudWatch does not know is a problem, since it could never roll a rollout back. Exits 2
    /// when a policy is invalid, 1 when the alarms could not be looked up.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Check the documents only; do not look their alarms up in CloudWatch (no AWS access).
        #[arg(long)]
        offline: bool,
    },
    /// Print the policy's JSON Schema (for editors).
    Schema,
    /// Validate a policy and store it in SSM Parameter Store under the policy prefix, then bring
    /// its EventBridge Scheduler schedules in step (when the Scheduler options are given).
    Apply {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        scheduler: schedules::SchedulerArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// How the command ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0
    Success,
    /// 1: something failed (an AWS call, a file that cannot be written, ...).
    Failure,
    /// 2: an invalid policy or invalid usage; nothing was changed.
    Invalid,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Invalid => 2,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

/// The command was used wrongly (exit code 2). The message says what to give instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error [`run`] returned: 2 for usage errors, 1 for everything else.
pub fn exit_for_error(err: &anyhow::Error) -> Exit {
    if err.chain().any(|e| e.is::<UsageError>() || e.is::<crate::policy::PolicyError>()) {
        Exit::Invalid
    } else {
        Exit::Failure
    }
}

/// Run a parsed command line. Results go to stdout; the caller prints a returned error on
/// stderr and exits with [`exit_for_error`].
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let global = cli.global;
    match cli.command {
        Command::Policy(PolicyCommand::Schema) => {
            emit(&pretty(&crate::policy::json_schema())?)?;
            Ok(Exit::Success)
        }
        Command::Policy(PolicyCommand::Validate { files, output, offline }) => {
            let mut reports: Vec<_> = files.iter().map(|f| policy_cmd::validate_file(f)).collect();
            let alarms = policy_cmd::listed_alarms(&reports);
            let mut unchecked = None;
            if !offline && !alarms.is_empty() {
                let config = aws_config(&global).await?;
                let region = config.region().map(|r| r.to_string()).unwrap_or_default();
                let cw = aws_sdk_cloudwatch::Client::new(&config);
                match crate::aws::cloudwatch::describe_alarms(&cw, &alarms).await {
                    Ok(found) => {
                        let known: Vec<String> = found.into_iter().map(|a| a.name).collect();
                        policy_cmd::add_unknown_alarms(&mut reports, &known, &region);
                    }
                    Err(e) => unchecked = Some(e),
                }
            }
            match output {
                Output::Text => emit(&policy_cmd::format_reports_text(&reports))?,
                Output::Json => emit(&pretty(&policy_cmd::reports_json(&reports))?)?,
            }
            if let Some(e) = &unchecked {
                eprintln!(
                    "error: the alarms the policies name ({}) could not be looked up in CloudWatch: {e}; run again with credentials \
                     and a region that allow cloudwatch:DescribeAlarms on \"*\", or pass --offline to check the documents only",
                    alarms.join(", ")
                );
            }
            Ok(if !reports.iter().all(|r| r.valid) {
                Exit::Invalid
            } else if unchecked.is_some() {
                Exit::Failure
            } else {
                Exit::Success
            })
        }
        Command::Policy(PolicyCommand::Apply { file, scheduler }) => {
            let report = policy_cmd::validate_file(&file);
            let Some(policy) = report.policy.as_ref() else {
                eprint!("{}", policy_cmd::format_reports_text(std::slice::from_ref(&report)));
                eprintln!("{}: refused: the policy is invalid; nothing was written", report.file);
                return Ok(Exit::Invalid);
            };
            let clients = clients(&global).await?;
            let prefix = normalize_prefix(&global.policy_prefix);
            let name = crate::aws::policies::put(&clients.ssm, &prefix, policy).await.with_context(|| {
                format!(
                    "storing the policy of {} in SSM Parameter Store failed; check the region and that you may \
                     call ssm:PutParameter on {}",
                    policy.service,
                    crate::aws::policies::parameter_name(&prefix, policy)
                )
            })?;
            emit(&format!("{name}\n"))?;
            // policy-sync indexes it on the Parameter Store Change event too; indexing it here
            // means a push right after `apply` finds it.
            match crate::aws::policies::get_for_service(&clients.ssm, &prefix, &policy.service.key()).await {
                Ok(Some(stored)) => {
                    let index = crate::aws::policy_index::PolicyIndex::new(&clients.dynamodb, &global.table);
                    let entry = crate::aws::policy_index::ServiceEntry::from_stored(&prefix, &stored);
                    if let Err(e) = index.put(&policy.service.key(), entry.as_ref(), false, crate::aws::now_unix()).await {
                        eprintln!("note: the policy is stored, but adding it to the policy index failed ({e}); policy-sync indexes it on its Parameter Store Change event");
                    }
                }
                Ok(None) | Err(_) => eprintln!("note: the stored policy could not be read back to index it; policy-sync indexes it on its Parameter Store Change event"),
            }
            let settings = scheduler.settings();
            match settings.target() {
                Ok(_) => {
                    use crate::handlers::policy_sync::{sync_service, PolicyState};
                    let key = policy.service.key();
                    let ctx = crate::aws::Context {
                        clients,
                        settings: Settings {
                            table: global.table.clone(),
                            policy_prefix: prefix.clone(),
                            state_machine_arn: String::new(),
                            alert_topic_arn: None,
                            events_topic_arn: None,
                            scheduler: settings,
                            decision_queue_url: None,
                        },
                        chatops: Default::default(),
                        metrics: Default::default(),
                    };
                    let failed = format!(
                        "the policy is stored ({name}), but bringing its EventBridge Scheduler schedules in step failed; check \
                         --schedule-group and that you may list, read, create, update and delete schedules in it and pass the \
                         Scheduler role"
                    );
                    let report = sync_service(&ctx, &key, PolicyState::Valid(policy)).await.map_err(anyhow::Error::new).context(failed)?;
                    emit(&report.lines().iter().map(|l| format!("schedule {l}\n")).collect::<String>())?;
                }
                Err(missing) if !policy.schedules.is_empty() => eprintln!("{}", schedules::not_synced_note(&missing)),
                Err(_) => {}
            }
            Ok(Exit::Success)
        }
        Command::Schedules { service, count, output, scheduler } => {
            let key = status::parse_service_key(&service)?;
            let clients = clients(&global).await?;
            let prefix = normalize_prefix(&global.policy_prefix);
            let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
            let report = schedules::gather(&clients, &global.table, &prefix, &key, &scheduler.settings(), count as usize, now).await?;
            match output {
                Output::Text => emit(&schedules::format_text(&report))?,
                Output::Json => emit(&pretty(&schedules::to_json(&report))?)?,
            }
            Ok(Exit::Success)
        }
        Command::Verify { service, policy, output, json } => {
            verify::run(&global, &service, policy.as_deref(), if json { Output::Json } else { output }).await
        }
        Command::Status { service, output } => {
            let only = service.as_deref().map(status::parse_service_key).transpose()?;
            let clients = clients(&global).await?;
            let prefix = normalize_prefix(&global.policy_prefix);
            let report = status::gather(&clients, &global.table, &prefix, only.as_deref()).await?;
            let now = crate::aws::now_unix();
            match output {
                Output::Text => emit(&status::format_text(&report, now))?,
                Output::Json => emit(&pretty(&status::to_json(&report, now))?)?,
            }
            Ok(Exit::Success)
        }
        Command::History { service, limit, output } => {
            let key = status::parse_service_key(&service)?;
            let clients = clients(&global).await?;
            let store = crate::aws::store::Store::new(&clients.dynamodb, &global.table);
            let rollouts = store.history(&key, limit).await.with_context(|| {
                format!("reading the rollout history of {key} from DynamoDB table {} failed; {}", global.table, status::table_hint())
            })?;
            match output {
                Output::Text => emit(&history::format_text(&key, &global.table, &rollouts, crate::aws::now_unix()))?,
                Output::Json => emit(&pretty(&history::to_json(&key, &rollouts))?)?,
            }
            Ok(Exit::Success)
        }
        Command::Abort { service, now } => {
            let key = status::parse_service_key(&service)?;
            decide_remotely(&global, serde_json::json!({ "service": key, "decision": "abort", "now": now })).await
        }
        Command::Deploy { service, digest, tag, state_machine_arn, stack } => {
            let key = status::parse_service_key(&service)?;
            let mut ctx = context(&global).await?;
            ctx.settings.state_machine_arn = match state_machine_arn {
                Some(arn) => arn,
                None => stack_state_machine(&global, &stack).await?,
            };
            let outcome = crate::handlers::on_image_push::deploy(&ctx, &key, &digest, tag.as_deref()).await;
            report(manual_cmd::deploy_outcome(&key, &digest, outcome))
        }
        Command::Approve { service } => decide_approval(&global, &service, true).await,
        Command::Reject { service } => decide_approval(&global, &service, false).await,
        Command::Promote { service, yes } => {
            let key = status::parse_service_key(&service)?;
            let interactive = !yes;
            if interactive && !std::io::stdin().is_terminal() {
                return Err(UsageError(manual_cmd::needs_yes(&key)).into());
            }
            if interactive && !confirm(&manual_cmd::promote_question(&key))? {
                eprintln!("not promoted: nothing was changed");
                return Ok(Exit::Failure);
            }
            decide_remotely(&global, serde_json::json!({ "service": key, "decision": "promote" })).await
        }
    }
}

/// Print an outcome line (stdout on success, stderr otherwise) and pass its exit code on.
fn report((exit, line): (Exit, String)) -> anyhow::Result<Exit> {
    if exit == Exit::Success {
        emit(&format!("{line}\n"))?;
    } else {
        eprintln!("{line}");
    }
    Ok(exit)
}

/// Ask a yes/no question on stderr and read the answer from stdin (end of input is no).
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    err.write_all(question.as_bytes()).and_then(|_| err.flush()).context("writing to stderr failed")?;
    drop(err);
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).context("reading the answer from stdin failed")?;
    Ok(manual_cmd::is_yes(&answer))
}

/// Write to stdout. A closed pipe (`kanaria policy schema | head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::new(e).context("writing to stdout failed")),
        _ => Ok(()),
    }
}

fn pretty(value: &serde_json::Value) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// What [`aws_config`] changes in the SDK's default configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOverrides {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub static_test_credentials: bool,
}

/// Decide the overrides: an endpoint (emulated AWS) implies a region (default us-east-1) and,
/// when the environment has no credentials, the emulator's conventional `test`/`test`.
pub fn config_overrides(endpoint_url: Option<&str>, region: Option<&str>, env_has_credentials: bool) -> ConfigOverrides {
    let endpoint_url = endpoint_url.map(str::trim).filter(|u| !u.is_empty()).map(str::to_string);
    let region = region.map(str::trim).filter(|r| !r.is_empty()).map(str::to_string);
    match endpoint_url {
        Some(url) => ConfigOverrides {
            endpoint_url: Some(url),
            region: Some(region.unwrap_or_else(|| LOCAL_DEFAULT_REGION.to_string())),
            static_test_credentials: !env_has_credentials,
        },
        None => ConfigOverrides { endpoint_url: None, region, static_test_credentials: false },
    }
}

fn env_has_credentials() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    (set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY")) || set("AWS_PROFILE")
}

/// Load the AWS configuration: the SDK's defaults plus `--endpoint-url` and `--region`.
pub async fn aws_config(global: &GlobalArgs) -> anyhow::Result<aws_config::SdkConfig> {
    let o = config_overrides(global.endpoint_url.as_deref(), global.region.as_deref(), env_has_credentials());
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = &o.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = &o.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if o.static_test_credentials {
        loader = loader.credentials_provider(aws_sdk_ssm::config::Credentials::new("test", "test", None, None, "kanaria-static-test"));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(
            UsageError("no AWS region is configured: pass --region, or set AWS_REGION (or a region in your AWS profile)".into()).into()
        );
    }
    Ok(config)
}

/// `kanaria approve` / `kanaria reject`: the same single conditional decision as a Slack click,
/// taken by the stack's decide function for the caller IAM verified (the request is signed with
/// SigV4; the function URL's auth is AWS_IAM). This process reads no task token and needs no
/// access to kanaria's table, Step Functions, ECS or the ALB: only `lambda:InvokeFunctionUrl`.
/// So do `promote` and `abort`.
async fn decide_approval(global: &GlobalArgs, service: &str, approve: bool) -> anyhow::Result<Exit> {
    let key = status::parse_service_key(service)?;
    decide_remotely(global, serde_json::json!({ "service": key, "decision": if approve { "approve" } else { "reject" } })).await
}

/// `approve`, `reject`, `promote`, `abort`: ask the stack's decide function (the request signed
/// as the caller) and report its answer.
async fn decide_remotely(global: &GlobalArgs, request: serde_json::Value) -> anyhow::Result<Exit> {
    let Some(url) = global.decide_url.as_deref().filter(|u| !u.is_empty()) else {
        return Err(UsageError(
            "kanaria approve, reject, promote and abort are carried out by the stack's decide function: pass --decide-url \
             (the stack output DecideUrl) or set KANARIA_DECIDE_URL"
                .into(),
        )
        .into());
    };
    let config = aws_config(global).await?;
    let body = request.to_string();
    let (status, text) = post_signed(&config, url, body.as_bytes())
        .await
        .with_context(|| format!("calling the decide function at {url} failed; check --decide-url and your network"))?;
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({ "message": text }));
    let message = answer["message"].as_str().unwrap_or_default().to_string();
    match status {
        200 if answer["decided"] == true => report((Exit::Success, message)),
        200 => report((Exit::Failure, message)),
        403 => Err(anyhow::anyhow!(
            "the decide function refused the call (HTTP 403: {message}); your IAM identity needs lambda:InvokeFunctionUrl on the \
             stack's DecideFunction, and the request must be signed (check your credentials)"
        )),
        other => Err(anyhow::anyhow!("the decide function answered HTTP {other}: {message}")),
    }
}

/// POST `body` (JSON) to an AWS_IAM Lambda function URL, signed with SigV4 as the caller.
async fn post_signed(config: &aws_config::SdkConfig, url: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    use aws_credential_types::provider::ProvideCredentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let provider = config.credentials_provider().ok_or_else(|| anyhow::anyhow!("no AWS credentials are configured"))?;
    let identity = provider.provide_credentials().await.context("reading your AWS credentials")?.into();
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("lambda")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .context("SigV4 signing parameters")?
        .into();
    let headers = [("content-type", "application/json")];
    let signable = SignableRequest::new("POST", url, headers.iter().copied(), SignableBody::Bytes(body)).context("the decide URL")?;
    let (instructions, _) = sign(signable, &params).context("signing the request")?.into_parts();
    let mut request = reqwest::Client::new().post(url).header("content-type", "application/json").body(body.to_vec());
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}

/// The rollout state machine of stack `stack` in the caller's account and region.
async fn stack_state_machine(global: &GlobalArgs, stack: &str) -> anyhow::Result<String> {
    let config = aws_config(global).await?;
    let region = config.region().map(|r| r.to_string()).ok_or_else(|| anyhow::anyhow!("no AWS region: pass --region or set AWS_REGION"))?;
    let account = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "STS GetCallerIdentity failed ({}); pass --state-machine-arn, or check your credentials",
                aws_sdk_sts::error::DisplayErrorContext(&e)
            )
        })?
        .account()
        .unwrap_or_default()
        .to_string();
    Ok(format!("arn:aws:states:{region}:{account}:stateMachine:{stack}-rollout"))
}

async fn clients(global: &GlobalArgs) -> anyhow::Result<Clients> {
    Ok(Clients::new(&aws_config(global).await?))
}

/// What [`crate::handlers::manual`] needs: clients plus where kanaria's records and policies are.
async fn context(global: &GlobalArgs) -> anyhow::Result<crate::aws::Context> {
    Ok(crate::aws::Context {
        clients: clients(global).await?,
        settings: Settings {
            table: global.table.clone(),
            policy_prefix: normalize_prefix(&global.policy_prefix),
            state_machine_arn: String::new(),
            alert_topic_arn: None,
            events_topic_arn: None,
            scheduler: crate::aws::scheduler::SchedulerSettings::default(),
            decision_queue_url: None,
        },
        chatops: Default::default(),
        metrics: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_commands_and_global_options_anywhere() {
        let cli = Cli::try_parse_from(["kanaria", "policy", "validate", "a.yaml", "b.yaml", "--output", "json", "--table", "t"]).unwrap();
        assert_eq!(cli.global.table, "t");
        match cli.command {
            Command::Policy(PolicyCommand::Validate { files, output, offline }) => {
                assert_eq!(files, vec![PathBuf::from("a.yaml"), PathBuf::from("b.yaml")]);
                assert_eq!(output, Output::Json);
                assert!(!offline, "alarms are looked up unless --offline");
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["kanaria", "--region", "eu-west-1", "status", "demo/web"]).unwrap();
        assert_eq!(cli.global.region.as_deref(), Some("eu-west-1"));
        assert!(matches!(cli.command, Command::Status { service: Some(ref s), output: Output::Text } if s == "demo/web"));
    }

    #[test]
    fn parses_history_abort_and_promote() {
        let cli = Cli::try_parse_from(["kanaria", "history", "demo/web"]).unwrap();
        assert!(matches!(cli.command, Command::History { ref service, limit: 10, output: Output::Text } if service == "demo/web"));
        let cli = Cli::try_parse_from(["kanaria", "history", "demo/web", "--limit", "3", "--output", "json", "--table", "t"]).unwrap();
        assert_eq!(cli.global.table, "t");
        assert!(matches!(cli.command, Command::History { limit: 3, output: Output::Json, .. }));
        for bad in ["0", "-1", "1001", "ten"] {
            let err = Cli::try_parse_from(["kanaria", "history", "demo/web", "--limit", bad]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "--limit {bad}");
        }
        assert_eq!(Cli::try_parse_from(["kanaria", "history"]).unwrap_err().exit_code(), 2);

        let cli = Cli::try_parse_from(["kanaria", "abort", "arn:aws:ecs:us-east-1:123456789012:service/demo/web"]).unwrap();
        assert!(matches!(cli.command, Command::Abort { ref service, now: false } if service.ends_with("service/demo/web")));
        assert_eq!(Cli::try_parse_from(["kanaria", "abort"]).unwrap_err().exit_code(), 2);

        let cli = Cli::try_parse_from(["kanaria", "promote", "demo/web"]).unwrap();
        assert!(matches!(cli.command, Command::Promote { yes: false, .. }));
        let cli = Cli::try_parse_from(["kanaria", "promote", "--yes", "demo/web", "--region", "eu-west-1"]).unwrap();
        assert!(matches!(cli.command, Command::Promote { yes: true, .. }));
        assert_eq!(cli.global.region.as_deref(), Some("eu-west-1"));
        assert!(matches!(
            Cli::try_parse_from(["kanaria", "promote", "-y", "demo/web"]).unwrap().command,
            Command::Promote { yes: true, .. }
        ));
    }

    #[tokio::test]
    async fn bad_service_arguments_are_usage_errors_before_any_aws_call() {
        for args in [["kanaria", "abort", "web"], ["kanaria", "promote", "web"], ["kanaria", "history", "web"]] {
            let err = run(Cli::try_parse_from(args).unwrap()).await.unwrap_err();
            assert_eq!(exit_for_error(&err), Exit::Invalid, "{args:?}: {err:#}");
            assert!(err.to_string().contains("CLUSTER/SERVICE"), "{err}");
        }
    }

    #[test]
    fn handler_errors_exit_1() {
        let err = anyhow::Error::new(crate::handlers::HandlerError::new("Kanaria.AwsError", "DynamoDB GetItem failed")).context("aborting");
        assert_eq!(exit_for_error(&err), Exit::Failure);
    }

    #[test]
    fn validate_needs_a_file() {
        let err = Cli::try_parse_from(["kanaria", "policy", "validate"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn endpoint_implies_region_and_test_credentials() {
        assert_eq!(
            config_overrides(Some("http://localhost:4566"), None, false),
            ConfigOverrides {
                endpoint_url: Some("http://localhost:4566".into()),
                region: Some("us-east-1".into()),
                static_test_credentials: true
            }
        );
        assert_eq!(
            config_overrides(Some("http://localhost:4566"), Some("eu-west-1"), true),
            ConfigOverrides {
                endpoint_url: Some("http://localhost:4566".into()),
                region: Some("eu-west-1".into()),
                static_test_credentials: false
            }
        );
        assert_eq!(
            config_overrides(Some(" "), None, false),
            ConfigOverrides { endpoint_url: None, region: None, static_test_credentials: false }
        );
        assert_eq!(
            config_overrides(None, Some("ap-northeast-1"), false),
            ConfigOverrides { endpoint_url: None, region: Some("ap-northeast-1".into()), static_test_credentials: false }
        );
    }

    #[test]
    fn parses_schedules_and_the_scheduler_options_of_apply() {
        let cli =
            Cli::try_parse_from(["kanaria", "schedules", "demo/web", "--count", "5", "--output", "json", "--schedule-group", "g"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Schedules { ref service, count: 5, output: Output::Json, ref scheduler } if service == "demo/web" && scheduler.schedule_group == "g"
        ));
        for bad in ["0", "51", "x"] {
            assert_eq!(
                Cli::try_parse_from(["kanaria", "schedules", "demo/web", "--count", bad]).unwrap_err().exit_code(),
                2,
                "--count {bad}"
            );
        }
        assert_eq!(Cli::try_parse_from(["kanaria", "schedules"]).unwrap_err().exit_code(), 2);
        let args = [
            "kanaria",
            "policy",
            "apply",
            "web.yaml",
            "--scale-function-arn",
            "arn:f",
            "--scheduler-role-arn",
            "arn:r",
            "--scheduler-dlq-arn",
            "arn:q",
        ];
        match Cli::try_parse_from(args).unwrap().command {
            Command::Policy(PolicyCommand::Apply { file, scheduler }) => {
                assert_eq!(file, PathBuf::from("web.yaml"));
                let target = scheduler.settings().target().unwrap();
                assert_eq!(
                    (target.function_arn.as_str(), target.role_arn.as_str(), target.dead_letter_arn.as_str()),
                    ("arn:f", "arn:r", "arn:q")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn schedules_needs_a_service_before_any_aws_call() {
        let err = run(Cli::try_parse_from(["kanaria", "schedules", "web"]).unwrap()).await.unwrap_err();
        assert_eq!(exit_for_error(&err), Exit::Invalid, "{err:#}");
        assert!(err.to_string().contains("CLUSTER/SERVICE"), "{err}");
    }

    #[test]
    fn usage_and_policy_errors_exit_2_others_1() {
        assert_eq!(exit_for_error(&anyhow::Error::new(UsageError("x".into()))), Exit::Invalid);
        assert_eq!(exit_for_error(&anyhow::Error::new(UsageError("x".into())).context("while y")), Exit::Invalid);
        assert_eq!(exit_for_error(&anyhow::anyhow!("DynamoDB GetItem failed")), Exit::Failure);
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Exit::Failure.code(), 1);
        assert_eq!(Exit::Invalid.code(), 2);
    }
}
