//! Mailboxes over HTTP: CRUD for people and infrastructure keys under `/mailboxes`, and
//! the one mailbox of a mailbox key under `/mailbox`. Parse, call
//! `sendmux_core::mailboxes`, render.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Need, Query, can, path_id};
use super::pagination::{List, ListParams};
use crate::error::ApiResult;
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::Principal;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::MailboxId;
use sendmux_core::mailboxes::{self, MailboxChange, NewMailbox, SendPolicy, SettingsChange};
use sendmux_core::store::mailboxes::MailboxRow;
use sendmux_core::store::rfc3339;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_mailbox, list_mailboxes))
        .routes(routes!(get_mailbox, update_mailbox, delete_mailbox))
        .routes(routes!(update_mailbox_settings))
        .routes(routes!(own_mailbox))
        .routes(routes!(update_own_settings))
}

pub use sendmux_core::mailboxes::{DEFAULT_RETENTION_DAYS, DEFAULT_SPAM_THRESHOLD};

#[derive(Deserialize, Serialize, ToSchema, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct MailboxSettings {
    /// Messages scoring at or above this are spam (0..100, default 5).
    #[schema(minimum = 0, maximum = 100)]
    pub spam_threshold: Option<f64>,
    /// Messages older than this many days are deleted (1..3650, default 30).
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(default, deserialize_with = "crate::schema::integer::optional")]
    pub retention_days: Option<i64>,
    /// When false, spam is refused at the end of SMTP DATA instead of stored (default true).
    pub accept_spam: Option<bool>,
    /// The delivery group mail sent from the mailbox goes through (`null` clears it).
    /// Not settable with a mailbox key.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable, pattern = "^dgr_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")]
    pub send_delivery_group_id: Option<Option<String>>,
    /// What an agent may send from the mailbox. Not settable with a mailbox key.
    pub send_policy: Option<SendPolicyIn>,
}

/// A field that may be `null` (clear) or absent (keep).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Bounds on mail sent from the mailbox (SPEC §16); each send beyond them is 403.
#[derive(Deserialize, Serialize, ToSchema, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct SendPolicyIn {
    /// Only to addresses that have written to the mailbox (default false).
    #[serde(default)]
    pub reply_only: bool,
    /// Only to these domains (empty: any), at most 100.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub allowed_domains: Vec<String>,
    /// At most this many messages a rolling 24 hours, 1..1000000 (none: no limit).
    #[schema(minimum = 1, maximum = 1000000)]
    #[serde(default, deserialize_with = "crate::schema::integer::optional")]
    pub daily_limit: Option<i64>,
}

