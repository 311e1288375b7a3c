//! Slack ChatOps. [`request`] and [`message`] are pure (no I/O, no AWS, no clock: callers pass
//! `now` in); [`api`] is the adapter that talks to Slack.
//!
//! - [`request`] checks that an HTTP request really comes from Slack (the v0 signing scheme:
//!   HMAC-SHA256 over `v0:<timestamp>:<body>`, compared in constant time, at most five minutes
//!   off) and parses a `block_actions` interaction (a click on one of our approval buttons) into
//!   an [`request::Interaction`]. Every way a request can be wrong is a [`request::Rejection`]
//!   with the HTTP status to answer.
//! - [`message`] renders one rollout's Slack message as Block Kit: a single message per rollout,
//!   updated in place as it progresses, with Approve / Roll back buttons only while the rollout
//!   waits for approval.

pub mod api;
pub mod message;
pub mod request;
