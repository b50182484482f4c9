//! Webhook endpoints over HTTP (API.md §8): parse, call `sendmux_core::webhooks::manage`,
//! render (the secret shown once).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Need, Query, can, path_id};
use super::pagination::{List, ListParams};
use crate::error::ApiResult;
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::{DeliveryId, WebhookId};
use sendmux_core::store::webhooks::WebhookRow;
use sendmux_core::store::{rfc3339, rfc3339_opt};
use sendmux_core::webhooks::manage::{self, Delivery, NewWebhook, ReplayRange, WebhookChange};

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
    #[schema(value_type = crate::schema::WebhookUrl)]
    pub url: String,
    /// Event types to deliver (API.md §7), at least one.
    #[schema(min_items = 1, value_type = Vec<crate::schema::EventType>)]
    pub event_types: Vec<String>,
    /// Only events of these mailboxes (default: all), at most 100.
    #[schema(max_items = 100)]
    pub mailbox_ids: Option<Vec<String>>,
    #[schema(value_type = Option<crate::schema::Description>)]
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[schema(value_type = Option<crate::schema::WebhookUrl>)]
    pub url: Option<String>,
    #[schema(min_items = 1, value_type = Option<Vec<crate::schema::EventType>>)]
    pub event_types: Option<Vec<String>>,
    /// An empty list or null: all mailboxes; at most 100.
    #[schema(max_items = 100)]
    pub mailbox_ids: Option<Vec<String>>,
    #[schema(value_type = Option<crate::schema::Description>)]
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

/// Add an endpoint; its signing secret is in `secret`, shown this once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = WebhookIn,
    responses((status = 201, body = WebhookOut), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_webhook(
    State(state): State<AppState>,
    Need(p, _): Need<can::WebhooksManage>,
    Json(input): Json<WebhookIn>,
) -> ApiResult<(StatusCode, axum::Json<WebhookOut>)> {
    let new = NewWebhook {
        url: input.url,
        event_types: input.event_types,
        mailbox_ids: input.mailbox_ids,
        description: input.description,
        enabled: input.enabled,
    };
    let created = manage::create(&state, &p, new).await?;
    Ok((StatusCode::CREATED, axum::Json(WebhookOut::from_row(created.webhook, Some(created.secret)))))
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", params(ListParams), responses((status = 200, body = List<WebhookOut>)))]
async fn list_webhooks(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<WebhookOut>>> {
    // Before the page is read: a caller who may not read gets 403 whatever it sent.
    p.require(Perm::WebhooksRead)?;
    let page = q.page(|c| WebhookId::parse(c).is_some())?;
    let rows = manage::list(&state, &p, page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), |r| WebhookOut::from_row(r, None))))
}

fn webhook_id(raw: &str) -> ApiResult<WebhookId> {
    path_id(raw, WebhookId::parse, "webhook")
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)), responses((status = 200, body = WebhookOut)))]
async fn get_webhook(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<WebhookOut>> {
    let id = webhook_id(&id)?;
    Ok(axum::Json(WebhookOut::from_row(manage::get(&state, &p, &id).await?, None)))
}

/// Change an endpoint; `enabled: true` re-enables one Sendmux disabled.
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)), request_body = WebhookPatch, responses((status = 200, body = WebhookOut)))]
async fn update_webhook(
    State(state): State<AppState>,
    Need(p, _): Need<can::WebhooksManage>,
    Path(id): Path<String>,
    Json(input): Json<WebhookPatch>,
) -> ApiResult<axum::Json<WebhookOut>> {
    let id = webhook_id(&id)?;
    let change = WebhookChange {
        url: input.url,
        event_types: input.event_types,
        mailbox_ids: input.mailbox_ids,
        description: input.description,
        enabled: input.enabled,
    };
    Ok(axum::Json(WebhookOut::from_row(manage::update(&state, &p, &id, change).await?, None)))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)), responses((status = 204)))]
async fn delete_webhook(
    State(state): State<AppState>,
    Need(p, _): Need<can::WebhooksManage>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = webhook_id(&id)?;
    manage::delete(&state, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookRotateIn)]
pub struct RotateIn {
    /// How long the old secret keeps signing too, 0..86400 seconds (default 86400).
    #[schema(minimum = 0, maximum = 86400)]
    #[serde(default, deserialize_with = "crate::schema::integer::optional")]
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
    let id = webhook_id(&id)?;
    let rotated = manage::rotate_secret(&state, &p, &id, input.grace_seconds).await?;
    Ok(axum::Json(WebhookOut::from_row(rotated.webhook, Some(rotated.secret))))
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

impl From<Delivery> for DeliveryOut {
    fn from(Delivery { delivery: d, attempts }: Delivery) -> Self {
        let attempts = attempts
            .into_iter()
            .map(|a| AttemptOut {
                attempted_at: rfc3339(a.attempted_at),
                status_code: a.status_code,
                latency_ms: a.latency_ms,
                error: a.error,
                response: a.response,
            })
            .collect();
        DeliveryOut {
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
        }
    }
}

/// Send a `webhook.test` event to the endpoint now.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "webhooks", params(("id" = String, Path)), responses((status = 202, body = DeliveryOut)))]
async fn send_test(
    State(state): State<AppState>,
    Need(p, _): Need<can::WebhooksManage>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<DeliveryOut>)> {
    let id = webhook_id(&id)?;
    Ok((StatusCode::ACCEPTED, axum::Json(manage::send_test(&state, &p, &id).await?.into())))
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
    // Before the page is read: a caller who may not read gets 403 whatever it sent.
    p.require(Perm::WebhooksRead)?;
    let id = webhook_id(&id)?;
    manage::check_delivery_status(f.status.as_deref())?;
    let page = ListParams { limit: f.limit, cursor: f.cursor }.page(|c| DeliveryId::parse(c).is_some())?;
    let rows = manage::deliveries(&state, &p, &id, f.status.as_deref(), page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.delivery.id.clone(), DeliveryOut::from)))
}

/// Send a delivery's event again (same event id, same bytes) as a new delivery.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay", tag = "webhooks",
    params(("id" = String, Path), ("delivery_id" = String, Path)), responses((status = 202, body = DeliveryOut), (status = 409, body = crate::error::ErrorBody)))]
async fn replay_delivery(
    State(state): State<AppState>,
    Need(p, _): Need<can::WebhooksManage>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, axum::Json<DeliveryOut>)> {
    let id = webhook_id(&id)?;
    let delivery_id = path_id(&delivery_id, DeliveryId::parse, "delivery")?;
    Ok((StatusCode::ACCEPTED, axum::Json(manage::replay(&state, &p, &id, &delivery_id).await?.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// RFC 3339; deliveries created at or after this.
    #[schema(format = DateTime)]
    pub since: String,
    /// RFC 3339, exclusive, after `since` (default: now).
    #[schema(format = DateTime)]
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
    let id = webhook_id(&id)?;
    let range = ReplayRange { since: input.since, until: input.until, only_failed: input.only_failed.unwrap_or(false) };
    let done = manage::replay_range(&state, &p, &id, range).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(ReplayOut { replayed: done.replayed, expired: done.expired })))
}
