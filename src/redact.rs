//! Redaction of likely secrets in text kanaria forwards to people (a crashed task's last log
//! lines in a restart-loop alert): applications print their configuration when they fail to
//! start, and an alert goes to an SNS topic and a Slack channel that more people read than the
//! service's logs. Pure: text in, text out.
//!
//! What counts as likely secret:
//! - the value after a secret-looking key (`password=…`, `"apiKey": "…"`, `DB_PASSWORD: …`,
//!   `Authorization: …`);
//! - the token after `Bearer ` or `Basic `;
//! - the password of a URL (`postgres://user:…@host`);
//! - AWS access key ids (`AKIA…`, `ASIA…`), Slack tokens (`xox…-`), GitHub tokens (`ghp_…`),
//!   JSON Web Tokens (`eyJ….eyJ….…`);
//! - any other word of 32 or more characters that mixes letters and digits (a secret access key,
//!   an API key); hashes and ids that long are hidden too, which an alert can afford.

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Key names (lowercase, compared without `_`/`-`) whose value is a secret.
const SECRET_KEYS: [&str; 14] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "authorization",
    "credential",
    "credentials",
    "clientsecret",
    "sessiontoken",
];

/// `line` with every likely secret replaced by [`REDACTED`].
pub fn redact(line: &str) -> String {
    let line = redact_url_passwords(line);
    let line = redact_after_schemes(&line);
    let line = redact_key_values(&line);
    redact_words(&line)
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '+' | '=')
}

fn secret_key(key: &str) -> bool {
    let normalized: String = key.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
    SECRET_KEYS.iter().any(|k| normalized.ends_with(k))
}

/// `scheme://user:password@host` → `scheme://user:[REDACTED]@host`.
fn redact_url_passwords(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c.is_whitespace() || c == '"' || c == '\'').unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.find('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at && !authority[..at].contains('/') => {
                out.push_str(&authority[..=colon]);
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `Bearer <token>` and `Basic <credentials>`.
fn redact_after_schemes(line: &str) -> String {
    let mut out = line.to_string();
    for scheme in ["Bearer ", "bearer ", "Basic ", "basic "] {
        let mut from = 0;
        while let Some(i) = out[from..].find(scheme).map(|i| i + from) {
            let start = i + scheme.len();
            let end =
                out[start..].find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',').map(|e| e + start).unwrap_or(out.len());
            if end > start {
                out.replace_range(start..end, REDACTED);
            }
            from = start + REDACTED.len().min(out.len() - start);
        }
    }
    out
}

/// The value after a secret-looking key and `=` or `:` (quotes and spaces allowed around).
fn redact_key_values(line: &str) -> String {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut out = String::with_capacity(line.len());
    let mut copied = 0; // byte offset of `line` copied to `out` so far
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if !(c == '=' || c == ':') {
            i += 1;
            continue;
        }
        // The key: the word before the separator, past a closing quote.
        let mut k_end = pos;
        let before = &line[..pos];
        let trimmed = before.trim_end_matches([' ', '"', '\'']);
        if trimmed.len() < before.len() {
            k_end = trimmed.len();
        }
        let k_start = line[..k_end]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.'))
            .map(|(i, c)| i + c.len_utf8())
            .unwrap_or(0);
        let key = &line[k_start..k_end];
        if key.is_empty() || !secret_key(key) {
            i += 1;
            continue;
        }
        // The value: after spaces and an opening quote, up to the closing quote or a delimiter.
        let mut v_start = pos + c.len_utf8();
        let after = &line[v_start..];
        let skipped = after.len() - after.trim_start_matches(' ').len();
        v_start += skipped;
        let quote = line[v_start..].chars().next().filter(|q| *q == '"' || *q == '\'');
        if let Some(q) = quote {
            v_start += q.len_utf8();
        }
        let v_end = match quote {
            Some(q) => line[v_start..].find(q).map(|e| e + v_start).unwrap_or(line.len()),
            None => line[v_start..]
                .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '&' | '}' | ')'))
                .map(|e| e + v_start)
                .unwrap_or(line.len()),
        };
        if v_end > v_start && !line[v_start..v_end].starts_with(REDACTED) {
            out.push_str(&line[copied..v_start]);
            out.push_str(REDACTED);
            copied = v_end;
        }
        // Go on after the value.
        while i < chars.len() && chars[i].0 < v_end.max(pos + 1) {
            i += 1;
        }
    }
    out.push_str(&line[copied..]);
    out
}

