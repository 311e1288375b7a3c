//! IAM's wildcard matching: `*` (any run of characters) and `?` (any one character), in actions
//! (case-insensitive), resource ARNs (case-sensitive, segment-aware) and `StringLike` values.

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`; in ARN mode it does not match the `:` between segments.
    One {
        colon: bool,
    },
    /// `*`; in ARN mode only a `*` that ends its segment may run past a `:`.
    Star {
        colon: bool,
    },
}

fn compile(pattern: &str, arn: bool) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| match c {
            '*' => {
                // "If the * wildcard is the last character of a resource ARN segment, it can
                // expand to match beyond the colon boundaries."
                // <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html>
                let ends_segment = matches!(chars.get(i + 1), None | Some(':'));
                Token::Star { colon: !arn || ends_segment }
            }
            '?' => Token::One { colon: !arn },
            other => Token::Char(other),
        })
        .collect()
}

/// Matches `text` against compiled tokens (dynamic programming over positions, so no
/// exponential backtracking on patterns with many stars).
fn matches(tokens: &[Token], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    // reachable[j]: the tokens consumed so far can match text[..j].
    let mut reachable = vec![false; text.len() + 1];
    reachable[0] = true;
    for token in tokens {
        let mut next = vec![false; text.len() + 1];
        match *token {
            Token::Char(c) => {
                for j in 0..text.len() {
                    next[j + 1] = reachable[j] && text[j] == c;
                }
            }
            Token::One { colon } => {
                for j in 0..text.len() {
                    next[j + 1] = reachable[j] && (colon || text[j] != ':');
                }
            }
            Token::Star { colon } => {
                next[0] = reachable[0];
                for j in 0..text.len() {
                    next[j + 1] = reachable[j + 1] || (next[j] && (colon || text[j] != ':'));
                }
            }
        }
        reachable = next;
        if !reachable.contains(&true) {
            return false;
        }
    }
    reachable[text.len()]
}

/// `ecs:Describe*` against `ecs:DescribeServices`: case-insensitive, `*` and `?` anywhere.
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html>
pub fn action_matches(pattern: &str, action: &str) -> bool {
    matches(&compile(&pattern.to_lowercase(), false), &action.to_lowercase())
}

/// A Resource element entry against a resource ARN: case-sensitive; a `*` runs past a `:` only
/// when it ends its ARN segment, `?` never matches a `:`.
pub fn arn_matches(pattern: &str, arn: &str) -> bool {
    matches(&compile(pattern, true), arn)
}

/// `StringLike`: case-sensitive, `*` and `?` anywhere.
pub fn string_like(pattern: &str, value: &str) -> bool {
    matches(&compile(pattern, false), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_case_insensitive_with_wildcards() {
        assert!(action_matches("ecs:Describe*", "ECS:DescribeServices"));
        assert!(action_matches("*", "ecs:DescribeServices"));
        assert!(action_matches("ecs:*TaskSet", "ecs:UpdateTaskSet"));
        assert!(!action_matches("ecs:*TaskSet", "ecs:UpdateTaskSets"));
        assert!(action_matches("ecs:?pdateService", "ecs:UpdateService"));
        assert!(!action_matches("ecs:?UpdateService", "ecs:UpdateService"));
        assert!(!action_matches("ecs:Describe*", "elasticloadbalancing:DescribeRules"));
    }

    #[test]
    fn arns_are_case_sensitive_and_segment_aware() {
        let task_set = "arn:aws:ecs:us-east-1:123456789012:task-set/prod/web/ecs-svc/123";
        assert!(arn_matches("arn:aws:ecs:us-east-1:123456789012:task-set/*", task_set));
        assert!(arn_matches("*", task_set));
        assert!(arn_matches("*", "*"));
        assert!(!arn_matches("arn:aws:ecs:us-east-1:123456789012:Task-set/*", task_set));
        assert!(arn_matches("arn:aws:ecs:*:*:task-set/prod/*", task_set));
        // A star inside a segment stays inside it; one ending its segment may run on.
        assert!(!arn_matches("arn:aws:ecs:us-*-1:123456789012:task-set/*", "arn:aws:ecs:us-east:x-1:123456789012:task-set/y"));
        assert!(arn_matches("arn:aws:ecs:us-*-1:123456789012:task-set/*", "arn:aws:ecs:us-east-1:123456789012:task-set/y"));
        assert!(arn_matches("arn:aws:logs:us-east-1:1:log-group:*:log-stream:*", "arn:aws:logs:us-east-1:1:log-group:a:b:log-stream:c"));
        assert!(arn_matches(
            "arn:aws:states:us-east-1:1:execution:kanaria-rollout:*",
            "arn:aws:states:us-east-1:1:execution:kanaria-rollout:x"
        ));
        assert!(!arn_matches("arn:aws:states:us-east-1:1:execution:kanaria-rollout:*", "arn:aws:states:us-east-1:1:execution:other:x"));
        assert!(arn_matches("arn:aws:iam::1:role/kanaria-??", "arn:aws:iam::1:role/kanaria-ab"));
        assert!(!arn_matches("arn:aws:iam::1:role/kanaria-??", "arn:aws:iam::1:role/kanaria-abc"));
        assert!(!arn_matches("arn:aws:iam::1:role/a?b", "arn:aws:iam::1:role/a:b"));
        assert!(!arn_matches("arn:aws:iam::1:role/x", "arn:aws:iam::1:role/xy"));
    }

    #[test]
    fn string_like_values() {
        assert!(string_like("kanaria.*", "kanaria.prod.web"));
        assert!(!string_like("kanaria.*", "Kanaria.prod"));
        assert!(string_like("a?c", "abc"));
        assert!(string_like("", ""));
        assert!(!string_like("", "x"));
        assert!(string_like("**a**", "xxa"));
    }
}
