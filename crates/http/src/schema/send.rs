//! The send request's schema (`POST /api/v1/emails`, `/emails/batch`): what
//! [`sendmux_core::outbound::validate::email`] checks, stated field by field.
//!
//! Each schema accepts only what the check accepts. Where the check counts bytes (the
//! subject, header values and file names), the schema cannot: it accepts ASCII text up
//! to the byte limit, or any text up to a quarter of it (four bytes per character at
//! most), so it never allows what the check refuses. Addresses follow a plain subset of
//! RFC 5322 (`addr@example.com` or `Display Name <addr@example.com>`).
//!
//! What no schema can say: at most [`MAX_RECIPIENTS`] recipients in `to`, `cc` and `bcc`
//! together (a sum over three fields), and the message size limit of the instance
//! (SENDMUX_MAX_MESSAGE_BYTES, answered 413).

use std::borrow::Cow;

use serde_json::json;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, AnyOfBuilder, ArrayBuilder, ObjectBuilder, SchemaType, Type,
};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::TRIMMED;
use sendmux_core::outbound::send::MAX_BATCH;
use sendmux_core::outbound::validate::MAX_RECIPIENTS;

/// A regex class of the ASCII characters (1..=127) other than `forbidden`.
fn ascii_class(forbidden: &[u8]) -> String {
    let mut class = String::from("[");
    let mut b = 1u8;
    while b <= 127 {
        if forbidden.contains(&b) {
            b += 1;
            continue;
        }
        let start = b;
        while b < 127 && !forbidden.contains(&(b + 1)) {
            b += 1;
        }
        if start == b {
            class.push_str(&format!(r"\x{start:02X}"));
        } else {
            class.push_str(&format!(r"\x{start:02X}-\x{b:02X}"));
        }
        b += 1;
    }
    class.push(']');
    class
}

fn escaped(forbidden: &[u8]) -> String {
    forbidden.iter().map(|b| format!(r"\x{b:02X}")).collect()
}

/// The two patterns of a byte-limited text without `forbidden` bytes: ASCII only, and
/// any characters. With `non_blank`, at least one character is not whitespace (the
/// check trims the text and refuses what is left empty).
pub fn text_patterns(forbidden: &[u8], non_blank: bool) -> (String, String) {
    let ascii = ascii_class(forbidden);
    let any = format!("[^{}]", escaped(forbidden));
    if !non_blank {
        return (format!("^{ascii}*$"), format!("^{any}*$"));
    }
    let mut blank_or_forbidden: Vec<u8> = forbidden.to_vec();
    blank_or_forbidden.extend([b'\t', b'\n', 0x0B, 0x0C, b'\r', b' ']);
    let ascii_edge = ascii_class(&blank_or_forbidden);
    let any_edge = format!("[^{TRIMMED}{}]", escaped(forbidden));
    (format!("^{ascii}*{ascii_edge}{ascii}*$"), format!("^{any}*{any_edge}{any}*$"))
}

/// A text of at most `max_bytes` UTF-8 bytes: ASCII up to `max_bytes` characters, or any
/// characters up to `max_bytes / 4`.
fn byte_limited(forbidden: &[u8], non_blank: bool, max_bytes: usize, description: &str) -> RefOr<Schema> {
    let (ascii, any) = text_patterns(forbidden, non_blank);
    let branch = |pattern: String, max: usize| {
        ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern)).max_length(Some(max)).build()
    };
    AnyOfBuilder::new()
        .item(branch(ascii, max_bytes))
        .item(branch(any, max_bytes / 4))
        .description(Some(format!(
            "{description} At most {max_bytes} bytes: up to {max_bytes} ASCII characters, or {} of any kind.",
            max_bytes / 4
        )))
        .into()
}

