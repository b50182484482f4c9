//! Threads over HTTP (API.md §16): a mailbox key under `/mailbox/threads`, people and
//! infrastructure keys under `/mailboxes/{id}/threads`. Parse, call
//! `sendmux_core::threads`, render.

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Query;
use super::pagination::{List, ListParams};
use crate::error::ApiResult;
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::Principal;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::MessageId;
use sendmux_core::threads;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(own_thread_list))
        .routes(routes!(own_thread_get))
        .routes(routes!(thread_list))
        .routes(routes!(thread_get))
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct ThreadListParams {
    /// Page size, 1..100 (default 20).
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Threads with a message that matches: full-text search over from, to, subject and
    /// text, as on messages (every word must match).
    #[param(max_length = 256)]
    pub q: Option<String>,
}

pub(crate) async fn list_in(
    state: &AppState,
    p: &Principal,
    mailbox_id: Option<&str>,
    params: ThreadListParams,
) -> ApiResult<axum::Json<List<Value>>> {
    p.require(Perm::MailboxRead)?;
    // The cursor is the last message of the last thread shown.
    let page = ListParams { limit: params.limit, cursor: params.cursor }.page(|c| MessageId::parse(c).is_some())?;
    let (mailbox, rows) = threads::list(state, p, mailbox_id, params.q.as_deref(), page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |t| t.last_message_id.clone(), |t| threads::summary(&mailbox, &t))))
}

/// Threads of a mailbox key's mailbox, the most recently active first.
#[utoipa::path(get, path = "/api/v1/mailbox/threads", tag = "mailbox", params(ThreadListParams), responses((status = 200, body = Object)))]
async fn own_thread_list(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(params): Query<ThreadListParams>,
) -> ApiResult<axum::Json<List<Value>>> {
    list_in(&state, &p, None, params).await
}

/// One thread with its messages, oldest first (each with `extracted_text`).
#[utoipa::path(get, path = "/api/v1/mailbox/threads/{id}", tag = "mailbox", params(("id" = String, Path)), responses((status = 200, body = Object)))]
async fn own_thread_get(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(threads::get(&state, &p, None, &id).await?))
}

/// Threads of a mailbox of the team, the most recently active first.
#[utoipa::path(get, path = "/api/v1/mailboxes/{mailbox_id}/threads", tag = "mailboxes", params(("mailbox_id" = String, Path), ThreadListParams), responses((status = 200, body = Object)))]
async fn thread_list(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(mailbox_id): Path<String>,
    Query(params): Query<ThreadListParams>,
) -> ApiResult<axum::Json<List<Value>>> {
    list_in(&state, &p, Some(&mailbox_id), params).await
}

/// One thread of a mailbox of the team, oldest message first.
#[utoipa::path(get, path = "/api/v1/mailboxes/{mailbox_id}/threads/{id}", tag = "mailboxes", params(("mailbox_id" = String, Path), ("id" = String, Path)), responses((status = 200, body = Object)))]
async fn thread_get(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((mailbox_id, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(threads::get(&state, &p, Some(&mailbox_id), &id).await?))
}
