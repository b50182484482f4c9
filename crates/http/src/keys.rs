//! API keys: create (secret shown once), list, read, rotate with a grace period, revoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Need, Query, can, path_id};
use super::pagination::{List, ListParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::perms::{KeyKind, Perm, PermSet};
use sendmux_core::auth::{Principal, parse_permissions};
use sendmux_core::crypto::{random_token, token_hash};
use sendmux_core::ids::{DeliveryGroupId, KeyId, MailboxId};
use sendmux_core::limits::{LimitName, limit_for};
use sendmux_core::store::keys::{self as q, KeyRow};
use sendmux_core::store::{audit, mailboxes, now_ms, providers, rfc3339, rfc3339_opt};
use sendmux_core::validate;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, revoke_key))
        .routes(routes!(rotate_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    pub name: String,
    pub kind: KeyKind,
    /// Defaults: the kind's set without `keys.manage` (infrastructure), `email.send`
    /// (sending), `mailbox.read` (mailbox).
    pub permissions: Option<Vec<String>>,
    /// Required for sending keys.
    pub delivery_group_id: Option<String>,
    /// Required for mailbox keys.
    pub mailbox_id: Option<String>,
    /// RFC 3339; the key stops working then.
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

fn secret_parts(secret: &str) -> (String, String) {
    (secret[..12].to_owned(), secret[secret.len() - 4..].to_owned())
}

/// An infrastructure key may manage sending and mailbox keys, never infrastructure keys.
fn may_touch(p: &Principal, kind: &str) -> ApiResult<()> {
    if p.key_kind().is_some() && kind == KeyKind::Infrastructure.as_str() {
        return Err(ApiError::forbidden("An API key may manage sending and mailbox keys only"));
    }
    Ok(())
}

/// The permissions a caller may put into a key: no more than it holds itself, so a key
/// never lifts its creator above their role. Sending (`email.send`) and reading a
/// mailbox are what keys exist for, so every key manager may grant those.
fn ceiling(p: &Principal) -> PermSet {
    p.perms.with(Perm::EmailSend).with(Perm::MailboxRead)
}

/// Refuses a key holding a permission above the caller's ceiling.
fn within_ceiling(p: &Principal, perms: PermSet, what: &str) -> ApiResult<()> {
    let ceiling = ceiling(p);
    match Perm::KEY_PERMISSIONS.into_iter().find(|perm| perms.has(*perm) && !ceiling.has(*perm)) {
        None => Ok(()),
        Some(perm) => Err(ApiError::forbidden(format!(
            "You cannot {what} a key with `{}`, a permission you do not hold yourself",
            perm.name()
        ))),
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
    may_touch(&p, input.kind.as_str())?;
    let name = validate::name("name", &input.name, 100)?;
    let perms = match &input.permissions {
        // The kind's default set, narrowed to what the caller may grant.
        None => {
            let allowed = ceiling(&p);
            let set = PermSet::of(
                &Perm::KEY_PERMISSIONS
                    .into_iter()
                    .filter(|perm| input.kind.default_permissions().has(*perm) && allowed.has(*perm))
                    .collect::<Vec<_>>(),
            );
            if set == PermSet::empty() {
                return Err(ApiError::forbidden(format!(
                    "You hold none of the permissions a {} key carries",
                    input.kind.as_str()
                )));
            }
            set
        }
        Some(list) => {
            let mut set = PermSet::empty();
            for (i, raw) in list.iter().enumerate() {
                let perm = Perm::parse_key_permission(raw)
                    .filter(|perm| input.kind.allowed().contains(perm))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            format!("permissions[{i}]"),
                            format!(
                                "`{}` is not a permission a {} key may carry",
                                validate::truncate(raw, 40),
                                input.kind.as_str()
                            ),
                        )
                    })?;
                set = set.with(perm);
            }
            if set == PermSet::empty() {
                return Err(ApiError::invalid("permissions", "A key needs at least one permission"));
            }
            set
        }
    };
    within_ceiling(&p, perms, "create")?;
    let now = now_ms();
    let expires_at = match &input.expires_at {
        None => None,
        Some(raw) => {
            let t = validate::timestamp("expires_at", raw)?;
            if t <= now {
                return Err(ApiError::invalid("expires_at", "expires_at must be in the future"));
            }
            Some(t)
        }
    };
    let mut tx = state.store.begin().await?;
    state.store.lock_team(&mut tx, &p.team_id).await?;
    let (delivery_group_id, mailbox_id) = match input.kind {
        KeyKind::Infrastructure => {
            if input.delivery_group_id.is_some() || input.mailbox_id.is_some() {
                let param = if input.delivery_group_id.is_some() { "delivery_group_id" } else { "mailbox_id" };
                return Err(ApiError::invalid(param, "Infrastructure keys are scoped to the team"));
            }
            (None, None)
        }
        KeyKind::Sending => {
            if input.mailbox_id.is_some() {
                return Err(ApiError::invalid("mailbox_id", "Sending keys are scoped to a delivery group"));
            }
            let raw = input
                .delivery_group_id
                .as_deref()
                .ok_or_else(|| ApiError::invalid("delivery_group_id", "Sending keys need a delivery_group_id"))?;
            let id = DeliveryGroupId::parse(raw)
                .ok_or_else(|| ApiError::invalid("delivery_group_id", "No such delivery group"))?;
            providers::get_group(&mut tx, &p.team_id, id.as_str())
                .await?
                .ok_or_else(|| ApiError::invalid("delivery_group_id", "No such delivery group"))?;
            (Some(id.into_string()), None)
        }
        KeyKind::Mailbox => {
            if input.delivery_group_id.is_some() {
                return Err(ApiError::invalid("delivery_group_id", "Mailbox keys are scoped to a mailbox"));
            }
            let raw = input
                .mailbox_id
                .as_deref()
                .ok_or_else(|| ApiError::invalid("mailbox_id", "Mailbox keys need a mailbox_id"))?;
            let id = MailboxId::parse(raw).ok_or_else(|| ApiError::invalid("mailbox_id", "No such mailbox"))?;
            mailboxes::get(&mut tx, &p.team_id, id.as_str())
                .await?
                .ok_or_else(|| ApiError::invalid("mailbox_id", "No such mailbox"))?;
            (None, Some(id.into_string()))
        }
    };
    let limit = limit_for(&mut tx, &state.settings.limits, &p.team_id, LimitName::ActiveKeys).await?;
    if q::count_active(&mut tx, &p.team_id, now).await? >= limit {
        return Err(ApiError::limit_exceeded(format!(
            "This team has {limit} active keys, its limit; revoke one or request an increase"
        )));
    }
    let secret = random_token(input.kind.token_prefix());
    let (prefix, last4) = secret_parts(&secret);
    let row = KeyRow {
        id: KeyId::new().into_string(),
        team_id: p.team_id.clone(),
        name,
        kind: input.kind.as_str().to_owned(),
        permissions: perms.key_permission_names().join(","),
        delivery_group_id,
        mailbox_id,
        prefix,
        last4,
        created_by: p.actor().id,
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    q::insert(&mut tx, &row, &token_hash(&secret)).await?;
    audit::record(
        &mut tx,
        &p.team_id,
        &p.actor(),
        "key.created",
        ("key", &row.id),
        serde_json::json!({"kind": row.kind, "permissions": row.permissions}),
    )
    .await?;
    state.commit(tx, &p.team_id).await?;
    Ok((StatusCode::CREATED, axum::Json(KeyOut::from_row(row, Some(secret)))))
}

/// The team's keys, without secrets.
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", params(ListParams), responses((status = 200, body = List<KeyOut>)))]
async fn list_keys(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::response::Response> {
    p.require(Perm::KeysRead)?;
    let page = q.page(|c| KeyId::parse(c).is_some())?;
    let cache_key = format!("keys?{}&{}", page.limit, page.before().unwrap_or(""));
    super::cached_json(&state, &p.team_id, cache_key, || async {
        let mut conn = state.store.pool().acquire().await?;
        let rows = q::list(&mut conn, &p.team_id, page.before(), page.fetch()).await?;
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
    p.require(Perm::KeysRead)?;
    let id = path_id(&id, KeyId::parse, "key")?;
    let mut conn = state.store.pool().acquire().await?;
    let row = q::get(&mut conn, &p.team_id, id.as_str()).await?.ok_or_else(|| ApiError::not_found("key"))?;
    Ok(axum::Json(KeyOut::from_row(row, None)))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    /// How long the old secret keeps working, 0..86400 seconds (default 0).
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
    let grace = input.grace_seconds.unwrap_or(0);
    if !(0..=86_400).contains(&grace) {
        return Err(ApiError::invalid("grace_seconds", "grace_seconds must be from 0 to 86400"));
    }
    let now = now_ms();
    let mut tx = state.store.begin().await?;
    let row = q::get(&mut tx, &p.team_id, id.as_str()).await?.ok_or_else(|| ApiError::not_found("key"))?;
    may_touch(&p, &row.kind)?;
    // A new secret hands over the key's powers: only to someone who could have made it.
    within_ceiling(&p, parse_permissions(&row.permissions), "rotate")?;
    if !row.is_active(now) {
        return Err(ApiError::conflict("Only an active key can be rotated"));
    }
    let kind = KeyKind::parse(&row.kind).ok_or_else(|| ApiError::internal("stored key of unknown kind"))?;
    let secret = random_token(kind.token_prefix());
    let (prefix, last4) = secret_parts(&secret);
    q::rotate(&mut tx, &p.team_id, id.as_str(), &token_hash(&secret), &prefix, &last4, now + grace * 1000).await?;
    audit::record(
        &mut tx,
        &p.team_id,
        &p.actor(),
        "key.rotated",
        ("key", id.as_str()),
        serde_json::json!({"grace_seconds": grace}),
    )
    .await?;
    let row = q::get(&mut tx, &p.team_id, id.as_str()).await?.ok_or_else(|| ApiError::not_found("key"))?;
    state.commit(tx, &p.team_id).await?;
    state.auth.invalidate();
    Ok(axum::Json(KeyOut::from_row(row, Some(secret))))
}

/// Revoke a key at once.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = String, Path)), responses((status = 200, body = KeyOut)))]
async fn revoke_key(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<KeyOut>> {
    p.require(Perm::KeysManage)?;
    let id = path_id(&id, KeyId::parse, "key")?;
    let now = now_ms();
    let mut tx = state.store.begin().await?;
    let row = q::get(&mut tx, &p.team_id, id.as_str()).await?.ok_or_else(|| ApiError::not_found("key"))?;
    may_touch(&p, &row.kind)?;
    if row.revoked_at.is_none() {
        q::revoke(&mut tx, &p.team_id, id.as_str(), now).await?;
        audit::record(&mut tx, &p.team_id, &p.actor(), "key.revoked", ("key", id.as_str()), serde_json::json!({}))
            .await?;
    }
    let row = q::get(&mut tx, &p.team_id, id.as_str()).await?.ok_or_else(|| ApiError::not_found("key"))?;
    state.commit(tx, &p.team_id).await?;
    state.auth.invalidate();
    Ok(axum::Json(KeyOut::from_row(row, None)))
}