/// The address pattern: `addr@example.com` or `Display Name <addr@example.com>`, a subset
/// of what [`sendmux_core::outbound::validate::mailbox`] accepts. The local part is one or
/// two dot-separated runs of letters, digits, `_`, `+` and `-` (at most 64 characters),
/// the domain one to three labels of at most 61 letters, digits and inner hyphens, so
/// the address stays within 254 characters; the display name is ASCII letters, digits,
/// spaces, `.`, `'`, `_` and `-`, starting and ending with a letter or digit, at most
/// 200 characters.
pub fn mailbox_pattern() -> String {
    let local = r"[A-Za-z0-9_+-]{1,32}(?:\.[A-Za-z0-9_+-]{1,31})?";
    let label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,59}[A-Za-z0-9])?";
    let addr = format!(r"{local}@(?:{label}\.){{0,2}}{label}");
    let name = r"[A-Za-z0-9](?:[A-Za-z0-9 .'_-]{0,198}[A-Za-z0-9])?";
    format!("^(?:{addr}|{name} <{addr}>)$")
}

const MAILBOX_DESCRIPTION: &str = "`addr@example.com` or `Display Name <addr@example.com>` (ASCII).";

fn mailbox() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(mailbox_pattern()))
}

fn mailboxes(description: &str) -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(mailbox().description(Some(MAILBOX_DESCRIPTION)))
        .max_items(Some(MAX_RECIPIENTS))
        .description(Some(description))
        .into()
}

