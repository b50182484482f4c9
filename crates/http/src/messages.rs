//! Inbound messages over HTTP (API.md §6): a mailbox key reads and injects under
//! `/mailbox/messages`, people and infrastructure keys under `/mailboxes/{id}/messages`.
//! Both shapes resolve to one (team, mailbox) pair first; every query takes both.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sendmux_core::store::TeamScope;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Need, Query, can, path_id};
use super::pagination::{List, ListParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::Principal;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::{MailboxId, MessageId};
use sendmux_core::inbound::{self, Incoming, Outcome, Recipient, Source};
use sendmux_core::store::inbound::{self as q, MessageRow};
use sendmux_core::store::{mailboxes, rfc3339};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(own_list, own_inject))
        .routes(routes!(own_get))
        .routes(routes!(own_raw))
        .routes(routes!(own_attachment))
        .routes(routes!(list, inject))
        .routes(routes!(get))
        .routes(routes!(raw))
        .routes(routes!(attachment))
}

/// The mailbox a request addresses: a mailbox key's own (any other id is 404, as if it
/// did not exist), or any mailbox of the caller's team.
async fn mailbox(state: &AppState, p: &Principal, id: Option<&str>) -> ApiResult<mailboxes::MailboxRow> {
    let id = match (p.mailbox_scope(), id) {
        (Some(scope), None) => scope.to_owned(),
        (Some(scope), Some(id)) if scope == id => scope.to_owned(),
        (Some(_), Some(_)) => return Err(ApiError::not_found("mailbox")),
        (None, Some(id)) => path_id(id, MailboxId::parse, "mailbox")?.into_string(),
        (None, None) => {
            return Err(ApiError::forbidden(
                "This route is for mailbox keys; people and infrastructure keys use /api/v1/mailboxes/{id}",
            ));
        }
    };
    let mut conn = state.store.pool().acquire().await?;
    mailboxes::get(&mut conn.team(&p.team_id), &id).await?.ok_or_else(|| ApiError::not_found("mailbox"))
}

async fn message(state: &AppState, p: &Principal, mailbox_id: Option<&str>, id: &str) -> ApiResult<MessageRow> {
    let mbx = mailbox(state, p, mailbox_id).await?;
    let id = path_id(id, MessageId::parse, "message")?;
    let mut conn = state.store.pool().acquire().await?;
    q::get(&mut conn.team(&p.team_id), &mbx.id, id.as_str()).await?.ok_or_else(|| ApiError::not_found("message"))
}

async fn body_of(state: &AppState, m: &MessageRow) -> ApiResult<Vec<u8>> {
    state.blobs.get(&m.blob_key).await.map_err(|e| ApiError::internal(format_args!("reading {}: {e}", m.blob_key)))
}

/// The list form of a message: what the row holds.
fn summary_json(m: &MessageRow) -> Value {
    let stored: Value = serde_json::from_str(&m.auth_results).unwrap_or(Value::Null);
    json!({
        "id": m.id,
        "mailbox_id": m.mailbox_id,
        "received_at": rfc3339(m.received_at),
        "size": m.size_bytes,
        "source": m.source,
        "envelope": {"mail_from": m.mail_from, "rcpt_to": m.rcpt_to, "remote_ip": m.remote_ip, "helo": m.helo},
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
fn detail_json(m: &MessageRow, raw: &[u8]) -> Value {
    let mut out = summary_json(m);
    let parsed = inbound::parse::detail(raw);
    if let (Some(out), Value::Object(parsed)) = (out.as_object_mut(), parsed) {
        for (k, v) in parsed {
            // The row's from (as first stored) and the parsed one agree; keep the parsed detail.
            out.insert(k, v);
        }
    }
    out
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct MessageListParams {
    /// Page size, 1..100 (default 20).
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `true` for spam only, `false` for the rest.
    #[param(value_type = Option<bool>)]
    pub spam: Option<String>,
}

async fn list_in(
    state: &AppState,
    p: &Principal,
    mailbox_id: Option<&str>,
    params: MessageListParams,
) -> ApiResult<axum::Json<List<Value>>> {
    p.require(Perm::MailboxRead)?;
    let spam = match params.spam.as_deref() {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::bad_request("spam must be true or false").with_param("spam")),
    };
    let page = ListParams { limit: params.limit, cursor: params.cursor }.page(|c| MessageId::parse(c).is_some())?;
    let mbx = mailbox(state, p, mailbox_id).await?;
    let mut conn = state.store.pool().acquire().await?;
    let rows = q::list(&mut conn.team(&p.team_id), &mbx.id, spam, page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), |r| summary_json(&r))))
}

