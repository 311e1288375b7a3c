//! One rollout's Slack message, as Block Kit. The message is posted once and updated in place as
//! the rollout progresses, so [`blocks`] renders the whole state every time: what is deployed
//! (`old → new`), how far traffic has moved, what phase the rollout is in, what the canary has
//! shown so far, and — only while it waits for approval — the Approve / Roll back buttons.
//!
//! Rules kept here:
//! - Every piece of text that comes from outside (service, image refs, failure reasons, alarm
//!   names, analysis, cause, approver) is escaped for mrkdwn (`&`, `<`, `>`), so nothing in it
//!   can become a mention, a link or a broadcast.
//! - Slack's limits hold for any input: at most 50 blocks, section text at most 3000 characters,
//!   header text at most 150; long lists end with "… and N more".
//! - Times use Slack's `<!date^…>` token, so each reader sees their own time zone.
//! - The only identifier in the buttons is the approval id (their `value`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::request::{APPROVE_ACTION_ID, REJECT_ACTION_ID};

/// Everything the message shows about one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCard {
    pub rollout_id: String,
    /// `cluster/service`.
    pub service: String,
    /// Full image ref as in the task definition (tag or digest form); `None` on a first deployment.
    pub old_image: Option<String>,
    /// `REPO@sha256:…` (pinned).
    pub new_image: String,
    pub new_tag: Option<String>,
    pub digest: String,
    /// `canary` | `linear` | `blue/green`.
    pub strategy: String,
    /// Planned weights, e.g. `[10, 50, 100]`.
    pub steps: Vec<u32>,
    /// Index of the current step.
    pub step: usize,
    /// % on the new task set now (read back).
    pub weight: u32,
    pub phase: Phase,
    /// One line per failed task (reason), already human text.
    pub failed_tasks: Vec<String>,
    /// (alarm name, state).
    pub alarms: Vec<(String, String)>,
    /// Canary analysis summary.
    pub analysis: Option<String>,
    /// Why it rolled back.
    pub cause: Option<String>,
    /// Step Functions execution link.
    pub console_url: Option<String>,
    /// Unix seconds.
    pub updated_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Phase {
    Starting,
    Shifting,
    Baking {
        until: u64,
    },
    Verified,
    AwaitingApproval {
        approval_id: String,
        expires_at: u64,
        /// `rollback` | `promote`.
        on_timeout: String,
    },
    /// `by` = Slack user id (`U123`) or an IAM ARN (CLI).
    Approved {
        by: String,
        at: u64,
    },
    Rejected {
        by: String,
        at: u64,
    },
    RollingBack,
    RolledBack,
    Promoting,
    Promoted,
    Superseded,
}

/// Slack's limits (Block Kit reference).
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_CHARS: usize = 3000;
pub const MAX_HEADER_CHARS: usize = 150;
/// Lists (failed tasks, alarms) show at most this many lines, then "… and N more".
pub const MAX_LIST_ITEMS: usize = 10;
const MAX_ITEM_CHARS: usize = 300;
const MAX_STEPS_SHOWN: usize = 30;
const MAX_CONFIRM_TEXT_CHARS: usize = 300;
/// The `block_id` of the buttons' actions block.
pub const APPROVAL_BLOCK_ID: &str = "kanaria.approval";

/// The message's `blocks` array.
pub fn blocks(card: &RolloutCard) -> Value {
    let mut blocks = vec![header(card), section(summary(card)), section(phase_text(card))];
    blocks.extend(evidence(card).into_iter().map(section));
    if let Phase::AwaitingApproval { approval_id, .. } = &card.phase {
        blocks.push(buttons(card, approval_id));
    }
    blocks.push(json!({"type": "divider"}));
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": footer(card)}]}));
    blocks.truncate(MAX_BLOCKS);
    Value::Array(blocks)
}

/// The message's `text`: what notifications and screen readers get.
pub fn fallback_text(card: &RolloutCard) -> String {
    let phase = &card.phase;
    let mut text = format!(
        "{}: {} ({} {} at {}%)",
        clip(&card.service, 200),
        status(phase).to_lowercase(),
        clip(&card.strategy, 40),
        clip(&new_version_plain(card), 100),
        card.weight.min(100)
    );
    match phase {
        Phase::AwaitingApproval { expires_at, on_timeout, .. } => {
            text += &format!(" — approve or roll back by {}, then it will {}", utc(*expires_at), clip(&timeout_action(on_timeout), 40));
        }
        Phase::Approved { by, .. } | Phase::Rejected { by, .. } => text += &format!(" by {}", who(by)),
        Phase::Baking { until } => text += &format!(" until {}", utc(*until)),
        _ => {}
    }
    if let Some(cause) = &card.cause {
        text += &format!(": {}", clip(cause, 300));
    }
    text
}

// --- the blocks ---------------------------------------------------------------------------------

