//! Webhook endpoints (SPEC §8): CRUD with filters, the secret shown once, rotation with a
//! grace period, a test event, the deliveries list with every attempt, and replay.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use sendmux_core::ids::TeamId;
use sendmux_core::store::TeamScope;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Need, Query, can, path_id};
use super::pagination::{List, ListParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::Principal;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::{DeliveryId, EventId, MailboxId, WebhookId};
use sendmux_core::limits::{LimitName, limit_for};
use sendmux_core::store::webhooks::{self as q, DeliveryRow, WebhookRow};
use sendmux_core::store::{audit, mailboxes, now_ms, rfc3339, rfc3339_opt};
use sendmux_core::validate;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(rotate_secret))
        .routes(routes!(send_test))
        .routes(routes!(list_deliveries))
        .routes(routes!(replay_delivery))
        .routes(routes!(replay_range))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookIn {
    /// Where deliveries are POSTed (http or https).
    pub url: String,
    /// Event types to deliver (SPEC §7), at least one.
    pub event_types: Vec<String>,
    /// Only events of these mailboxes (default: all).
    pub mailbox_ids: Option<Vec<String>>,
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// An empty list or null: all mailboxes.
    pub mailbox_ids: Option<Vec<String>>,
    pub description: Option<String>,
    /// Re-enabling clears the reason it was disabled.
    pub enabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookOut {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub mailbox_ids: Option<Vec<String>>,
    pub enabled: bool,
    /// Why Sendmux disabled the endpoint (410 Gone, or failing for 5 days).
    pub disabled_reason: Option<String>,
    /// Since when deliveries have been failing without a success.
    pub failing_since: Option<String>,
    pub last_success_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The signing secret (`whsec_…`), only in the answer that creates or rotates it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn split(list: &str) -> Vec<String> {
    list.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl WebhookOut {
    fn from_row(w: WebhookRow, secret: Option<String>) -> Self {
        Self {
            id: w.id,
            url: w.url,
            description: w.description,
            event_types: split(&w.event_types),
            mailbox_ids: w.mailbox_ids.as_deref().map(split),
            enabled: w.enabled != 0,
            disabled_reason: w.disabled_reason,
            failing_since: rfc3339_opt(w.failing_since),
            last_success_at: rfc3339_opt(w.last_success_at),
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
            secret,
        }
    }
}

fn check_url(raw: &str) -> ApiResult<String> {
    let url =
        url::Url::parse(raw.trim()).map_err(|_| ApiError::invalid("url", "url must be an absolute http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ApiError::invalid("url", "url must be an absolute http(s) URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::invalid("url", "url must not carry credentials; verify the signature instead"));
    }
    if raw.len() > 2048 {
        return Err(ApiError::invalid("url", "url must be at most 2048 characters"));
    }
    Ok(url.to_string())
}

fn check_types(types: &[String]) -> ApiResult<String> {
    if types.is_empty() {
        return Err(ApiError::invalid("event_types", "Name at least one event type"));
    }
    let mut out: Vec<&str> = Vec::new();
    for (i, t) in types.iter().enumerate() {
        if !sendmux_core::events::is_event_type(t) {
            return Err(ApiError::invalid(
                format!("event_types[{i}]"),
                format!("`{}` is not an event type", validate::truncate(t, 40)),
            ));
        }
        if !out.contains(&t.as_str()) {
            out.push(t);
        }
    }
    Ok(out.join(","))
}

async fn check_mailboxes(
    conn: &mut sendmux_core::store::Conn,
    team: &TeamId,
    ids: Option<&[String]>,
) -> ApiResult<Option<String>> {
    let Some(ids) = ids.filter(|ids| !ids.is_empty()) else { return Ok(None) };
    if ids.len() > 100 {
        return Err(ApiError::invalid("mailbox_ids", "At most 100 mailboxes"));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, raw) in ids.iter().enumerate() {
        let missing = || ApiError::invalid(format!("mailbox_ids[{i}]"), "No such mailbox");
        let id = MailboxId::parse(raw).ok_or_else(missing)?;
        mailboxes::get(&mut conn.team(team), id.as_str()).await?.ok_or_else(missing)?;
        if !out.contains(&id.as_str().to_owned()) {
            out.push(id.into_string());
        }
    }
    Ok(Some(out.join(",")))
}

fn description(raw: Option<&str>) -> ApiResult<Option<String>> {
    Ok(raw.map(|d| validate::name("description", d, 500)).transpose()?)
}

/// Add an endpoint; its signing secret is in `secret`, shown this once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = WebhookIn,
    responses((status = 201, body = WebhookOut), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_webhook(
    State(state): State<AppState>,
    Need(p, _): Need<can::WebhooksManage>,
    Json(input): Json<WebhookIn>,
) -> ApiResult<(StatusCode, axum::Json<WebhookOut>)> {
    let url = check_url(&input.url)?;
    let event_types = check_types(&input.event_types)?;
    let description = description(input.description.as_deref())?;
    let secret = sendmux_core::webhooks::new_secret();
    let now = now_ms();
    let mut tx = state.store.begin().await?;
    state.store.lock_team(&mut tx, p.team_id.as_str()).await?;
    let mailbox_ids = check_mailboxes(&mut tx, &p.team_id, input.mailbox_ids.as_deref()).await?;
    let limit = limit_for(&mut tx, &state.settings.limits, &p.team_id, LimitName::Webhooks).await?;
    if q::count(&mut tx.team(&p.team_id)).await? >= limit {
        return Err(ApiError::limit_exceeded(format!(
            "This team has {limit} webhooks, its limit; delete one or request an increase"
        )));
    }
    let row = WebhookRow {
        id: WebhookId::new().into_string(),
        team_id: p.team_id.clone().into_string(),
        url,
        description,
        event_types,
        mailbox_ids,
        enabled: i64::from(input.enabled.unwrap_or(true)),
        disabled_reason: None,
        failing_since: None,
        last_success_at: None,
        created_at: now,
        updated_at: now,
    };
    q::insert(&mut tx, &row, &state.secrets.seal(secret.as_bytes())).await?;
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "webhook.created",
        ("webhook", &row.id),
        json!({"url": row.url}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok((StatusCode::CREATED, axum::Json(WebhookOut::from_row(row, Some(secret)))))
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", params(ListParams), responses((status = 200, body = List<WebhookOut>)))]
async fn list_webhooks(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<WebhookOut>>> {
    p.require(Perm::WebhooksRead)?;
    let page = q.page(|c| WebhookId::parse(c).is_some())?;
    let mut conn = state.store.pool().acquire().await?;
    let rows = q::list(&mut conn.team(&p.team_id), page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), |r| WebhookOut::from_row(r, None))))
}

async fn find(state: &AppState, p: &Principal, id: &str) -> ApiResult<WebhookRow> {
    let id = path_id(id, WebhookId::parse, "webhook")?;
    let mut conn = state.store.pool().acquire().await?;
    q::get(&mut conn.team(&p.team_id), id.as_str()).await?.ok_or_else(|| ApiError::not_found("webhook"))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)), responses((status = 200, body = WebhookOut)))]
async fn get_webhook(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<WebhookOut>> {
    p.require(Perm::WebhooksRead)?;
    Ok(axum::Json(WebhookOut::from_row(find(&state, &p, &id).await?, None)))
}

/// Change an endpoint; `enabled: true` re-enables one Sendmux disabled.
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)), request_body = WebhookPatch, responses((status = 200, body = WebhookOut)))]
async fn update_webhook(
    State(state): State<AppState>,
    Need(p, _): Need<can::WebhooksManage>,
    Path(id): Path<String>,
    Json(input): Json<WebhookPatch>,
) -> ApiResult<axum::Json<WebhookOut>> {
    let id = path_id(&id, WebhookId::parse, "webhook")?;
    let mut tx = state.store.begin().await?;
    let mut row = q::get(&mut tx.team(&p.team_id), id.as_str()).await?.ok_or_else(|| ApiError::not_found("webhook"))?;
    if let Some(url) = &input.url {
        row.url = check_url(url)?;
    }
    if let Some(types) = &input.event_types {
        row.event_types = check_types(types)?;
    }
    if input.mailbox_ids.is_some() {
        row.mailbox_ids = check_mailboxes(&mut tx, &p.team_id, input.mailbox_ids.as_deref()).await?;
    }
    if input.description.is_some() {
        row.description = description(input.description.as_deref())?;
    }
    if let Some(enabled) = input.enabled {
        if enabled && row.enabled == 0 {
            row.disabled_reason = None;
            row.failing_since = None;
        }
        row.enabled = i64::from(enabled);
    }
    row.updated_at = now_ms();
    q::update(&mut tx, &row).await?;
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "webhook.updated",
        ("webhook", &row.id),
        json!({"url": row.url, "enabled": row.enabled != 0}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok(axum::Json(WebhookOut::from_row(row, None)))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)), responses((status = 204)))]
