use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

const NEW_DIGEST: &str = "sha256:abcdef1234567890abcdef1234567890abcdef1234567890abcdef1234567890";
const OLD_DIGEST: &str = "sha256:1111111111112222222222223333333333334444444444445555555555556666";
const REPO: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/web";
const APPROVAL_ID: &str = "01HZX3K9QF-approval";
const CONSOLE: &str =
    "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/arn:aws:states:us-east-1:123456789012:execution:kanaria:r-1";

fn card(phase: Phase) -> RolloutCard {
    RolloutCard {
        rollout_id: "r-20240501-0001".into(),
        service: "prod/web".into(),
        old_image: Some(format!("{REPO}:v1.2.0")),
        new_image: format!("{REPO}@{NEW_DIGEST}"),
        new_tag: Some("v1.3.0".into()),
        digest: NEW_DIGEST.into(),
        strategy: "canary".into(),
        steps: vec![10, 50, 100],
        step: 1,
        weight: 50,
        phase,
        failed_tasks: vec![],
        alarms: vec![],
        analysis: None,
        cause: None,
        console_url: Some(CONSOLE.into()),
        updated_at: 1_700_000_000,
    }
}

fn all_phases() -> Vec<Phase> {
    vec![
        Phase::Starting,
        Phase::Shifting,
        Phase::Baking { until: 1_700_000_600 },
        Phase::Verified,
        Phase::AwaitingApproval { approval_id: APPROVAL_ID.into(), expires_at: 1_700_003_600, on_timeout: "rollback".into() },
        Phase::Approved { by: "U123ABC".into(), at: 1_700_001_000 },
        Phase::Rejected { by: "U456DEF".into(), at: 1_700_001_000 },
        Phase::RollingBack,
        Phase::RolledBack,
        Phase::Promoting,
        Phase::Promoted,
        Phase::Superseded,
    ]
}

fn arr(blocks: &Value) -> &Vec<Value> {
    blocks.as_array().expect("blocks is an array")
}

/// The mrkdwn texts of sections and context elements, in order.
fn mrkdwn(blocks: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for b in arr(blocks) {
        match b["type"].as_str().unwrap() {
            "section" => {
                assert_eq!(b["text"]["type"], "mrkdwn");
                out.push(b["text"]["text"].as_str().unwrap().to_string());
            }
            "context" => {
                for e in b["elements"].as_array().unwrap() {
                    out.push(e["text"].as_str().unwrap().to_string());
                }
            }
            _ => {}
        }
    }
    out
}

fn text(blocks: &Value) -> String {
    mrkdwn(blocks).join("\n")
}

fn header_text(blocks: &Value) -> String {
    let h = &arr(blocks)[0];
    assert_eq!(h["type"], "header");
    assert_eq!(h["text"]["type"], "plain_text");
    h["text"]["text"].as_str().unwrap().to_string()
}

fn actions(blocks: &Value) -> Vec<&Value> {
    arr(blocks).iter().filter(|b| b["type"] == "actions").collect()
}

/// Slack's limits, and every `<…>` in mrkdwn is one we put there on purpose.
fn assert_within_limits(blocks: &Value, card: &RolloutCard) {
    let blocks_vec = arr(blocks);
    assert!(!blocks_vec.is_empty() && blocks_vec.len() <= MAX_BLOCKS, "{} blocks", blocks_vec.len());
    assert!(header_text(blocks).chars().count() <= MAX_HEADER_CHARS);
    for b in blocks_vec {
        assert!(b["type"].is_string(), "{b}");
        if b["type"] == "section" {
            let t = b["text"]["text"].as_str().unwrap();
            assert!(!t.is_empty());
            assert!(t.chars().count() <= MAX_SECTION_CHARS, "section of {} chars", t.chars().count());
        }
        if b["type"] == "actions" {
            let confirm = b["elements"][1]["confirm"]["text"]["text"].as_str().unwrap();
            assert!(confirm.chars().count() <= 300, "confirm of {} chars", confirm.chars().count());
        }
    }
    for t in mrkdwn(blocks) {
        assert_only_our_tokens(&t, card);
    }
}

