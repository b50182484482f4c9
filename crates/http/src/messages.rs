//! Inbound messages over HTTP (API.md §6): a mailbox key reads and injects under
//! `/mailbox/messages`, people and infrastructure keys under `/mailboxes/{id}/messages`.
//! Parse, call `sendmux_core::inbound::messages` (which resolves the mailbox and holds
//! a mailbox key to its own), render.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Need, Query, can};
use super::pagination::{List, ListParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::Principal;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::{MessageId, ThreadId};
use sendmux_core::inbound::messages;
use sendmux_core::store::inbound::Filter;

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
    /// Full-text search over from, to, subject and text: every word must match.
    #[param(max_length = 256)]
    pub q: Option<String>,
    /// Messages of this thread only (`thr_…`).
    #[param(pattern = "^thr_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")]
    pub thread_id: Option<String>,
    /// Received at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Received before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
}

fn time_param(raw: Option<&str>, name: &str) -> Result<Option<i64>, ApiError> {
    match raw {
        None => Ok(None),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| Some(d.timestamp_millis()))
            .map_err(|_| ApiError::bad_request(format!("{name} must be an RFC 3339 time")).with_param(name)),
    }
}

pub(crate) async fn list_in(
    state: &AppState,
    p: &Principal,
    mailbox_id: Option<&str>,
    params: MessageListParams,
) -> ApiResult<axum::Json<List<Value>>> {
    // Before the query is read: a caller who may not read gets 403 whatever it sent.
    p.require(Perm::MailboxRead)?;
    let spam = match params.spam.as_deref() {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::bad_request("spam must be true or false").with_param("spam")),
    };
    let thread_id = match params.thread_id.as_deref() {
        None => None,
        Some(t) => Some(
            ThreadId::parse(t)
                .ok_or_else(|| ApiError::bad_request("thread_id is not a thread id").with_param("thread_id"))?
                .into_string(),
        ),
    };
    let words = params.q.as_deref().map(messages::search_words).transpose()?;
    let filter = Filter {
        spam,
        thread_id,
        since: time_param(params.since.as_deref(), "since")?,
        until: time_param(params.until.as_deref(), "until")?,
        words,
    };
    let page = ListParams { limit: params.limit, cursor: params.cursor }.page(|c| MessageId::parse(c).is_some())?;
    let rows = messages::search(state, p, mailbox_id, &filter, page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), |r| messages::summary(&r))))
}

async fn inject_into(
    state: &AppState,
    p: &Principal,
    mailbox_id: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    // Read only once the service knows the mailbox: a wrong mailbox is 404 whatever
    // was sent.
    let read = async {
        let mime = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        if mime.as_deref() != Some("message/rfc822") {
            return Err(sendmux_core::Error::malformed("Content-Type must be message/rfc822"));
        }
        let max = state.settings.smtp.max_message_bytes;
        let raw = axum::body::to_bytes(body, max)
            .await
            .map_err(|_| sendmux_core::Error::too_large(format!("The message is larger than {max} bytes")))?;
        Ok(raw.to_vec())
    };
    let stored = messages::inject(state, p, mailbox_id, read).await?;
    Ok((StatusCode::CREATED, axum::Json(stored)))
}

/// The raw message, passed on as it is read (from a bucket, piece by piece).
fn raw_response(raw: messages::RawBody) -> Response {
    let mut res = (StatusCode::OK, axum::body::Body::from_stream(raw.bytes)).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("message/rfc822"));
    res.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(raw.len));
    res
}

async fn attachment_in(
    state: &AppState,
    p: &Principal,
    mailbox_id: Option<&str>,
    id: &str,
    index: &str,
) -> ApiResult<Response> {
    let found = messages::attachment(state, p, mailbox_id, id, index).await?;
    let mut res = (StatusCode::OK, found.bytes).into_response();
    let ct = HeaderValue::from_str(&found.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    res.headers_mut().insert(header::CONTENT_TYPE, ct);
    if let Some(name) = found.filename {
        let safe: String = name.chars().filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\').collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(res)
}

async fn get_in(state: &AppState, p: &Principal, mailbox_id: Option<&str>, id: &str) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(messages::get(state, p, mailbox_id, id).await?))
}

async fn raw_in(state: &AppState, p: &Principal, mailbox_id: Option<&str>, id: &str) -> ApiResult<Response> {
    Ok(raw_response(messages::raw_stream(state, p, mailbox_id, id).await?))
}

/// Messages of a mailbox key's mailbox, newest first; `q` searches them.
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
