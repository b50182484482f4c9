//! Bounded fuzzing of JSON request bodies on stable Rust: the nasty seeds in
//! fuzz/seeds/send_request, mutations of them, and generated send requests whose
//! fields come from a list of hostile strings (line breaks, quotes, encoded words,
//! NULs, lone surrogates, long values) go through the JSON extractor and the send
//! validator; a request that passes must build a message with exactly the headers and
//! recipients asked for. The coverage-guided twin is fuzz/fuzz_targets/send_request.rs.

#[path = "../../../fuzz/common/mutate.rs"]
mod mutate;

#[path = "../../../fuzz/common/send_request.rs"]
mod send_request;

use mutate::Rng;
use serde_json::{Map, Value, json};

const DICT: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b"\\r\\n",
    b"\\u0000",
    b"\\ud800",
    b",",
    b":",
    b"null",
    b"1e999",
    b"-0",
    b"\"from\":",
    b"\"to\":[",
    b"\"headers\":{",
    b"\"attachments\":[{\"filename\":\"a\",\"content\":\"",
    b"\"tags\":{",
    b"\"@x.test\"",
    b"<a@x.test>",
    b"=?utf-8?B?DQpCY2M6IGVAZXZpbC50ZXN0?=",
    b"\xff",
];

/// Strings meant to slip past a check: line breaks and NULs, quoting and comments,
/// encoded words that decode to line breaks, groups, long and non-ASCII values.
const HOSTILE: &[&str] = &[
    "a@x.test",
    "Ada <a@x.test>",
    "\"Q, R\" <q@x.test>",
    "\"a\\\"b\" <a@x.test>",
    "a@x.test\r\nBcc: e@evil.test",
    "a@x.test\nBcc: e@evil.test",
    "a@x.test\rBcc: e@evil.test",
    "=?utf-8?B?DQpCY2M6IGVAZXZpbC50ZXN0?= <a@x.test>",
    "=?utf-8?Q?=0D=0ABcc:_e@evil.test?= <a@x.test>",
    "grp: a@x.test, b@x.test;",
    "a@x.test, b@x.test",
    "(comment) a@x.test (more)",
    "\"\r\n\" <a@x.test>",
    "Name \u{2028} <a@x.test>",
    "Ünïcödé <ü@exämple.test>",
    "a@[127.0.0.1]",
    "\"quoted local\"@x.test",
    "<a@x.test>",
    "a@x.test>",
    "a@x.test.",
    "\u{0}@x.test",
    "",
    " ",
    "X-Custom",
    "x-sendmux-team",
    "Bcc",
    "Resent-Bcc",
    "bad name",
    "value\r\nBcc: e@evil.test",
    "ok_tag-1",
    "application/pdf",
    "a/b/c",
    "../etc/passwd",
    "JVBERg==",
    "====",
];

/// Values that pass, so that requests get past validation often enough to test what
/// an accepted request becomes.
const FINE: &[&str] =
    &["a@x.test", "Ada <a@x.test>", "\"Q, R\" <q@x.test>", "Ünïcödé <u@x.test>", "X-Custom", "ok_tag-1"];

fn hostile(rng: &mut Rng) -> String {
    if rng.one_in(2) {
        return rng.pick(FINE).to_string();
    }
    let mut s = rng.pick(HOSTILE).to_string();
    if rng.one_in(6) {
        s = s.repeat(1 + rng.below(300));
    }
    if rng.one_in(6) {
        let more = rng.pick(HOSTILE).to_string();
        s.push_str(&more);
    }
    s
}

fn list(rng: &mut Rng) -> Value {
    let n = *rng.pick(&[0, 1, 1, 2, 3, 51]);
    Value::Array((0..n).map(|_| Value::String(hostile(rng))).collect())
}

fn map(rng: &mut Rng) -> Value {
    let mut m = Map::new();
    for _ in 0..rng.below(4) {
        m.insert(hostile(rng), Value::String(hostile(rng)));
    }
    Value::Object(m)
}

