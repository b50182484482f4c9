//! The team's suppression list (`GET/DELETE /suppressions`) and the endpoint SES posts
//! bounce, complaint and delivery notifications to (through SNS over HTTPS): parse, call
//! `sendmux_core::outbound::{suppressions, notifications}`, render.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
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
use sendmux_core::outbound::notifications::{self, Received};
use sendmux_core::outbound::suppressions;
use sendmux_core::store::outbound::SuppressionRow;
use sendmux_core::store::rfc3339;

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
    // Before the page is read: a caller who may not read gets 403 whatever it sent.
    p.require(Perm::ProvidersRead)?;
    let limit =
        match q.limit.as_deref() {
            None => 20,
            Some(l) => l.parse::<i64>().ok().filter(|l| (1..=100).contains(l)).ok_or_else(|| {
                ApiError::bad_request("limit must be a whole number from 1 to 100").with_param("limit")
            })?,
        };
    let rows = suppressions::list(&state, &p, q.cursor.as_deref(), limit + 1).await?;
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
    suppressions::delete(&state, &p, &address).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The path SES (through an SNS HTTPS subscription) posts a provider's notifications to.
/// The token is derived from the instance key, so only its holders can make one.
pub fn notification_path(state: &AppState, provider_id: &str) -> String {
    notifications::path(state, provider_id)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationParams {
    pub token: Option<String>,
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
    let token = params.token.unwrap_or_default();
    Ok(axum::Json(match notifications::receive(&state, &id, &token, &body).await? {
        Received::Subscription => json!({"ok": true}),
        Received::Ses { matched } => json!({"ok": true, "matched": matched}),
    }))
}