impl From<MailboxSettings> for SettingsChange {
    fn from(s: MailboxSettings) -> Self {
        Self {
            spam_threshold: s.spam_threshold,
            retention_days: s.retention_days,
            accept_spam: s.accept_spam,
            send_delivery_group_id: s.send_delivery_group_id,
            send_policy: s.send_policy.map(|p| SendPolicy {
                reply_only: p.reply_only,
                allowed_domains: p.allowed_domains,
                daily_limit: p.daily_limit,
            }),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailboxIn {
    /// In one of the instance's inbound domains.
    #[schema(value_type = crate::schema::Email)]
    pub address: String,
    #[schema(value_type = Option<crate::schema::Name>)]
    pub name: Option<String>,
    pub settings: Option<MailboxSettings>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailboxPatch {
    #[schema(value_type = Option<crate::schema::Name>)]
    pub name: Option<String>,
    pub settings: Option<MailboxSettings>,
}

#[derive(Serialize, ToSchema)]
pub struct SettingsOut {
    pub spam_threshold: f64,
    pub retention_days: i64,
    pub accept_spam: bool,
    pub send_delivery_group_id: Option<String>,
    pub send_policy: SendPolicyIn,
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
        let policy = SendPolicy::of(&m);
        Self {
            id: m.id,
            address: m.address,
            name: m.name,
            settings: SettingsOut {
                spam_threshold: m.spam_threshold,
                retention_days: m.retention_days,
                accept_spam: m.accept_spam != 0,
                send_policy: SendPolicyIn {
                    reply_only: policy.reply_only,
                    allowed_domains: policy.allowed_domains,
                    daily_limit: policy.daily_limit,
                },
                send_delivery_group_id: m.send_delivery_group_id,
            },
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

/// Create a mailbox at an address in one of the instance's inbound domains.
#[utoipa::path(post, path = "/api/v1/mailboxes", tag = "mailboxes", request_body = MailboxIn, responses((status = 201, body = MailboxOut), (status = 409, body = crate::error::ErrorBody)))]
async fn create_mailbox(
    State(state): State<AppState>,
    Need(p, _): Need<can::MailboxesManage>,
    Json(input): Json<MailboxIn>,
) -> ApiResult<(StatusCode, axum::Json<MailboxOut>)> {
    let new = NewMailbox {
        address: input.address,
        name: input.name,
        settings: input.settings.map(Into::into).unwrap_or_default(),
    };
    Ok((StatusCode::CREATED, axum::Json(mailboxes::create(&state, &p, new).await?.into())))
}

#[utoipa::path(get, path = "/api/v1/mailboxes", tag = "mailboxes", params(ListParams), responses((status = 200, body = List<MailboxOut>)))]
async fn list_mailboxes(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<MailboxOut>>> {
    Ok(axum::Json(list_page(&state, &p, q).await?))
}

/// A page of the team's mailboxes (also MCP's `list_mailboxes`).
pub(crate) async fn list_page(state: &AppState, p: &Principal, q: ListParams) -> ApiResult<List<MailboxOut>> {
    // Before the page is read: a caller who may not read gets 403 whatever it sent.
    p.require(Perm::MailboxesRead)?;
    let page = q.page(|c| MailboxId::parse(c).is_some())?;
    let rows = mailboxes::list(state, p, page.before(), page.fetch()).await?;
    Ok(page.finish(rows, |r| r.id.clone(), MailboxOut::from))
}

fn mailbox_id(raw: &str) -> ApiResult<MailboxId> {
    path_id(raw, MailboxId::parse, "mailbox")
}

#[utoipa::path(get, path = "/api/v1/mailboxes/{id}", tag = "mailboxes", params(("id" = String, Path)), responses((status = 200, body = MailboxOut)))]
async fn get_mailbox(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<MailboxOut>> {
    let id = mailbox_id(&id)?;
    Ok(axum::Json(mailboxes::get(&state, &p, &id).await?.into()))
}

#[utoipa::path(patch, path = "/api/v1/mailboxes/{id}", tag = "mailboxes", params(("id" = String, Path)), request_body = MailboxPatch, responses((status = 200, body = MailboxOut)))]
async fn update_mailbox(
    State(state): State<AppState>,
    Need(p, _): Need<can::MailboxesManage>,
    Path(id): Path<String>,
    Json(input): Json<MailboxPatch>,
) -> ApiResult<axum::Json<MailboxOut>> {
    let id = mailbox_id(&id)?;
    let change = MailboxChange { name: input.name, settings: input.settings.map(Into::into) };
    Ok(axum::Json(mailboxes::update(&state, &p, &id, change).await?.into()))
}

/// Change a mailbox's settings (people and infrastructure keys).
#[utoipa::path(patch, path = "/api/v1/mailboxes/{id}/settings", tag = "mailboxes", params(("id" = String, Path)), request_body = MailboxSettings, responses((status = 200, body = MailboxOut)))]
async fn update_mailbox_settings(
    State(state): State<AppState>,
    Need(p, _): Need<can::MailboxesManage>,
    Path(id): Path<String>,
    Json(input): Json<MailboxSettings>,
) -> ApiResult<axum::Json<MailboxOut>> {
    let id = mailbox_id(&id)?;
    Ok(axum::Json(mailboxes::update_settings(&state, &p, &id, input.into()).await?.into()))
}

/// Delete a mailbox no active mailbox key is scoped to.
#[utoipa::path(delete, path = "/api/v1/mailboxes/{id}", tag = "mailboxes", params(("id" = String, Path)), responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
async fn delete_mailbox(
    State(state): State<AppState>,
    Need(p, _): Need<can::MailboxesManage>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = mailbox_id(&id)?;
    mailboxes::delete(&state, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The mailbox of a mailbox key.
#[utoipa::path(get, path = "/api/v1/mailbox", tag = "mailbox", responses((status = 200, body = MailboxOut)))]
async fn own_mailbox(State(state): State<AppState>, Caller(p): Caller) -> ApiResult<axum::response::Response> {
    // The cache answers without calling the service: check before it.
    p.require(Perm::MailboxRead)?;
    let id = mailboxes::own_id(&p)?;
    super::cached_json(&state, p.team_id.as_str(), format!("mailbox:{id}"), || async {
        Ok(MailboxOut::from(mailboxes::own(&state, &p).await?))
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
    Ok(axum::Json(mailboxes::update_own_settings(&state, &p, input.into()).await?.into()))
}
