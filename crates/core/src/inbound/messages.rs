//! Inbound messages of a mailbox (docs/API.md §6): list, read (parsed, raw, one
//! attachment) and inject through the inbound pipeline. A mailbox key reaches its own
//! mailbox only — `mailbox: None` — and any other mailbox id is "No such mailbox", as if
//! it did not exist; people and infrastructure keys name a mailbox of their team. Members
//! without `message.content.read` see metadata only.

use std::future::Future;

use serde_json::{Value, json};

use super::{Incoming, Outcome, Recipient, Source};
use crate::Core;
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::error::{Error, Result};
use crate::ids::{MailboxId, MessageId};
use crate::store::TeamScope;
use crate::store::inbound::{self as q, MessageRow};
use crate::store::mailboxes::{self, MailboxRow};
use crate::store::rfc3339;

/// One attachment's decoded bytes.
pub struct Attachment {
    pub content_type: String,
    pub filename: Option<String>,
    pub bytes: Vec<u8>,
}

// ---- Rules --------------------------------------------------------------------------

/// The mailbox a request addresses: a mailbox key's own (any other id is 404, as if it
/// did not exist), or any mailbox of the caller's team.
pub(crate) async fn mailbox(core: &Core, caller: &Principal, id: Option<&str>) -> Result<MailboxRow> {
    let id = match (caller.mailbox_scope(), id) {
        (Some(scope), None) => scope.to_owned(),
        (Some(scope), Some(id)) if scope == id => scope.to_owned(),
        (Some(_), Some(_)) => return Err(Error::not_found("mailbox")),
        (None, Some(id)) => MailboxId::parse(id).ok_or_else(|| Error::not_found("mailbox"))?.into_string(),
        (None, None) => {
            return Err(Error::forbidden(
                "This route is for mailbox keys; people and infrastructure keys use /api/v1/mailboxes/{id}",
            ));
        }
    };
    let mut conn = core.store.pool().acquire().await?;
    mailboxes::get(&mut conn.team(&caller.team_id), &id).await?.ok_or_else(|| Error::not_found("mailbox"))
}

async fn message(core: &Core, caller: &Principal, mailbox_id: Option<&str>, id: &str) -> Result<MessageRow> {
    let mbx = mailbox(core, caller, mailbox_id).await?;
    let id = MessageId::parse(id).ok_or_else(|| Error::not_found("message"))?;
    let mut conn = core.store.pool().acquire().await?;
    q::get(&mut conn.team(&caller.team_id), &mbx.id, id.as_str()).await?.ok_or_else(|| Error::not_found("message"))
}

async fn body_of(core: &Core, m: &MessageRow) -> Result<Vec<u8>> {
    core.blobs.get(&m.blob_key).await.map_err(|e| Error::internal(format_args!("reading {}: {e}", m.blob_key)))
}

/// The list form of a message: what the row holds.
pub fn summary(m: &MessageRow) -> Value {
    let stored: Value = serde_json::from_str(&m.auth_results).unwrap_or(Value::Null);
    json!({
        "id": m.id,
        "mailbox_id": m.mailbox_id,
        "thread_id": m.thread_id,
        "direction": m.direction,
        "received_at": rfc3339(m.received_at),
        "size": m.size_bytes,
        "source": m.source,
        "envelope": {"mail_from": m.mail_from, "rcpt_to": m.rcpt_to, "remote_ip": m.remote_ip, "helo": m.helo},
        "plus_tag": m.plus_tag,
        "from": m.from_address.as_ref().map(|a| json!({"name": m.from_name, "address": a})),
        "subject": m.subject,
        "message_id": m.header_message_id,
        "attachment_count": m.attachment_count,
        "spam": {
            "score": m.spam_score,
            "verdict": if m.is_spam != 0 { "spam" } else { "ham" },
            "signals": stored["signals"],
        },
        "authentication": stored["authentication"],
    })
}

/// The full message: the summary plus everything parsed from the raw bytes.
pub fn detail(m: &MessageRow, raw: &[u8]) -> Value {
    let mut out = summary(m);
    let parsed = super::parse::detail(raw);
    if let (Some(out), Value::Object(parsed)) = (out.as_object_mut(), parsed) {
        for (k, v) in parsed {
            // The row's from (as first stored) and the parsed one agree; keep the parsed detail.
            out.insert(k, v);
        }
    }
    // Rows stored before extraction existed: extracted from the parsed text now.
    let extracted = match &m.extracted_text {
        Some(t) => Value::String(t.clone()),
        None => out["text"].as_str().map(|t| Value::String(super::extract::new_text(t))).unwrap_or(Value::Null),
    };
    out["extracted_text"] = extracted;
    out
}

/// What a message shows without `MessageContentRead` (a team member, docs/API.md §2): no
/// bodies and no headers; addresses, subject, dates and attachment metadata stay.
fn metadata_only(mut detail: Value) -> Value {
    if let Some(out) = detail.as_object_mut() {
        for content in ["text", "html", "headers", "extracted_text"] {
            out.remove(content);
        }
    }
    detail
}

// ---- Operations ---------------------------------------------------------------------

