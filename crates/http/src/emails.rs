//! Sending: `POST /emails` and `/emails/batch` queue messages (202 after commit, with
//! optional `Idempotency-Key`), `GET /emails/{id}` reports status and attempts.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Need, can, parse_json, path_id};
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::auth::{Principal, Scope};
use sendmux_core::ids::MessageId;
use sendmux_core::outbound::accept::{Accept, Answer, Idempotency};
use sendmux_core::outbound::mime;
use sendmux_core::outbound::validate::{self, Email, EmailIn};
use sendmux_core::store::outbound::{self as q, MessageRow};
use sendmux_core::store::{now_ms, rfc3339};

pub use sendmux_core::outbound::accept::IDEMPOTENCY_TTL_MS;
/// Most messages in one `POST /emails/batch`.
pub const MAX_BATCH: usize = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(send_email)).routes(routes!(send_batch)).routes(routes!(get_email))
}

/// The largest request body the send routes read: the message limit in base64 plus room
/// for the JSON around it.
pub fn body_limit(max_email_bytes: usize) -> usize {
    max_email_bytes / 3 * 4 + (1 << 20)
}

#[derive(Serialize, ToSchema)]
pub struct QueuedOut {
    pub id: String,
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptOut {
    pub id: String,
    /// A provider id, or `managed`.
    pub provider_id: String,
    pub provider_type: String,
    /// sent | deferred | bounced | failed
    pub outcome: String,
    /// The provider's answer.
    pub response: String,
    pub duration_ms: i64,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct EmailOut {
    pub id: String,
    /// queued | sending | sent | delivered | deferred | bounced | failed | suppressed
    pub status: String,
    pub delivery_group_id: String,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    /// The Message-ID header.
    pub message_id_header: String,
    /// The member that took the message (a provider id or `managed`).
    pub provider_id: Option<String>,
    pub provider_message_id: Option<String>,
    pub last_error: Option<String>,
    /// When the next try is due (deferred messages).
    pub next_attempt_at: Option<String>,
    pub attempts: Vec<AttemptOut>,
    pub created_at: String,
    pub updated_at: String,
}

fn sending_group(p: &Principal) -> ApiResult<&str> {
    match &p.scope {
        Scope::DeliveryGroup(g) => Ok(g),
        _ => Err(ApiError::forbidden("Only a sending key (smx_snd_) sends mail; it sends through its delivery group")),
    }
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let v = v.to_str().ok().map(str::trim).filter(|v| !v.is_empty() && v.len() <= 255);
    match v {
        Some(v) if v.bytes().all(|b| (0x21..=0x7e).contains(&b)) => Ok(Some(v.to_owned())),
        _ => Err(ApiError::invalid("Idempotency-Key", "Idempotency-Key must be 1 to 255 printable ASCII characters")),
    }
}

/// The queue row of one validated message.
fn message_row(state: &AppState, team_id: &str, group_id: &str, email: &Email) -> ApiResult<MessageRow> {
    let id = MessageId::new().into_string();
    let now = now_ms();
    Ok(MessageRow {
        mime_message_id: mime::message_id_header(&id, &email.from),
        id,
        team_id: team_id.to_owned(),
        delivery_group_id: group_id.to_owned(),
        status: "queued".into(),
        from_addr: email.from.display(),
        recipients: serde_json::to_string(&email.envelope_recipients()).map_err(ApiError::internal)?,
        subject: email.subject.clone(),
        request: None,
        body_key: None,
        provider_id: None,
        provider_message_id: None,
        last_error: None,
        attempts: 0,
        next_attempt_at: now,
        locked_until: None,
        expires_at: now + state.settings.outbound.retry_window_ms,
        created_at: now,
        updated_at: now,
    })
}

/// Commits the messages with `answer` in the next group, under the request's idempotency
/// key if any: the first answer is stored with the messages, in the same transaction,
/// and replayed for the same key and body. Each validated request is kept in its row, or,
/// past [`INLINE_REQUEST_BYTES`], in the blob store first (`commit_with_bodies`).
async fn accept(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    body: &[u8],
    messages: Vec<(MessageRow, Email)>,
    answer: Value,
) -> ApiResult<Response> {
    let idempotency = idempotency_key(headers)?.map(|key| Idempotency {
        team_id: p.team_id.clone(),
        scope: messages.first().map(|(m, _)| m.delivery_group_id.clone()).unwrap_or_default(),
        key,
        hash: hex::encode(Sha256::digest(body)),
    });
    let mut rows = Vec::with_capacity(messages.len());
    let mut large = Vec::new();
    for (i, (mut row, email)) in messages.into_iter().enumerate() {
        let request = serde_json::to_string(&email).map_err(ApiError::internal)?;
        if request.len() <= INLINE_REQUEST_BYTES {
            row.request = Some(request);
        } else {
            large.push((i, Arc::new(request.into_bytes())));
        }
        rows.push(row);
    }
    let accept = Accept::new(idempotency, rows, answer);
    let answer = if large.is_empty() {
        state.outbound.accept.run(accept).await
    } else {
        // Once a body is written only this request knows its key: if the client left
        // and the handler were dropped half-way, the body would stay with no row. The
        // task sees the request through either way.
        let state = state.clone();
        let team_id = p.team_id.clone();
        tokio::spawn(async move { commit_with_bodies(&state, &team_id, accept, large).await })
            .await
            .map_err(ApiError::internal)?
    };
    match answer? {
        Answer::Fresh(answer) => {
            state.outbound.wake.notify_one();
            Ok((StatusCode::ACCEPTED, axum::Json(answer)).into_response())
        }
        Answer::Replayed(status, answer) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
            let mut res = (status, axum::Json(answer)).into_response();
            res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(res)
        }
    }
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
    state: &AppState,
    team_id: &str,
    mut accept: Accept,
    large: Vec<(usize, Arc<Vec<u8>>)>,
) -> sendmux_core::Result<Answer> {
    let written = futures::future::join_all(large.iter().map(|(_, b)| state.blobs.put(team_id, b.clone()))).await;
    let mut keys = Vec::with_capacity(written.len());
    let mut failed = None;
    for w in written {
        match w {
            Ok(key) => keys.push(key),
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        discard_requests(state, &keys).await;
        return Err(sendmux_core::Error::internal(format_args!("storing an accepted request: {e}")));
    }
    for ((i, _), key) in large.iter().zip(&keys) {
        accept.messages[*i].row.body_key = Some(key.clone());
    }
    let first_id = accept.messages.first().map(|m| m.row.id.clone()).unwrap_or_default();
    let answer = state.outbound.accept.run(accept).await;
    let queued = match &answer {
        Ok(Answer::Fresh(_)) => true,
        Ok(Answer::Replayed(..)) => false,
        Err(e) if !matches!(e, sendmux_core::Error::Internal(_)) => false,
        // A request's rows commit together: one tells whether all did.
        Err(_) => match state.store.pool().acquire().await {
            Ok(mut conn) => !matches!(q::get_message(&mut conn, team_id, &first_id, None).await, Ok(None)),
            Err(_) => true,
        },
    };
    if !queued {
        discard_requests(state, &keys).await;
    }
    answer
}

/// Erases the bodies of requests that were not queued.
async fn discard_requests(state: &AppState, keys: &[String]) {
    for key in keys {
        if let Err(e) = state.blobs.delete(key).await {
            tracing::warn!(key = %key, error = %e, "could not remove the body of a request that was not queued");
        }
    }
}

/// Send one email through the sending key's delivery group.
#[utoipa::path(post, path = "/api/v1/emails", tag = "emails", request_body = EmailIn,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body within 24 h return the first answer")),
    responses((status = 202, body = QueuedOut), (status = 409, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn send_email(
    State(state): State<AppState>,
    Need(p, _): Need<can::EmailSend>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let group = sending_group(&p)?.to_owned();
    let input: EmailIn = parse_json(&body)?;
    let email = validate::email("", input, state.settings.outbound.max_email_bytes)?;
    let row = message_row(&state, &p.team_id, &group, &email)?;
    let answer = json!({"id": row.id, "status": "queued"});
    accept(&state, &p, &headers, &body, vec![(row, email)], answer).await
}

/// Send up to 100 emails (a JSON array of `POST /emails` bodies); all or none are queued.
#[utoipa::path(post, path = "/api/v1/emails/batch", tag = "emails", request_body = Vec<EmailIn>,
    responses((status = 202, description = "`{\"data\": [{\"id\", \"status\"}]}` in request order"),
        (status = 422, body = crate::error::ErrorBody)))]
async fn send_batch(
    State(state): State<AppState>,
    Need(p, _): Need<can::EmailSend>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let group = sending_group(&p)?.to_owned();
    let inputs: Vec<EmailIn> = parse_json(&body)?;
    if inputs.is_empty() || inputs.len() > MAX_BATCH {
        return Err(ApiError::invalid("", format!("A batch holds 1 to {MAX_BATCH} emails, got {}", inputs.len())));
    }
    let max = state.settings.outbound.max_email_bytes;
    let emails = inputs
        .into_iter()
        .enumerate()
        .map(|(i, e)| validate::email(&format!("[{i}]."), e, max))
        .collect::<sendmux_core::Result<Vec<_>>>()?;
    let messages = emails
        .into_iter()
        .map(|e| Ok((message_row(&state, &p.team_id, &group, &e)?, e)))
        .collect::<ApiResult<Vec<_>>>()?;
    let data: Vec<Value> = messages.iter().map(|(r, _)| json!({"id": r.id, "status": "queued"})).collect();
    accept(&state, &p, &headers, &body, messages, json!({"data": data})).await
}

/// Status and attempts of a sent email. A sending key sees its own group's messages.
#[utoipa::path(get, path = "/api/v1/emails/{id}", tag = "emails", params(("id" = String, Path)),
    responses((status = 200, body = EmailOut), (status = 404, body = crate::error::ErrorBody)))]
