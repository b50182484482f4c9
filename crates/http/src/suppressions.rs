//! The team's suppression list (`GET/DELETE /suppressions`) and the endpoint SES posts
//! bounce, complaint and delivery notifications to (through SNS over HTTPS).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sendmux_core::ids::TeamId;
use sendmux_core::store::TeamScope;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Need, Query, can};
use super::pagination::List;
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::ProviderId;
use sendmux_core::outbound::providers::MANAGED;
use sendmux_core::outbound::worker::event_data;
use sendmux_core::store::events::{self, Subject};
use sendmux_core::store::outbound::{self as q, SuppressionRow};
use sendmux_core::store::{now_ms, providers, rfc3339};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_suppressions)).routes(routes!(delete_suppression))
}

/// Routes that authenticate by their own token (SES/SNS cannot send a bearer token).
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ses_notification))
}

#[derive(Serialize, ToSchema)]
pub struct SuppressionOut {
    pub address: String,
    /// hard_bounce | complaint
    pub reason: String,
    /// The message whose bounce or complaint put the address here.
    pub message_id: Option<String>,
    /// The provider's words.
    pub detail: Option<String>,
    pub created_at: String,
}

impl From<SuppressionRow> for SuppressionOut {
    fn from(r: SuppressionRow) -> Self {
        Self {
            address: r.address,
            reason: r.reason,
            message_id: r.message_id,
            detail: r.detail,
            created_at: rfc3339(r.created_at),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuppressionParams {
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 320)]
    pub cursor: Option<String>,
}

/// The team's suppressed addresses, in address order.
#[utoipa::path(get, path = "/api/v1/suppressions", tag = "emails", params(SuppressionParams),
    responses((status = 200, body = List<SuppressionOut>)))]
async fn list_suppressions(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<SuppressionParams>,
) -> ApiResult<axum::Json<List<SuppressionOut>>> {
    p.require(Perm::ProvidersRead)?;
    let limit =
        match q.limit.as_deref() {
            None => 20,
            Some(l) => l.parse::<i64>().ok().filter(|l| (1..=100).contains(l)).ok_or_else(|| {
                ApiError::bad_request("limit must be a whole number from 1 to 100").with_param("limit")
            })?,
        };
    if q.cursor.as_ref().is_some_and(|c| c.chars().count() > 320) {
        return Err(ApiError::bad_request("cursor is not one this API gave out").with_param("cursor"));
    }
    let mut conn = state.store.pool().acquire().await?;
    let rows = q::list_suppressions(&mut conn.team(&p.team_id), q.cursor.as_deref(), limit + 1).await?;
    let (rows, next) = sendmux_core::store::page(rows, limit as usize, |r| r.address.clone());
    Ok(axum::Json(List { data: rows.into_iter().map(Into::into).collect(), next_cursor: next }))
}

