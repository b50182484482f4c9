//! Sending over HTTP: `POST /emails` and `/emails/batch` call `sendmux_core::outbound::send`
//! (202 after commit, `Idempotency-Key` optional), `GET /emails/{id}` renders status and attempts.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Need, can, parse_json, path_id};
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::ids::MessageId;
use sendmux_core::outbound::accept::Answer;
use sendmux_core::outbound::send::{self, IdempotencyKey};
use sendmux_core::outbound::validate::EmailIn;
use sendmux_core::store::rfc3339;

pub use sendmux_core::outbound::accept::IDEMPOTENCY_TTL_MS;
pub use sendmux_core::outbound::send::{INLINE_REQUEST_BYTES, MAX_BATCH};

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
#[schema(as = EmailAttemptOut)]
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
    /// The conversation (`thr_…`): the thread of the message named in `In-Reply-To` or
    /// `References`, when the team holds it.
    pub thread_id: Option<String>,
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

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    idempotency_value(v.to_str().ok(), "Idempotency-Key").map(Some)
}

/// An idempotency key as given (header or MCP argument `param`): 1 to 255 printable
/// ASCII characters, blanks around it ignored.
pub(crate) fn idempotency_value(raw: Option<&str>, param: &str) -> ApiResult<String> {
    match raw.map(str::trim).filter(|v| !v.is_empty() && v.len() <= 255) {
        Some(v) if v.bytes().all(|b| (0x21..=0x7e).contains(&b)) => Ok(v.to_owned()),
        _ => Err(ApiError::invalid(param, format!("{param} must be 1 to 255 printable ASCII characters"))),
    }
}

/// Send one email through the sending key's delivery group.
#[utoipa::path(post, path = "/api/v1/emails", tag = "emails", request_body = crate::schema::send::SendRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[ \t]*[!-~]{1,255}[ \t]*$",
        description = "1 to 255 printable ASCII characters; the same key and body within 24 h return the first answer")),
    responses((status = 202, body = QueuedOut), (status = 409, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn send_email(
    State(state): State<AppState>,
    Need(p, _): Need<can::EmailSend>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let input: EmailIn = parse_json(&body)?;
    let idempotency = idempotency_key(&headers)?.map(|key| IdempotencyKey { key, request: &body });
    render(send::send_one(&state.0.core, &p, input, idempotency).await?)
}

/// Send up to 100 emails (a JSON array of `POST /emails` bodies); all or none are queued.
#[utoipa::path(post, path = "/api/v1/emails/batch", tag = "emails", request_body = crate::schema::send::SendBatch,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[ \t]*[!-~]{1,255}[ \t]*$",
        description = "1 to 255 printable ASCII characters; the same key and body within 24 h return the first answer")),
    responses((status = 202, description = "`{\"data\": [{\"id\", \"status\"}]}` in request order"),
        (status = 422, body = crate::error::ErrorBody)))]
async fn send_batch(
    State(state): State<AppState>,
    Need(p, _): Need<can::EmailSend>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let inputs: Vec<EmailIn> = parse_json(&body)?;
    let idempotency = idempotency_key(&headers)?.map(|key| IdempotencyKey { key, request: &body });
    render(send::send_batch(&state.0.core, &p, inputs, idempotency).await?)
}

/// 202 with the answer; a replay answers what the first request got, marked as such.
fn render(answer: Answer) -> ApiResult<Response> {
    match answer {
        Answer::Fresh(answer) => Ok((StatusCode::ACCEPTED, axum::Json(answer)).into_response()),
        Answer::Replayed(status, answer) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
            let mut res = (status, axum::Json(answer)).into_response();
            res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(res)
        }
    }
}

/// Status and attempts of a sent email. A sending key sees its own group's messages.
#[utoipa::path(get, path = "/api/v1/emails/{id}", tag = "emails", params(("id" = String, Path)),
    responses((status = 200, body = EmailOut), (status = 404, body = crate::error::ErrorBody)))]
async fn get_email(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<EmailOut>> {
    let id = path_id(&id, MessageId::parse, "email")?;
    let (row, attempts) = send::get(&state, &p, &id).await?;
    Ok(axum::Json(email_out(row, attempts)))
}

/// The answer of `GET /emails/{id}` (also MCP's `get_email`).
pub(crate) fn email_out(
    row: sendmux_core::store::outbound::MessageRow,
    attempts: Vec<sendmux_core::store::outbound::AttemptRow>,
) -> EmailOut {
    EmailOut {
        id: row.id,
        status: row.status.clone(),
        delivery_group_id: row.delivery_group_id,
        from: row.from_addr,
        to: serde_json::from_str(&row.recipients).unwrap_or_default(),
        subject: row.subject,
        thread_id: row.thread_id,
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
    }
}
