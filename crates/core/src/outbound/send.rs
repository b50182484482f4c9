//! Sending (docs/API.md "Sending"): the operation behind `POST /emails` and
//! `/emails/batch`. It validates each request, builds its queue row, keeps the validated
//! request in the row or (large ones) in the blob store, and commits the rows with the
//! answer under the caller's idempotency key, in the next group commit.

use crate::ids::TeamId;
use crate::store::TeamScope;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::Core;
use crate::auth::{Principal, Scope};
use crate::error::{Error, Result};
use crate::ids::MessageId;
use crate::outbound::accept::{Accept, Answer, Idempotency};
use crate::outbound::mime;
use crate::outbound::validate::{self, Email, EmailIn};
use crate::store::now_ms;
use crate::store::outbound::{self as q, MessageRow};

/// Most messages in one batch.
pub const MAX_BATCH: usize = 100;

/// The caller's `Idempotency-Key` and the exact request bytes it covers.
pub struct IdempotencyKey<'a> {
    pub key: String,
    pub request: &'a [u8],
}

/// Queues one email through the sending key's delivery group.
pub async fn send_one(
    core: &Arc<Core>,
    caller: &Principal,
    input: EmailIn,
    idempotency: Option<IdempotencyKey<'_>>,
) -> Result<Answer> {
    let group = sending_group(caller)?;
    let email = validate::email("", input, core.settings.outbound.max_email_bytes)?;
    check_senders(core, &caller.team_id, group, [("", &email)]).await?;
    let mut row = message_row(core, &caller.team_id, group, &email)?;
    row.thread_id = Some(thread_of(core, &caller.team_id, &email).await?);
    let answer = json!({"id": row.id, "status": "queued"});
    accept(core, caller, idempotency, vec![(row, email)], answer).await
}

/// Queues one validated email through `group` in `thread_id`, as `send_one` does (the
/// same row, events, statuses and billing): sending from a mailbox (`mailbox_send`),
/// whose caller is a mailbox key and whose group is the mailbox's. Returns the row.
pub(crate) async fn queue_in_thread(
    core: &Arc<Core>,
    caller: &Principal,
    group: &str,
    email: &Email,
    thread_id: &str,
) -> Result<MessageRow> {
    // The mailbox's address is the sender: the same identity rules as `POST /emails`
    // (a managed route needs it on a verified team domain).
    check_senders(core, &caller.team_id, group, [("", email)]).await?;
    let mut row = message_row(core, &caller.team_id, group, email)?;
    row.thread_id = Some(thread_id.to_owned());
    let answer = json!({"id": row.id, "status": "queued"});
    let out = row.clone();
    let email = validate::Email::clone(email);
    accept(core, caller, None, vec![(row, email)], answer).await?;
    Ok(out)
}

/// Queues 1 to [`MAX_BATCH`] emails, all or none; the answer lists them in order.
pub async fn send_batch(
    core: &Arc<Core>,
    caller: &Principal,
    inputs: Vec<EmailIn>,
    idempotency: Option<IdempotencyKey<'_>>,
) -> Result<Answer> {
    let group = sending_group(caller)?;
    if inputs.is_empty() || inputs.len() > MAX_BATCH {
        return Err(Error::invalid("", format!("A batch holds 1 to {MAX_BATCH} emails, got {}", inputs.len())));
    }
    let max = core.settings.outbound.max_email_bytes;
    let emails = inputs
        .into_iter()
        .enumerate()
        .map(|(i, e)| validate::email(&format!("[{i}]."), e, max))
        .collect::<Result<Vec<_>>>()?;
    let prefixes: Vec<String> = (0..emails.len()).map(|i| format!("[{i}].")).collect();
    check_senders(core, &caller.team_id, group, prefixes.iter().map(String::as_str).zip(emails.iter())).await?;
    let mut messages = Vec::with_capacity(emails.len());
    for e in emails {
        let mut row = message_row(core, &caller.team_id, group, &e)?;
        row.thread_id = Some(thread_of(core, &caller.team_id, &e).await?);
        messages.push((row, e));
    }
    let data: Vec<Value> = messages.iter().map(|(r, _)| json!({"id": r.id, "status": "queued"})).collect();
    accept(core, caller, idempotency, messages, json!({"data": data})).await
}