async fn delete_webhook(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Perm::WebhooksManage)?;
    let id = path_id(&id, WebhookId::parse, "webhook")?;
    let mut tx = state.store.begin().await?;
    if !q::delete(&mut tx.team(&p.team_id), id.as_str()).await? {
        return Err(ApiError::not_found("webhook"));
    }
    audit::record(&mut tx.team(&p.team_id), &p.actor(), "webhook.deleted", ("webhook", id.as_str()), json!({})).await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookRotateIn)]
pub struct RotateIn {
    /// How long the old secret keeps signing too, 0..86400 seconds (default 86400).
    #[schema(minimum = 0, maximum = 86400)]
    pub grace_seconds: Option<i64>,
}

/// A new signing secret; during the grace `webhook-signature` carries both.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = String, Path)), request_body = RotateIn, responses((status = 200, body = WebhookOut)))]
async fn rotate_secret(
    State(state): State<AppState>,
    Need(p, _): Need<can::WebhooksManage>,
    Path(id): Path<String>,
    Json(input): Json<RotateIn>,
) -> ApiResult<axum::Json<WebhookOut>> {
    let id = path_id(&id, WebhookId::parse, "webhook")?;
    let grace = input.grace_seconds.unwrap_or(86_400);
    if !(0..=86_400).contains(&grace) {
        return Err(ApiError::invalid("grace_seconds", "grace_seconds must be from 0 to 86400"));
    }
    let secret = sendmux_core::webhooks::new_secret();
    let mut tx = state.store.begin().await?;
    let row = q::get(&mut tx.team(&p.team_id), id.as_str()).await?.ok_or_else(|| ApiError::not_found("webhook"))?;
    q::expire_secrets(&mut tx, &row.id, now_ms() + grace * 1000).await?;
    q::add_secret(&mut tx, &row.id, &state.secrets.seal(secret.as_bytes())).await?;
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "webhook.secret_rotated",
        ("webhook", &row.id),
        json!({"grace_seconds": grace}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok(axum::Json(WebhookOut::from_row(row, Some(secret))))
}

#[derive(Serialize, ToSchema)]
#[schema(as = WebhookAttemptOut)]
pub struct AttemptOut {
    pub attempted_at: String,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The first 4 KB of the endpoint's answer.
    pub response: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryOut {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// pending, succeeded or failed.
    pub status: String,
    pub attempts: Vec<AttemptOut>,
    pub next_attempt_at: Option<String>,
    /// False once the payload has been purged (after 7 days); the record stays.
    pub payload_available: bool,
    pub created_at: String,
}

async fn delivery_out(conn: &mut sendmux_core::store::Conn, d: DeliveryRow) -> ApiResult<DeliveryOut> {
    let attempts = q::attempts_of(conn, &d.id)
        .await?
        .into_iter()
        .map(|a| AttemptOut {
            attempted_at: rfc3339(a.attempted_at),
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            error: a.error,
            response: a.response,
        })
        .collect();
    Ok(DeliveryOut {
        id: d.id,
        webhook_id: d.webhook_id,
        event_id: d.event_id,
        event_type: d.event_type,
        status: d.status,
        attempts,
        next_attempt_at: if d.next_attempt_at.is_some() && d.payload.is_some() {
            rfc3339_opt(d.next_attempt_at)
        } else {
            None
        },
        payload_available: d.payload.is_some(),
        created_at: rfc3339(d.created_at),
    })
}

/// Send a `webhook.test` event to the endpoint now.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "webhooks", params(("id" = String, Path)), responses((status = 202, body = DeliveryOut)))]
async fn send_test(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<DeliveryOut>)> {
    p.require(Perm::WebhooksManage)?;
    let webhook = find(&state, &p, &id).await?;
    let event_id = EventId::new().into_string();
    let payload = json!({
        "id": event_id,
        "type": "webhook.test",
        "created_at": rfc3339(now_ms()),
        "data": {"webhook_id": webhook.id, "message": "A test delivery from Sendmux"},
    })
    .to_string();
    let mut tx = state.store.begin().await?;
    let d = q::enqueue(&mut tx.team(&p.team_id), &webhook.id, &event_id, "webhook.test", &payload).await?;
    state.commit(tx, p.team_id.as_str()).await?;
    let mut conn = state.store.pool().acquire().await?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery_out(&mut conn, d).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// pending, succeeded or failed.
    #[param(pattern = "^(pending|succeeded|failed)$")]
    pub status: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Deliveries to the endpoint, newest first, each with every attempt.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path), DeliveryParams), responses((status = 200, body = List<DeliveryOut>)))]