/// Every `<` in rendered mrkdwn opens a date token, a mention of the approver, or the console link;
/// every `&` starts one of the three escapes.
fn assert_only_our_tokens(t: &str, card: &RolloutCard) {
    let approver = match &card.phase {
        Phase::Approved { by, .. } | Phase::Rejected { by, .. } => Some(format!("<@{by}>")),
        _ => None,
    };
    for (i, _) in t.match_indices('<') {
        let rest = &t[i..];
        let ok = rest.starts_with("<!date^")
            || approver.as_deref().is_some_and(|a| rest.starts_with(a))
            || card.console_url.as_deref().is_some_and(|u| rest.starts_with(&format!("<{}|", u.replace('&', "&amp;"))));
        assert!(ok, "unexpected token at {:?} in {t:?}", &rest[..rest.len().min(40)]);
    }
    for (i, _) in t.match_indices('&') {
        let rest = &t[i..];
        assert!(["&amp;", "&lt;", "&gt;"].iter().any(|e| rest.starts_with(e)), "broken escape at {:?}", &rest[..rest.len().min(10)]);
    }
}

#[test]
fn every_phase_renders_within_limits() {
    for phase in all_phases() {
        let c = card(phase.clone());
        let b = blocks(&c);
        assert_within_limits(&b, &c);
        let header = header_text(&b);
        assert!(header.contains("prod/web"), "{header}");
        assert!(header.starts_with(':'), "status emoji first: {header}");
        assert!(arr(&b).last().unwrap()["type"] == "context");
        let fallback = fallback_text(&c);
        assert!(fallback.starts_with("prod/web: "), "{fallback}");
        assert!(fallback.contains("v1.3.0") && fallback.contains("50%"), "{fallback}");
    }
}

#[test]
fn each_phase_says_what_is_happening() {
    let expect = [
        ("Starting", "*Starting:*"),
        ("Shifting traffic", "*Shifting traffic:* 50% is on the new version."),
        ("Baking", "*Baking* at 50% until <!date^1700000600^{date_short_pretty} at {time}|2023-11-14 22:23 UTC>"),
        ("Verified", "*Verified:*"),
        ("Waiting for approval", "*Waiting for approval*"),
        ("Approved", "*Approved* by <@U123ABC>"),
        ("Rejected", "*Rejected* by <@U456DEF>"),
        ("Rolling back", "*Rolling back:*"),
        ("Rolled back", "*Rolled back:*"),
        ("Promoting", "*Promoting:*"),
        ("Promoted", "*Promoted:*"),
        ("Superseded", "*Superseded*"),
    ];
    for (phase, (status, words)) in all_phases().into_iter().zip(expect) {
        let c = card(phase);
        let b = blocks(&c);
        assert!(header_text(&b).ends_with(&format!("prod/web · {status}")), "{}", header_text(&b));
        assert!(text(&b).contains(words), "{words:?} not in {}", text(&b));
        assert!(fallback_text(&c).contains(&status.to_lowercase()), "{}", fallback_text(&c));
    }
}

#[test]
fn buttons_only_while_awaiting_approval() {
    for phase in all_phases() {
        let awaiting = matches!(phase, Phase::AwaitingApproval { .. });
        let b = blocks(&card(phase));
        assert_eq!(actions(&b).len(), usize::from(awaiting), "{}", header_text(&b));
        assert_eq!(b.to_string().contains("\"button\""), awaiting);
    }
}

#[test]
fn approval_buttons_carry_the_approval_id_and_a_confirm_on_roll_back() {
    let b = blocks(&card(Phase::AwaitingApproval {
        approval_id: APPROVAL_ID.into(),
        expires_at: 1_700_003_600,
        on_timeout: "rollback".into(),
    }));
    let block = actions(&b)[0];
    assert_eq!(block["block_id"], APPROVAL_BLOCK_ID);
    let [approve, reject] = block["elements"].as_array().unwrap().as_slice() else { panic!("two buttons") };
    assert_eq!(approve["type"], "button");
    assert_eq!(approve["action_id"], APPROVE_ACTION_ID);
    assert_eq!(approve["style"], "primary");
    assert_eq!(approve["value"], APPROVAL_ID);
    assert_eq!(approve["text"]["text"], "Approve");
    assert!(approve.get("confirm").is_none());
    assert_eq!(reject["type"], "button");
    assert_eq!(reject["action_id"], REJECT_ACTION_ID);
    assert_eq!(reject["style"], "danger");
    assert_eq!(reject["value"], APPROVAL_ID);
    assert_eq!(reject["text"]["text"], "Roll back");
    let confirm = &reject["confirm"];
    assert_eq!(confirm["title"]["text"], "Roll back?");
    assert_eq!(confirm["confirm"]["text"], "Roll back");
    assert_eq!(confirm["deny"]["text"], "Cancel");
    assert_eq!(confirm["style"], "danger");
    assert!(confirm["text"]["text"].as_str().unwrap().contains("*prod/web*"));
}