fn header(card: &RolloutCard) -> Value {
    let text = plain_clip(&format!("{} {} · {}", emoji(&card.phase), card.service, status(&card.phase)), MAX_HEADER_CHARS);
    json!({"type": "header", "text": {"type": "plain_text", "text": text, "emoji": true}})
}

/// A mrkdwn section. Every caller builds its text from bounded pieces; should the total still
/// exceed Slack's limit, it is cut at a line break (never inside an escape or a `<…>` token).
fn section(text: String) -> Value {
    let text = if text.chars().count() <= MAX_SECTION_CHARS {
        text
    } else {
        let cut: String = text.chars().take(MAX_SECTION_CHARS - 2).collect();
        let keep = cut.rfind('\n').unwrap_or(0);
        format!("{}\n…", &cut[..keep])
    };
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

fn summary(card: &RolloutCard) -> String {
    let new = ImageRef::parse(&card.new_image);
    let new_version =
        version(card.new_tag.as_deref().or(new.tag), Some(&card.digest).filter(|d| !d.is_empty()).map(String::as_str).or(new.digest));
    let (old_version, old_repo) = match &card.old_image {
        None => ("_none (first deployment)_".to_string(), None),
        Some(old) => {
            let old = ImageRef::parse(old);
            let v = match (old.tag, old.digest) {
                (None, None) => code(old.repo, 100),
                (tag, digest) => version(tag, digest),
            };
            (v, Some(old.repo).filter(|repo| *repo != new.repo))
        }
    };
    let mut repo_line = format!("*Repository:* {}", code(new.repo, 300));
    if let Some(old_repo) = old_repo {
        repo_line += &format!(" (was {})", code(old_repo, 300));
    }
    format!(
        "*Image:* {old_version} → {new_version}\n{repo_line}\n*Strategy:* {}\n{}\n{}",
        clip(&card.strategy, 40),
        progress_bar(card.weight),
        step_list(card)
    )
}

fn phase_text(card: &RolloutCard) -> String {
    let weight = card.weight.min(100);
    match &card.phase {
        Phase::Starting => "*Starting:* creating the new task set.".to_string(),
        Phase::Shifting => format!("*Shifting traffic:* {weight}% is on the new version."),
        Phase::Baking { until } => format!("*Baking* at {weight}% until {}; the canary is being watched.", date(*until)),
        Phase::Verified => format!("*Verified:* the canary passed its checks at {weight}%."),
        Phase::AwaitingApproval { expires_at, on_timeout, .. } => format!(
            "*Waiting for approval* to go on from {weight}%.\nIf nobody decides by {}, kanaria will *{}*.",
            date(*expires_at),
            clip(&timeout_action(on_timeout), 40)
        ),
        Phase::Approved { by, at } => format!("*Approved* by {} at {}.", who(by), date(*at)),
        Phase::Rejected { by, at } => format!("*Rejected* by {} at {}: rolling back.", who(by), date(*at)),
        Phase::RollingBack => "*Rolling back:* traffic is returning to the old version.".to_string(),
        Phase::RolledBack => "*Rolled back:* all traffic is on the old version.".to_string(),
        Phase::Promoting => "*Promoting:* moving all traffic to the new version.".to_string(),
        Phase::Promoted => "*Promoted:* the new version takes all traffic.".to_string(),
        Phase::Superseded => "*Superseded* by a newer rollout of this service.".to_string(),
    }
}

/// What the canary has shown so far: one section each for the cause, failed tasks, alarms and
/// analysis (each with its own 3000-character budget).
fn evidence(card: &RolloutCard) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(cause) = &card.cause {
        out.push(format!("*Why it rolled back:* {}", clip(&one_line(cause), MAX_SECTION_CHARS - 30)));
    }
    if !card.failed_tasks.is_empty() {
        let items = card.failed_tasks.iter().map(|reason| clip(&one_line(reason), MAX_ITEM_CHARS));
        out.push(list(&format!("*Failed tasks ({}):*", card.failed_tasks.len()), items, card.failed_tasks.len()));
    }
    if !card.alarms.is_empty() {
        let items = card.alarms.iter().map(|(name, state)| {
            format!("{} {}: {}", alarm_emoji(state), code(&one_line(name), MAX_ITEM_CHARS - 60), clip(&one_line(state), 40))
        });
        out.push(list("*Alarms:*", items, card.alarms.len()));
    }
    if let Some(analysis) = &card.analysis {
        out.push(format!("*Canary analysis:* {}", clip(analysis, MAX_SECTION_CHARS - 30)));
    }
    let shown_nothing = card.failed_tasks.is_empty() && card.alarms.is_empty() && card.analysis.is_none() && card.cause.is_none();
    if shown_nothing && !matches!(card.phase, Phase::Starting | Phase::Superseded) {
        out.push("_No failed tasks and no alarms so far._".to_string());
    }
    out
}

