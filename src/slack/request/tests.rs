use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

// ---------------------------------------------------------------------------------------------
// Signatures. Every expected value below was computed outside this code, with Python's hmac:
//   python3 -c 'import hmac,hashlib; print("v0="+hmac.new(SECRET, b"v0:"+TS+b":"+BODY, hashlib.sha256).hexdigest())'
// ---------------------------------------------------------------------------------------------

/// Slack's worked example in "Verifying requests from Slack" (a slash command's body).
const SLACK_DOC_SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_DOC_TIMESTAMP: &str = "1531420618";
const SLACK_DOC_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_DOC_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

const SECRET: &[u8] = b"kanaria-test-signing-secret";
const NOW: u64 = 1_700_000_000;

/// (secret, timestamp, body, signature), computed with Python's hmac.
const VECTORS: &[(&[u8], &str, &[u8], &str)] = &[
    (SLACK_DOC_SECRET, SLACK_DOC_TIMESTAMP, SLACK_DOC_BODY, SLACK_DOC_SIGNATURE),
    (
        b"kanaria-test-signing-secret",
        "1700000000",
        b"payload=%7B%22type%22%3A%22block_actions%22%7D",
        "v0=a2da34be155e6c36ee0a3c88bcfe64a94ba81e7cdfb010748520e34d38706603",
    ),
    (b"", "0", b"", "v0=05d07c4bf47bd5859ab994f77c2493a1d715dd26ac0a43114e18411257ef4083"),
    (
        b"kanaria-test-signing-secret",
        "1700000000",
        b"\xff\x00payload=\xfe",
        "v0=cf5af1d0ad6603115450cddec269db99afb5d294c69862bb385b80da7814b722",
    ),
    (
        b"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
        "1700000123",
        b"a=1&b=2",
        "v0=4cc81ce58f74a0189e9a2a9d5a1b074ab3f99a0dea66cab9c852a77833c2905f",
    ),
];

fn req<'a>(timestamp: &'a str, signature: &'a str, body: &'a [u8]) -> SignedRequest<'a> {
    SignedRequest { timestamp: Some(timestamp), signature: Some(signature), body }
}

#[test]
fn sign_matches_independently_computed_vectors() {
    for (secret, ts, body, expected) in VECTORS {
        assert_eq!(sign(secret, ts, body), *expected, "timestamp {ts}");
    }
}

#[test]
fn verify_accepts_the_vectors_at_their_own_time() {
    for (secret, ts, body, signature) in VECTORS {
        let now: u64 = ts.parse().unwrap();
        assert_eq!(verify(secret, &req(ts, signature, body), now), Ok(()), "timestamp {ts}");
    }
}

#[test]
fn verify_accepts_slacks_documented_example_within_five_minutes() {
    let sent: u64 = SLACK_DOC_TIMESTAMP.parse().unwrap();
    let r = req(SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_BODY);
    assert_eq!(verify(SLACK_DOC_SECRET, &r, sent + MAX_AGE_SECONDS), Ok(()));
    assert_eq!(verify(SLACK_DOC_SECRET, &r, sent - MAX_AGE_SECONDS), Ok(()));
}

#[test]
fn verify_accepts_uppercase_hex() {
    let upper = format!("v0={}", SLACK_DOC_SIGNATURE[3..].to_ascii_uppercase());
    assert_eq!(verify(SLACK_DOC_SECRET, &req(SLACK_DOC_TIMESTAMP, &upper, SLACK_DOC_BODY), 1_531_420_618), Ok(()));
}

#[test]
fn wrong_secret_is_a_bad_signature() {
    let r = req(SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_BODY);
    assert_eq!(verify(b"8f742231b10e8888abcd99yyyzzz85a6", &r, 1_531_420_618), Err(Rejection::BadSignature));
    assert_eq!(verify(b"", &r, 1_531_420_618), Err(Rejection::BadSignature));
}

#[test]
fn body_altered_by_one_byte_is_a_bad_signature() {
    for i in [0, SLACK_DOC_BODY.len() / 2, SLACK_DOC_BODY.len() - 1] {
        let mut body = SLACK_DOC_BODY.to_vec();
        body[i] ^= 0x01;
        let r = req(SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, &body);
        assert_eq!(verify(SLACK_DOC_SECRET, &r, 1_531_420_618), Err(Rejection::BadSignature), "byte {i}");
    }
    let mut longer = SLACK_DOC_BODY.to_vec();
    longer.push(b'&');
    assert_eq!(
        verify(SLACK_DOC_SECRET, &req(SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, &longer), 1_531_420_618),
        Err(Rejection::BadSignature)
    );
}