/// One sent email of the caller's team and its attempts; a sending key sees only its own
/// group's.
pub async fn get(core: &Core, caller: &Principal, id: &MessageId) -> Result<(MessageRow, Vec<q::AttemptRow>)> {
    let group = match &caller.scope {
        Scope::DeliveryGroup(g) => {
            caller.require(crate::auth::perms::Perm::EmailSend)?;
            Some(g.as_str())
        }
        _ => {
            caller.require(crate::auth::perms::Perm::ProvidersRead)?;
            None
        }
    };
    let mut conn = core.store.pool().acquire().await?;
    let row = q::get_message(&mut conn.team(&caller.team_id), id.as_str(), group)
        .await?
        .ok_or_else(|| Error::not_found("email"))?;
    let attempts = q::attempts_of(&mut conn.team(&caller.team_id), &row.id).await?;
    Ok((row, attempts))
}

/// API.md §5 "Sender identity": through the managed route (a group with the managed
/// member) — or through any route when `SENDMUX_REQUIRE_VERIFIED_SENDER` is set — `from`
/// must be on a domain the team has verified. Costs no store read when neither applies.
async fn check_senders<'a>(
    core: &Core,
    team: &TeamId,
    group: &str,
    emails: impl IntoIterator<Item = (&'a str, &'a Email)>,
) -> Result<()> {
    let required = core.settings.domains.require_verified_sender;
    if !required && core.settings.managed_ses.is_none() {
        return Ok(());
    }
    let mut conn = core.store.pool().acquire().await?;
    if !required {
        let members = crate::store::providers::members_of(&mut conn.team(team), &[group.to_owned()]).await?;
        if !members.iter().any(|m| m.provider_id.is_none()) {
            return Ok(());
        }
    }
    let mut verified: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    for (prefix, email) in emails {
        let domain = crate::domains::domain_of(&email.from.address).unwrap_or_default();
        let ok = match verified.get(&domain) {
            Some(ok) => *ok,
            None => {
                let ok = crate::store::domains::is_verified(&mut conn.team(team), &domain).await?;
                verified.insert(domain.clone(), ok);
                ok
            }
        };
        if !ok {
            let route = if required { "this instance" } else { "the managed route" };
            return Err(Error::invalid(
                format!("{prefix}from"),
                format!("Sending through {route} needs `from` on a domain this team has verified; {domain} is not"),
            ));
        }
    }
    Ok(())
}

fn sending_group(p: &Principal) -> Result<&str> {
    match &p.scope {
        Scope::DeliveryGroup(g) => Ok(g),
        _ => Err(Error::forbidden("Only a sending key (smx_snd_) sends mail; it sends through its delivery group")),
    }
}

/// The queue row of one validated message.
fn message_row(core: &Core, team: &TeamId, group_id: &str, email: &Email) -> Result<MessageRow> {
    let id = MessageId::new().into_string();
    let now = now_ms();
    Ok(MessageRow {
        mime_message_id: mime::message_id_header(&id, &email.from),
        id,
        team_id: team.to_string(),
        delivery_group_id: group_id.to_owned(),
        status: "queued".into(),
        from_addr: email.from.display(),
        recipients: serde_json::to_string(&email.envelope_recipients()).map_err(Error::internal)?,
        subject: email.subject.clone(),
        request: None,
        body_key: None,
        provider_id: None,
        provider_message_id: None,
        last_error: None,
        attempts: 0,
        next_attempt_at: now,
        locked_until: None,
        expires_at: now + core.settings.outbound.retry_window_ms,
        created_at: now,
        updated_at: now,
        thread_id: None,
    })
}

/// The thread of an email sent with `In-Reply-To`/`References` among its `headers`: the
/// thread of the message it answers when the team knows it, else a new one.
async fn thread_of(core: &Core, team: &TeamId, email: &Email) -> Result<String> {
    let header = |name: &str| -> Vec<String> {
        email
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    };
    let (in_reply_to, references) = (header("In-Reply-To"), header("References"));
    let threading = crate::threads::Threading {
        message_id: None,
        in_reply_to: &in_reply_to,
        references: &references,
        subject: None,
    };
    Ok(crate::threads::resolve(&core.store, team.as_str(), &threading, None).await?)
}

