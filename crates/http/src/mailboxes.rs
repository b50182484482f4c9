//! Mailboxes: CRUD for people and infrastructure keys under `/mailboxes`, and the one
//! mailbox of a mailbox key under `/mailbox`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use sendmux_core::store::TeamScope;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Need, Query, can, path_id};
use super::pagination::{List, ListParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::Principal;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::MailboxId;
use sendmux_core::limits::{LimitName, limit_for};
use sendmux_core::store::mailboxes::{self as q, MailboxRow};
use sendmux_core::store::{audit, keys, now_ms, rfc3339};
use sendmux_core::validate;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_mailbox, list_mailboxes))
        .routes(routes!(get_mailbox, update_mailbox, delete_mailbox))
        .routes(routes!(update_mailbox_settings))
        .routes(routes!(own_mailbox))
        .routes(routes!(update_own_settings))
}

pub const DEFAULT_SPAM_THRESHOLD: f64 = 5.0;
pub const DEFAULT_RETENTION_DAYS: i64 = 30;

#[derive(Deserialize, Serialize, ToSchema, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct MailboxSettings {
    /// Messages scoring at or above this are spam (0..100, default 5).
    pub spam_threshold: Option<f64>,
    /// Messages older than this many days are deleted (1..3650, default 30).
    pub retention_days: Option<i64>,
    /// When false, spam is refused at the end of SMTP DATA instead of stored (default true).
    pub accept_spam: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailboxIn {
    pub address: String,
    pub name: Option<String>,
    pub settings: Option<MailboxSettings>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailboxPatch {
    pub name: Option<String>,
    pub settings: Option<MailboxSettings>,
}

#[derive(Serialize, ToSchema)]
pub struct SettingsOut {
    pub spam_threshold: f64,
    pub retention_days: i64,
    pub accept_spam: bool,
}

#[derive(Serialize, ToSchema)]
pub struct MailboxOut {
    pub id: String,
    pub address: String,
    pub name: Option<String>,
    pub settings: SettingsOut,
    pub created_at: String,
    pub updated_at: String,
}

impl From<MailboxRow> for MailboxOut {
    fn from(m: MailboxRow) -> Self {
        Self {
            id: m.id,
            address: m.address,
            name: m.name,
            settings: SettingsOut {
                spam_threshold: m.spam_threshold,
                retention_days: m.retention_days,
                accept_spam: m.accept_spam != 0,
            },
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

fn apply_settings(row: &mut MailboxRow, s: &MailboxSettings, prefix: &str) -> ApiResult<()> {
    if let Some(t) = s.spam_threshold {
        if !(0.0..=100.0).contains(&t) || !t.is_finite() {
            return Err(ApiError::invalid(format!("{prefix}spam_threshold"), "spam_threshold must be 0 to 100"));
        }
        row.spam_threshold = t;
    }
    if let Some(d) = s.retention_days {
        if !(1..=3650).contains(&d) {
            return Err(ApiError::invalid(format!("{prefix}retention_days"), "retention_days must be 1 to 3650"));
        }
        row.retention_days = d;
    }
    if let Some(a) = s.accept_spam {
        row.accept_spam = i64::from(a);
    }
    Ok(())
}

fn optional_name(raw: Option<&str>) -> ApiResult<Option<String>> {
    Ok(raw.map(|n| validate::name("name", n, 100)).transpose()?)
}

/// Create a mailbox at an address in one of the instance's inbound domains.
#[utoipa::path(post, path = "/api/v1/mailboxes", tag = "mailboxes", request_body = MailboxIn, responses((status = 201, body = MailboxOut), (status = 409, body = crate::error::ErrorBody)))]
async fn create_mailbox(
    State(state): State<AppState>,
    Need(p, _): Need<can::MailboxesManage>,
    Json(input): Json<MailboxIn>,
) -> ApiResult<(StatusCode, axum::Json<MailboxOut>)> {
    let address = validate::email("address", &input.address)?;
    let domain = address.rsplit('@').next().unwrap_or_default();
    if !state.settings.inbound_domains.iter().any(|d| d == domain) {
        return Err(ApiError::invalid(
            "address",
            format!("This instance receives mail for {} only", state.settings.inbound_domains.join(", ")),
        ));
    }
    let now = now_ms();
    let mut row = MailboxRow {
        id: MailboxId::new().into_string(),
        team_id: p.team_id.clone().into_string(),
        address,
        name: optional_name(input.name.as_deref())?,
        spam_threshold: DEFAULT_SPAM_THRESHOLD,
        retention_days: DEFAULT_RETENTION_DAYS,
        accept_spam: 1,
        created_at: now,
        updated_at: now,
    };
    apply_settings(&mut row, &input.settings.unwrap_or_default(), "settings.")?;
    let mut tx = state.store.begin().await?;
    state.store.lock_team(&mut tx, p.team_id.as_str()).await?;
    let limit = limit_for(&mut tx, &state.settings.limits, &p.team_id, LimitName::Mailboxes).await?;
    if q::count(&mut tx.team(&p.team_id)).await? >= limit {
        return Err(ApiError::limit_exceeded(format!("This team has {limit} mailboxes, its limit")));
    }
    q::insert(&mut tx, &row).await.map_err(|e| match ApiError::from(e) {
        e if e.kind == crate::error::ErrorType::Conflict => {
            ApiError::conflict("This address is already a mailbox").with_param("address")
        }
        e => e,
    })?;
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "mailbox.created",
        ("mailbox", &row.id),
        json!({"address": row.address}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok((StatusCode::CREATED, axum::Json(row.into())))
}

#[utoipa::path(get, path = "/api/v1/mailboxes", tag = "mailboxes", params(ListParams), responses((status = 200, body = List<MailboxOut>)))]
async fn list_mailboxes(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<MailboxOut>>> {
    p.require(Perm::MailboxesRead)?;
    let page = q.page(|c| MailboxId::parse(c).is_some())?;
    let mut conn = state.store.pool().acquire().await?;
    let rows = q::list(&mut conn.team(&p.team_id), page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), MailboxOut::from)))
}

#[utoipa::path(get, path = "/api/v1/mailboxes/{id}", tag = "mailboxes", params(("id" = String, Path)), responses((status = 200, body = MailboxOut)))]
async fn get_mailbox(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<MailboxOut>> {
    p.require(Perm::MailboxesRead)?;
    let id = path_id(&id, MailboxId::parse, "mailbox")?;
    let mut conn = state.store.pool().acquire().await?;
    let row = q::get(&mut conn.team(&p.team_id), id.as_str()).await?.ok_or_else(|| ApiError::not_found("mailbox"))?;
    Ok(axum::Json(row.into()))
}

async fn patch(
    state: &AppState,
    p: &Principal,
    id: &str,
    name: Option<Option<String>>,
    settings: Option<&MailboxSettings>,
    prefix: &str,
) -> ApiResult<MailboxRow> {
    let mut tx = state.store.begin().await?;
    let mut row = q::get(&mut tx.team(&p.team_id), id).await?.ok_or_else(|| ApiError::not_found("mailbox"))?;
    if let Some(name) = name {
        row.name = name;
    }
    if let Some(s) = settings {
        apply_settings(&mut row, s, prefix)?;
    }
    row.updated_at = now_ms();
    q::update(&mut tx, &row).await?;
    let details = json!({"spam_threshold": row.spam_threshold, "retention_days": row.retention_days, "accept_spam": row.accept_spam != 0});
    audit::record(&mut tx.team(&p.team_id), &p.actor(), "mailbox.updated", ("mailbox", &row.id), details).await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok(row)
}

#[utoipa::path(patch, path = "/api/v1/mailboxes/{id}", tag = "mailboxes", params(("id" = String, Path)), request_body = MailboxPatch, responses((status = 200, body = MailboxOut)))]
async fn update_mailbox(
    State(state): State<AppState>,
    Need(p, _): Need<can::MailboxesManage>,
    Path(id): Path<String>,
    Json(input): Json<MailboxPatch>,
) -> ApiResult<axum::Json<MailboxOut>> {
    let id = path_id(&id, MailboxId::parse, "mailbox")?;
    let name = input.name.as_deref().map(|n| optional_name(Some(n))).transpose()?;
    Ok(axum::Json(patch(&state, &p, id.as_str(), name, input.settings.as_ref(), "settings.").await?.into()))
}

/// Change a mailbox's settings (people and infrastructure keys).
#[utoipa::path(patch, path = "/api/v1/mailboxes/{id}/settings", tag = "mailboxes", params(("id" = String, Path)), request_body = MailboxSettings, responses((status = 200, body = MailboxOut)))]
async fn update_mailbox_settings(
    State(state): State<AppState>,
    Need(p, _): Need<can::MailboxesManage>,
    Path(id): Path<String>,
    Json(input): Json<MailboxSettings>,
) -> ApiResult<axum::Json<MailboxOut>> {
    let id = path_id(&id, MailboxId::parse, "mailbox")?;
    Ok(axum::Json(patch(&state, &p, id.as_str(), None, Some(&input), "").await?.into()))
}

/// Delete a mailbox no active mailbox key is scoped to.
#[utoipa::path(delete, path = "/api/v1/mailboxes/{id}", tag = "mailboxes", params(("id" = String, Path)), responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
async fn delete_mailbox(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Perm::MailboxesManage)?;
    let id = path_id(&id, MailboxId::parse, "mailbox")?;
    let mut tx = state.store.begin().await?;
    state.store.lock_team(&mut tx, p.team_id.as_str()).await?;
    q::get(&mut tx.team(&p.team_id), id.as_str()).await?.ok_or_else(|| ApiError::not_found("mailbox"))?;
    if keys::count_active_scoped_to(&mut tx.team(&p.team_id), id.as_str(), now_ms()).await? > 0 {
        return Err(ApiError::conflict("Active mailbox keys are scoped to this mailbox; revoke them first"));
    }
    // Its messages go with it (ON DELETE CASCADE); their bytes leave the team's storage.
    let messages = sendmux_core::store::inbound::of_mailbox(&mut tx.team(&p.team_id), id.as_str()).await?;
    let now = now_ms();
    for m in &messages {
        sendmux_core::store::usage::storage_change(
            &mut tx.team(&p.team_id),
            Some(id.as_str()),
            Some(&m.id),
            -m.size_bytes,
            now,
        )
        .await?;
    }
    q::delete(&mut tx.team(&p.team_id), id.as_str()).await?;
    audit::record(&mut tx.team(&p.team_id), &p.actor(), "mailbox.deleted", ("mailbox", id.as_str()), json!({})).await?;
    let bodies: Vec<String> = messages.iter().map(|m| m.blob_key.clone()).collect();
    sendmux_core::store::erasures::queue(&mut tx, &bodies, now).await?;
    state.commit(tx, p.team_id.as_str()).await?;
    sendmux_core::erasure::erase_bodies(&state.storage(), &bodies).await;
    Ok(StatusCode::NO_CONTENT)
}

fn own_scope(p: &Principal) -> ApiResult<&str> {
    p.mailbox_scope().ok_or_else(|| {
        ApiError::forbidden("This route is for mailbox keys; people and infrastructure keys use /api/v1/mailboxes/{id}")
    })
}

/// The mailbox of a mailbox key.
#[utoipa::path(get, path = "/api/v1/mailbox", tag = "mailbox", responses((status = 200, body = MailboxOut)))]
async fn own_mailbox(State(state): State<AppState>, Caller(p): Caller) -> ApiResult<axum::response::Response> {
    p.require(Perm::MailboxRead)?;
    let id = own_scope(&p)?;
    super::cached_json(&state, p.team_id.as_str(), format!("mailbox:{id}"), || async {
        let mut conn = state.store.pool().acquire().await?;
        let row = q::get(&mut conn.team(&p.team_id), id).await?.ok_or_else(|| ApiError::not_found("mailbox"))?;
        Ok(MailboxOut::from(row))
    })
    .await
}

/// Change the settings of a mailbox key's mailbox (`mailbox.settings.update`).
#[utoipa::path(patch, path = "/api/v1/mailbox/settings", tag = "mailbox", request_body = MailboxSettings, responses((status = 200, body = MailboxOut)))]
async fn update_own_settings(
    State(state): State<AppState>,
    Need(p, _): Need<can::MailboxSettingsUpdate>,
    Json(input): Json<MailboxSettings>,
) -> ApiResult<axum::Json<MailboxOut>> {
    let id = own_scope(&p)?.to_owned();
    Ok(axum::Json(patch(&state, &p, &id, None, Some(&input), "").await?.into()))
}