/// Letters, case-insensitive, as a regex (`from` → `[Ff][Rr][Oo][Mm]`).
fn caseless(word: &str) -> String {
    word.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A header name: printable ASCII without space or `:`, 1 to 76 characters.
pub const HEADER_NAME_PATTERN: &str = r"^[!-9;-~]{1,76}$";

/// Header names the request may not set: those the message builder writes, and any
/// starting with `X-Sendmux-` (case-insensitive).
pub fn reserved_header_pattern() -> String {
    let names: Vec<String> = sendmux_core::outbound::validate::RESERVED_HEADERS.iter().map(|n| caseless(n)).collect();
    format!("^(?:(?:{})$|{})", names.join("|"), caseless("x-sendmux-"))
}

fn headers() -> RefOr<Schema> {
    let mut not = Extensions::default();
    not.insert("not".to_owned(), json!({"pattern": reserved_header_pattern()}));
    let names =
        ObjectBuilder::new().schema_type(Type::String).pattern(Some(HEADER_NAME_PATTERN)).extensions(Some(not)).build();
    ObjectBuilder::new()
        .property_names(Some(names))
        .additional_properties(Some(AdditionalProperties::RefOr(byte_limited(
            b"\r\n\0",
            false,
            998,
            "A header value: one line, without NUL.",
        ))))
        .description(Some(
            "Extra headers by name (printable ASCII without space or ':', at most 76 characters). \
             Headers the message builder writes (From, To, Subject, Content-Type, ...) and X-Sendmux-* are refused.",
        ))
        .into()
}

/// A tag name or value: 1 to 256 ASCII letters, digits, `_` or `-`.
pub const TAG_PATTERN: &str = r"^[A-Za-z0-9_-]{1,256}$";

fn tags() -> RefOr<Schema> {
    let tag = || ObjectBuilder::new().schema_type(Type::String).pattern(Some(TAG_PATTERN));
    ObjectBuilder::new()
        .property_names(Some(tag().build()))
        .additional_properties(Some(AdditionalProperties::RefOr(tag().into())))
        .description(Some("Tags by name; names and values are 1 to 256 letters, digits, '_' or '-'."))
        .into()
}

/// A MIME type as the check reads it: `type/subtype`, each a run of letters, digits and
/// `!#$&^_.+-`.
pub const CONTENT_TYPE_PATTERN: &str = r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$";

/// Standard base64 with padding and zero trailing bits (what the check decodes), with
/// whitespace around it.
pub fn base64_pattern() -> String {
    let c = "[A-Za-z0-9+/]";
    format!("^[{TRIMMED}]*(?:{c}{{4}})*(?:{c}[AQgw]==|{c}{{2}}[AEIMQUYcgkosw048]=)?[{TRIMMED}]*$")
}

fn attachment() -> RefOr<Schema> {
    let nullable_string = SchemaType::from_iter([Type::String, Type::Null]);
    ObjectBuilder::new()
        .property("filename", byte_limited(b"\r\n\0/\\", true, 255, "A file name without path separators, not blank."))
        .required("filename")
        .property(
            "content_type",
            ObjectBuilder::new()
                .schema_type(nullable_string)
                .pattern(Some(CONTENT_TYPE_PATTERN))
                .description(Some("A MIME type such as application/pdf (default application/octet-stream).")),
        )
        .property(
            "content",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(base64_pattern()))
                .description(Some("The bytes, standard base64 with padding.")),
        )
        .required("content")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

/// A branch of an `anyOf` that requires `field` with a schema.
fn requires(field: &str, schema: ObjectBuilder) -> Schema {
    ObjectBuilder::new().property(field, schema).required(field).into()
}

fn send_request() -> RefOr<Schema> {
    let nullable_string = || SchemaType::from_iter([Type::String, Type::Null]);
    let fields = ObjectBuilder::new()
        .property("from", mailbox().description(Some(MAILBOX_DESCRIPTION)))
        .required("from")
        .property("to", mailboxes("Recipients; at most 50 in `to`, `cc` and `bcc` together, at least one."))
        .required("to")
        .property("cc", mailboxes("Copy recipients."))
        .property("bcc", mailboxes("Blind copy recipients (not in the message's headers)."))
        .property("reply_to", mailbox().schema_type(nullable_string()).description(Some(MAILBOX_DESCRIPTION)))
        .property("subject", byte_limited(b"\r\n\0", false, 998, "One line, without NUL."))
        .required("subject")
        .property("text", ObjectBuilder::new().schema_type(nullable_string()).description(Some("The plain text body.")))
        .property("html", ObjectBuilder::new().schema_type(nullable_string()).description(Some("The HTML body.")))
        .property("headers", headers())
        .property("attachments", ArrayBuilder::new().items(attachment()))
        .property("tags", tags())
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    let non_empty_list = || ArrayBuilder::new().min_items(Some(1));
    let non_empty_text = || ObjectBuilder::new().schema_type(Type::String).min_length(Some(1));
    let recipient = AnyOfBuilder::new()
        .item(ObjectBuilder::new().property("to", non_empty_list()))
        .item(ObjectBuilder::new().property("cc", non_empty_list()).required("cc"))
        .item(ObjectBuilder::new().property("bcc", non_empty_list()).required("bcc"))
        .description(Some("At least one recipient in `to`, `cc` or `bcc`."));
    let body = AnyOfBuilder::new()
        .item(requires("text", non_empty_text()))
        .item(requires("html", non_empty_text()))
        .description(Some("A non-empty `text` or `html` body (or both)."));
    AllOfBuilder::new()
        .item(fields)
        .item(recipient)
        .item(body)
        .description(Some(
            "One email. At most 50 recipients in `to`, `cc` and `bcc` together (a sum no schema states); \
             bodies and decoded attachments within the instance's message size limit (413 over it).",
        ))
        .into()
}

/// The body of `POST /api/v1/emails` ([`sendmux_core::outbound::validate::EmailIn`]).
pub struct SendRequest;

impl PartialSchema for SendRequest {
    fn schema() -> RefOr<Schema> {
        send_request()
    }
}

impl ToSchema for SendRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EmailIn")
    }
}

/// One attachment of a send request (`{filename, content_type, content}`), as
/// `POST /emails` takes it; also in replies from a mailbox.
pub struct Attachment;

impl PartialSchema for Attachment {
    fn schema() -> RefOr<Schema> {
        attachment()
    }
}

impl ToSchema for Attachment {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("AttachmentIn")
    }
}

/// The body of `POST /api/v1/emails/batch`: 1 to 100 send requests.
pub struct SendBatch;

impl PartialSchema for SendBatch {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(SendRequest::name())))
            .min_items(Some(1))
            .max_items(Some(MAX_BATCH))
            .into()
    }
}

