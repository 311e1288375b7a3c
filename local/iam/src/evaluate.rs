//! Identity-policy evaluation of one authorization request, as AWS does it for a role without
//! resource policies, boundaries or SCPs in play: an explicit Deny that matches wins; otherwise
//! an Allow that matches allows; otherwise the request is implicitly denied.
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>
//!
//! A statement matches when its Action/NotAction matches the action, its Resource/NotResource
//! the resource, and every condition holds. A condition key the action does not support (per
//! the Service Authorization Reference) is never in the action's request context, so a
//! condition on it is evaluated as on an absent key: `StringEquals` and the other positive
//! operators never hold (the statement never applies), while the negated operators, `IfExists`,
//! `Null: true` and `ForAllValues:` do, exactly as AWS documents for absent keys.
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html>

use std::collections::BTreeMap;

use crate::glob;
use crate::reference::{ActionInfo, Reference};
use crate::template::{Condition, Effect, Statement};

/// One authorization AWS makes: an action on a resource with the request's condition context.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthzRequest {
    /// `service:Action`, e.g. `ecs:UpdateTaskSet`.
    pub action: String,
    /// The resource ARN, or `*` for actions without resource types.
    pub resource: String,
    /// Condition keys present in the request (lower case), e.g. `aws:resourcetag/kanaria:managed`
    /// → `["true"]`, `iam:passedtoservice` → `["ecs-tasks.amazonaws.com"]`.
    pub context: BTreeMap<String, Vec<String>>,
}

impl AuthzRequest {
    pub fn new(action: &str, resource: &str) -> AuthzRequest {
        AuthzRequest { action: action.to_string(), resource: resource.to_string(), context: BTreeMap::new() }
    }

    /// Adds a condition key (lower-cased) with its values.
    pub fn with(mut self, key: &str, values: &[&str]) -> AuthzRequest {
        self.context.insert(key.to_ascii_lowercase(), values.iter().map(|v| v.to_string()).collect());
        self
    }