#[test]
fn awaiting_approval_says_when_it_expires_and_what_happens_then() {
    let phase = |on_timeout: &str| Phase::AwaitingApproval {
        approval_id: APPROVAL_ID.into(),
        expires_at: 1_700_003_600,
        on_timeout: on_timeout.into(),
    };
    let t = text(&blocks(&card(phase("rollback"))));
    assert!(
        t.contains("If nobody decides by <!date^1700003600^{date_short_pretty} at {time}|2023-11-14 23:13 UTC>, kanaria will *roll back*."),
        "{t}"
    );
    let t = text(&blocks(&card(phase("promote"))));
    assert!(t.contains("kanaria will *promote*."), "{t}");
    let f = fallback_text(&card(phase("rollback")));
    assert_eq!(
        f,
        "prod/web: waiting for approval (canary v1.3.0 at 50%) — approve or roll back by 2023-11-14 23:13 UTC, then it will roll back"
    );
}

#[test]
fn approved_card_names_the_approver_and_when() {
    let c = card(Phase::Approved { by: "U123ABC".into(), at: 1_700_001_000 });
    let b = blocks(&c);
    assert!(
        text(&b).contains("*Approved* by <@U123ABC> at <!date^1700001000^{date_short_pretty} at {time}|2023-11-14 22:30 UTC>."),
        "{}",
        text(&b)
    );
    assert!(actions(&b).is_empty());
    assert!(fallback_text(&c).ends_with("by <@U123ABC>"), "{}", fallback_text(&c));

    // From the CLI: an IAM ARN, shown as code, never as a mention.
    let arn = "arn:aws:iam::123456789012:role/deployer";
    let c = card(Phase::Approved { by: arn.into(), at: 1_700_001_000 });
    let t = text(&blocks(&c));
    assert!(t.contains(&format!("*Approved* by `{arn}` at <!date^1700001000^")), "{t}");
    assert!(!t.contains("<@"));
    assert!(fallback_text(&c).ends_with(&format!("by `{arn}`")));
}

#[test]
fn rejected_card_names_who_and_has_no_buttons() {
    let c = card(Phase::Rejected { by: "W0ENTERPRISE1".into(), at: 1_700_001_000 });
    let b = blocks(&c);
    assert!(text(&b).contains("*Rejected* by <@W0ENTERPRISE1> at <!date^1700001000^"), "{}", text(&b));
    assert!(actions(&b).is_empty());
    // Not id-shaped (lowercase, punctuation): shown as code, not a mention.
    let t = text(&blocks(&card(Phase::Rejected { by: "u123".into(), at: 1 })));
    assert!(t.contains("by `u123`"), "{t}");
}

#[test]
fn image_line_shows_old_and_new_tag_with_short_digest() {
    let t = text(&blocks(&card(Phase::Shifting)));
    assert!(t.contains("*Image:* `v1.2.0` → `v1.3.0` (`sha256:abcdef123456`)"), "{t}");
    assert!(t.contains(&format!("*Repository:* `{REPO}`")), "{t}");
    assert!(!t.contains("(was"), "same repository: {t}");

    let mut c = card(Phase::Shifting);
    c.old_image = Some(format!("{REPO}@{OLD_DIGEST}"));
    c.new_tag = None;
    assert!(text(&blocks(&c)).contains("*Image:* `sha256:111111111111` → `sha256:abcdef123456`"), "{}", text(&blocks(&c)));

    c.old_image = Some(format!("{REPO}:v1.2.0@{OLD_DIGEST}"));
    assert!(text(&blocks(&c)).contains("*Image:* `v1.2.0` (`sha256:111111111111`) →"));

    // A registry port is not a tag; another repository is named.
    c.old_image = Some("localhost:5000/web".into());
    let t = text(&blocks(&c));
    assert!(t.contains("*Image:* `localhost:5000/web` →"), "{t}");
    assert!(t.contains("(was `localhost:5000/web`)"), "{t}");

    c.old_image = None;
    assert!(text(&blocks(&c)).contains("*Image:* _none (first deployment)_ → `sha256:abcdef123456`"));
}

