//! `kanaria`: validate and store rollout policies, show rollouts. See `kanaria --help`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // The SDK's own warnings (e.g. probing IMDS for a region) are noise here; RUST_LOG overrides.
    kanaria::telemetry::init_text("warn,aws_config=error,kanaria::handlers=error");
    let cli = kanaria::cli::Cli::parse(); // usage errors exit 2, as clap does
    match kanaria::cli::run(cli).await {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            kanaria::cli::exit_for_error(&err).into()
        }
    }
}