/// A valid request with one field replaced by a hostile string: many of these pass, so
/// what an accepted hostile value becomes in the built message gets checked.
fn calm(rng: &mut Rng) -> Vec<u8> {
    let mut v = json!({
        "from": "Ada <a@x.test>", "to": ["b@y.test", "\"Q, R\" <q@y.test>"], "cc": ["c@y.test"],
        "bcc": ["d@y.test"], "reply_to": "r@x.test", "subject": "s", "text": "t", "html": "<p>h</p>",
        "headers": {"X-Custom": "v"}, "tags": {"k": "v"},
        "attachments": [{"filename": "a.pdf", "content_type": "application/pdf", "content": "JVBERg=="}],
    });
    let h = Value::String(hostile(rng));
    match rng.below(13) {
        0 => v["from"] = h,
        1 => v["to"][0] = h,
        2 => v["to"][1] = h,
        3 => v["cc"][0] = h,
        4 => v["bcc"][0] = h,
        5 => v["reply_to"] = h,
        6 => v["subject"] = h,
        7 => v["text"] = h,
        8 => v["html"] = h,
        9 => v["headers"]["X-Custom"] = h,
        10 => v["headers"] = json!({ h.as_str().unwrap(): "v" }),
        11 => v["attachments"][0]["filename"] = h,
        _ => v["from"] = Value::String(format!("{} <a@x.test>", h.as_str().unwrap())),
    }
    serde_json::to_vec(&v).unwrap()
}

/// A send request: every field present or not, of the right type or not.
fn request(rng: &mut Rng) -> Vec<u8> {
    if rng.one_in(2) {
        return calm(rng);
    }
    let mut m = Map::new();
    let mut maybe = |rng: &mut Rng, key: &str, value: Value| {
        if !rng.one_in(16) {
            m.insert(key.to_owned(), value);
        }
    };
    let from = Value::String(hostile(rng));
    maybe(rng, "from", from);
    let to = if rng.one_in(3) { Value::Array(vec![json!("b@y.test")]) } else { list(rng) };
    maybe(rng, "to", to);
    if rng.one_in(2) {
        let cc = list(rng);
        maybe(rng, "cc", cc);
        let bcc = list(rng);
        maybe(rng, "bcc", bcc);
    }
    if rng.one_in(3) {
        let r = Value::String(hostile(rng));
        maybe(rng, "reply_to", r);
    }
    let subject = Value::String(if rng.one_in(2) { "s".into() } else { hostile(rng) });
    maybe(rng, "subject", subject);
    let text = Value::String(if rng.one_in(2) { "t".into() } else { hostile(rng) });
    maybe(rng, "text", text);
    if rng.one_in(3) {
        let html = Value::String(hostile(rng));
        maybe(rng, "html", html);
    }
    if rng.one_in(2) {
        let h = map(rng);
        maybe(rng, "headers", h);
    }
    if rng.one_in(3) {
        let t = map(rng);
        maybe(rng, "tags", t);
    }
    if rng.one_in(3) {
        let a = json!([{ "filename": hostile(rng), "content_type": hostile(rng), "content": hostile(rng) }]);
        maybe(rng, "attachments", a);
    }
    if rng.one_in(20) {
        maybe(rng, "unknown", json!(true));
    }
    let mut body = serde_json::to_vec(&Value::Object(m)).unwrap();
    if rng.one_in(10) {
        body.extend_from_slice(b" trailing");
    }
    body
}

#[test]
fn json_request_bodies_survive_hostile_input() {
    let accepted = std::cell::Cell::new(0usize);
    let check = |body: &[u8]| {
        if send_request::check(body) {
            accepted.set(accepted.get() + 1);
        }
    };
    mutate::run_bytes("send_request", 3000, DICT, 64 * 1024, request, check);
    // Guard against a generator that no longer gets past validation (a vacuous run).
    let expected = mutate::iterations(3000) / 30;
    if std::env::var_os("SENDMUX_FUZZ_REPLAY").is_none() {
        assert!(accepted.get() >= expected, "only {} requests were accepted", accepted.get());
    }
}

/// Found by this harness: `validate::email` refused CR and LF in the subject but not a
/// NUL, unlike addresses, names and header values. The subject goes into TEXT columns
/// (`outbound_messages.subject`, the `message.queued` event), which PostgreSQL refuses
/// to hold a NUL in, so such a request was accepted on SQLite and failed on PostgreSQL.
#[test]
fn a_nul_in_the_subject_is_refused() {
    let body = br#"{"from":"a@x.test","to":["b@y.test"],"subject":"a\u0000b","text":"t"}"#;
    let input = sendmux_http::extract::parse_json::<sendmux_core::outbound::validate::EmailIn>(body).unwrap();
    let refused = sendmux_core::outbound::validate::email("", input, send_request::MAX_BYTES).unwrap_err();
    assert_eq!(refused.param(), Some("subject"));
}