async fn list_deliveries(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Query(f): Query<DeliveryParams>,
) -> ApiResult<axum::Json<List<DeliveryOut>>> {
    p.require(Perm::WebhooksRead)?;
    if let Some(s) = f.status.as_deref()
        && !matches!(s, "pending" | "succeeded" | "failed")
    {
        return Err(ApiError::bad_request("status must be pending, succeeded or failed").with_param("status"));
    }
    let webhook = find(&state, &p, &id).await?;
    let page = ListParams { limit: f.limit, cursor: f.cursor }.page(|c| DeliveryId::parse(c).is_some())?;
    let mut conn = state.store.pool().acquire().await?;
    let rows =
        q::list_deliveries(&mut conn.team(&p.team_id), &webhook.id, f.status.as_deref(), page.before(), page.fetch())
            .await?;
    let (rows, next) = sendmux_core::store::page(rows, page.limit as usize, |r| r.id.clone());
    let mut data = Vec::with_capacity(rows.len());
    for r in rows {
        data.push(delivery_out(&mut conn, r).await?);
    }
    Ok(axum::Json(List { data, next_cursor: next }))
}

async fn requeue(state: &AppState, p: &Principal, d: &DeliveryRow) -> ApiResult<Option<DeliveryRow>> {
    let Some(payload) = d.payload.as_deref() else { return Ok(None) };
    let mut tx = state.store.begin().await?;
    let again = q::enqueue(&mut tx.team(&p.team_id), &d.webhook_id, &d.event_id, &d.event_type, payload).await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok(Some(again))
}

