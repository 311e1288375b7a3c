//! IAM for the local runtime: moto never evaluates IAM, so the runtime asks this crate whether
//! each AWS call a kanaria function makes would be allowed by that function's role in
//! `template.yaml`, as AWS would decide, and refuses it (AccessDenied) when not.
//!
//! - [`reference`]: the Service Authorization Reference (resource types, condition keys per action).
//! - [`template`]: the IAM statements of every function's role, read from the SAM template.
//! - [`request`]: one API call → the authorization requests AWS makes for it.
//! - [`evaluate`]: identity-policy evaluation of one authorization request against statements.
//!
//! It is pure: no AWS calls, no I/O beyond reading the reference file and the template text.

pub mod evaluate;
pub mod glob;
pub mod reference;
pub mod request;
pub mod template;

#[cfg(test)]
mod test_support;

pub use evaluate::{evaluate, needs_resource_tags, AuthzRequest, Decision};
pub use reference::{ActionInfo, Reference, ResourceTypeRef};
pub use request::{authorization_requests, ApiCall, Params};
pub use template::{function_statements, state_machine_statements, Condition, Effect, Resolver, Statement};
