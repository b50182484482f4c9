//! Sending from a mailbox (SPEC §16): a mailbox key with `mailbox.send` replies to,
//! forwards or writes mail from the mailbox's own address, through the mailbox's
//! `send_delivery_group_id`. The mail is queued exactly as `POST /emails` queues it
//! (`outbound::send`: validation, statuses, events, billing), in the thread of the
//! message it answers, with `In-Reply-To`/`References`; a copy (`direction: outbound`)
//! is kept in the mailbox. The mailbox's `send_policy` bounds it; a refusal is 403
//! naming the rule and is written to the audit log.

use std::sync::Arc;

use mail_parser::{Address, HeaderValue};
use serde_json::{Value, json};

use crate::Core;
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::error::{Error, Result};
use crate::inbound::messages;
use crate::mailboxes::SendPolicy;
use crate::outbound::validate::{self, AttachmentIn, Email, EmailIn};
use crate::store::inbound::{self as iq, MessageRow};
use crate::store::mailboxes::MailboxRow;
use crate::store::threads::{self as tq, RefRow};
use crate::store::{TeamScope, audit, now_ms};

pub struct ReplyIn {
    pub text: Option<String>,
    pub html: Option<String>,
    pub reply_all: bool,
    pub attachments: Vec<AttachmentIn>,
}

pub struct ForwardIn {
    pub to: Vec<String>,
    pub text: Option<String>,
}

pub struct SendIn {
    pub to: Vec<String>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// The policy window for `daily_limit`.
const DAY_MS: i64 = 24 * 3600 * 1000;

// ---- Rules --------------------------------------------------------------------------

/// The mailbox the caller sends from and its delivery group.
async fn sender(core: &Core, caller: &Principal, mailbox_id: Option<&str>) -> Result<(MailboxRow, String)> {
    caller.require(Perm::MailboxSend)?;
    let mbx = messages::mailbox(core, caller, mailbox_id).await?;
    let group = mbx.send_delivery_group_id.clone().ok_or_else(|| {
        Error::conflict("This mailbox has no send_delivery_group_id: a person or infrastructure key sets it in the mailbox's settings")
    })?;
    Ok((mbx, group))
}

fn from_of(mbx: &MailboxRow) -> String {
    match &mbx.name {
        Some(n) if !n.contains(['"', '<', '>', ',', ';', '\\']) => format!("\"{n}\" <{}>", mbx.address),
        _ => mbx.address.clone(),
    }
}

fn addresses(a: Option<&Address<'_>>) -> Vec<String> {
    a.map(|a| a.iter().filter_map(|x| x.address()).map(str::to_ascii_lowercase).collect()).unwrap_or_default()
}

/// The message ids of a header that can be named again: a received message may carry
/// ids of any length, but a header line holds 998 bytes (RFC 5322), so one over 250 bytes,
/// or with blanks or brackets in it, is left out rather than making the reply unsendable.
fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    let all: Vec<String> = match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    };
    all.into_iter().filter(|id| usable_id(id)).collect()
}

fn usable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 250 && !id.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
}

fn prefixed(prefix: &str, subject: &str) -> String {
    let s = subject.trim();
    if s.to_ascii_lowercase().starts_with(&format!("{}:", prefix.to_ascii_lowercase())) {
        s.to_owned()
    } else {
        format!("{prefix}: {s}")
    }
}

/// The first rule of `policy` that sending to `recipients` now would break: its name and
/// why.
async fn broken_rule(
    core: &Core,
    caller: &Principal,
    mbx: &MailboxRow,
    policy: &SendPolicy,
    recipients: &[String],
) -> Result<Option<(&'static str, String)>> {
    if !policy.allowed_domains.is_empty() {
        for r in recipients {
            let domain = r.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
            if !policy.allowed_domains.iter().any(|d| d == domain) {
                return Ok(Some(("allowed_domains", format!("{r} is not in an allowed domain"))));
            }
        }
    }
    let mut conn = core.store.pool().acquire().await?;
    if policy.reply_only {
        for r in recipients {
            if !tq::has_written(&mut conn.team(&caller.team_id), &mbx.id, r).await? {
                return Ok(Some(("reply_only", format!("{r} has never written to this mailbox"))));
            }
        }
    }
    if let Some(limit) = policy.daily_limit {
        let sent = tq::sent_since(&mut conn.team(&caller.team_id), &mbx.id, now_ms() - DAY_MS).await?;
        if sent >= limit {
            return Ok(Some((
                "daily_limit",
                format!("{sent} messages sent in the last 24 hours; the limit is {limit}"),
            )));
        }
    }
    Ok(None)
}

/// Refuses (and records) a send that breaks the mailbox's policy.
async fn enforce(core: &Core, caller: &Principal, mbx: &MailboxRow, email: &Email) -> Result<()> {
    let policy = SendPolicy::of(mbx);
    let recipients = email.envelope_recipients();
    let Some((rule, why)) = broken_rule(core, caller, mbx, &policy, &recipients).await? else { return Ok(()) };
    let mut tx = core.store.begin().await?;
    audit::record(
        &mut tx.team(&caller.team_id),
        &caller.actor(),
        "mailbox.send_refused",
        ("mailbox", &mbx.id),
        json!({"rule": rule, "reason": why, "to": recipients, "subject": email.subject}),
    )
    .await?;
    core.commit(tx, caller.team_id.as_str()).await?;
    Err(Error::forbidden(format!("The mailbox's send_policy.{rule} refuses this: {why}"))
        .with_param(format!("send_policy.{rule}")))
}