/// Send a delivery's event again (same event id, same bytes) as a new delivery.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay", tag = "webhooks",
    params(("id" = String, Path), ("delivery_id" = String, Path)), responses((status = 202, body = DeliveryOut), (status = 409, body = crate::error::ErrorBody)))]
async fn replay_delivery(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, axum::Json<DeliveryOut>)> {
    p.require(Perm::WebhooksManage)?;
    let webhook = find(&state, &p, &id).await?;
    let delivery_id = path_id(&delivery_id, DeliveryId::parse, "delivery")?;
    let mut conn = state.store.pool().acquire().await?;
    let d = q::get_delivery(&mut conn.team(&p.team_id), &webhook.id, delivery_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    drop(conn);
    let again = requeue(&state, &p, &d)
        .await?
        .ok_or_else(|| ApiError::conflict("The payload of this delivery has expired (kept 7 days)"))?;
    let mut conn = state.store.pool().acquire().await?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery_out(&mut conn, again).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// RFC 3339; deliveries created at or after this.
    pub since: String,
    /// RFC 3339, exclusive (default: now).
    pub until: Option<String>,
    /// Only deliveries that failed.
    pub only_failed: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayOut {
    /// Events queued again, one new delivery each.
    pub replayed: usize,
    /// Deliveries in the range whose payload had expired.
    pub expired: usize,
}

/// Send again every event delivered to the endpoint in a time range.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/replay", tag = "webhooks", params(("id" = String, Path)), request_body = ReplayIn, responses((status = 202, body = ReplayOut)))]
async fn replay_range(
    State(state): State<AppState>,
    Need(p, _): Need<can::WebhooksManage>,
    Path(id): Path<String>,
    Json(input): Json<ReplayIn>,
) -> ApiResult<(StatusCode, axum::Json<ReplayOut>)> {
    let webhook = find(&state, &p, &id).await?;
    let since = validate::timestamp("since", &input.since)?;
    let until = input.until.as_deref().map(|u| validate::timestamp("until", u)).transpose()?.unwrap_or_else(now_ms);
    if until <= since {
        return Err(ApiError::invalid("until", "until must be after since"));
    }
    // Read and de-duplicate (one new delivery per event) before the write transaction,
    // which then only inserts: up to 10,000 rows must not hold every writer up.
    let rows = {
        let mut conn = state.store.pool().acquire().await?;
        q::deliveries_between(&mut conn.team(&p.team_id), &webhook.id, since, until, input.only_failed.unwrap_or(false))
            .await?
    };
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let mut again = Vec::new();
    let mut expired = 0;
    for d in rows.iter().filter(|d| seen.insert(d.event_id.as_str())) {
        match d.payload.as_deref() {
            Some(payload) => {
                again.push(q::new_delivery(p.team_id.as_str(), &webhook.id, &d.event_id, &d.event_type, payload))
            }
            None => expired += 1,
        }
    }
    let replayed = again.len();
    let mut tx = state.store.begin().await?;
    q::enqueue_many(&mut tx, &again).await?;
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "webhook.replayed",
        ("webhook", &webhook.id),
        json!({"replayed": replayed, "since": input.since}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(ReplayOut { replayed, expired })))
}