async fn inject_into(
    state: &AppState,
    p: &Principal,
    mailbox_id: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let mbx = mailbox(state, p, mailbox_id).await?;
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if mime.as_deref() != Some("message/rfc822") {
        return Err(ApiError::bad_request("Content-Type must be message/rfc822"));
    }
    let max = state.settings.smtp.max_message_bytes;
    let raw = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| ApiError::too_large(format!("The message is larger than {max} bytes")))?;
    if raw.is_empty() {
        return Err(ApiError::bad_request("The message is empty"));
    }
    let incoming = Incoming {
        raw: raw.to_vec(),
        source: Source::Api,
        remote_ip: None,
        helo: String::new(),
        mail_from: String::new(),
        recipients: vec![Recipient::from(mbx)],
    };
    match inbound::receive(state, incoming).await? {
        Outcome::Stored(rows) => {
            let row = rows.into_iter().next().ok_or_else(|| ApiError::internal("no row stored"))?;
            Ok((StatusCode::CREATED, axum::Json(detail_json(&row, &raw))))
        }
        Outcome::RefusedAsSpam { score } => Err(ApiError::invalid(
            "body",
            format!("The message scored {score} as spam and this mailbox refuses spam (accept_spam is false)"),
        )),
    }
}

fn raw_response(bytes: Vec<u8>) -> Response {
    let mut res = (StatusCode::OK, bytes).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("message/rfc822"));
    res
}

/// What a message shows without `MessageContentRead` (a team member, API.md §2): no
/// bodies and no headers; addresses, subject, dates and attachment metadata stay.
fn metadata_only(mut detail: Value) -> Value {
    if let Some(out) = detail.as_object_mut() {
        for content in ["text", "html", "headers"] {
            out.remove(content);
        }
    }
    detail
}

