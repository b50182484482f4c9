//! A send request (`POST /emails`) parsed into an [`Email`] that is known to be valid:
//! RFC 5322 addresses with display names, recipients, bodies, headers, attachments, tags.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::error::Error;

pub const MAX_RECIPIENTS: usize = 50;

/// The body of `POST /api/v1/emails` as sent. Its OpenAPI schema, which states these
/// checks, is `sendmux_http::schema::send`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailIn {
    /// `addr@example.com` or `Name <addr@example.com>`.
    pub from: String,
    /// At most 50 recipients in `to`, `cc` and `bcc` together, at least one.
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    pub reply_to: Option<String>,
    /// One line (no CR, LF or NUL) of at most 998 bytes.
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentIn>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentIn {
    pub filename: String,
    pub content_type: Option<String>,
    /// The bytes, base64.
    pub content: String,
}

/// One address with an optional display name.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    pub fn display(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} <{}>", self.address),
            None => self.address.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    /// The bytes, base64 (checked to decode).
    pub content: String,
}

/// A send request that passed every check; stored as JSON with the queued message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Email {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub headers: Vec<(String, String)>,
    pub attachments: Vec<Attachment>,
    pub tags: BTreeMap<String, String>,
}

impl Email {
    /// Every envelope recipient (to, cc, bcc), lower-cased and without repeats.
    pub fn envelope_recipients(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in self.to.iter().chain(&self.cc).chain(&self.bcc) {
            let a = m.address.to_ascii_lowercase();
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }
}

/// Headers the message builder writes itself; a request may not set them.
pub const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "sender",
    "return-path",
    "received",
    "dkim-signature",
];

/// Parses one RFC 5322 mailbox (`addr` or `Display Name <addr>`) with a real header
/// parser, then checks the address itself.
pub fn mailbox(param: &str, raw: &str) -> Result<Mailbox, Error> {
    let bad = || Error::invalid(param, format!("'{}' is not an email address", crate::validate::truncate(raw, 80)));
    if raw.trim().is_empty() || raw.len() > 998 || raw.contains(['\r', '\n', '\0']) {
        return Err(bad());
    }
    let header = format!("To: {raw}\r\n\r\n");
    let parsed = mail_parser::MessageParser::default().parse_headers(header.as_bytes()).ok_or_else(bad)?;
    let list = parsed.to().ok_or_else(bad)?;
    let mut addrs = list.iter();
    let first = addrs.next().ok_or_else(bad)?;
    if addrs.next().is_some() {
        return Err(Error::invalid(param, "Give one address per entry"));
    }
    let address = first.address().ok_or_else(bad)?.trim().to_owned();
    let valid = address.parse::<email_address::EmailAddress>().is_ok();
    if !valid || !address.contains('@') || address.ends_with('.') {
        return Err(bad());
    }
    let name = first.name().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.len() > 200) {
        return Err(Error::invalid(param, "The display name is longer than 200 characters"));
    }
    Ok(Mailbox { name, address })
}

fn mailboxes(param: &str, raw: &[String]) -> Result<Vec<Mailbox>, Error> {
    raw.iter().enumerate().map(|(i, r)| mailbox(&format!("{param}[{i}]"), r)).collect()
}