#[test]
fn progress_bar_and_steps() {
    let t = text(&blocks(&card(Phase::Shifting)));
    assert!(t.contains("▰▰▰▰▰▱▱▱▱▱ 50%"), "{t}");
    assert!(t.contains("*Steps:* 10% ✓ · *50%* · 100%"), "{t}");

    for (weight, bar) in [
        (0, "▱▱▱▱▱▱▱▱▱▱ 0%"),
        (1, "▰▱▱▱▱▱▱▱▱▱ 1%"),
        (30, "▰▰▰▱▱▱▱▱▱▱ 30%"),
        (34, "▰▰▰▱▱▱▱▱▱▱ 34%"),
        (35, "▰▰▰▰▱▱▱▱▱▱ 35%"),
        (99, "▰▰▰▰▰▰▰▰▰▱ 99%"),
        (100, "▰▰▰▰▰▰▰▰▰▰ 100%"),
        (250, "▰▰▰▰▰▰▰▰▰▰ 100%"),
    ] {
        assert_eq!(progress_bar(weight), bar);
    }

    let mut c = card(Phase::Promoted);
    c.step = 2;
    c.weight = 100;
    assert!(text(&blocks(&c)).contains("*Steps:* 10% ✓ · 50% ✓ · 100% ✓"));
    c.phase = Phase::RolledBack;
    c.step = 1;
    c.weight = 0;
    assert!(text(&blocks(&c)).contains("*Steps:* 10% ✓ · ~50%~ ✗ · 100%"), "{}", text(&blocks(&c)));
    c.step = 7; // past the plan: nothing marked current, no panic
    assert!(text(&blocks(&c)).contains("*Steps:* 10% ✓ · 50% ✓ · 100% ✓"));
    c.steps.clear();
    assert_within_limits(&blocks(&c), &c);
}

#[test]
fn long_plans_show_a_window_around_the_current_step() {
    let mut c = card(Phase::Shifting);
    c.steps = (1..=100).collect();
    c.step = 70;
    let t = text(&blocks(&c));
    assert!(t.contains("*Steps:* … 55 before · 56% ✓"), "{t}");
    assert!(t.contains("*71%*"), "{t}");
    assert!(t.contains("85% · … and 15 more"), "{t}");
    c.step = 0;
    let t = text(&blocks(&c));
    assert!(t.contains("*Steps:* *1%* · 2%") && t.contains("30% · … and 70 more"), "{t}");
}

#[test]
fn rolled_back_card_shows_cause_and_failed_tasks() {
    let mut c = card(Phase::RolledBack);
    c.cause = Some("2 tasks failed their health checks at 10%".into());
    c.failed_tasks = vec!["task 1a2b: Essential container in task exited (exit code 137)".into(), "task 3c4d: OutOfMemoryError".into()];
    c.alarms = vec![("web-5xx".into(), "ALARM".into()), ("web-latency".into(), "OK".into())];
    c.analysis = Some("5xx rate 4.00% on the new target group is above the allowed 1.00%".into());
    let b = blocks(&c);
    let t = text(&b);
    assert!(t.contains("*Why it rolled back:* 2 tasks failed their health checks at 10%"), "{t}");
    assert!(
        t.contains("*Failed tasks (2):*\n• task 1a2b: Essential container in task exited (exit code 137)\n• task 3c4d: OutOfMemoryError"),
        "{t}"
    );
    assert!(t.contains("*Alarms:*\n• :red_circle: `web-5xx`: ALARM\n• :large_green_circle: `web-latency`: OK"), "{t}");
    assert!(t.contains("*Canary analysis:* 5xx rate 4.00%"), "{t}");
    assert!(!t.contains("No failed tasks"));
    assert!(fallback_text(&c).ends_with(": 2 tasks failed their health checks at 10%"), "{}", fallback_text(&c));
    assert_within_limits(&b, &c);
}

#[test]
fn quiet_canary_says_so() {
    assert!(text(&blocks(&card(Phase::Baking { until: 1_700_000_600 }))).contains("_No failed tasks and no alarms so far._"));
    assert!(!text(&blocks(&card(Phase::Starting))).contains("No failed tasks"));
}

