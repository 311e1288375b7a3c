//! `kanaria history CLUSTER/SERVICE`: how the service's recent rollouts ended, newest first.
//!
//! The records come from [`Store::history`](crate::aws::store::Store::history); [`format_text`]
//! and [`to_json`] are pure.

use serde_json::{json, Value};

use super::status::{ago, table};
use crate::aws::store::LastRollout;

/// Most rollouts `--limit` may ask for (one DynamoDB query page).
pub const MAX_LIMIT: i64 = 1000;

/// Text causes are cut to this many characters (JSON keeps them whole).
pub const CAUSE_WIDTH: usize = 100;

/// How long the rollout ran, in seconds; None when its start or end is unknown (0).
pub fn duration_seconds(r: &LastRollout) -> Option<u64> {
    (r.started_at != 0 && r.ended_at != 0).then(|| r.ended_at.saturating_sub(r.started_at))
}

/// `42s`, `3m 12s`, `1h 5m`, `2d 3h`.
pub fn human_duration(seconds: u64) -> String {
    let d = seconds;
    match d {
        0..=59 => format!("{d}s"),
        60..=3599 => format!("{}m {}s", d / 60, d % 60),
        3600..=86399 => format!("{}h {}m", d / 3600, d % 3600 / 60),
        _ => format!("{}d {}h", d / 86400, d % 86400 / 3600),
    }
}

/// The first 12 hex digits of the image digest (`sha256:0f6f3104d35c…` → `0f6f3104d35c`), taken
/// from the image URI when the record has no digest; `-` when neither has one.
pub fn short_digest(digest: &str, image: &str) -> String {
    let digest = if digest.trim().is_empty() { image.split_once('@').map(|(_, d)| d).unwrap_or("") } else { digest.trim() };
    let hex = digest.split_once(':').map(|(_, h)| h).unwrap_or(digest);
    if hex.is_empty() {
        "-".into()
    } else {
        hex.chars().take(12).collect()
    }
}

/// One line, at most `max` characters: line breaks become spaces and a longer text ends in `…`.
pub fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

