//! What must hold for any bytes that arrive as a message: the inbound parse entry points
//! (`summarize` at ingest, `detail`, the attachment list and each attachment when a
//! client reads it) return without panicking, and what ingest keeps for the row has no
//! NUL (PostgreSQL text cannot hold one). Shared by crates/core/tests/fuzz_inbound.rs
//! and fuzz/fuzz_targets/inbound_mime.rs, which include it with `#[path]`.

use sendmux_core::inbound::parse;

/// mail-parser 0.11.9 reaches `debug_assert!(false, ...)` with this text on some
/// multipart/digest messages (fuzz/seeds/inbound_mime/digest_blank_rfc822_part). Release
/// builds compile the assertion out and parse on; the service parses in
/// `spawn_blocking` and falls back (an empty summary at ingest, 500 on a detail read),
/// so only debug builds are affected. Harnesses built with debug assertions treat that
/// one panic as known.
pub const KNOWN_UPSTREAM_ASSERTION: &str = "Invalid part ID, could not find multipart.";

/// Whether a panic's payload is [`KNOWN_UPSTREAM_ASSERTION`].
pub fn is_known(payload: &(dyn std::any::Any + Send)) -> bool {
    let text = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
    text == Some(KNOWN_UPSTREAM_ASSERTION)
}

pub fn check(raw: &[u8]) {
    let summary = parse::summarize(raw);
    let kept = [&summary.from_address, &summary.from_name, &summary.subject, &summary.message_id];
    for field in kept.into_iter().flatten().chain(&summary.to) {
        assert!(!field.contains('\0'), "a summary field keeps a NUL: {field:?}");
    }
    assert!(summary.text_sample.chars().count() <= 4096, "the text sample is not cut");

    let detail = parse::detail(raw);
    serde_json::to_vec(&detail).expect("the detail serializes");
    let listed = detail["attachments"].as_array().map_or(0, Vec::len);

    if let Some(message) = parse::parse(raw) {
        let attachments = parse::attachments(&message);
        assert_eq!(attachments.len(), listed, "the detail and the attachment list disagree");
        // Every listed attachment can be fetched, and an index past the end cannot.
        for a in attachments.iter().take(64) {
            let (_, _, bytes) = parse::attachment(raw, a.index).expect("a listed attachment is served");
            if message.attachments().nth(a.index).is_some_and(|p| p.message().is_none()) {
                assert_eq!(bytes.len(), a.size, "attachment {} has another size than listed", a.index);
            }
        }
        assert!(parse::attachment(raw, attachments.len()).is_none());
    }
}
