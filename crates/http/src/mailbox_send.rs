//! Sending from a mailbox over HTTP (API.md §16): a mailbox key with `mailbox.send`
//! replies to, forwards, or writes mail. Parse, call `sendmux_core::mailbox_send`,
//! render `202`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Need, can};
use crate::error::ApiResult;
use crate::state::AppState;
use sendmux_core::mailbox_send::{self, ForwardIn, ReplyIn, SendIn};
use sendmux_core::outbound::validate::AttachmentIn;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(reply)).routes(routes!(forward)).routes(routes!(send))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    pub text: Option<String>,
    pub html: Option<String>,
    /// Also to everyone the message was addressed to (To and Cc) but the mailbox.
    #[serde(default)]
    pub reply_all: bool,
    /// As in `POST /emails`: `{filename, content_type, content (base64)}`.
    #[serde(default)]
    #[schema(value_type = Vec<crate::schema::send::Attachment>)]
    pub attachments: Vec<AttachmentIn>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardBody {
    #[schema(min_items = 1, max_items = 50)]
    pub to: Vec<String>,
    /// Written above the forwarded message.
    pub text: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    #[schema(min_items = 1, max_items = 50)]
    pub to: Vec<String>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// What a send from a mailbox answers.
#[derive(Serialize, ToSchema)]
pub struct MailboxSentOut {
    /// The outbound message (`GET /emails/{id}` with a person or infrastructure key), also
    /// the id of its copy in the mailbox.
    pub id: String,
    pub status: String,
    pub thread_id: String,
    pub message_id_header: String,
}

fn accepted(v: Value) -> (StatusCode, axum::Json<Value>) {
    (StatusCode::ACCEPTED, axum::Json(v))
}

/// Reply to a message of the mailbox from its address (`mailbox.send`), in its thread.
#[utoipa::path(post, path = "/api/v1/mailbox/messages/{id}/reply", tag = "mailbox", params(("id" = String, Path)), request_body = ReplyBody,
    responses((status = 202, body = MailboxSentOut), (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn reply(
    State(state): State<AppState>,
    Need(p, _): Need<can::MailboxSend>,
    Path(id): Path<String>,
    Json(body): Json<ReplyBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let input = ReplyIn { text: body.text, html: body.html, reply_all: body.reply_all, attachments: body.attachments };
    Ok(accepted(mailbox_send::reply(&state.0.core, &p, None, &id, input).await?))
}

/// Forward a message of the mailbox (`mailbox.send`), in its thread.
#[utoipa::path(post, path = "/api/v1/mailbox/messages/{id}/forward", tag = "mailbox", params(("id" = String, Path)), request_body = ForwardBody,
    responses((status = 202, body = MailboxSentOut), (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn forward(
    State(state): State<AppState>,
    Need(p, _): Need<can::MailboxSend>,
    Path(id): Path<String>,
    Json(body): Json<ForwardBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let input = ForwardIn { to: body.to, text: body.text };
    Ok(accepted(mailbox_send::forward(&state.0.core, &p, None, &id, input).await?))
}

/// New mail from the mailbox's address (`mailbox.send`), in a new thread.
#[utoipa::path(post, path = "/api/v1/mailbox/send", tag = "mailbox", request_body = SendBody,
    responses((status = 202, body = MailboxSentOut), (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn send(
    State(state): State<AppState>,
    Need(p, _): Need<can::MailboxSend>,
    Json(body): Json<SendBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let input = SendIn { to: body.to, subject: body.subject, text: body.text, html: body.html };
    Ok(accepted(mailbox_send::send(&state.0.core, &p, None, input).await?))
}
