//! What must hold for any body sent to `POST /emails`: the JSON extractor
//! (`sendmux_http::extract::parse_json`, the one every JSON route uses) and the
//! request validator (`sendmux_core::outbound::validate::email`) never panic, and a
//! request that passes builds a message whose headers say exactly what was asked: no
//! line break (or NUL) smuggled into an address, a name, the subject or a custom header, no
//! Bcc header, no extra recipient. Shared by crates/http/tests/fuzz_json.rs and
//! fuzz/fuzz_targets/send_request.rs, which include it with `#[path]`.

use mail_parser::MessageParser;
use sendmux_core::outbound::{mime, validate};

pub const MAX_BYTES: usize = 64 * 1024;

/// Returns whether the request was accepted (so a harness can tell it reaches that far).
pub fn check(body: &[u8]) -> bool {
    // Any JSON value, as the extractor reads it (depth, numbers, strings, trailing text).
    let _ = sendmux_http::extract::parse_json::<serde_json::Value>(body);
    let Ok(input) = sendmux_http::extract::parse_json::<validate::EmailIn>(body) else { return false };
    let Ok(email) = validate::email("", input, MAX_BYTES) else { return false };

    let one_line = |what: &str, s: &str| assert!(!s.contains(['\r', '\n', '\0']), "{what} keeps a line break: {s:?}");
    for m in std::iter::once(&email.from).chain(&email.to).chain(&email.cc).chain(&email.bcc).chain(&email.reply_to) {
        one_line("an address", &m.address);
        if let Some(n) = &m.name {
            one_line("a display name", n);
        }
    }
    one_line("the subject", &email.subject);
    for (name, value) in &email.headers {
        one_line("a header name", name);
        one_line("a header value", value);
    }
    let recipients = email.envelope_recipients();
    assert!(!recipients.is_empty() && recipients.len() <= validate::MAX_RECIPIENTS);

    let raw = mime::build(&email, "01HZZZZZZZZZZZZZZZZZZZZZZZ", "id@fuzz.test", 1_700_000_000_000, true);
    let built = MessageParser::default().parse(&raw).expect("a built message parses");
    let top = |name: &str| built.headers().iter().filter(|h| h.name().eq_ignore_ascii_case(name)).count();
    assert_eq!(top("Bcc"), 0, "a Bcc header was written");
    assert_eq!(top("From"), 1, "one From header");
    let count = |list: Option<&mail_parser::Address<'_>>| list.map_or(0, |a| a.iter().count());
    assert_eq!(count(built.to()), email.to.len(), "To holds another number of addresses than asked");
    assert_eq!(count(built.cc()), email.cc.len(), "Cc holds another number of addresses than asked");
    let from = built.from().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default();
    assert!(from.eq_ignore_ascii_case(&email.from.address), "From is {from:?}, asked {:?}", email.from.address);
    for (name, _) in &email.headers {
        assert!(top(name) >= 1, "the custom header {name} is missing");
    }
    true
}