impl ToSchema for SendBatch {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((SendRequest::name().into(), SendRequest::schema()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;
    use sendmux_core::outbound::validate::{self, EmailIn};

    fn re(p: &str) -> Regex {
        Regex::new(p).unwrap()
    }

    /// What a `byte_limited` schema accepts, read as JSON Schema reads it.
    fn byte_limited_accepts(forbidden: &[u8], non_blank: bool, max_bytes: usize, s: &str) -> bool {
        let (ascii, any) = text_patterns(forbidden, non_blank);
        let chars = s.chars().count();
        (re(&ascii).is_match(s) && chars <= max_bytes) || (re(&any).is_match(s) && chars <= max_bytes / 4)
    }

    /// The server's verdict on a request built around one field.
    fn server(body: serde_json::Value) -> bool {
        let input: EmailIn = serde_json::from_value(body).unwrap();
        validate::email("", input, 1 << 20).is_ok()
    }

    fn with(field: &str, value: serde_json::Value) -> serde_json::Value {
        let mut body = json!({"from": "a@example.com", "to": ["b@example.com"], "subject": "s", "text": "t"});
        body[field] = value;
        body
    }

    #[test]
    fn the_mailbox_pattern_accepts_only_what_the_check_accepts() {
        let pattern = re(&mailbox_pattern());
        let long_local = "a".repeat(32) + "." + &"b".repeat(31);
        let long_domain = format!("{0}.{0}.{0}", "d".repeat(61));
        let longest = format!("{long_local}@{long_domain}");
        assert!(longest.len() <= 254);
        let name200 = "N".repeat(200);
        let accepted = [
            "a@b".to_owned(),
            "a@example.com".into(),
            "first.last+tag@mail.example.co".into(),
            "_-+@1.2.3".into(),
            "A-B@x-y.Z9".into(),
            "Ada Lovelace <ada@example.com>".into(),
            "A <a@b.c>".into(),
            "Mr. O'Brien-Smith_2 <ob@example.com>".into(),
            "a  b <a@b.c>".into(),
            format!("{name200} <a@b.c>"),
            longest.clone(),
            format!("Long Name <{longest}>"),
        ];
        for s in &accepted {
            assert!(pattern.is_match(s), "the pattern refuses {s:?}");
            assert!(validate::mailbox("to", s).is_ok(), "the check refuses {s:?}");
        }
        // Outside the pattern: refused by the check too, or accepted by it (the pattern is
        // a subset); never the other way round.
        let outside = [
            "",
            " ",
            "a",
            "a@",
            "@b.c",
            "a@b.",
            "a@-b.c",
            "a@b-.c",
            "a..b@c.d",
            ".a@b.c",
            "a.@b.c",
            "a@[127.0.0.1]",
            "\"q\"@b.c",
            "a@b.c, d@e.f",
            "Name<a@b.c>",
            " a@b.c",
            "a@b.c\n",
            "Name <a@b.c> ",
            " Name <a@b.c>",
            "Näme <a@b.c>",
            "é@b.c",
            "a@é.c",
            "<a@b.c>",
            "a@b.c.d.e",
            "=?utf-8?q?x?= <a@b.c>",
            "\"Lovelace, Ada\" <ada@example.com>",
        ];
        let n201 = format!("{} <a@b.c>", "N".repeat(201));
        let local65 = format!("{}@b.c", "a".repeat(65));
        let label62 = format!("a@{}.c", "d".repeat(62));
        for s in outside.iter().copied().chain([n201.as_str(), local65.as_str(), label62.as_str()]) {
            assert!(!pattern.is_match(s), "the pattern accepts {s:?}");
        }
    }

    #[test]
    fn byte_limited_texts_never_exceed_the_byte_limit() {
        for (forbidden, non_blank, max) in [(&b"\r\n\0"[..], false, 998), (&b"\r\n\0/\\"[..], true, 255)] {
            let samples = [
                String::new(),
                " ".into(),
                "\u{3000}\t".into(),
                "a".into(),
                " a ".into(),
                "a/b".into(),
                "a\\b".into(),
                "a\rb".into(),
                "a\nb".into(),
                "a\0".into(),
                "tab\there".into(),
                "\u{7f}x".into(),
                "é".repeat(max / 4),
                "é".repeat(max / 4 + 1),
                "😀".repeat(max / 4),
                "😀".repeat(max / 4 + 1),
                "a".repeat(max),
                "a".repeat(max + 1),
                format!("{}é", "a".repeat(max - 2)),
            ];
            for s in &samples {
                let ok_bytes = s.len() <= max && !s.bytes().any(|b| forbidden.contains(&b));
                let ok = ok_bytes && (!non_blank || !s.trim().is_empty());
                if byte_limited_accepts(forbidden, non_blank, max, s) {
                    assert!(ok, "the schema accepts {s:?}");
                } else if s.chars().count() <= max / 4 || s.is_ascii() {
                    // Short or ASCII: the schema is exact.
                    assert!(!ok, "the schema refuses {s:?}");
                }
            }
        }
    }

    #[test]
    fn field_schemas_match_the_check() {
        // Subject.
        for s in ["", "Hello", "tab\tok", "a\rb", "x\0", &"é".repeat(249), &"é".repeat(499), &"a".repeat(998)] {
            let schema = byte_limited_accepts(b"\r\n\0", false, 998, s);
            let check = server(with("subject", json!(s)));
            assert!(!schema || check, "subject {s:?}");
        }
        // Header names and values.
        let name = re(HEADER_NAME_PATTERN);
        let reserved = re(&reserved_header_pattern());
        for n in [
            "X-Tag",
            "List-Unsubscribe",
            "from",
            "FROM",
            "Reply-To",
            "x-sendmux-team",
            "X-SENDMUX-",
            "X-Sendmux",
            "a:b",
            "a b",
            "é",
            "",
            &"h".repeat(76),
            &"h".repeat(77),
            "Content-Type",
            "Date2",
        ] {
            let schema = name.is_match(n) && !reserved.is_match(n);
            let check = server(with("headers", json!({n: "v"})));
            assert_eq!(schema, check, "header name {n:?}");
        }
        // Tags.
        let tag = re(TAG_PATTERN);
        for t in ["a", "A_b-9", "", "a b", "é", &"t".repeat(256), &"t".repeat(257)] {
            let check = server(with("tags", json!({t: "v"}))) && server(with("tags", json!({"k": t})));
            assert_eq!(tag.is_match(t), check, "tag {t:?}");
        }
        // Attachments: content type and base64 content.
        let ct = re(CONTENT_TYPE_PATTERN);
        for c in ["application/pdf", "text/plain", "a/b/c", "a/", "/b", "a b/c", "image/svg+xml", "x/y;z"] {
            let check = server(with("attachments", json!([{"filename": "f", "content_type": c, "content": ""}])));
            assert_eq!(ct.is_match(c), check, "content type {c:?}");
        }
        let b64 = re(&base64_pattern());
        for c in [
            "",
            "QQ==",
            "QR==",
            "QUI=",
            "QUJ=",
            "QUJD",
            "QUJ",
            "Q",
            "QQ",
            "QQ=",
            "QUJD\n",
            " QUJD ",
            "QU JD",
            "QQ==QQ==",
            "+/+/",
            "-_-_",
            "QUJDRA==",
            "====",
            "\u{3000}QQ==",
        ] {
            let check = server(with("attachments", json!([{"filename": "f", "content": c}])));
            assert_eq!(b64.is_match(c), check, "content {c:?}");
        }
        // Filenames.
        for f in [
            "f",
            " f ",
            "",
            " ",
            "a/b",
            "a\\b",
            "名前.pdf",
            &"é".repeat(63),
            &"é".repeat(64),
            &"a".repeat(255),
            &"a".repeat(256),
        ] {
            let schema = byte_limited_accepts(b"\r\n\0/\\", true, 255, f);
            let check = server(with("attachments", json!([{"filename": f, "content": ""}])));
            assert!(!schema || check, "filename {f:?}");
            if f.is_ascii() {
                assert_eq!(schema, check, "filename {f:?}");
            }
        }
    }
}