    /// The values of a condition key, any case; `None` when absent or empty.
    fn values(&self, key: &str) -> Option<&[String]> {
        let lower = key.to_ascii_lowercase();
        let found = self.context.get(&lower).or_else(|| self.context.iter().find(|(k, _)| k.eq_ignore_ascii_case(&lower)).map(|(_, v)| v));
        found.map(Vec::as_slice).filter(|v| !v.is_empty())
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Some Allow statement matches and no Deny does; `by` is its origin.
    Allowed { by: String },
    /// No statement allows it; `why` names the closest statements and what failed.
    ImplicitDeny { why: String },
    /// A Deny statement matches; `by` is its origin.
    ExplicitDeny { by: String },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

/// How one statement relates to the request.
enum Outcome {
    ActionDiffers,
    /// The action matches, the resource does not: why.
    ResourceDiffers(String),
    /// Action and resource match, a condition does not hold: why.
    ConditionFails(String),
    Matches,
}

/// Evaluates the request against the statements of one role.
pub fn evaluate(reference: &Reference, statements: &[Statement], request: &AuthzRequest) -> Decision {
    let Some(info) = reference.action(&request.action) else {
        return Decision::ImplicitDeny {
            why: format!(
                "{} is not an action of the Service Authorization Reference ({}): check its spelling, or update the pin in tools/iam-reference.txt",
                request.action,
                reference.source().display()
            ),
        };
    };
    let outcomes: Vec<(&Statement, Outcome)> = statements.iter().map(|s| (s, outcome(info, s, request))).collect();
    if let Some((deny, _)) = outcomes.iter().find(|(s, o)| s.effect == Effect::Deny && matches!(o, Outcome::Matches)) {
        return Decision::ExplicitDeny { by: deny.origin.clone() };
    }
    if let Some((allow, _)) = outcomes.iter().find(|(s, o)| s.effect == Effect::Allow && matches!(o, Outcome::Matches)) {
        return Decision::Allowed { by: allow.origin.clone() };
    }
    let action = info.full_name();
    let closest: Vec<String> = outcomes
        .iter()
        .filter(|(s, _)| s.effect == Effect::Allow)
        .filter_map(|(s, o)| match o {
            Outcome::ResourceDiffers(why) => Some(format!("{} allows {action} but {why}", s.origin)),
            Outcome::ConditionFails(why) => Some(format!("{} matches {action} on {} but {why}", s.origin, request.resource)),
            Outcome::ActionDiffers | Outcome::Matches => None,
        })
        .collect();
    let why = if closest.is_empty() {
        format!("no statement of the role allows {action} (on {})", request.resource)
    } else {
        format!("no statement allows {action} on {}: {}", request.resource, closest.join("; "))
    };
    Decision::ImplicitDeny { why }
}

/// Whether deciding the request needs the resource's tags: some statement matching its action
/// and resource has a condition on `aws:ResourceTag/…` or `<service>:ResourceTag/…` that the
/// action supports. The caller then looks the tags up and adds them to the context.
pub fn needs_resource_tags(reference: &Reference, statements: &[Statement], request: &AuthzRequest) -> bool {
    let Some(info) = reference.action(&request.action) else { return false };
    statements
        .iter()
        .filter(|s| action_matches(s, &request.action) && resource_matches(s, request).is_ok())
        .any(|s| s.conditions.iter().any(|c| c.key.to_ascii_lowercase().contains(":resourcetag/") && info.supports_condition_key(&c.key)))
}

fn action_matches(statement: &Statement, action: &str) -> bool {
    if statement.action.is_empty() {
        !statement.not_action.iter().any(|p| glob::action_matches(p, action))
    } else {
        statement.action.iter().any(|p| glob::action_matches(p, action))
    }
}

/// One Resource entry against the request's resource. For an action without resource types the
/// request's resource is `*`, which only `"Resource": "*"` covers.
fn resource_entry_matches(pattern: &str, request: &AuthzRequest) -> bool {
    if request.resource == "*" {
        return pattern == "*";
    }
    match substitute_variables(pattern, request) {
        Some(pattern) => glob::arn_matches(&pattern, &request.resource),
        None => false,
    }
}

fn resource_matches(statement: &Statement, request: &AuthzRequest) -> Result<(), String> {
    if statement.resource.is_empty() {
        match statement.not_resource.iter().find(|p| resource_entry_matches(p, request)) {
            Some(p) => Err(format!("its NotResource {p} excludes {}", request.resource)),
            None => Ok(()),
        }
    } else if statement.resource.iter().any(|p| resource_entry_matches(p, request)) {
        Ok(())
    } else if request.resource == "*" {
        Err(format!(
            "{} has no resource-level permissions, so only \"Resource\": \"*\" grants it, not {:?}",
            request.action, statement.resource
        ))
    } else {
        Err(format!("not on {} (its Resource is {:?})", request.resource, statement.resource))
    }
}

fn outcome(info: &ActionInfo, statement: &Statement, request: &AuthzRequest) -> Outcome {
    if !action_matches(statement, &request.action) {
        return Outcome::ActionDiffers;
    }
    if let Err(why) = resource_matches(statement, request) {
        return Outcome::ResourceDiffers(why);
    }
    let failures: Vec<String> = statement.conditions.iter().filter_map(|c| condition_fails(info, c, request)).collect();
    if failures.is_empty() {
        Outcome::Matches
    } else {
        Outcome::ConditionFails(failures.join(", and "))
    }
}

/// The condition operators this evaluator knows, without set prefix and `IfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    ArnLike,
    Bool,
    Null,
    NumericEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOperator {
    ForAnyValue,
    ForAllValues,
}

struct Operator {
    set: Option<SetOperator>,
    base: Base,
    /// `StringNotEquals` is `StringEquals` negated, and so on.
    negated: bool,
    if_exists: bool,
}

fn parse_operator(text: &str) -> Option<Operator> {
    let (set, rest) = if let Some(rest) = text.strip_prefix("ForAnyValue:") {
        (Some(SetOperator::ForAnyValue), rest)
    } else if let Some(rest) = text.strip_prefix("ForAllValues:") {
        (Some(SetOperator::ForAllValues), rest)
    } else {
        (None, text)
    };
    let (rest, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    let (base, negated) = match rest {
        "StringEquals" => (Base::StringEquals, false),
        "StringNotEquals" => (Base::StringEquals, true),
        "StringEqualsIgnoreCase" => (Base::StringEqualsIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (Base::StringEqualsIgnoreCase, true),
        "StringLike" => (Base::StringLike, false),
        "StringNotLike" => (Base::StringLike, true),
        // ArnEquals and ArnLike behave the same: each of the six ARN parts is matched with wildcards.
        "ArnEquals" | "ArnLike" => (Base::ArnLike, false),
        "ArnNotEquals" | "ArnNotLike" => (Base::ArnLike, true),
        "Bool" => (Base::Bool, false),
        "Null" if set.is_none() && !if_exists => (Base::Null, false),
        "NumericEquals" => (Base::NumericEquals, false),
        "NumericNotEquals" => (Base::NumericEquals, true),
        "NumericLessThan" => (Base::NumericLessThan, false),
        "NumericLessThanEquals" => (Base::NumericLessThanEquals, false),
        "NumericGreaterThan" => (Base::NumericGreaterThan, false),
        "NumericGreaterThanEquals" => (Base::NumericGreaterThanEquals, false),
        _ => return None,
    };
    Some(Operator { set, base, negated, if_exists })
}

/// Whether one request value matches one policy value under the (positive) base operator.
fn value_matches(base: Base, value: &str, policy: &str) -> bool {
    let number = |s: &str| s.trim().parse::<f64>().ok();
    let compare = |f: fn(f64, f64) -> bool| matches!((number(value), number(policy)), (Some(v), Some(p)) if f(v, p));
    match base {
        Base::StringEquals => value == policy,
        Base::StringEqualsIgnoreCase => value.to_lowercase() == policy.to_lowercase(),
        Base::StringLike => glob::string_like(policy, value),
        Base::ArnLike => arn_like(policy, value),
        Base::Bool => value.eq_ignore_ascii_case(policy),
        Base::Null => false,
        Base::NumericEquals => compare(|v, p| v == p),
        Base::NumericLessThan => compare(|v, p| v < p),
        Base::NumericLessThanEquals => compare(|v, p| v <= p),
        Base::NumericGreaterThan => compare(|v, p| v > p),
        Base::NumericGreaterThanEquals => compare(|v, p| v >= p),
    }
}

/// `ArnLike`: the six colon-separated parts of the ARN are matched one by one, with wildcards
/// (the last part keeps its colons). A pattern that is not an ARN is matched as a whole.
fn arn_like(pattern: &str, value: &str) -> bool {
    let pattern_parts: Vec<&str> = pattern.splitn(6, ':').collect();
    let value_parts: Vec<&str> = value.splitn(6, ':').collect();
    if pattern_parts.len() != 6 {
        return glob::string_like(pattern, value);
    }
    value_parts.len() == 6 && pattern_parts.iter().zip(&value_parts).all(|(p, v)| glob::string_like(p, v))
}

/// `None` when the condition holds; otherwise why it does not.
fn condition_fails(info: &ActionInfo, condition: &Condition, request: &AuthzRequest) -> Option<String> {
    let Some(operator) = parse_operator(&condition.operator) else {
        return Some(format!(
            "its condition operator {} is not one local/iam evaluates, so the statement is treated as not matching (add it to local/iam/src/evaluate.rs or use another operator)",
            condition.operator
        ));
    };
    let supported = info.supports_condition_key(&condition.key);
    // A key the action does not support is never in its request context.
    let present = if supported { request.values(&condition.key) } else { None };
    let substituted = if matches!(operator.base, Base::StringEquals | Base::StringEqualsIgnoreCase | Base::StringLike | Base::ArnLike) {
        condition.values.iter().map(|v| substitute_variables(v, request)).collect::<Option<Vec<String>>>()
    } else {
        Some(condition.values.clone())
    };
    let Some(policy_values) = substituted else {
        return Some(format!(
            "its condition {} {} {:?} names a policy variable the request has no value for",
            condition.operator, condition.key, condition.values
        ));
    };
    let one = |value: &str| {
        let any = policy_values.iter().any(|p| value_matches(operator.base, value, p));
        any != operator.negated
    };
    let holds = match (operator.base, present) {
        (Base::Null, present) => condition.values.iter().any(|p| {
            if p.eq_ignore_ascii_case("true") {
                present.is_none()
            } else {
                p.eq_ignore_ascii_case("false") && present.is_some()
            }
        }),
        // Absent keys: IfExists holds; ForAllValues holds on the empty set; ForAnyValue does not;
        // plain operators hold only when negated.
        (_, None) if operator.if_exists => true,
        (_, None) => match operator.set {
            Some(SetOperator::ForAllValues) => true,
            Some(SetOperator::ForAnyValue) => false,
            None => operator.negated,
        },
        (_, Some(values)) => match operator.set {
            Some(SetOperator::ForAllValues) => values.iter().all(|v| one(v)),
            Some(SetOperator::ForAnyValue) => values.iter().any(|v| one(v)),
            // A single-valued operator on several values: positive if any value matches,
            // negated if none does.
            None if operator.negated => values.iter().all(|v| one(v)),
            None => values.iter().any(|v| one(v)),
        },
    };
    if holds {
        return None;
    }
    if !supported {
        return Some(format!(
            "its condition key {} is not supported by {} (Service Authorization Reference), so it never applies",
            condition.key,
            info.full_name()
        ));
    }
    let request_side = match present {
        Some(values) => format!("the request has {} = {values:?}", condition.key),
        None => format!("the request has no {}", condition.key),
    };
    Some(format!("its condition {} {} {:?} does not hold: {request_side}", condition.operator, condition.key, condition.values))
}

/// Policy variables in a Resource entry or condition value: `${aws:username}` from the request
/// context, `${key, 'default'}`, and `${*}`, `${?}`, `${$}` for those characters. `None` when a
/// variable has no value and no default: such an entry matches nothing.
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html>
fn substitute_variables(text: &str, request: &AuthzRequest) -> Option<String> {
    if !text.contains("${") {
        return Some(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Some(out);
        };
        let inner = after[..end].trim();
        let (key, default) = match inner.split_once(',') {
            Some((k, d)) => (k.trim(), Some(d.trim().trim_matches('\'').to_string())),
            None => (inner, None),
        };
        match key {
            "*" | "?" | "$" => out.push_str(key),
            _ => match request.values(key) {
                Some([value]) => out.push_str(value),
                _ => out.push_str(&default?),
            },
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