#[test]
fn user_text_is_escaped() {
    let mut c = card(Phase::Approved { by: "arn:aws:iam::1:user/<!channel>".into(), at: 1 });
    c.service = "prod/<!channel> & co".into();
    c.rollout_id = "<r>".into();
    c.strategy = "<!here>".into();
    c.new_tag = Some("<v2>`x`".into());
    c.old_image = Some("repo:<@U999>".into());
    c.failed_tasks = vec!["<@U999> said <https://evil.example|click here> & left".into()];
    c.alarms = vec![("a>b".into(), "<!subteam^S1>".into())];
    c.analysis = Some("x < y && y > z".into());
    c.cause = Some("<!everyone>".into());
    let b = blocks(&c);
    assert_within_limits(&b, &c);
    let t = text(&b);
    for raw in ["<!channel>", "<!here>", "<@U999>", "<https://evil", "<!subteam", "<!everyone>", "<r>", "<v2>"] {
        assert!(!t.contains(raw), "{raw} in {t}");
    }
    assert!(t.contains("&lt;@U999&gt; said &lt;https://evil.example|click here&gt; &amp; left"), "{t}");
    assert!(t.contains("*Canary analysis:* x &lt; y &amp;&amp; y &gt; z"), "{t}");
    assert!(t.contains("`&lt;v2&gt;'x'`"), "backticks cannot end the code span: {t}");
    assert!(t.contains("`arn:aws:iam::1:user/&lt;!channel&gt;`"), "{t}");
    // The notification text is escaped the same way.
    let f = fallback_text(&c);
    for raw in ["<!channel>", "<!here>", "<!everyone>"] {
        assert!(!f.contains(raw), "{raw} in {f}");
    }
    // The header is plain_text: Slack shows it literally, so it is not escaped (just clipped).
    assert!(header_text(&b).contains("prod/<!channel> & co"));

    let c = card(Phase::AwaitingApproval { approval_id: APPROVAL_ID.into(), expires_at: 1, on_timeout: "<!here>".into() });
    let mut c = c;
    c.service = "<!channel>".into();
    let b = blocks(&c);
    assert_within_limits(&b, &c);
    assert!(!b.to_string().replace(r#""text":":raised_hand: <!channel> · Waiting for approval""#, "").contains("<!channel>"));
    assert!(!b.to_string().contains("<!here>"));
}

#[test]
fn long_lists_are_truncated_with_a_count() {
    let mut c = card(Phase::RolledBack);
    c.failed_tasks = (0..1000).map(|i| format!("task {i}: exited")).collect();
    c.alarms = (0..200).map(|i| (format!("alarm-{i}"), "ALARM".to_string())).collect();
    let b = blocks(&c);
    assert_within_limits(&b, &c);
    let t = text(&b);
    assert!(t.contains("*Failed tasks (1000):*\n• task 0: exited"), "{t}");
    assert!(t.contains("• task 9: exited\n… and 990 more"), "{t}");
    assert!(!t.contains("task 10: exited"));
    assert!(t.contains("• :red_circle: `alarm-9`: ALARM\n… and 190 more"), "{t}");

    // Long items fill the character budget before the item count: still "… and N more".
    c.failed_tasks = (0..50).map(|i| format!("task {i}: {}", "&".repeat(5000))).collect();
    let b = blocks(&c);
    assert_within_limits(&b, &c);
    let section = mrkdwn(&b).into_iter().find(|s| s.starts_with("*Failed tasks (50):*")).unwrap();
    let shown = section.matches("\n• ").count();
    assert!((1..MAX_LIST_ITEMS).contains(&shown), "{shown} shown");
    assert!(section.ends_with(&format!("\n… and {} more", 50 - shown)), "{section}");
}

#[test]
fn huge_fields_stay_within_slack_limits() {
    let huge = "<&>".repeat(20_000);
    let mut c = card(Phase::AwaitingApproval { approval_id: APPROVAL_ID.into(), expires_at: 1_700_003_600, on_timeout: huge.clone() });
    c.service = huge.clone();
    c.rollout_id = huge.clone();
    c.strategy = huge.clone();
    c.old_image = Some(huge.clone());
    c.new_image = huge.clone();
    c.new_tag = Some(huge.clone());
    c.digest = huge.clone();
    c.analysis = Some(huge.clone());
    c.cause = Some(huge.clone());
    c.failed_tasks = vec![huge.clone(); 3];
    c.alarms = vec![(huge.clone(), huge.clone()); 3];
    c.steps = vec![u32::MAX; 10_000];
    c.step = usize::MAX;
    c.weight = u32::MAX;
    c.updated_at = u64::MAX;
    c.console_url = Some(format!("https://example.com/{huge}"));
    let b = blocks(&c);
    assert_within_limits(&b, &c);
    assert!(fallback_text(&c).chars().count() < 2000);
    for phase in all_phases() {
        c.phase = match phase {
            Phase::Approved { at, .. } => Phase::Approved { by: huge.clone(), at },
            Phase::Rejected { at, .. } => Phase::Rejected { by: huge.clone(), at },
            Phase::Baking { .. } => Phase::Baking { until: u64::MAX },
            p => p,
        };
        assert_within_limits(&blocks(&c), &c);
        assert!(fallback_text(&c).chars().count() < 2000);
    }
}

#[test]
fn clipping_never_splits_an_escape() {
    for n in 0..12 {
        let clipped = clip(&"a<".repeat(10), n);
        assert!(clipped.chars().count() <= n.max(1), "{clipped:?} for {n}");
        assert_only_our_tokens(&clipped, &card(Phase::Starting));
    }
    assert_eq!(clip("abc", 3), "abc");
    assert_eq!(clip("abcd", 3), "ab…");
    assert_eq!(clip("a&b", 4), "a…");
    assert_eq!(code("a`b\nc", 10), "`a'b c`");
}

#[test]
fn console_link_only_for_plain_http_urls() {
    let footer_of = |url: &str| {
        let mut c = card(Phase::Shifting);
        c.console_url = Some(url.into());
        mrkdwn(&blocks(&c)).pop().unwrap()
    };
    assert_eq!(
        footer_of("https://console.example/x?a=1&b=2"),
        "Rollout `r-20240501-0001` · updated <!date^1700000000^{date_short_pretty} at {time}|2023-11-14 22:13 UTC> · <https://console.example/x?a=1&amp;b=2|Step Functions execution>"
    );
    for bad in ["javascript:alert(1)", "https://x|y", "https://x>y", "https://x y", "ftp://x"] {
        assert!(!footer_of(bad).contains("Step Functions execution"), "{bad}");
    }
    let mut c = card(Phase::Shifting);
    c.console_url = None;
    assert!(!text(&blocks(&c)).contains("Step Functions"));
}

/// Nothing in the rendered message is an identifier that the card did not hold for display: the
/// approval id appears only as the two buttons' values; every other long token-like run comes from
/// the card's own display fields (there is no task token to leak, and none appears).
#[test]
fn rendered_json_holds_only_the_approval_id_as_an_identifier() {
    let mut c = card(Phase::AwaitingApproval { approval_id: APPROVAL_ID.into(), expires_at: 1_700_003_600, on_timeout: "rollback".into() });
    c.failed_tasks = vec!["task 0123456789abcdef0123456789abcdef: exited".into()];
    c.alarms = vec![("prod-web-5xx".into(), "OK".into())];
    let b = blocks(&c);
    let rendered = b.to_string();

    assert_eq!(rendered.matches(APPROVAL_ID).count(), 2);
    let mut values = Vec::new();
    walk(&b, &mut |key, v| {
        if key == "value" {
            values.push(v.clone());
        }
    });
    assert_eq!(values, vec![json!(APPROVAL_ID), json!(APPROVAL_ID)]);

    let known = [
        REPO,
        NEW_DIGEST,
        CONSOLE,
        "0123456789abcdef0123456789abcdef",
        APPROVE_ACTION_ID,
        REJECT_ACTION_ID,
        APPROVAL_BLOCK_ID,
        "date_short_pretty",
    ];
    let mut strings = Vec::new();
    walk(&b, &mut |_, v| {
        if let Value::String(s) = v {
            strings.push(s.clone());
        }
    });
    for s in strings {
        for run in s
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || "+/=_-.:".contains(ch)))
            .map(|r| r.trim_matches(|ch: char| ".:".contains(ch)))
            .filter(|r| r.len() >= 16)
        {
            // Words and emoji names (`large_green_circle`) are not identifiers.
            let word = run.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            let allowed = word || run == APPROVAL_ID || known.iter().any(|k| k.contains(run));
            assert!(allowed, "unexpected identifier-like text {run:?} in {s:?}");
        }
    }
    for key in ["taskToken", "task_token", "token", "secret"] {
        let mut found = false;
        walk(&b, &mut |k, _| found |= k == key);
        assert!(!found, "key {key}");
    }
}

