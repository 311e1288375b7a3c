//! kanaria: progressive delivery for Amazon ECS.
//!
//! - [`policy`], [`events`], [`identity`] and [`rollout`] are the domain core: pure decisions, no
//!   AWS types, no clock, no I/O. [`rollout`] shows a rollout's whole lifecycle (observe → decide → act).
//! - [`aws`] holds the adapters: the only code that calls AWS.
//! - [`handlers`] are the Lambda entry points (one binary per function under `functions/`).
//! - [`metrics`] formats rollout metrics (CloudWatch Embedded Metric Format), pure like the core.
//! - [`cli`] is the `kanaria` command; [`verify`] judges whether a service is ready for kanaria.

pub mod analysis;
pub mod aws;
pub mod cli;
pub mod diagnosis;
pub mod events;
pub mod handlers;
pub mod identity;
pub mod metrics;
pub mod policy;
pub mod redact;
pub mod rollout;
pub mod schedule;
pub mod slack;
pub mod telemetry;
pub mod verify;