fn buttons(card: &RolloutCard, approval_id: &str) -> Value {
    let confirm_text = clip_to(
        &format!(
            "This stops the rollout of *{}* and moves all traffic back to the old version.",
            clip(&card.service, MAX_CONFIRM_TEXT_CHARS - 80)
        ),
        MAX_CONFIRM_TEXT_CHARS,
    );
    json!({
        "type": "actions",
        "block_id": APPROVAL_BLOCK_ID,
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION_ID,
                "text": {"type": "plain_text", "text": "Approve", "emoji": true},
                "style": "primary",
                "value": approval_id,
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION_ID,
                "text": {"type": "plain_text", "text": "Roll back", "emoji": true},
                "style": "danger",
                "value": approval_id,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Roll back?"},
                    "text": {"type": "mrkdwn", "text": confirm_text},
                    "confirm": {"type": "plain_text", "text": "Roll back"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                    "style": "danger",
                },
            },
        ],
    })
}

fn footer(card: &RolloutCard) -> String {
    let mut text = format!("Rollout {} · updated {}", code(&card.rollout_id, 120), date(card.updated_at));
    if let Some(url) = card.console_url.as_deref().filter(|url| is_linkable(url)) {
        text += &format!(" · <{}|Step Functions execution>", url.replace('&', "&amp;"));
    }
    text
}

// --- pieces -------------------------------------------------------------------------------------

fn status(phase: &Phase) -> &'static str {
    match phase {
        Phase::Starting => "Starting",
        Phase::Shifting => "Shifting traffic",
        Phase::Baking { .. } => "Baking",
        Phase::Verified => "Verified",
        Phase::AwaitingApproval { .. } => "Waiting for approval",
        Phase::Approved { .. } => "Approved",
        Phase::Rejected { .. } => "Rejected",
        Phase::RollingBack => "Rolling back",
        Phase::RolledBack => "Rolled back",
        Phase::Promoting => "Promoting",
        Phase::Promoted => "Promoted",
        Phase::Superseded => "Superseded",
    }
}

fn emoji(phase: &Phase) -> &'static str {
    match phase {
        Phase::Starting => ":rocket:",
        Phase::Shifting => ":arrows_counterclockwise:",
        Phase::Baking { .. } => ":hourglass_flowing_sand:",
        Phase::Verified => ":white_check_mark:",
        Phase::AwaitingApproval { .. } => ":raised_hand:",
        Phase::Approved { .. } => ":thumbsup:",
        Phase::Rejected { .. } => ":no_entry:",
        Phase::RollingBack => ":rewind:",
        Phase::RolledBack => ":leftwards_arrow_with_hook:",
        Phase::Promoting => ":arrow_double_up:",
        Phase::Promoted => ":tada:",
        Phase::Superseded => ":fast_forward:",
    }
}

fn alarm_emoji(state: &str) -> &'static str {
    match state {
        "ALARM" => ":red_circle:",
        "OK" => ":large_green_circle:",
        _ => ":white_circle:",
    }
}

fn timeout_action(on_timeout: &str) -> String {
    match on_timeout {
        "rollback" => "roll back".to_string(),
        "promote" => "promote".to_string(),
        other => other.to_string(),
    }
}

/// `▰▰▰▱▱▱▱▱▱▱ 30%`: ten cells, rounded to the nearest, but never empty above 0% nor full below 100%.
fn progress_bar(weight: u32) -> String {
    let weight = weight.min(100);
    let mut filled = (weight + 5) / 10;
    if weight > 0 {
        filled = filled.max(1);
    }
    if weight < 100 {
        filled = filled.min(9);
    }
    let filled = filled as usize;
    format!("{}{} {weight}%", "▰".repeat(filled), "▱".repeat(10 - filled))
}

/// `10% ✓ · *50%* · 100%`: done steps ticked, the current one bold (struck and crossed when the
/// rollout is going back), all ticked once promoted. Long plans show a window around the current step.
fn step_list(card: &RolloutCard) -> String {
    if card.steps.is_empty() {
        return String::new();
    }
    let all_done = matches!(card.phase, Phase::Promoted);
    let going_back = matches!(card.phase, Phase::Rejected { .. } | Phase::RollingBack | Phase::RolledBack);
    let render = |i: usize, w: u32| {
        if all_done || i < card.step {
            format!("{w}% ✓")
        } else if i == card.step && going_back {
            format!("~{w}%~ ✗")
        } else if i == card.step {
            format!("*{w}%*")
        } else {
            format!("{w}%")
        }
    };
    let n = card.steps.len();
    let start = if n <= MAX_STEPS_SHOWN { 0 } else { card.step.saturating_sub(MAX_STEPS_SHOWN / 2).min(n - MAX_STEPS_SHOWN) };
    let end = (start + MAX_STEPS_SHOWN).min(n);
    let mut parts: Vec<String> = Vec::new();
    if start > 0 {
        parts.push(format!("… {start} before"));
    }
    parts.extend(card.steps[start..end].iter().enumerate().map(|(j, w)| render(start + j, *w)));
    if end < n {
        parts.push(format!("… and {} more", n - end));
    }
    format!("*Steps:* {}", parts.join(" · "))
}