#[test]
fn signature_for_another_timestamp_is_a_bad_signature() {
    // Same body, timestamp one second later (still fresh): the timestamp is part of what is signed.
    let r = req("1531420619", SLACK_DOC_SIGNATURE, SLACK_DOC_BODY);
    assert_eq!(verify(SLACK_DOC_SECRET, &r, 1_531_420_619), Err(Rejection::BadSignature));
}

#[test]
fn stale_and_future_timestamps_are_refused_before_the_signature() {
    let r = req(SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_BODY);
    let sent: u64 = SLACK_DOC_TIMESTAMP.parse().unwrap();
    assert_eq!(verify(SLACK_DOC_SECRET, &r, sent + MAX_AGE_SECONDS + 1), Err(Rejection::StaleTimestamp { age_seconds: 301 }));
    assert_eq!(verify(SLACK_DOC_SECRET, &r, sent - MAX_AGE_SECONDS - 1), Err(Rejection::StaleTimestamp { age_seconds: -301 }));
    assert_eq!(verify(SLACK_DOC_SECRET, &r, sent + 86_400), Err(Rejection::StaleTimestamp { age_seconds: 86_400 }));
    // Stale wins over a bad signature: the order is size, headers, timestamp, signature.
    let bad = req(SLACK_DOC_TIMESTAMP, "v0=00", SLACK_DOC_BODY);
    assert!(matches!(verify(SLACK_DOC_SECRET, &bad, 0), Err(Rejection::StaleTimestamp { .. })));
    // Extremes do not overflow.
    assert_eq!(verify(SECRET, &req("0", "v0=", b""), u64::MAX), Err(Rejection::StaleTimestamp { age_seconds: i64::MAX }));
    assert_eq!(verify(SECRET, &req("18446744073709551615", "v0=", b""), 0), Err(Rejection::StaleTimestamp { age_seconds: i64::MIN }));
}

#[test]
fn missing_headers_are_named() {
    let missing_ts = SignedRequest { timestamp: None, signature: Some(SLACK_DOC_SIGNATURE), body: SLACK_DOC_BODY };
    assert_eq!(verify(SLACK_DOC_SECRET, &missing_ts, NOW), Err(Rejection::MissingHeader("X-Slack-Request-Timestamp")));
    let missing_sig = SignedRequest { timestamp: Some(SLACK_DOC_TIMESTAMP), signature: None, body: SLACK_DOC_BODY };
    assert_eq!(verify(SLACK_DOC_SECRET, &missing_sig, NOW), Err(Rejection::MissingHeader("X-Slack-Signature")));
    let neither = SignedRequest { timestamp: None, signature: None, body: b"" };
    assert_eq!(verify(SLACK_DOC_SECRET, &neither, NOW), Err(Rejection::MissingHeader("X-Slack-Request-Timestamp")));
    assert_eq!(Rejection::MissingHeader(TIMESTAMP_HEADER).status(), 401);
}

#[test]
fn non_integer_timestamps_are_bad() {
    for ts in ["", "abc", "1531420618.5", " 1531420618", "1531420618 ", "+1531420618", "-1", "1e9", "１５３１", "99999999999999999999999"]
    {
        let r = req(ts, SLACK_DOC_SIGNATURE, SLACK_DOC_BODY);
        assert_eq!(verify(SLACK_DOC_SECRET, &r, 1_531_420_618), Err(Rejection::BadTimestamp), "{ts:?}");
    }
}

#[test]
fn malformed_signatures_are_bad() {
    let hex = &SLACK_DOC_SIGNATURE[3..];
    let cases = [
        String::new(),
        hex.to_string(),                     // no v0=
        format!("v1={hex}"),                 // another version
        format!("V0={hex}"),                 // prefix is case-sensitive
        format!("v0={}", &hex[1..]),         // odd number of hex digits
        format!("v0={}", &hex[2..]),         // 31 bytes
        format!("v0={hex}00"),               // 33 bytes
        format!("v0={}g", &hex[1..]),        // not hex
        format!("v0= {}", &hex[1..]),        // space
        format!("v0={hex},v0={hex}"),        // two signatures
        "v0=".to_string() + &"é".repeat(32), // 64 bytes, not hex
    ];
    for sig in &cases {
        let r = req(SLACK_DOC_TIMESTAMP, sig, SLACK_DOC_BODY);
        assert_eq!(verify(SLACK_DOC_SECRET, &r, 1_531_420_618), Err(Rejection::BadSignature), "{sig:?}");
    }
}