fn walk(v: &Value, f: &mut dyn FnMut(&str, &Value)) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                f(k, child);
                walk(child, f);
            }
        }
        Value::Array(items) => {
            for child in items {
                f("", child);
                walk(child, f);
            }
        }
        _ => {}
    }
}

#[test]
fn card_serialises_camel_case_with_a_tagged_phase() {
    let c = card(Phase::AwaitingApproval { approval_id: "a1".into(), expires_at: 5, on_timeout: "promote".into() });
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["rolloutId"], "r-20240501-0001");
    assert_eq!(v["newTag"], "v1.3.0");
    assert_eq!(v["failedTasks"], json!([]));
    assert_eq!(v["consoleUrl"], CONSOLE);
    assert_eq!(v["updatedAt"], 1_700_000_000);
    assert_eq!(v["phase"], json!({"kind": "awaitingApproval", "approval_id": "a1", "expires_at": 5, "on_timeout": "promote"}));
    assert_eq!(serde_json::to_value(Phase::RolledBack).unwrap(), json!({"kind": "rolledBack"}));
    for phase in all_phases() {
        let c = card(phase);
        let back: RolloutCard = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,40}", "[<>&`*_~|@!^\n a-zA-Z0-9:/.-]{0,200}", Just(String::new())]
}

fn arb_phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Starting),
        Just(Phase::Shifting),
        any::<u64>().prop_map(|until| Phase::Baking { until }),
        Just(Phase::Verified),
        ("[A-Za-z0-9_-]{1,64}", any::<u64>(), arb_text()).prop_map(|(approval_id, expires_at, on_timeout)| Phase::AwaitingApproval {
            approval_id,
            expires_at,
            on_timeout
        }),
        (prop_oneof![arb_text(), "U[A-Z0-9]{2,12}"], any::<u64>()).prop_map(|(by, at)| Phase::Approved { by, at }),
        (prop_oneof![arb_text(), "W[A-Z0-9]{2,12}"], any::<u64>()).prop_map(|(by, at)| Phase::Rejected { by, at }),
        Just(Phase::RollingBack),
        Just(Phase::RolledBack),
        Just(Phase::Promoting),
        Just(Phase::Promoted),
        Just(Phase::Superseded),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_card_renders_within_limits_with_only_our_tokens(
        texts in prop::collection::vec(arb_text(), 8),
        old in prop::option::of(arb_text()),
        tag in prop::option::of(arb_text()),
        url in prop::option::of(prop_oneof![arb_text(), "https://[a-z./?&=]{0,40}"]),
        steps in prop::collection::vec(any::<u32>(), 0..60),
        step in any::<usize>(),
        weight in any::<u32>(),
        phase in arb_phase(),
        failed in prop::collection::vec(arb_text(), 0..30),
        alarms in prop::collection::vec((arb_text(), arb_text()), 0..15),
        updated_at in any::<u64>(),
    ) {
        let c = RolloutCard {
            rollout_id: texts[0].clone(),
            service: texts[1].clone(),
            old_image: old,
            new_image: texts[2].clone(),
            new_tag: tag,
            digest: texts[3].clone(),
            strategy: texts[4].clone(),
            steps,
            step: step % 80,
            weight,
            phase: phase.clone(),
            failed_tasks: failed,
            alarms,
            analysis: Some(texts[5].clone()).filter(|t| !t.is_empty()),
            cause: Some(texts[6].clone()).filter(|t| !t.is_empty()),
            console_url: url,
            updated_at,
        };
        let b = blocks(&c);
        assert_within_limits(&b, &c);
        prop_assert_eq!(actions(&b).len(), usize::from(matches!(phase, Phase::AwaitingApproval { .. })));
        let f = fallback_text(&c);
        prop_assert!(!f.is_empty());
    }
}
