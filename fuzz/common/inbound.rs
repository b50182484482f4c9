//! What must hold for any bytes that arrive as a message: the inbound parse entry points
//! (`summarize` at ingest, `detail`, the attachment list and each attachment when a
//! client reads it) return without panicking, and what ingest keeps for the row has no
//! NUL (PostgreSQL text cannot hold one). Shared by crates/core/tests/fuzz_inbound.rs
//! and fuzz/fuzz_targets/inbound_mime.rs, which include it with `#[path]`.

use sendmux_core::inbound::parse;

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