/// Turns for mailboxes with a daily limit, by a hash of the mailbox id.
static SEND_TURNS: [tokio::sync::Mutex<()>; 64] = [const { tokio::sync::Mutex::const_new(()) }; 64];

fn stripe(mailbox_id: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(mailbox_id);
    (hash % SEND_TURNS.len() as u64) as usize
}

/// Queues `input` from the mailbox in `thread_id` and keeps the copy in the mailbox.
async fn queue(
    core: &Arc<Core>,
    caller: &Principal,
    mbx: &MailboxRow,
    group: &str,
    input: EmailIn,
    thread_id: Option<String>,
) -> Result<Value> {
    let email = validate::email("", input, core.settings.outbound.max_email_bytes)?;
    // A daily limit counts the copies kept below: a mailbox's sends are checked and kept
    // one at a time on this node, so concurrent sends cannot all pass the same count.
    // (Across nodes each node may still let one through: the bound is the node count.)
    let _turn = match SendPolicy::of(mbx).daily_limit {
        Some(_) => Some(SEND_TURNS[stripe(&mbx.id)].lock().await),
        None => None,
    };
    enforce(core, caller, mbx, &email).await?;
    let thread_id = thread_id.unwrap_or_else(|| crate::ids::ThreadId::new().into_string());
    let row = crate::outbound::send::queue_in_thread(core, caller, group, &email, &thread_id).await?;
    // The copy: the exact bytes the providers get, in the thread, with no event of its own
    // (the outbound message raises message.queued, .sent, …).
    let raw = Arc::new(crate::outbound::mime::build(&email, &row.id, &row.mime_message_id, row.created_at, false));
    let key = core.blobs.put(caller.team_id.as_str(), raw.clone()).await.map_err(Error::internal)?;
    let recipients = email.envelope_recipients();
    let copy = MessageRow {
        id: row.id.clone(),
        team_id: caller.team_id.as_str().to_owned(),
        mailbox_id: mbx.id.clone(),
        blob_key: key.clone(),
        size_bytes: raw.len() as i64,
        source: "agent".into(),
        remote_ip: None,
        helo: None,
        mail_from: mbx.address.clone(),
        rcpt_to: recipients.join(", "),
        from_address: Some(mbx.address.clone()),
        from_name: mbx.name.clone(),
        subject: Some(email.subject.clone()),
        header_message_id: Some(row.mime_message_id.clone()),
        attachment_count: email.attachments.len() as i64,
        spam_score: 0.0,
        is_spam: 0,
        auth_results: "{}".into(),
        received_at: row.created_at,
        plus_tag: None,
        thread_id: Some(thread_id.clone()),
        extracted_text: email.text.clone(),
        direction: "outbound".into(),
        search_text: Some(crate::inbound::parse::distinct_words(&format!(
            "{} {} {} {} {}",
            mbx.address,
            recipients.join(" "),
            recipients.iter().map(|r| r.replace(['@', '.'], " ")).collect::<Vec<_>>().join(" "),
            email.subject,
            email
                .text
                .as_deref()
                .unwrap_or_default()
                .chars()
                .take(crate::inbound::parse::SEARCH_TEXT_CHARS)
                .collect::<String>()
        ))),
    };
    // A header-less answer from a recipient still finds the thread (crate::threads).
    let refs: Vec<RefRow> = recipients
        .iter()
        .filter_map(|r| crate::threads::subject_key(&mbx.id, &email.subject, r))
        .map(|ref_key| RefRow {
            team_id: caller.team_id.as_str().to_owned(),
            ref_key,
            thread_id: thread_id.clone(),
            created_at: row.created_at,
        })
        .collect();
    let stored = async {
        let mut tx = core.store.begin().await?;
        iq::insert_many(&mut tx, &[&copy]).await?;
        tq::insert_refs(&mut tx, &refs).await?;
        tx.commit().await?;
        anyhow::Ok(())
    };
    if let Err(e) = stored.await {
        // The mail is queued; only the copy is missing.
        tracing::error!(message_id = %row.id, error = %format!("{e:#}"), "could not keep the copy of a sent message");
        let _ = core.blobs.delete(&key).await;
    }
    Ok(json!({
        "id": row.id,
        "status": "queued",
        "thread_id": thread_id,
        "message_id_header": format!("<{}>", row.mime_message_id),
    }))
}

// ---- Operations ---------------------------------------------------------------------