/// A page of a mailbox's messages, newest first, before the `before` id; `spam` keeps
/// spam only (true) or the rest (false).
pub async fn list(
    core: &Core,
    caller: &Principal,
    mailbox_id: Option<&str>,
    spam: Option<bool>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<MessageRow>> {
    search(core, caller, mailbox_id, &q::Filter { spam, ..Default::default() }, before, limit).await
}

/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 256;

/// The words of a search query (`q=`): split on blanks, quotes and control characters
/// dropped, and words without a letter or digit (which match nothing) too; every word
/// must match. A query longer than [`MAX_QUERY_CHARS`] is refused; one with no word
/// matches nothing.
pub fn search_words(raw: &str) -> Result<Vec<String>> {
    if raw.chars().count() > MAX_QUERY_CHARS {
        return Err(Error::malformed(format!("q is longer than {MAX_QUERY_CHARS} characters")).with_param("q"));
    }
    let words: Vec<String> = raw
        .split_whitespace()
        .map(|w| w.chars().filter(|c| *c != '"' && !c.is_control()).collect::<String>())
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .collect();
    Ok(words)
}

/// A page of a mailbox's messages kept by `filter` (search words, thread, time range,
/// spam verdict), newest first, before the `before` id.
pub async fn search(
    core: &Core,
    caller: &Principal,
    mailbox_id: Option<&str>,
    filter: &q::Filter,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<MessageRow>> {
    caller.require(Perm::MailboxRead)?;
    let mbx = mailbox(core, caller, mailbox_id).await?;
    if filter.words.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let mut conn = core.store.pool().acquire().await?;
    Ok(q::list(&mut conn.team(&caller.team_id), &mbx.id, filter, before, limit).await?)
}

/// One message parsed, with its spam verdict and authentication results; metadata only
/// without `message.content.read`.
pub async fn get(core: &Core, caller: &Principal, mailbox_id: Option<&str>, id: &str) -> Result<Value> {
    caller.require(Perm::MailboxRead)?;
    let m = message(core, caller, mailbox_id, id).await?;
    let raw = body_of(core, &m).await?;
    let out = tokio::task::spawn_blocking(move || detail(&m, &raw)).await.map_err(Error::internal)?;
    Ok(if caller.perms.has(Perm::MessageContentRead) { out } else { metadata_only(out) })
}

/// The message exactly as it arrived.
pub async fn raw(core: &Core, caller: &Principal, mailbox_id: Option<&str>, id: &str) -> Result<Vec<u8>> {
    use futures::TryStreamExt;
    let body = raw_stream(core, caller, mailbox_id, id).await?;
    let read = body.bytes.try_fold(Vec::with_capacity(body.len as usize), |mut all, piece| async move {
        all.extend_from_slice(&piece);
        Ok(all)
    });
    read.await.map_err(|e| Error::internal(format_args!("reading a message body: {e}")))
}

/// A message's raw bytes as they are read from where bodies live, with their length:
/// for answers that pass the body on, so a large one is never held whole.
pub struct RawBody {
    pub bytes: crate::blob::BodyStream,
    pub len: u64,
}

/// [`raw`], streamed.
pub async fn raw_stream(core: &Core, caller: &Principal, mailbox_id: Option<&str>, id: &str) -> Result<RawBody> {
    caller.require(Perm::MailboxRead)?;
    caller.require(Perm::MessageContentRead)?;
    let m = message(core, caller, mailbox_id, id).await?;
    let bytes = core
        .blobs
        .stream(&m.blob_key)
        .await
        .map_err(|e| Error::internal(format_args!("reading {}: {e}", m.blob_key)))?;
    Ok(RawBody { bytes, len: u64::try_from(m.size_bytes).unwrap_or(0) })
}

/// One attachment, by its index (as the caller wrote it) in the message's `attachments`.
pub async fn attachment(
    core: &Core,
    caller: &Principal,
    mailbox_id: Option<&str>,
    id: &str,
    index: &str,
) -> Result<Attachment> {
    caller.require(Perm::MailboxRead)?;
    caller.require(Perm::MessageContentRead)?;
    let m = message(core, caller, mailbox_id, id).await?;
    let index: usize = index.parse().map_err(|_| Error::not_found("attachment"))?;
    let raw = body_of(core, &m).await?;
    let (content_type, filename, bytes) = tokio::task::spawn_blocking(move || super::parse::attachment(&raw, index))
        .await
        .map_err(Error::internal)?
        .ok_or_else(|| Error::not_found("attachment"))?;
    Ok(Attachment { content_type, filename, bytes })
}

/// Injects a raw message into a mailbox through the inbound pipeline (`email.receive`)
/// and answers the stored message in full. `raw` reads the bytes; it is awaited only
/// once the mailbox is known, so nothing is read for a mailbox the caller cannot reach.
pub async fn inject(
    core: &Core,
    caller: &Principal,
    mailbox_id: Option<&str>,
    raw: impl Future<Output = Result<Vec<u8>>>,
) -> Result<Value> {
    caller.require(Perm::EmailReceive)?;
    let mbx = mailbox(core, caller, mailbox_id).await?;
    let raw = raw.await?;
    let max = core.settings.smtp.max_message_bytes;
    if raw.len() > max {
        return Err(Error::too_large(format!("The message is larger than {max} bytes")));
    }
    if raw.is_empty() {
        return Err(Error::malformed("The message is empty"));
    }
    let incoming = Incoming {
        raw: raw.clone(),
        source: Source::Api,
        remote_ip: None,
        helo: String::new(),
        mail_from: String::new(),
        recipients: vec![Recipient::from(mbx)],
    };
    match super::receive(core, incoming).await? {
        Outcome::Stored(rows) => {
            let row = rows.into_iter().next().ok_or_else(|| Error::internal("no row stored"))?;
            Ok(detail(&row, &raw))
        }
        Outcome::RefusedAsSpam { score } => Err(Error::invalid(
            "body",
            format!("The message scored {score} as spam and this mailbox refuses spam (accept_spam is false)"),
        )),
    }
}
