//! Logging: JSON lines (CloudWatch Logs Insights reads the fields), level from `RUST_LOG`; and
//! where rollout metrics go ([`MetricsSink`]).

use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;

use crate::metrics::{self, Event};

/// Where [`crate::metrics`] documents go. In Lambda each is one line on standard output, which
/// Lambda sends to the function's log group and CloudWatch Logs turns into metrics (a custom
/// runtime's JSON lines reach the log group as they are). The CLI discards them: a rollout it
/// starts is counted when its first state runs in rollout-step. The local runtime keeps them,
/// so tests can read what a function emitted.
#[derive(Debug, Clone, Default)]
pub enum MetricsSink {
    #[default]
    Discard,
    Stdout,
    Memory(Arc<Mutex<Vec<String>>>),
}

impl MetricsSink {
    pub fn memory() -> Self {
        MetricsSink::Memory(Arc::default())
    }

    /// Write the document for `event`, stamped now.
    pub fn emit(&self, event: &Event) {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        match self {
            MetricsSink::Discard => {}
            MetricsSink::Stdout => {
                use std::io::Write as _;
                // One write of the whole line, so it never interleaves with a log line.
                let _ = std::io::stdout().lock().write_all(format!("{}\n", metrics::line(event, now_ms)).as_bytes());
            }
            MetricsSink::Memory(lines) => lines.lock().unwrap_or_else(|p| p.into_inner()).push(metrics::line(event, now_ms)),
        }
    }

    /// What a memory sink holds (empty for the others).
    pub fn lines(&self) -> Vec<String> {
        match self {
            MetricsSink::Memory(lines) => lines.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            _ => Vec::new(),
        }
    }
}

pub fn init_json() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time() // Lambda stamps every line already.
        .try_init();
}

/// Human-readable logs for the CLI and the local runtime.
pub fn init_text(default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr).try_init();
}
