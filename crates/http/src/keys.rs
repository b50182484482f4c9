//! API keys over HTTP: parse, call `sendmux_core::keys`, render (secret shown once).

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
use sendmux_core::auth::parse_permissions;
use sendmux_core::auth::perms::{KeyKind, Perm};
use sendmux_core::ids::KeyId;
use sendmux_core::keys::{self, NewKey};
use sendmux_core::store::keys::KeyRow;
use sendmux_core::store::{now_ms, rfc3339, rfc3339_opt};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, revoke_key))
        .routes(routes!(rotate_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    #[schema(value_type = crate::schema::Name)]
    pub name: String,
    pub kind: KeyKind,
    /// Defaults: the kind's set without `keys.manage` (infrastructure), `email.send`
    /// (sending), `mailbox.read` (mailbox). At least one, each of the kind's set.
    #[schema(min_items = 1, value_type = Option<Vec<crate::schema::KeyPermission>>)]
    pub permissions: Option<Vec<String>>,
    /// Required for sending keys.
    pub delivery_group_id: Option<String>,
    /// Required for mailbox keys.
    pub mailbox_id: Option<String>,
    /// RFC 3339, in the future; the key stops working then.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyOut {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub permissions: Vec<&'static str>,
    pub delivery_group_id: Option<String>,
    pub mailbox_id: Option<String>,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub last4: String,
    /// active, expired or revoked.
    pub status: &'static str,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    /// The secret, present only in the answer that creates or rotates the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl KeyOut {
    fn from_row(k: KeyRow, secret: Option<String>) -> Self {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if !k.is_active(now_ms()) {
            "expired"
        } else {
            "active"
        };
        Self {
            id: k.id,
            name: k.name,
            kind: k.kind,
            permissions: parse_permissions(&k.permissions).key_permission_names(),
            delivery_group_id: k.delivery_group_id,
            mailbox_id: k.mailbox_id,
            prefix: k.prefix,
            last4: k.last4,
            status,
            created_at: rfc3339(k.created_at),
            expires_at: rfc3339_opt(k.expires_at),
            revoked_at: rfc3339_opt(k.revoked_at),
            last_used_at: rfc3339_opt(k.last_used_at),
            key: secret,
        }
    }
}

/// Create a key; the secret is in `key`, shown this once.
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = KeyIn,
    responses((status = 201, body = KeyOut), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_key(
    State(state): State<AppState>,
    Need(p, _): Need<can::KeysManage>,
    Json(input): Json<KeyIn>,
) -> ApiResult<(StatusCode, axum::Json<KeyOut>)> {
    let new = NewKey {
        name: input.name,
        kind: input.kind,
        permissions: input.permissions,
        delivery_group_id: input.delivery_group_id,
        mailbox_id: input.mailbox_id,
        expires_at: input.expires_at,
    };
    let created = keys::create(&state, &p, new).await?;
    Ok((StatusCode::CREATED, axum::Json(KeyOut::from_row(created.key, Some(created.secret)))))
}

/// The team's keys, without secrets.
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", params(ListParams), responses((status = 200, body = List<KeyOut>)))]
async fn list_keys(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::response::Response> {
    // The cache answers without calling the service: check before it.
    p.require(Perm::KeysRead)?;
    let page = q.page(|c| KeyId::parse(c).is_some())?;
    let cache_key = format!("keys?{}&{}", page.limit, page.before().unwrap_or(""));
    super::cached_json(&state, p.team_id.as_str(), cache_key, || async {
        let rows = keys::list(&state, &p, page.before(), page.fetch()).await?;
        Ok(page.finish(rows, |r| r.id.clone(), |r| KeyOut::from_row(r, None)))
    })
    .await
}

/// One key, without its secret.
#[utoipa::path(get, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = String, Path)), responses((status = 200, body = KeyOut), (status = 404, body = crate::error::ErrorBody)))]
async fn get_key(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<KeyOut>> {
    let id = path_id(&id, KeyId::parse, "key")?;
    Ok(axum::Json(KeyOut::from_row(keys::get(&state, &p, &id).await?, None)))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyRotateIn)]
pub struct RotateIn {
    /// How long the old secret keeps working, 0..86400 seconds (default 0).
    #[schema(minimum = 0, maximum = 86400)]
    #[serde(default, deserialize_with = "crate::schema::integer::optional")]
    pub grace_seconds: Option<i64>,
}

/// Issue a new secret; the old one works until the grace period ends.
#[utoipa::path(post, path = "/api/v1/keys/{id}/rotate", tag = "keys", params(("id" = String, Path)), request_body = RotateIn, responses((status = 200, body = KeyOut)))]
async fn rotate_key(
    State(state): State<AppState>,
    Need(p, _): Need<can::KeysManage>,
    Path(id): Path<String>,
    Json(input): Json<RotateIn>,
) -> ApiResult<axum::Json<KeyOut>> {
    let id = path_id(&id, KeyId::parse, "key")?;
    let rotated = keys::rotate(&state, &p, &id, input.grace_seconds.unwrap_or(0)).await?;
    Ok(axum::Json(KeyOut::from_row(rotated.key, Some(rotated.secret))))
}

/// Revoke a key at once.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = String, Path)), responses((status = 200, body = KeyOut)))]
async fn revoke_key(
    State(state): State<AppState>,
    Need(p, _): Need<can::KeysManage>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<KeyOut>> {
    let id = path_id(&id, KeyId::parse, "key")?;
    Ok(axum::Json(KeyOut::from_row(keys::revoke(&state, &p, &id).await?, None)))
}