/// Commits the messages with `answer` in the next group, under the request's idempotency
/// key if any: the first answer is stored with the messages, in the same transaction,
/// and replayed for the same key and body. Each validated request is kept in its row, or,
/// past [`INLINE_REQUEST_BYTES`], in the blob store first (`commit_with_bodies`).
async fn accept(
    core: &Arc<Core>,
    p: &Principal,
    idempotency: Option<IdempotencyKey<'_>>,
    messages: Vec<(MessageRow, Email)>,
    answer: Value,
) -> Result<Answer> {
    let idempotency = idempotency.map(|k| Idempotency {
        team_id: p.team_id.clone().into_string(),
        scope: messages.first().map(|(m, _)| m.delivery_group_id.clone()).unwrap_or_default(),
        key: k.key,
        hash: hex::encode(Sha256::digest(k.request)),
    });
    let mut rows = Vec::with_capacity(messages.len());
    let mut large = Vec::new();
    for (i, (mut row, email)) in messages.into_iter().enumerate() {
        let request = serde_json::to_string(&email).map_err(Error::internal)?;
        if request.len() <= INLINE_REQUEST_BYTES {
            row.request = Some(request);
        } else {
            large.push((i, Arc::new(request.into_bytes())));
        }
        rows.push(row);
    }
    let accept = Accept::new(idempotency, rows, answer);
    let answer = if large.is_empty() {
        core.outbound.accept.run(accept).await
    } else {
        // Once a body is written only this request knows its key: if the client left
        // and the handler were dropped half-way, the body would stay with no row. The
        // task sees the request through either way.
        let core = core.clone();
        let team_id = p.team_id.clone();
        tokio::spawn(async move { commit_with_bodies(&core, &team_id, accept, large).await })
            .await
            .map_err(Error::internal)?
    };
    let answer = answer?;
    if let Answer::Fresh(_) = answer {
        core.outbound.wake.notify_one();
    }
    Ok(answer)
}

/// A validated request up to this long stays in its row; a longer one (attachments) goes
/// to the blob store, so it does not travel through the database's log and hold up the
/// group commit every other sender waits on. Measured on the accept benchmark, a small
/// request costs less in the row than a trip through the blob writer and its flush.
pub const INLINE_REQUEST_BYTES: usize = 64 * 1024;

/// Writes the `large` requests (message index, JSON) to the blob store, durable before
/// their rows commit, then commits `accept`. Bodies whose rows were not
/// queued are erased: after a refusal or a replay at once; after a failed commit once a
/// read shows the rows are not there (a commit that lost its connection may still have
/// happened, so without that answer they are kept).
async fn commit_with_bodies(
    core: &Core,
    team: &TeamId,
    mut accept: Accept,
    large: Vec<(usize, Arc<Vec<u8>>)>,
) -> Result<Answer> {
    let written = futures::future::join_all(large.iter().map(|(_, b)| core.blobs.put(team.as_str(), b.clone()))).await;
    let mut keys = Vec::with_capacity(written.len());
    let mut failed = None;
    for w in written {
        match w {
            Ok(key) => keys.push(key),
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        discard_requests(core, &keys).await;
        return Err(Error::internal(format_args!("storing an accepted request: {e}")));
    }
    for ((i, _), key) in large.iter().zip(&keys) {
        accept.messages[*i].row.body_key = Some(key.clone());
    }
    let first_id = accept.messages.first().map(|m| m.row.id.clone()).unwrap_or_default();
    let answer = core.outbound.accept.run(accept).await;
    let queued = match &answer {
        Ok(Answer::Fresh(_)) => true,
        Ok(Answer::Replayed(..)) => false,
        Err(e) if !matches!(e, Error::Internal(_)) => false,
        // A request's rows commit together: one tells whether all did.
        Err(_) => match core.store.pool().acquire().await {
            Ok(mut conn) => !matches!(q::get_message(&mut conn.team(team), &first_id, None).await, Ok(None)),
            Err(_) => true,
        },
    };
    if !queued {
        discard_requests(core, &keys).await;
    }
    answer
}

/// Erases the bodies of requests that were not queued.
async fn discard_requests(core: &Core, keys: &[String]) {
    for key in keys {
        if let Err(e) = core.blobs.delete(key).await {
            tracing::warn!(key = %key, error = %e, "could not remove the body of a request that was not queued");
        }
    }
}
