//! MIME parsing with `mail-parser`: a summary at ingest (what lists, events and the
//! spam score need) and the full detail when a client reads a message. Broken MIME is
//! parsed as far as it goes; a message that does not parse at all still has a summary.

use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders};
use serde::Serialize;
use serde_json::{Value, json};

/// What ingest keeps of a parsed message.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub from_address: Option<String>,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub has_date: bool,
    pub attachment_count: usize,
    pub has_text: bool,
    pub has_html: bool,
    /// The first text body, cut to a few KB, for content signals.
    pub text_sample: String,
    /// `In-Reply-To` and `References` (without angle brackets), for threading.
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// The new text of the first text body (see `extract`).
    pub extracted_text: Option<String>,
    /// From, to, cc, subject and text, for search (see `search_text`).
    pub search_text: String,
}

/// Most characters of a message's text that search looks at.
pub(crate) const SEARCH_TEXT_CHARS: usize = 100_000;
/// Most bytes of addresses and names search looks at (a message may list thousands;
/// PostgreSQL refuses a text-search vector over 1 MB, which would refuse the message).
const SEARCH_ADDRESS_BYTES: usize = 16 * 1024;

/// What search matches: the addresses (whole, and split at `@` and `.` so a domain or
/// a local part matches on its own), names, subject and the first text body.
fn search_text(m: &Message<'_>) -> String {
    let mut out = String::new();
    'lists: for list in [m.from(), m.to(), m.cc()].into_iter().flatten() {
        for a in addresses(list) {
            if out.len() > SEARCH_ADDRESS_BYTES {
                break 'lists;
            }
            for part in [a.name.as_deref(), a.address.as_deref()].into_iter().flatten() {
                out.push_str(part);
                out.push(' ');
            }
            if let Some(addr) = &a.address {
                out.push_str(&addr.replace(['@', '.'], " "));
                out.push(' ');
            }
        }
    }
    if let Some(s) = m.subject() {
        out.push_str(&s[..s.floor_char_boundary(1000.min(s.len()))]);
        out.push(' ');
    }
    if let Some(t) = m.body_text(0) {
        out.extend(t.chars().take(SEARCH_TEXT_CHARS));
    }
    stored(&distinct_words(&out))
}

/// Each whitespace-separated word of `text` once, in the order first seen. Search asks
/// that every query word appear somewhere — never two words side by side — so the
/// indexes need each word once, and text is mostly repeats (quoted replies, signatures,
/// boilerplate): on PostgreSQL `to_tsvector` parsed every repeat of every word, the
/// costliest part of storing a message. A word keeps its punctuation, so what each
/// store's tokenizer makes of it is what it made of the full text.
pub(crate) fn distinct_words(text: &str) -> String {
    let mut seen = std::collections::HashSet::new();
    let mut out = String::with_capacity(text.len().min(64 * 1024));
    for word in text.split_whitespace().filter(|w| seen.insert(*w)) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(raw)
}

/// A header value as the row keeps it: a NUL becomes U+FFFD, since PostgreSQL text
/// cannot hold one (the raw bytes keep the original).
pub(crate) fn stored(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

pub fn summarize(raw: &[u8]) -> Summary {
    let Some(m) = parse(raw) else { return Summary::default() };
    let first = m.from().and_then(Address::first);
    let mut text_sample: String = m.body_text(0).map(|t| t.chars().take(4096).collect()).unwrap_or_default();
    if text_sample.is_empty() {
        text_sample = m.body_html(0).map(|t| t.chars().take(4096).collect()).unwrap_or_default();
    }
    Summary {
        from_address: first.and_then(|a| a.address()).map(stored),
        from_name: first.and_then(|a| a.name()).map(stored),
        to: m
            .to()
            .map(addresses)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| a.address.as_deref().map(stored))
            .collect(),
        subject: m.subject().map(stored),
        message_id: m.message_id().map(stored),
        has_date: m.date().is_some(),
        attachment_count: m.attachment_count(),
        has_text: m.text_body_count() > 0 && m.text_part(0).is_some_and(|p| !p.is_text_html()),
        has_html: m.html_body_count() > 0,
        text_sample,
        in_reply_to: text_list(m.in_reply_to()).iter().map(|s| stored(s)).collect(),
        references: text_list(m.references()).iter().map(|s| stored(s)).collect(),
        extracted_text: m.body_text(0).map(|t| stored(&super::extract::new_text(&t))),
        search_text: search_text(&m),
    }
}

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
pub struct AddressOut {
    pub name: Option<String>,
    pub address: Option<String>,
}

fn addresses(a: &Address<'_>) -> Vec<AddressOut> {
    a.iter()
        .map(|x| AddressOut { name: x.name().map(str::to_owned), address: x.address().map(str::to_owned) })
        .collect()
}

