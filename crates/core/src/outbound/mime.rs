//! The MIME message of an outbound email, built with `mail-builder`: Message-ID and Date
//! fixed at acceptance (retries send the same bytes), multipart/alternative for text plus
//! html, attachments, custom headers, and tags as a header for relays.

use base64::Engine;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::text::Text;

use super::validate::{Email, Mailbox};

fn addr(m: &Mailbox) -> Address<'_> {
    match &m.name {
        Some(n) => Address::new_address(Some(n.as_str()), m.address.as_str()),
        None => Address::new_address(None::<&str>, m.address.as_str()),
    }
}

fn list(ms: &[Mailbox]) -> Address<'_> {
    Address::new_list(ms.iter().map(addr).collect())
}

/// The `Message-ID` (without angle brackets) for a message accepted as `msg_id`.
pub fn message_id_header(msg_id: &str, from: &Mailbox) -> String {
    let domain = from.address.rsplit_once('@').map(|(_, d)| d).unwrap_or("sendmux.invalid");
    format!("{}@{}", msg_id.to_ascii_lowercase(), domain)
}

/// Builds the message bytes. `tags_header` adds `X-Sendmux-Tags` (SMTP relays read tags
/// from headers; SES gets them as `EmailTags` in its API call instead).
pub fn build(email: &Email, msg_id: &str, mime_message_id: &str, date_ms: i64, tags_header: bool) -> Vec<u8> {
    let mut b = MessageBuilder::new()
        .from(addr(&email.from))
        .subject(email.subject.as_str())
        .message_id(mime_message_id)
        .date(date_ms / 1000)
        .header("X-Sendmux-Message-Id", Text::new(msg_id));
    if !email.to.is_empty() {
        b = b.to(list(&email.to));
    }
    if !email.cc.is_empty() {
        b = b.cc(list(&email.cc));
    }
    // Bcc recipients are envelope-only: never written into the headers.
    if let Some(r) = &email.reply_to {
        b = b.reply_to(addr(r));
    }
    for (name, value) in &email.headers {
        b = b.header(name.as_str(), Text::new(value.as_str()));
    }
    if tags_header && !email.tags.is_empty() {
        let tags: Vec<String> = email.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        b = b.header("X-Sendmux-Tags", Text::new(tags.join("; ")));
    }
    if let Some(t) = &email.text {
        b = b.text_body(t.as_str());
    }
    if let Some(h) = &email.html {
        b = b.html_body(h.as_str());
    }
    for a in &email.attachments {
        // Checked to decode at acceptance.
        let bytes = base64::engine::general_purpose::STANDARD.decode(&a.content).unwrap_or_default();
        b = b.attachment(a.content_type.as_str(), a.filename.as_str(), bytes);
    }
    b.write_to_vec().unwrap_or_default()
}