/// Whole words that look like credentials by their shape.
fn redact_words(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if looks_like_a_credential(word) {
            out.push_str(REDACTED);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in line.chars() {
        if is_word_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn looks_like_a_credential(word: &str) -> bool {
    let w = word.trim_matches(|c: char| c == '.' || c == '/' || c == '=');
    if w.contains(REDACTED) || w.contains("REDACTED") {
        return false;
    }
    let aws_key_id = w.len() == 20
        && ["AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"].iter().any(|p| w.starts_with(p))
        && w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    let slack = ["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xapp-"].iter().any(|p| w.starts_with(p));
    let github = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"].iter().any(|p| w.starts_with(p));
    let jwt = w.starts_with("eyJ") && w.matches('.').count() == 2;
    // Paths and URLs are long words too; a credential has no path separators.
    let long_mixed = w.len() >= 32
        && !w.contains('/')
        && w.chars().any(|c| c.is_ascii_digit())
        && w.chars().any(|c| c.is_ascii_alphabetic())
        && w.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '='));
    aws_key_id || slack || github || jwt || long_mixed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_key_values_are_redacted_in_every_common_shape() {
        for (line, secret) in [
            ("password=hunter2 user=admin", "hunter2"),
            ("DB_PASSWORD: s3cr3t!", "s3cr3t!"),
            (r#"{"apiKey": "abc123", "region": "eu-west-1"}"#, "abc123"),
            ("connecting with client_secret='x y z' now", "x y z"),
            ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
            ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
            ("curl -H 'Authorization: Basic dXNlcjpwYXNz'", "dXNlcjpwYXNz"),
            ("DATABASE_URL=postgres://app:pa55word@db.internal:5432/app", "pa55word"),
            ("redis://:hunter2@cache:6379", "hunter2"),
            ("using key AKIAIOSFODNN7EXAMPLE for s3", "AKIAIOSFODNN7EXAMPLE"),
            ("slack token xoxb-123456789012-abcdefABCDEF", "xoxb-123456789012"),
            ("auth eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "eyJhbGciOiJIUzI1NiJ9"),
            ("github ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
            ("api key 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "9f86d081884c7d659a2feaa0c55ad015"),
        ] {
            let redacted = redact(line);
            assert!(!redacted.contains(secret), "{line:?} → {redacted:?}");
            assert!(redacted.contains(REDACTED), "{line:?} → {redacted:?}");
        }
    }

    #[test]
    fn ordinary_lines_are_left_as_they_are() {
        for line in [
            "listening on :8080",
            "panic: DATABASE_URL is not set",
            "GET /healthz 200 3ms",
            "error: connect ECONNREFUSED 10.0.1.12:5432",
            "loaded config from /etc/app/config.yaml",
            "token bucket refilled: 10 tokens",
            "thread 'main' panicked at src/main.rs:12:5: called `Option::unwrap()` on a `None` value",
            "https://example.com/a/b?x=1",
        ] {
            assert_eq!(redact(line), line);
        }
    }

    #[test]
    fn a_key_with_an_empty_value_and_unicode_are_handled() {
        assert_eq!(redact("password="), "password=");
        assert_eq!(redact("pässword: ünïcode ok"), "pässword: ünïcode ok");
        assert_eq!(redact("secret: 秘密 rest"), format!("secret: {REDACTED} rest"));
    }
}