/// The human-readable history: one row per rollout, newest first.
pub fn format_text(service: &str, table_name: &str, rollouts: &[LastRollout], now: u64) -> String {
    if rollouts.is_empty() {
        return format!(
            "no finished rollouts of {service} in table {table_name}: a rollout shows here once it has been promoted or \
             rolled back (check the name, CLUSTER/SERVICE, and --table; `kanaria status {service}` shows one in flight)\n"
        );
    }
    let rows: Vec<Vec<String>> = rollouts
        .iter()
        .map(|r| {
            vec![
                ago(now, r.ended_at),
                if r.outcome.is_empty() { "-".into() } else { r.outcome.clone() },
                short_digest(&r.digest, &r.image),
                duration_seconds(r).map(human_duration).unwrap_or_else(|| "-".into()),
                r.cause.as_deref().map(|c| one_line(c, CAUSE_WIDTH)).filter(|c| !c.is_empty()).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&["ENDED", "OUTCOME", "DIGEST", "DURATION", "CAUSE"], &rows)
}

/// The machine-readable history: `{service, rollouts: [{rolloutId, image, digest, outcome,
/// cause, startedAt, endedAt, durationSeconds}]}`, times in Unix seconds, causes whole.
pub fn to_json(service: &str, rollouts: &[LastRollout]) -> Value {
    let rollouts: Vec<Value> = rollouts
        .iter()
        .map(|r| {
            json!({
                "rolloutId": r.rollout_id,
                "image": r.image,
                "digest": r.digest,
                "outcome": r.outcome,
                "cause": r.cause,
                "startedAt": r.started_at,
                "endedAt": r.ended_at,
                "durationSeconds": duration_seconds(r),
            })
        })
        .collect();
    json!({ "service": service, "rollouts": rollouts })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_741_944_000;
    const DIGEST: &str = "sha256:0f6f3104d35c0913022f8d9e3cbabc13c828ef7fbd37bd466d9a34b72bc023be";

    fn rollouts() -> Vec<LastRollout> {
        vec![
            LastRollout {
                service: "demo/web".into(),
                rollout_id: "9f86d081884c7d65".into(),
                image: format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web@{DIGEST}"),
                outcome: "ROLLED_BACK".into(),
                cause: Some(format!("aborted by alice@laptop via kanaria abort; {}\nend", "x".repeat(150))),
                ended_at: NOW - 300,
                digest: DIGEST.into(),
                started_at: NOW - 300 - 192,
            },
            LastRollout {
                service: "demo/web".into(),
                rollout_id: "2c26b46b68ffc68f".into(),
                image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web@sha256:251aae0dd0c971fb94b06b2b733667c0fd108a42a04699234785baef3202122f".into(),
                outcome: "PROMOTED".into(),
                cause: None,
                ended_at: NOW - 7260,
                digest: String::new(),
                started_at: 0,
            },
        ]
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(192), "3m 12s");
        assert_eq!(human_duration(3900), "1h 5m");
        assert_eq!(human_duration(2 * 86400 + 3 * 3600 + 59), "2d 3h");
        let r = &rollouts();
        assert_eq!(duration_seconds(&r[0]), Some(192));
        assert_eq!(duration_seconds(&r[1]), None, "an unknown start has no duration");
        let skewed = LastRollout { started_at: NOW, ended_at: NOW - 5, ..Default::default() };
        assert_eq!(duration_seconds(&skewed), Some(0));
    }

    #[test]
    fn digests_are_shortened() {
        assert_eq!(short_digest(DIGEST, ""), "0f6f3104d35c");
        assert_eq!(short_digest("", &format!("repo/web@{DIGEST}")), "0f6f3104d35c");
        assert_eq!(short_digest("", "repo/web:v2"), "-");
        assert_eq!(short_digest("abc", ""), "abc");
    }

    #[test]
    fn causes_are_one_line_and_cut() {
        assert_eq!(one_line("a\n b", 100), "a b");
        assert_eq!(one_line("abcdef", 6), "abcdef");
        assert_eq!(one_line("abcdefg", 6), "abcde…");
        assert_eq!(one_line(&"é".repeat(200), 100).chars().count(), 100);
    }

    #[test]
    fn text_history_is_a_table_newest_first() {
        let text = format_text("demo/web", "kanaria", &rollouts(), NOW);
        let cause = one_line(rollouts()[0].cause.as_deref().unwrap(), CAUSE_WIDTH);
        assert_eq!(cause.chars().count(), CAUSE_WIDTH);
        assert!(cause.ends_with('…') && !cause.contains('\n'));
        let expected = format!(
            "\
ENDED      OUTCOME      DIGEST        DURATION  CAUSE
5m ago     ROLLED_BACK  0f6f3104d35c  3m 12s    {cause}
2h 1m ago  PROMOTED     251aae0dd0c9  -         -
"
        );
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn empty_history_says_where_it_looked() {
        let text = format_text("demo/web", "kanaria-dev", &[], NOW);
        assert!(text.starts_with("no finished rollouts of demo/web in table kanaria-dev"), "{text}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn json_history_is_complete() {
        let v = to_json("demo/web", &rollouts());
        assert_eq!(v["service"], "demo/web");
        let first = &v["rollouts"][0];
        assert_eq!(first["rolloutId"], "9f86d081884c7d65");
        assert_eq!(first["digest"], DIGEST);
        assert_eq!(first["outcome"], "ROLLED_BACK");
        assert_eq!(first["cause"], json!(rollouts()[0].cause), "the cause is whole");
        assert_eq!(first["startedAt"], NOW - 492);
        assert_eq!(first["endedAt"], NOW - 300);
        assert_eq!(first["durationSeconds"], 192);
        let second = &v["rollouts"][1];
        assert_eq!(second["cause"], Value::Null);
        assert_eq!(second["durationSeconds"], Value::Null);
        assert_eq!(to_json("demo/api", &[]), json!({ "service": "demo/api", "rollouts": [] }));
    }
}