/// Checks a request; `prefix` names the request inside a batch (`[3].`) or is empty.
/// `max_bytes` is the size limit of bodies plus decoded attachments (413 over it).
pub fn email(prefix: &str, input: EmailIn, max_bytes: usize) -> Result<Email, Error> {
    let p = |field: &str| format!("{prefix}{field}");
    let from = mailbox(&p("from"), &input.from)?;
    let to = mailboxes(&p("to"), &input.to)?;
    let cc = mailboxes(&p("cc"), &input.cc)?;
    let bcc = mailboxes(&p("bcc"), &input.bcc)?;
    let total = to.len() + cc.len() + bcc.len();
    if total == 0 {
        return Err(Error::invalid(p("to"), "At least one recipient is required"));
    }
    if total > MAX_RECIPIENTS {
        return Err(Error::invalid(
            p("to"),
            format!("At most {MAX_RECIPIENTS} recipients (to, cc and bcc together), got {total}"),
        ));
    }
    let reply_to = input.reply_to.as_deref().map(|r| mailbox(&p("reply_to"), r)).transpose()?;
    // A NUL also cannot be stored: PostgreSQL's TEXT refuses it (the fuzz harness found
    // a request SQLite accepted and PostgreSQL failed with a 500).
    if input.subject.contains(['\r', '\n', '\0']) || input.subject.len() > 998 {
        return Err(Error::invalid(p("subject"), "The subject must be one line of at most 998 bytes, without NUL"));
    }
    let text = input.text.filter(|t| !t.is_empty());
    let html = input.html.filter(|t| !t.is_empty());
    if text.is_none() && html.is_none() {
        return Err(Error::invalid(p("text"), "Give a text or an html body (or both)"));
    }
    let mut headers = Vec::new();
    for (name, value) in input.headers {
        let param = p(&format!("headers.{name}"));
        let name_ok =
            !name.is_empty() && name.len() <= 76 && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
        if !name_ok {
            return Err(Error::invalid(param, "A header name is printable ASCII without spaces or ':'"));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(Error::invalid(param, format!("{name} is set from the request's own fields")));
        }
        // API.md §5: receivers trust X-Sendmux-* as ours (webhooks, team, signatures).
        if name.len() >= 10 && name[..10].eq_ignore_ascii_case("x-sendmux-") {
            return Err(Error::invalid(param, "Headers starting with X-Sendmux- are reserved"));
        }
        if value.contains(['\r', '\n', '\0']) || value.len() > 998 {
            return Err(Error::invalid(param, "A header value is one line of at most 998 bytes"));
        }
        headers.push((name, value));
    }
    let mut tags = BTreeMap::new();
    for (k, v) in input.tags {
        let ok = |s: &str| {
            !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !ok(&k) || !ok(&v) {
            return Err(Error::invalid(
                p(&format!("tags.{k}")),
                "Tag names and values are 1 to 256 letters, digits, '_' or '-'",
            ));
        }
        tags.insert(k, v);
    }
    let mut size = input.subject.len() + text.as_ref().map_or(0, String::len) + html.as_ref().map_or(0, String::len);
    let mut attachments = Vec::new();
    for (i, a) in input.attachments.into_iter().enumerate() {
        let ap = |f: &str| p(&format!("attachments[{i}].{f}"));
        if a.filename.trim().is_empty() || a.filename.len() > 255 || a.filename.contains(['\r', '\n', '\0', '/', '\\'])
        {
            return Err(Error::invalid(ap("filename"), "A file name is 1 to 255 characters without path separators"));
        }
        let content_type = a.content_type.unwrap_or_else(|| "application/octet-stream".into());
        let ct_ok = content_type.split_once('/').is_some_and(|(t, s)| {
            let tok =
                |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
            tok(t) && tok(s)
        });
        if !ct_ok {
            return Err(Error::invalid(ap("content_type"), "content_type must look like application/pdf"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.content.trim())
            .map_err(|_| Error::invalid(ap("content"), "content must be base64"))?;
        size += bytes.len();
        if size > max_bytes {
            return Err(
                Error::too_large(format!("The message is larger than {max_bytes} bytes")).with_param(p("attachments"))
            );
        }
        attachments.push(Attachment { filename: a.filename, content_type, content: a.content.trim().to_owned() });
    }
    if size > max_bytes {
        let field = if html.is_some() { "html" } else { "text" };
        return Err(Error::too_large(format!("The message is larger than {max_bytes} bytes")).with_param(p(field)));
    }
    Ok(Email { from, to, cc, bcc, reply_to, subject: input.subject, text, html, headers, attachments, tags })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_and_plain_addresses_parse() {
        let m = mailbox("from", "Ada Lovelace <ada@example.com>").unwrap();
        assert_eq!(m, Mailbox { name: Some("Ada Lovelace".into()), address: "ada@example.com".into() });
        let m = mailbox("from", "\"Lovelace, Ada\" <ada@example.com>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Lovelace, Ada"));
        assert_eq!(mailbox("to", "bob@example.org").unwrap().address, "bob@example.org");
    }

    #[test]
    fn bad_addresses_name_their_field() {
        for raw in ["", "not an address", "a@", "@b.com", "a@b.com, c@d.com", "x\r\nBcc: y@z.com", "Name <nope>"] {
            let err = mailbox("to[1]", raw).unwrap_err();
            assert_eq!(err.param(), Some("to[1]"), "{raw}");
        }
    }
}
