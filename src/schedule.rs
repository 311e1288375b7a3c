//! Scheduled capacity: validation of a policy's `schedules` (pure).

use std::collections::HashSet;

use crate::policy::{Problem, Schedule};

/// Every problem of the schedules, each with its field path and a fix.
pub fn validate(schedules: &[Schedule]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for (i, s) in schedules.iter().enumerate() {
        let path = format!("schedules[{i}]");
        let mut bad = |field: &str, message: String, fix: &str| {
            problems.push(Problem { path: format!("{path}.{field}"), message, fix: fix.to_string() })
        };
        if s.name.is_empty() || s.name.len() > 40 || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bad("name", format!("{:?} is not a schedule name", s.name), "use 1-40 letters, digits, `-` or `_`, e.g. `weekday-peak`");
        } else if !names.insert(s.name.clone()) {
            bad("name", format!("{:?} is used twice", s.name), "give every schedule its own name");
        }
        if let (Some(min), Some(max)) = (s.min_capacity, s.max_capacity) {
            if min > max {
                bad("minCapacity", format!("{min} is above maxCapacity {max}"), "make minCapacity at most maxCapacity");
            }
        }
        if s.min_capacity.is_none() && s.max_capacity.is_none() && s.desired_count.is_none() {
            bad("minCapacity", "the schedule changes nothing".into(), "give minCapacity/maxCapacity (scalable target) or desiredCount");
        }
    }
    problems
}