async fn attachment_in(
    state: &AppState,
    p: &Principal,
    mailbox_id: Option<&str>,
    id: &str,
    index: &str,
) -> ApiResult<Response> {
    p.require(Perm::MailboxRead)?;
    p.require(Perm::MessageContentRead)?;
    let m = message(state, p, mailbox_id, id).await?;
    let index: usize = index.parse().map_err(|_| ApiError::not_found("attachment"))?;
    let raw = body_of(state, &m).await?;
    let (content_type, filename, bytes) = tokio::task::spawn_blocking(move || inbound::parse::attachment(&raw, index))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("attachment"))?;
    let mut res = (StatusCode::OK, bytes).into_response();
    let ct = HeaderValue::from_str(&content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    res.headers_mut().insert(header::CONTENT_TYPE, ct);
    if let Some(name) = filename {
        let safe: String = name.chars().filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\').collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(res)
}

async fn get_in(state: &AppState, p: &Principal, mailbox_id: Option<&str>, id: &str) -> ApiResult<axum::Json<Value>> {
    p.require(Perm::MailboxRead)?;
    let m = message(state, p, mailbox_id, id).await?;
    let raw = body_of(state, &m).await?;
    let out = tokio::task::spawn_blocking(move || detail_json(&m, &raw)).await.map_err(ApiError::internal)?;
    Ok(axum::Json(if p.perms.has(Perm::MessageContentRead) { out } else { metadata_only(out) }))
}

async fn raw_in(state: &AppState, p: &Principal, mailbox_id: Option<&str>, id: &str) -> ApiResult<Response> {
    p.require(Perm::MailboxRead)?;
    p.require(Perm::MessageContentRead)?;
    let m = message(state, p, mailbox_id, id).await?;
    Ok(raw_response(body_of(state, &m).await?))
}

/// Messages of a mailbox key's mailbox, newest first.
#[utoipa::path(get, path = "/api/v1/mailbox/messages", tag = "mailbox", params(MessageListParams), responses((status = 200, body = Object)))]
async fn own_list(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(params): Query<MessageListParams>,
) -> ApiResult<axum::Json<List<Value>>> {
    list_in(&state, &p, None, params).await
}

/// Inject a raw message (`message/rfc822`) through the inbound pipeline (`email.receive`).
#[utoipa::path(post, path = "/api/v1/mailbox/messages", tag = "mailbox", request_body(content = String, content_type = "message/rfc822"), responses((status = 201, body = Object)))]
async fn own_inject(
    State(state): State<AppState>,
    Need(p, _): Need<can::EmailReceive>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    inject_into(&state, &p, None, &headers, body).await
}

/// A parsed message with its spam verdict and authentication results.
#[utoipa::path(get, path = "/api/v1/mailbox/messages/{id}", tag = "mailbox", params(("id" = String, Path)), responses((status = 200, body = Object)))]
async fn own_get(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    get_in(&state, &p, None, &id).await
}

/// The message exactly as it arrived.
#[utoipa::path(get, path = "/api/v1/mailbox/messages/{id}/raw", tag = "mailbox", params(("id" = String, Path)), responses((status = 200, content_type = "message/rfc822", body = String)))]
async fn own_raw(State(state): State<AppState>, Caller(p): Caller, Path(id): Path<String>) -> ApiResult<Response> {
    raw_in(&state, &p, None, &id).await
}

/// One attachment's decoded bytes, by its index in `attachments`.
#[utoipa::path(get, path = "/api/v1/mailbox/messages/{id}/attachments/{index}", tag = "mailbox", params(("id" = String, Path), ("index" = usize, Path)), responses((status = 200, body = String)))]
async fn own_attachment(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((id, index)): Path<(String, String)>,
) -> ApiResult<Response> {
    attachment_in(&state, &p, None, &id, &index).await
}

/// Messages of a mailbox of the team, newest first.
#[utoipa::path(get, path = "/api/v1/mailboxes/{mailbox_id}/messages", tag = "mailboxes", params(("mailbox_id" = String, Path), MessageListParams), responses((status = 200, body = Object)))]
async fn list(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(mailbox_id): Path<String>,
    Query(params): Query<MessageListParams>,
) -> ApiResult<axum::Json<List<Value>>> {
    list_in(&state, &p, Some(&mailbox_id), params).await
}

/// Inject a raw message into a mailbox of the team.
#[utoipa::path(post, path = "/api/v1/mailboxes/{mailbox_id}/messages", tag = "mailboxes", params(("mailbox_id" = String, Path)), request_body(content = String, content_type = "message/rfc822"), responses((status = 201, body = Object)))]
async fn inject(
    State(state): State<AppState>,
    Need(p, _): Need<can::EmailReceive>,
    Path(mailbox_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    inject_into(&state, &p, Some(&mailbox_id), &headers, body).await
}

#[utoipa::path(get, path = "/api/v1/mailboxes/{mailbox_id}/messages/{id}", tag = "mailboxes", params(("mailbox_id" = String, Path), ("id" = String, Path)), responses((status = 200, body = Object)))]
async fn get(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((mailbox_id, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<Value>> {
    get_in(&state, &p, Some(&mailbox_id), &id).await
}

#[utoipa::path(get, path = "/api/v1/mailboxes/{mailbox_id}/messages/{id}/raw", tag = "mailboxes", params(("mailbox_id" = String, Path), ("id" = String, Path)), responses((status = 200, content_type = "message/rfc822", body = String)))]
async fn raw(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((mailbox_id, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    raw_in(&state, &p, Some(&mailbox_id), &id).await
}

#[utoipa::path(get, path = "/api/v1/mailboxes/{mailbox_id}/messages/{id}/attachments/{index}", tag = "mailboxes", params(("mailbox_id" = String, Path), ("id" = String, Path), ("index" = usize, Path)), responses((status = 200, body = String)))]
async fn attachment(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((mailbox_id, id, index)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    attachment_in(&state, &p, Some(&mailbox_id), &id, &index).await
}