fn list(title: &str, items: impl Iterator<Item = String>, total: usize) -> String {
    const RESERVE: usize = 40; // room for "… and N more"
    let mut out = title.to_string();
    let mut chars = out.chars().count();
    for (shown, item) in items.enumerate() {
        let line = format!("\n• {item}");
        let len = line.chars().count();
        if shown == MAX_LIST_ITEMS || chars + len + RESERVE > MAX_SECTION_CHARS {
            out += &format!("\n… and {} more", total - shown);
            return out;
        }
        out += &line;
        chars += len;
    }
    out
}

/// A Slack user id becomes a mention; anything else (an IAM ARN) is shown as code.
fn who(by: &str) -> String {
    let is_user_id = (2..=32).contains(&by.len())
        && (by.starts_with('U') || by.starts_with('W'))
        && by.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if is_user_id {
        format!("<@{by}>")
    } else {
        code(by, 300)
    }
}

/// `<!date^TS^{date_short_pretty} at {time}|2024-05-01 12:00 UTC>`: each reader's own time zone.
fn date(ts: u64) -> String {
    match utc_opt(ts) {
        Some(fallback) => format!("<!date^{ts}^{{date_short_pretty}} at {{time}}|{fallback}>"),
        None => ts.to_string(),
    }
}

fn utc(ts: u64) -> String {
    utc_opt(ts).unwrap_or_else(|| ts.to_string())
}

fn utc_opt(ts: u64) -> Option<String> {
    let secs = i64::try_from(ts).ok()?;
    chrono::DateTime::from_timestamp(secs, 0).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// An http(s) URL that can sit inside `<url|text>` unchanged.
fn is_linkable(url: &str) -> bool {
    url.len() <= 2000
        && (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '|' | '`'))
}

/// A parsed image reference: `repo[:tag][@digest]`.
struct ImageRef<'a> {
    repo: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    fn parse(image: &'a str) -> Self {
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (image, None),
        };
        // A ':' after the last '/' is the tag (one before it is a registry port).
        let last = name.rfind('/').map_or(0, |i| i + 1);
        match name[last..].rfind(':') {
            Some(i) => ImageRef { repo: &name[..last + i], tag: Some(&name[last + i + 1..]), digest },
            None => ImageRef { repo: name, tag: None, digest },
        }
    }
}

/// `sha256:` and the first 12 hex digits.
fn short_digest(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", hex.chars().take(12).collect::<String>()),
        None => digest.chars().take(19).collect(),
    }
}

fn version(tag: Option<&str>, digest: Option<&str>) -> String {
    match (tag, digest) {
        (Some(tag), Some(digest)) => format!("{} ({})", code(tag, 130), code(&short_digest(digest), 30)),
        (Some(tag), None) => code(tag, 130),
        (None, Some(digest)) => code(&short_digest(digest), 30),
        (None, None) => "_unknown_".to_string(),
    }
}

fn new_version_plain(card: &RolloutCard) -> String {
    let new = ImageRef::parse(&card.new_image);
    match (card.new_tag.as_deref().or(new.tag), Some(card.digest.as_str()).filter(|d| !d.is_empty()).or(new.digest)) {
        (Some(tag), _) => tag.to_string(),
        (None, Some(digest)) => short_digest(digest),
        (None, None) => card.new_image.clone(),
    }
}

// --- escaping and clipping ----------------------------------------------------------------------

/// Escapes the three characters mrkdwn gives meaning to.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

/// Escaped, at most `max` characters of output; a cut text ends in `…` and never splits an escape.
fn clip(text: &str, max: usize) -> String {
    clip_to(&escape(text), max)
}

/// Cuts already-escaped text to `max` characters without splitting an `&…;` escape.
fn clip_to(escaped: &str, max: usize) -> String {
    if escaped.chars().count() <= max {
        return escaped.to_string();
    }
    let mut out: String = escaped.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = out.rfind('&') {
        if !out[amp..].contains(';') {
            out.truncate(amp);
        }
    }
    out.push('…');
    out
}

/// Plain text (headers, buttons): no escaping, just the length limit.
fn plain_clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Inline code: escaped, backticks replaced (they would end the span), newlines flattened; at most
/// `max` characters including the backticks.
fn code(text: &str, max: usize) -> String {
    let text = one_line(text).replace('`', "'");
    format!("`{}`", clip(&text, max.saturating_sub(2).max(1)))
}

fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests;