#[test]
fn oversized_body_is_refused_before_anything_else() {
    let huge = vec![b'x'; MAX_BODY_BYTES + 1];
    // No headers, garbage body: still BodyTooLarge, because size is checked first.
    let r = SignedRequest { timestamp: None, signature: None, body: &huge };
    assert_eq!(verify(SECRET, &r, NOW), Err(Rejection::BodyTooLarge { len: MAX_BODY_BYTES + 1 }));
    // A correctly signed but oversized body is refused too.
    let ts = NOW.to_string();
    let sig = sign(SECRET, &ts, &huge);
    assert_eq!(verify(SECRET, &req(&ts, &sig, &huge), NOW), Err(Rejection::BodyTooLarge { len: MAX_BODY_BYTES + 1 }));
    // Exactly the limit is fine.
    let max = vec![b'x'; MAX_BODY_BYTES];
    let sig = sign(SECRET, &ts, &max);
    assert_eq!(verify(SECRET, &req(&ts, &sig, &max), NOW), Ok(()));
}

#[test]
fn statuses() {
    assert_eq!(Rejection::BodyTooLarge { len: 1 }.status(), 400);
    assert_eq!(Rejection::Malformed("x".into()).status(), 400);
    for r in [
        Rejection::MissingHeader(SIGNATURE_HEADER),
        Rejection::BadTimestamp,
        Rejection::StaleTimestamp { age_seconds: 1 },
        Rejection::BadSignature,
    ] {
        assert_eq!(r.status(), 401, "{r:?}");
    }
    for r in [
        Rejection::WrongTeam,
        Rejection::WrongApp,
        Rejection::NotAnApprover,
        Rejection::Expired,
        Rejection::AlreadyDecided { decision: "approved".into(), by: "U1".into() },
        Rejection::UnknownApproval,
        Rejection::NotConfigured,
    ] {
        assert_eq!(r.status(), 403, "{r:?}");
    }
}

#[test]
fn display_never_echoes_secret_signature_or_body() {
    let body = b"payload=%7B%22secret-body-marker%22%3A1%7D";
    let sig = "v0=deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
    let rejections = [
        verify(b"s3cr3t-marker", &req("1700000000", sig, body), NOW).unwrap_err(),
        verify(b"s3cr3t-marker", &req("1700000000", "v0=zz-sig-marker", body), NOW).unwrap_err(),
        verify(b"s3cr3t-marker", &req("ts-marker", sig, body), NOW).unwrap_err(),
        verify(b"s3cr3t-marker", &req("1", sig, body), NOW).unwrap_err(),
        parse_interaction(body, &[SLACK_RESPONSE_URL_PREFIX]).unwrap_err(),
        parse_interaction(&form(&json!({"type": "secret-body-marker"})), &[SLACK_RESPONSE_URL_PREFIX]).unwrap_err(),
    ];
    for r in rejections {
        let text = r.to_string();
        for marker in ["s3cr3t", "deadbeef", "sig-marker", "secret-body-marker", "ts-marker"] {
            assert!(!text.contains(marker), "{text:?} contains {marker}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Interactions. The payload follows Slack's block_actions reference: type, team, user,
// api_app_id, container, channel, message, response_url, actions[].
// ---------------------------------------------------------------------------------------------

const HOOKS: &[&str] = &[SLACK_RESPONSE_URL_PREFIX];

fn payload() -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": "U123ABC456", "username": "alice", "name": "alice", "team_id": "T123ABC456"},
        "api_app_id": "A123ABC456",
        "token": "Shh_its_a_seekrit",
        "container": {"type": "message", "message_ts": "1548261231.000200", "channel_id": "C123ABC456", "is_ephemeral": false},
        "trigger_id": "12345.98765.abcd2358fdea",
        "team": {"id": "T123ABC456", "domain": "example"},
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": {"id": "C123ABC456", "name": "deploys"},
        "message": {"type": "message", "ts": "1548261231.000200", "text": "cluster/web: waiting for approval", "blocks": []},
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T123ABC456/1234567890/AbCdEf",
        "actions": [{
            "action_id": "kanaria.approve",
            "block_id": "kanaria.approval",
            "text": {"type": "plain_text", "text": "Approve", "emoji": true},
            "value": "01HZX3K9-appr_1",
            "style": "primary",
            "type": "button",
            "action_ts": "1548426417.840180"
        }]
    })
}

fn form(payload: &Value) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new()).append_pair("payload", &payload.to_string()).finish().into_bytes()
}