/// Remove an address from the list: mail to it is sent again.
#[utoipa::path(delete, path = "/api/v1/suppressions/{address}", tag = "emails", params(("address" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
async fn delete_suppression(
    State(state): State<AppState>,
    Need(p, _): Need<can::ProvidersManage>,
    Path(address): Path<String>,
) -> ApiResult<StatusCode> {
    let mut tx = state.store.begin().await?;
    if !q::delete_suppression(&mut tx.team(&p.team_id), address.trim()).await? {
        return Err(ApiError::not_found("suppressed address"));
    }
    sendmux_core::store::audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "suppression.deleted",
        ("suppression", &address.to_ascii_lowercase()),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The path SES (through an SNS HTTPS subscription) posts a provider's notifications to.
/// The token is derived from the instance key, so only its holders can make one.
pub fn notification_path(state: &AppState, provider_id: &str) -> String {
    let token = state.secrets.derive_token(&format!("ses-notifications:{provider_id}"));
    format!("/api/v1/providers/{provider_id}/notifications?token={token}")
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationParams {
    pub token: Option<String>,
}

fn addresses(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get(field).and_then(Value::as_str).or_else(|| r.as_str()))
                .map(|s| s.trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

/// SES bounce, complaint and delivery notifications, as an SNS envelope or bare. A
/// permanent bounce or a complaint suppresses the address; a delivery marks the message
/// `delivered`. SNS subscription confirmations are logged for the operator to confirm.
#[utoipa::path(post, path = "/api/v1/providers/{id}/notifications", tag = "providers", security(),
    params(("id" = String, Path, description = "An SES provider id, or `managed`"), NotificationParams),
    request_body(content = String, description = "An SNS message (or a bare SES notification) as JSON", content_type = "application/json"),
    responses((status = 200), (status = 404, body = crate::error::ErrorBody)))]
async fn ses_notification(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<NotificationParams>,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let expected = state.secrets.derive_token(&format!("ses-notifications:{id}"));
    let given = params.token.unwrap_or_default();
    if !sendmux_core::crypto::secure_eq(expected.as_bytes(), given.as_bytes()) {
        return Err(ApiError::not_found("provider"));
    }
    // The team whose list a notification changes: the provider's, or (managed route)
    // the team of the message it names.
    let provider_team = if id == MANAGED {
        None
    } else {
        let pid = ProviderId::parse(&id).ok_or_else(|| ApiError::not_found("provider"))?;
        let mut conn = state.store.pool().acquire().await?;
        let team: Option<String> = providers::team_of(&mut conn, pid.as_str()).await?;
        Some(team.ok_or_else(|| ApiError::not_found("provider"))?)
    };
    let envelope: Value =
        serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("The notification is not JSON"))?;
    if envelope["Type"] == "SubscriptionConfirmation" {
        tracing::warn!(provider = %id, subscribe_url = %envelope["SubscribeURL"].as_str().unwrap_or(""),
            "SNS subscription confirmation received; open the SubscribeURL to confirm it");
        return Ok(axum::Json(json!({"ok": true})));
    }
    let note: Value = match envelope.get("Message").and_then(Value::as_str) {
        Some(m) => serde_json::from_str(m).map_err(|_| ApiError::bad_request("Message is not JSON"))?,
        None => envelope,
    };
    let kind = note["notificationType"].as_str().or_else(|| note["eventType"].as_str()).unwrap_or("");
    let ses_id = note["mail"]["messageId"].as_str().unwrap_or("");
    let now = now_ms();
    let mut tx = state.store.begin().await?;
    let message = match &provider_team {
        Some(team) if !ses_id.is_empty() => {
            q::by_provider_message_id(&mut tx.team(&TeamId::stored(team.to_string())), ses_id).await?
        }
        None if !ses_id.is_empty() => q::managed_by_provider_message_id(&mut tx, ses_id).await?,
        _ => None,
    };
    let Some(team) = provider_team.or_else(|| message.as_ref().map(|m| m.team_id.clone())) else {
        return Ok(axum::Json(json!({"ok": true, "matched": false})));
    };
    let mid = message.as_ref().map(|m| m.id.clone());
    match kind {
        "Bounce" if note["bounce"]["bounceType"] == "Permanent" => {
            let addrs = addresses(&note["bounce"]["bouncedRecipients"], "emailAddress");
            for a in &addrs {
                q::suppress(
                    &mut tx.team(&TeamId::stored(team.clone())),
                    a,
                    "hard_bounce",
                    mid.as_deref(),
                    "SES permanent bounce",
                    now,
                )
                .await?;
            }
            if let Some(m) = &message {
                q::set_status(&mut tx.team(&TeamId::stored(team.clone())), &m.id, "bounced", now).await?;
                let subject = Subject {
                    delivery_group_id: Some(&m.delivery_group_id),
                    message_id: Some(&m.id),
                    ..Default::default()
                };
                let bounced: Vec<Value> =
                    addrs.iter().map(|a| json!({"address": a, "response": "SES permanent bounce"})).collect();
                events::append(
                    &mut tx,
                    &team,
                    "message.bounced",
                    subject,
                    event_data(m, json!({"bounced": bounced, "provider_id": m.provider_id})),
                )
                .await?;
            }
        }
        "Complaint" => {
            for a in addresses(&note["complaint"]["complainedRecipients"], "emailAddress") {
                q::suppress(
                    &mut tx.team(&TeamId::stored(team.clone())),
                    &a,
                    "complaint",
                    mid.as_deref(),
                    "SES complaint",
                    now,
                )
                .await?;
            }
        }
        "Delivery" => {
            if let Some(m) = &message
                && m.status == "sent"
            {
                q::set_status(&mut tx.team(&TeamId::stored(team.clone())), &m.id, "delivered", now).await?;
                let subject = Subject {
                    delivery_group_id: Some(&m.delivery_group_id),
                    message_id: Some(&m.id),
                    ..Default::default()
                };
                let recipients = addresses(&note["delivery"]["recipients"], "emailAddress");
                events::append(
                    &mut tx,
                    &team,
                    "message.delivered",
                    subject,
                    event_data(m, json!({"provider_id": m.provider_id, "recipients": recipients})),
                )
                .await?;
            }
        }
        _ => {}
    }
    tx.commit().await?;
    Ok(axum::Json(json!({"ok": true, "matched": message.is_some()})))
}