async fn get_email(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<EmailOut>> {
    let group = match &p.scope {
        Scope::DeliveryGroup(g) => {
            p.require(Perm::EmailSend)?;
            Some(g.as_str())
        }
        _ => {
            p.require(Perm::ProvidersRead)?;
            None
        }
    };
    let id = path_id(&id, MessageId::parse, "email")?;
    let mut conn = state.store.pool().acquire().await?;
    let row =
        q::get_message(&mut conn, &p.team_id, id.as_str(), group).await?.ok_or_else(|| ApiError::not_found("email"))?;
    let attempts = q::attempts_of(&mut conn, &p.team_id, &row.id).await?;
    Ok(axum::Json(EmailOut {
        id: row.id,
        status: row.status.clone(),
        delivery_group_id: row.delivery_group_id,
        from: row.from_addr,
        to: serde_json::from_str(&row.recipients).unwrap_or_default(),
        subject: row.subject,
        message_id_header: format!("<{}>", row.mime_message_id),
        provider_id: row.provider_id,
        provider_message_id: row.provider_message_id,
        last_error: row.last_error,
        next_attempt_at: (row.status == "deferred").then(|| rfc3339(row.next_attempt_at)),
        attempts: attempts
            .into_iter()
            .map(|a| AttemptOut {
                id: a.id,
                provider_id: a.provider_id,
                provider_type: a.provider_type,
                outcome: a.outcome,
                response: a.response,
                duration_ms: a.duration_ms,
                created_at: rfc3339(a.created_at),
            })
            .collect(),
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }))
}