fn with(mut p: Value, pointer: &str, value: Value) -> Value {
    *p.pointer_mut(pointer).unwrap_or_else(|| panic!("no {pointer}")) = value;
    p
}

fn without(mut p: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = if parent.is_empty() { &mut p } else { p.pointer_mut(parent).unwrap() };
    parent.as_object_mut().unwrap().remove(key).unwrap();
    p
}

fn malformed_of(body: &[u8]) -> String {
    match parse_interaction(body, HOOKS) {
        Err(Rejection::Malformed(reason)) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn parses_an_approve_click() {
    let i = parse_interaction(&form(&payload()), HOOKS).unwrap();
    assert_eq!(
        i,
        Interaction {
            team_id: "T123ABC456".into(),
            app_id: "A123ABC456".into(),
            user_id: "U123ABC456".into(),
            user_name: "alice".into(),
            choice: Choice::Approve,
            approval_id: "01HZX3K9-appr_1".into(),
            response_url: "https://hooks.slack.com/actions/T123ABC456/1234567890/AbCdEf".into(),
            channel_id: Some("C123ABC456".into()),
            message_ts: Some("1548261231.000200".into()),
        }
    );
}

#[test]
fn parses_a_reject_click() {
    let p = with(payload(), "/actions/0/action_id", json!(REJECT_ACTION_ID));
    let i = parse_interaction(&form(&p), HOOKS).unwrap();
    assert_eq!(i.choice, Choice::Reject);
    assert_eq!(i.approval_id, "01HZX3K9-appr_1");
}

#[test]
fn parses_a_hand_encoded_body_with_plus_for_space() {
    // Slack's form encoding may use '+' for spaces; the JSON has a space after each colon here.
    let body = b"payload=%7B%22type%22%3A+%22block_actions%22%2C+%22team%22%3A+%7B%22id%22%3A+%22T1%22%7D%2C+%22api_app_id%22%3A+%22A1%22%2C+%22user%22%3A+%7B%22id%22%3A+%22U1%22%2C+%22name%22%3A+%22bob%22%7D%2C+%22response_url%22%3A+%22https%3A%2F%2Fhooks.slack.com%2Factions%2Fx%22%2C+%22actions%22%3A+%5B%7B%22action_id%22%3A+%22kanaria.reject%22%2C+%22value%22%3A+%22a1%22%7D%5D%7D";
    let i = parse_interaction(body, HOOKS).unwrap();
    assert_eq!((i.team_id.as_str(), i.app_id.as_str(), i.user_id.as_str(), i.user_name.as_str()), ("T1", "A1", "U1", "bob"));
    assert_eq!(i.choice, Choice::Reject);
    assert_eq!((i.channel_id, i.message_ts), (None, None));
}

#[test]
fn first_of_our_actions_wins_and_others_are_skipped() {
    let p = with(
        payload(),
        "/actions",
        json!([
            {"action_id": "someone.else", "value": "x", "type": "button"},
            {"action_id": "kanaria.reject", "value": "first", "type": "button"},
            {"action_id": "kanaria.approve", "value": "second", "type": "button"}
        ]),
    );
    let i = parse_interaction(&form(&p), HOOKS).unwrap();
    assert_eq!((i.choice, i.approval_id.as_str()), (Choice::Reject, "first"));
}

#[test]
fn user_name_falls_back_to_name_then_id() {
    let p = without(payload(), "/user/username");
    assert_eq!(parse_interaction(&form(&p), HOOKS).unwrap().user_name, "alice");
    let p = without(without(payload(), "/user/username"), "/user/name");
    assert_eq!(parse_interaction(&form(&p), HOOKS).unwrap().user_name, "U123ABC456");
}

#[test]
fn team_null_falls_back_to_the_users_team() {
    let p = with(payload(), "/team", Value::Null);
    assert_eq!(parse_interaction(&form(&p), HOOKS).unwrap().team_id, "T123ABC456");
    let p = without(with(payload(), "/team", Value::Null), "/user/team_id");
    assert_eq!(malformed_of(&form(&p)), "payload has no team.id");
}

#[test]
fn channel_falls_back_to_the_container() {
    let p = without(payload(), "/channel");
    assert_eq!(parse_interaction(&form(&p), HOOKS).unwrap().channel_id.as_deref(), Some("C123ABC456"));
    let p = without(without(payload(), "/channel"), "/container");
    let i = parse_interaction(&form(&p), HOOKS).unwrap();
    assert_eq!((i.channel_id, i.message_ts), (None, None));
}

#[test]
fn form_body_without_payload_is_malformed() {
    assert_eq!(malformed_of(b""), "no payload field in the form body");
    assert_eq!(malformed_of(b"token=abc&team_id=T1"), "no payload field in the form body");
    assert_eq!(malformed_of(SLACK_DOC_BODY), "no payload field in the form body");
    assert_eq!(malformed_of(b"\xff\xfe\x00"), "no payload field in the form body");
    let twice = [form(&payload()), b"&".to_vec(), form(&payload())].concat();
    assert_eq!(malformed_of(&twice), "more than one payload field");
}

#[test]
fn payload_not_json_or_not_an_object_is_malformed() {
    assert_eq!(malformed_of(b"payload="), "payload is not JSON");
    assert_eq!(malformed_of(b"payload=%7B"), "payload is not JSON");
    assert_eq!(malformed_of(b"payload={\"type\":\"block_actions\""), "payload is not JSON");
    assert_eq!(malformed_of(b"payload=%FF%FE"), "payload is not JSON");
    // A deeply nested payload hits serde_json's recursion limit, not the stack.
    let deep = format!("payload={}", "%5B".repeat(10_000));
    assert_eq!(malformed_of(deep.as_bytes()), "payload is not JSON");
    assert_eq!(malformed_of(b"payload=%5B%5D"), "payload is not a JSON object");
    assert_eq!(malformed_of(b"payload=42"), "payload is not a JSON object");
}

#[test]
fn wrong_payload_type_is_malformed() {
    for t in [json!("view_submission"), json!("interactive_message"), json!("BLOCK_ACTIONS"), json!(1), Value::Null] {
        let reason = malformed_of(&form(&with(payload(), "/type", t.clone())));
        assert!(reason.starts_with("payload type") || reason == "payload has no type", "{t}: {reason}");
    }
    assert_eq!(malformed_of(&form(&without(payload(), "/type"))), "payload has no type");
}

#[test]
fn missing_or_odd_ids_are_malformed() {
    assert_eq!(malformed_of(&form(&without(payload(), "/user"))), "payload has no user");
    assert_eq!(malformed_of(&form(&with(payload(), "/user", json!("U1")))), "payload has no user");
    assert_eq!(malformed_of(&form(&without(payload(), "/user/id"))), "payload has no user.id");
    assert_eq!(malformed_of(&form(&without(payload(), "/api_app_id"))), "payload has no api_app_id");
    assert_eq!(malformed_of(&form(&without(payload(), "/team/id"))), "payload has no team.id");
    assert_eq!(malformed_of(&form(&with(payload(), "/team", json!("T1")))), "payload has no team.id");
    // Ids are rendered back (`<@U…>`), so only letters and digits pass.
    for bad in ["", "U1>", "<!channel>", "U 1", "Ü1", &"U".repeat(33)] {
        assert_eq!(malformed_of(&form(&with(payload(), "/user/id", json!(bad)))), "user.id is not a Slack id", "{bad:?}");
    }
    assert_eq!(malformed_of(&form(&with(payload(), "/api_app_id", json!(7)))), "payload has no api_app_id");
}

#[test]
fn no_actions_is_malformed() {
    assert_eq!(malformed_of(&form(&without(payload(), "/actions"))), "payload has no actions");
    assert_eq!(malformed_of(&form(&with(payload(), "/actions", json!({})))), "payload has no actions");
    assert_eq!(malformed_of(&form(&with(payload(), "/actions", json!([])))), "no kanaria action in the payload");
}

#[test]
fn unknown_action_id_is_malformed() {
    for id in [json!("kanaria.approve2"), json!("KANARIA.APPROVE"), json!("approve"), json!(null), json!(1)] {
        assert_eq!(malformed_of(&form(&with(payload(), "/actions/0/action_id", id))), "no kanaria action in the payload");
    }
    assert_eq!(malformed_of(&form(&with(payload(), "/actions", json!([1, "x", null])))), "no kanaria action in the payload");
}

#[test]
fn bad_approval_ids_are_malformed() {
    assert_eq!(malformed_of(&form(&without(payload(), "/actions/0/value"))), "action has no value");
    assert_eq!(malformed_of(&form(&with(payload(), "/actions/0/value", json!(12)))), "action has no value");
    for bad in ["", "a b", "a/b", "a.b", "<@U1>", "é", "a\n", &"a".repeat(65)] {
        assert_eq!(malformed_of(&form(&with(payload(), "/actions/0/value", json!(bad)))), "action value is not an approval id", "{bad:?}");
    }
    for good in ["a", "A-z_0-9", &"a".repeat(64)] {
        assert_eq!(parse_interaction(&form(&with(payload(), "/actions/0/value", json!(good))), HOOKS).unwrap().approval_id, good);
    }
}

#[test]
fn response_url_must_be_allowed() {
    let url = |u: &str| form(&with(payload(), "/response_url", json!(u)));
    assert_eq!(malformed_of(&form(&without(payload(), "/response_url"))), "payload has no response_url");
    for bad in [
        "http://hooks.slack.com/actions/x",
        "https://hooks.slack.com.evil.example/actions/x",
        "https://evil.example/https://hooks.slack.com/",
        "https://hooks.slack.com/actions/x y",
        "https://hooks.slack.com/actions/\nx",
        "",
    ] {
        assert_eq!(malformed_of(&url(bad)), "response_url is not an allowed URL", "{bad:?}");
    }
    let long = format!("https://hooks.slack.com/{}", "a".repeat(MAX_URL_LEN));
    assert_eq!(malformed_of(&url(&long)), "response_url is not an allowed URL");
    // Local tests allow a local endpoint; no prefixes (or an empty prefix) allow nothing.
    let local = url("http://127.0.0.1:9000/respond");
    assert_eq!(parse_interaction(&local, &["http://127.0.0.1:9000/"]).unwrap().response_url, "http://127.0.0.1:9000/respond");
    assert!(matches!(parse_interaction(&local, &[]), Err(Rejection::Malformed(_))));
    assert!(matches!(parse_interaction(&local, &[""]), Err(Rejection::Malformed(_))));
    assert!(parse_interaction(&form(&payload()), &["http://127.0.0.1:9000/", SLACK_RESPONSE_URL_PREFIX]).is_ok());
}

#[test]
fn odd_channel_or_message_ts_is_dropped_not_trusted() {
    let p = with(with(payload(), "/channel/id", json!("C1>")), "/container/message_ts", json!("1.2<x>"));
    let i = parse_interaction(&form(&p), HOOKS).unwrap();
    assert_eq!((i.channel_id, i.message_ts), (None, None));
}

#[test]
fn oversized_body_is_too_large_even_when_also_malformed() {
    let huge = vec![b'%'; MAX_BODY_BYTES + 1];
    assert_eq!(parse_interaction(&huge, HOOKS), Err(Rejection::BodyTooLarge { len: MAX_BODY_BYTES + 1 }));
    // A valid payload padded past the limit is refused the same way.
    let mut padded = form(&payload());
    padded.extend(b"&pad=".iter().chain(std::iter::repeat_n(&b'x', MAX_BODY_BYTES)));
    assert_eq!(parse_interaction(&padded, HOOKS), Err(Rejection::BodyTooLarge { len: padded.len() }));
}

#[test]
fn check_workspace_compares_team_then_app() {
    let i = parse_interaction(&form(&payload()), HOOKS).unwrap();
    assert_eq!(check_workspace(&i, "T123ABC456", "A123ABC456"), Ok(()));
    assert_eq!(check_workspace(&i, "T999", "A123ABC456"), Err(Rejection::WrongTeam));
    assert_eq!(check_workspace(&i, "T123ABC456", "A999"), Err(Rejection::WrongApp));
    assert_eq!(check_workspace(&i, "T999", "A999"), Err(Rejection::WrongTeam));
    assert_eq!(check_workspace(&i, "t123abc456", "A123ABC456"), Err(Rejection::WrongTeam));
    assert_eq!(Rejection::WrongTeam.status(), 403);
    assert_eq!(Rejection::WrongApp.status(), 403);
}

#[test]
fn signed_interaction_end_to_end() {
    let body = form(&payload());
    let ts = NOW.to_string();
    let sig = sign(SECRET, &ts, &body);
    assert_eq!(verify(SECRET, &req(&ts, &sig, &body), NOW + 10), Ok(()));
    let i = parse_interaction(&body, HOOKS).unwrap();
    assert_eq!(check_workspace(&i, "T123ABC456", "A123ABC456"), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// Property tests: any input gives Ok or Err, never a panic; what is accepted holds its promises.
// ---------------------------------------------------------------------------------------------

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![Just("block_actions"), Just(APPROVE_ACTION_ID), Just(REJECT_ACTION_ID), Just("https://hooks.slack.com/a"), Just("T1")]
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("id".to_string()),
                    Just("actions".to_string()),
                    Just("action_id".to_string()),
                    Just("value".to_string()),
                    ".{0,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Paths in the valid payload that a mutation may replace.
const POINTERS: &[&str] = &[
    "/type",
    "/user",
    "/user/id",
    "/user/username",
    "/user/name",
    "/user/team_id",
    "/api_app_id",
    "/container",
    "/container/message_ts",
    "/container/channel_id",
    "/team",
    "/team/id",
    "/channel",
    "/channel/id",
    "/response_url",
    "/actions",
    "/actions/0",
    "/actions/0/action_id",
    "/actions/0/value",
];

fn check_accepted(result: &Result<Interaction, Rejection>, allowed: &[&str]) {
    if let Ok(i) = result {
        assert!(is_approval_id(&i.approval_id), "{i:?}");
        assert!(allowed.iter().any(|p| !p.is_empty() && i.response_url.starts_with(p)), "{i:?}");
        for id in [&i.team_id, &i.app_id, &i.user_id] {
            assert!(is_slack_id(id), "{i:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..2048),
        ts in prop::option::of(".{0,24}"),
        sig in prop::option::of(prop_oneof![".{0,80}", "v0=[0-9a-fA-F]{0,70}"]),
        secret in prop::collection::vec(any::<u8>(), 0..80),
        now in any::<u64>(),
    ) {
        let r = SignedRequest { timestamp: ts.as_deref(), signature: sig.as_deref(), body: &body };
        let _ = verify(&secret, &r, now);
        check_accepted(&parse_interaction(&body, HOOKS), HOOKS);
    }

    #[test]
    fn form_shaped_strings_never_panic(body in "([a-z_]{0,8}(=[A-Za-z0-9%+{}\":,\\[\\]._-]{0,40})?&?){0,8}") {
        check_accepted(&parse_interaction(body.as_bytes(), HOOKS), HOOKS);
        let prefixed = format!("payload={body}");
        check_accepted(&parse_interaction(prefixed.as_bytes(), HOOKS), HOOKS);
    }

    #[test]
    fn arbitrary_json_payloads_never_panic(value in arb_json()) {
        check_accepted(&parse_interaction(&form(&value), HOOKS), HOOKS);
    }

    #[test]
    fn mutated_slack_payloads_never_panic(mutations in prop::collection::vec((prop::sample::select(POINTERS), arb_json()), 1..4)) {
        let mut p = payload();
        for (pointer, value) in mutations {
            if let Some(slot) = p.pointer_mut(pointer) {
                *slot = value;
            }
        }
        let allowed = &["https://hooks.slack.com/", "http://127.0.0.1:9000/"];
        check_accepted(&parse_interaction(&form(&p), allowed), allowed);
    }

    #[test]
    fn signed_requests_verify_and_any_flipped_byte_fails(
        secret in prop::collection::vec(any::<u8>(), 0..80),
        body in prop::collection::vec(any::<u8>(), 1..512),
        sent in 0u64..4_000_000_000,
        skew in -(MAX_AGE_SECONDS as i64)..=(MAX_AGE_SECONDS as i64),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let ts = sent.to_string();
        let sig = sign(&secret, &ts, &body);
        let now = sent.saturating_add_signed(skew);
        prop_assert_eq!(verify(&secret, &req(&ts, &sig, &body), now), Ok(()));
        let mut altered = body.clone();
        altered[flip.index(body.len())] ^= 1 << bit;
        prop_assert_eq!(verify(&secret, &req(&ts, &sig, &altered), now), Err(Rejection::BadSignature));
    }
}
