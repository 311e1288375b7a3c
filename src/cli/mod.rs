//! The `kanaria` command (see `src/bin/kanaria.rs`): validate and store rollout policies, and
//! show what kanaria is doing.
//!
//! - `kanaria policy validate FILE...`, `kanaria policy schema`, `kanaria policy apply FILE`
//! - `kanaria status [CLUSTER/SERVICE]`
//!
//! [`run`] does the work and returns an [`Exit`]; formatting lives in pure functions
//! ([`policy_cmd`], [`status`]) so it is unit-tested without AWS.

pub mod policy_cmd;
pub mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::aws::{normalize_prefix, Clients, DEFAULT_POLICY_PREFIX, DEFAULT_TABLE};

/// Region used against an emulated AWS endpoint when none is given.
pub const LOCAL_DEFAULT_REGION: &str = "us-east-1";

#[derive(Debug, Parser)]
#[command(
    name = "kanaria",
    version,
    about = "Progressive delivery (canary, rollback) for Amazon ECS",
    long_about = "Progressive delivery (canary, rollback) for Amazon ECS.\n\n\
        Validate and store per-service rollout policies, and show in-flight and past rollouts \
        with the live traffic split.\n\n\
        Exit codes: 0 success, 1 failure (an AWS call failed, ...), 2 invalid policy or usage."
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
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate policy files (YAML or JSON); report every problem with its fix.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print the policy's JSON Schema (for editors).
    Schema,
    /// Validate a policy and store it in SSM Parameter Store under the policy prefix.
    Apply {
        #[arg(value_name = "FILE")]
        file: PathBuf,
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
        Command::Policy(PolicyCommand::Validate { files, output }) => {
            let reports: Vec<_> = files.iter().map(|f| policy_cmd::validate_file(f)).collect();
            match output {
                Output::Text => emit(&policy_cmd::format_reports_text(&reports))?,
                Output::Json => emit(&pretty(&policy_cmd::reports_json(&reports))?)?,
            }
            Ok(if reports.iter().all(|r| r.valid) { Exit::Success } else { Exit::Invalid })
        }
        Command::Policy(PolicyCommand::Apply { file }) => {
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
            Ok(Exit::Success)
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
    }
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

async fn clients(global: &GlobalArgs) -> anyhow::Result<Clients> {
    Ok(Clients::new(&aws_config(global).await?))
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
            Command::Policy(PolicyCommand::Validate { files, output }) => {
                assert_eq!(files, vec![PathBuf::from("a.yaml"), PathBuf::from("b.yaml")]);
                assert_eq!(output, Output::Json);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["kanaria", "--region", "eu-west-1", "status", "demo/web"]).unwrap();
        assert_eq!(cli.global.region.as_deref(), Some("eu-west-1"));
        assert!(matches!(cli.command, Command::Status { service: Some(ref s), output: Output::Text } if s == "demo/web"));
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
    fn usage_and_policy_errors_exit_2_others_1() {
        assert_eq!(exit_for_error(&anyhow::Error::new(UsageError("x".into()))), Exit::Invalid);
        assert_eq!(exit_for_error(&anyhow::Error::new(UsageError("x".into())).context("while y")), Exit::Invalid);
        assert_eq!(exit_for_error(&anyhow::anyhow!("DynamoDB GetItem failed")), Exit::Failure);
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Exit::Failure.code(), 1);
        assert_eq!(Exit::Invalid.code(), 2);
    }
}