/// Answers message `id` of the mailbox: to its Reply-To or sender (and, with
/// `reply_all`, everyone else it was addressed to but the mailbox), `Re:` subject,
/// `In-Reply-To` and `References` set, in its thread.
pub async fn reply(
    core: &Arc<Core>,
    caller: &Principal,
    mailbox_id: Option<&str>,
    id: &str,
    input: ReplyIn,
) -> Result<Value> {
    let (mbx, group) = sender(core, caller, mailbox_id).await?;
    let (original, raw) = original(core, caller, &mbx, id).await?;
    let parsed = crate::inbound::parse::parse(&raw).ok_or_else(|| Error::conflict("The message cannot be parsed"))?;
    let me = mbx.address.to_ascii_lowercase();
    let mut to = addresses(parsed.reply_to());
    if to.is_empty() {
        to = addresses(parsed.from());
    }
    if to.is_empty() {
        to = original.from_address.iter().map(|a| a.to_ascii_lowercase()).collect();
    }
    let mut cc = Vec::new();
    if input.reply_all {
        for a in addresses(parsed.to()).into_iter().chain(addresses(parsed.cc())) {
            if a != me && !to.contains(&a) && !cc.contains(&a) {
                cc.push(a);
            }
        }
    }
    to.retain(|a| *a != me);
    if to.is_empty() && cc.is_empty() {
        return Err(Error::conflict("The message names no one to reply to"));
    }
    let parent = parsed.message_id().filter(|id| usable_id(id)).map(str::to_owned);
    let mut references = ids(parsed.references());
    if references.is_empty() {
        references = ids(parsed.in_reply_to());
    }
    references.extend(parent.clone());
    let mut headers = std::collections::BTreeMap::new();
    if let Some(p) = &parent {
        headers.insert("In-Reply-To".to_owned(), format!("<{p}>"));
    }
    if !references.is_empty() {
        let refs: Vec<String> = references.iter().rev().take(20).rev().map(|r| format!("<{r}>")).collect();
        headers.insert("References".to_owned(), refs.join(" "));
    }
    let input = EmailIn {
        from: from_of(&mbx),
        to,
        cc,
        bcc: Vec::new(),
        reply_to: None,
        subject: prefixed("Re", parsed.subject().or(original.subject.as_deref()).unwrap_or_default()),
        text: input.text,
        html: input.html,
        headers,
        attachments: input.attachments,
        tags: Default::default(),
    };
    queue(core, caller, &mbx, &group, input, original.thread_id.clone()).await
}

/// Forwards message `id` of the mailbox to `to`, the original's text quoted below the
/// caller's, in its thread.
pub async fn forward(
    core: &Arc<Core>,
    caller: &Principal,
    mailbox_id: Option<&str>,
    id: &str,
    input: ForwardIn,
) -> Result<Value> {
    let (mbx, group) = sender(core, caller, mailbox_id).await?;
    let (original, raw) = original(core, caller, &mbx, id).await?;
    let parsed = crate::inbound::parse::parse(&raw).ok_or_else(|| Error::conflict("The message cannot be parsed"))?;
    let from = parsed.from().and_then(Address::first).and_then(|a| a.address()).unwrap_or_default().to_owned();
    let subject = parsed.subject().or(original.subject.as_deref()).unwrap_or_default().to_owned();
    let body = parsed.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    let text = format!(
        "{}\r\n\r\n---------- Forwarded message ---------\r\nFrom: {from}\r\nSubject: {subject}\r\n\r\n{body}",
        input.text.unwrap_or_default()
    );
    let mut headers = std::collections::BTreeMap::new();
    if let Some(p) = parsed.message_id().filter(|id| usable_id(id)) {
        headers.insert("References".to_owned(), format!("<{p}>"));
    }
    let input = EmailIn {
        from: from_of(&mbx),
        to: input.to,
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: None,
        subject: prefixed("Fwd", &subject),
        text: Some(text),
        html: None,
        headers,
        attachments: Vec::new(),
        tags: Default::default(),
    };
    queue(core, caller, &mbx, &group, input, original.thread_id.clone()).await
}

/// New mail from the mailbox, in a new thread.
pub async fn send(core: &Arc<Core>, caller: &Principal, mailbox_id: Option<&str>, input: SendIn) -> Result<Value> {
    let (mbx, group) = sender(core, caller, mailbox_id).await?;
    let input = EmailIn {
        from: from_of(&mbx),
        to: input.to,
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: None,
        subject: input.subject,
        text: input.text,
        html: input.html,
        headers: Default::default(),
        attachments: Vec::new(),
        tags: Default::default(),
    };
    queue(core, caller, &mbx, &group, input, None).await
}

/// Message `id` of the mailbox (not found otherwise) with its bytes as received.
async fn original(
    core: &Core,
    caller: &Principal,
    mbx: &MailboxRow,
    id: &str,
) -> Result<(MessageRow, impl std::ops::Deref<Target = [u8]> + use<>)> {
    let id = crate::ids::MessageId::parse(id).ok_or_else(|| Error::not_found("message"))?;
    let row = {
        let mut conn = core.store.pool().acquire().await?;
        iq::get(&mut conn.team(&caller.team_id), &mbx.id, id.as_str())
            .await?
            .ok_or_else(|| Error::not_found("message"))?
    };
    let raw = core.blobs.get(&row.blob_key).await.map_err(Error::internal)?;
    Ok((row, raw))
}