fn text_list(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// One attachment's metadata; `index` is its position for `/attachments/{index}`.
#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
pub struct AttachmentOut {
    pub index: usize,
    pub filename: Option<String>,
    pub content_type: String,
    pub size: usize,
}

fn content_type(part: &mail_parser::MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None if part.is_message() => "message/rfc822".to_owned(),
        None if part.is_text_html() => "text/html".to_owned(),
        None if part.is_text() => "text/plain".to_owned(),
        None => "application/octet-stream".to_owned(),
    }
}

/// The parsed fields of the message JSON (API.md §6); empty fields when nothing parses.
pub fn detail(raw: &[u8]) -> Value {
    let Some(m) = parse(raw) else {
        return json!({
            "from": null, "to": [], "cc": [], "reply_to": [], "subject": null, "date": null,
            "message_id": null, "in_reply_to": [], "references": [], "text": null, "html": null,
            "headers": [], "attachments": [],
        });
    };
    let headers: Vec<Value> = m
        .headers()
        .iter()
        .map(|h| {
            let start = h.offset_start() as usize;
            let end = (h.offset_end() as usize).min(raw.len());
            let value = raw.get(start..end).map(String::from_utf8_lossy).unwrap_or_default();
            json!({"name": h.name(), "value": value.trim()})
        })
        .collect();
    json!({
        "from": m.from().and_then(|a| addresses(a).into_iter().next()),
        "to": m.to().map(addresses).unwrap_or_default(),
        "cc": m.cc().map(addresses).unwrap_or_default(),
        "reply_to": m.reply_to().map(addresses).unwrap_or_default(),
        "subject": m.subject(),
        "date": m.date().map(|d| d.to_rfc3339()),
        "message_id": m.message_id(),
        "in_reply_to": text_list(m.in_reply_to()),
        "references": text_list(m.references()),
        "text": m.body_text(0),
        "html": m.body_html(0),
        "headers": headers,
        "attachments": attachments(&m),
    })
}

pub fn attachments(m: &Message<'_>) -> Vec<AttachmentOut> {
    m.attachments()
        .enumerate()
        .map(|(index, part)| AttachmentOut {
            index,
            filename: part.attachment_name().map(str::to_owned),
            content_type: content_type(part),
            size: part.contents().len(),
        })
        .collect()
}

/// The decoded bytes and content type of attachment `index`.
pub fn attachment(raw: &[u8], index: usize) -> Option<(String, Option<String>, Vec<u8>)> {
    let m = parse(raw)?;
    let part = m.attachments().nth(index)?;
    let bytes = match part.message() {
        // A nested message is served as it appeared inside its parent.
        Some(inner) => inner.raw_message().to_vec(),
        None => part.contents().to_vec(),
    };
    Some((content_type(part), part.attachment_name().map(str::to_owned), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_keeps_each_word_once_with_its_punctuation() {
        let raw = b"From: Ann <ann@sender.test>\r\nTo: box@mail.test\r\nSubject: Re: Invoice 42\r\n\r\n\
Hello Bob,\r\nthe invoice is attached.\r\n> Hello Bob,\r\n> the invoice is attached.\r\n> Hello Bob,\r\n";
        let text = summarize(raw).search_text;
        assert_eq!(
            text,
            "Ann ann@sender.test ann sender test box@mail.test box mail Re: Invoice 42 Hello Bob, the invoice is \
             attached. >"
        );
        assert_eq!(distinct_words("a  b\ta\nB b"), "a b B");
    }

    #[test]
    fn summary_and_detail_of_a_multipart_message() {
        let raw = b"From: Ann <ann@example.com>\r\nTo: box@mail.test, Bob <bob@x.test>\r\nSubject: Hello\r\n\
Message-ID: <1@example.com>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHi there\r\n\
--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n";
        let s = summarize(raw);
        assert_eq!(s.from_address.as_deref(), Some("ann@example.com"));
        assert_eq!(s.to, ["box@mail.test", "bob@x.test"]);
        assert_eq!(s.attachment_count, 1);
        let d = detail(raw);
        assert_eq!(d["subject"], "Hello");
        assert_eq!(d["text"], "Hi there");
        assert_eq!(d["attachments"][0]["filename"], "a.pdf");
        assert_eq!(d["attachments"][0]["content_type"], "application/pdf");
        assert_eq!(d["attachments"][0]["size"], 4);
        let (ct, name, bytes) = attachment(raw, 0).unwrap();
        assert_eq!((ct.as_str(), name.as_deref(), bytes.as_slice()), ("application/pdf", Some("a.pdf"), &b"%PDF"[..]));
    }

    #[test]
    fn garbage_still_summarizes() {
        let s = summarize(b"\0\xff\xfe not mail at all");
        assert!(s.subject.is_none());
        let d = detail(b"");
        assert!(d["headers"].as_array().is_some());
    }
}
