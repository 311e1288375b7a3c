//! Faults on demand, at the front server: AWS calls fail the ways AWS's do (real-aws.md rows 7,
//! 9, 12), when a test asks.
//!
//! A rule selects calls by the function that makes them (its crate name; `states` for the state
//! machine's Lambda invokes), the operation (`ecs:CreateTaskSet`, `lambda:Invoke`) and the Nth
//! such call, and fails that call and the `times - 1` matching calls after it (the SDK's own
//! retries of it, say) with one fault:
//! - a throttling error in the service's own error shape (`ThrottlingException`, `Throttling`,
//!   SNS's `Throttled`, DynamoDB's `ProvisionedThroughputExceededException`);
//! - HTTP 500 or 503 with the service's internal-error or unavailable code;
//! - a dropped connection (no answer at all);
//! - "applied then error": the call reaches moto and takes effect, then the caller gets a 500;
//! - DynamoDB `TransactionCanceledException` with a `TransactionConflict` or `ThrottlingError`
//!   cancellation reason (one reason per item, as DynamoDB answers);
//! - Lambda `TooManyRequestsException` (HTTP 429) for an invoke;
//! - a Lambda function timeout (`Sandbox.Timedout`) after the function ran.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hyper::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    Throttle,
    ServerError,
    Unavailable,
    DropConnection,
    AppliedThenError,
    /// DynamoDB TransactWriteItems cancelled with this reason code on its first item.
    TransactionCanceled(String),
    /// Lambda Invoke: HTTP 429, the function's concurrency is exhausted.
    LambdaTooManyRequests,
    /// Lambda Invoke: the function ran, then timed out.
    LambdaTimeout,
}

impl FaultKind {
    pub fn name(&self) -> String {
        match self {
            FaultKind::Throttle => "throttle".into(),
            FaultKind::ServerError => "500".into(),
            FaultKind::Unavailable => "503".into(),
            FaultKind::DropConnection => "drop".into(),
            FaultKind::AppliedThenError => "applied-then-error".into(),
            FaultKind::TransactionCanceled(reason) => format!("tx-{reason}"),
            FaultKind::LambdaTooManyRequests => "lambda-429".into(),
            FaultKind::LambdaTimeout => "lambda-timeout".into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            FaultKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            FaultKind::ServerError | FaultKind::AppliedThenError => StatusCode::INTERNAL_SERVER_ERROR,
            FaultKind::LambdaTooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Which calls a rule fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// The caller's crate name (`rollout-step`), `states` for the state machine's invokes; None:
    /// any caller.
    pub caller: Option<String>,
    /// `service:Operation` as IAM names it (`ecs:CreateTaskSet`, `lambda:Invoke`).
    pub operation: String,
    /// The first call to fail: the Nth call of `caller` to `operation` (1-based).
    pub nth: u32,
    /// How many matching calls in a row fail from there.
    pub times: u32,
    pub kind: FaultKind,
}

impl FaultRule {
    pub fn new(caller: &str, operation: &str, kind: FaultKind) -> Self {
        FaultRule { caller: Some(caller.to_string()), operation: operation.to_string(), nth: 1, times: 1, kind }
    }

    pub fn nth(self, nth: u32) -> Self {
        FaultRule { nth: nth.max(1), ..self }
    }

    pub fn times(self, times: u32) -> Self {
        FaultRule { times: times.max(1), ..self }
    }
}

struct Armed {
    id: u64,
    rule: FaultRule,
    seen: u32,
    fired: u32,
}

/// The faults armed in one emulated AWS.
#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<Armed>>,
    next_id: AtomicU64,
}

/// A rule once armed; ask [`Faults::fired`] how often it fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultId(u64);

impl Faults {
    pub fn add(&self, rule: FaultRule) -> FaultId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.rules.lock().unwrap().push(Armed { id, rule, seen: 0, fired: 0 });
        FaultId(id)
    }

    /// How many calls the rule failed so far.
    pub fn fired(&self, id: FaultId) -> u32 {
        self.rules.lock().unwrap().iter().find(|a| a.id == id.0).map(|a| a.fired).unwrap_or(0)
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// The fault this call gets, if a rule selects it (the call is counted either way).
    pub fn check(&self, caller: Option<&str>, operation: &str) -> Option<FaultKind> {
        let mut rules = self.rules.lock().unwrap();
        let mut chosen = None;
        for armed in rules.iter_mut() {
            let matches =
                armed.rule.operation.eq_ignore_ascii_case(operation) && armed.rule.caller.as_deref().is_none_or(|c| Some(c) == caller);
            if !matches {
                continue;
            }
            armed.seen += 1;
            let first = armed.rule.nth;
            if chosen.is_none() && armed.seen >= first && armed.seen < first + armed.rule.times {
                armed.fired += 1;
                chosen = Some(armed.rule.kind.clone());
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_fails_the_nth_call_and_the_following_ones_it_covers() {
        let faults = Faults::default();
        let id = faults.add(FaultRule::new("rollout-step", "ecs:CreateTaskSet", FaultKind::Throttle).nth(2).times(2));
        assert_eq!(faults.check(Some("rollout-step"), "ecs:CreateTaskSet"), None, "1st call");
        assert_eq!(faults.check(Some("on-image-push"), "ecs:CreateTaskSet"), None, "another caller");
        assert_eq!(faults.check(Some("rollout-step"), "ecs:DescribeTaskSets"), None, "another operation");
        assert_eq!(faults.check(Some("rollout-step"), "ecs:CreateTaskSet"), Some(FaultKind::Throttle), "2nd call");
        assert_eq!(faults.check(Some("rollout-step"), "ecs:CreateTaskSet"), Some(FaultKind::Throttle), "3rd: the retry");
        assert_eq!(faults.check(Some("rollout-step"), "ecs:CreateTaskSet"), None, "4th");
        assert_eq!(faults.fired(id), 2);
    }
}
