//! Providers (SMTP relays, Amazon SES; credentials sealed at rest, never returned) and
//! delivery groups that route over them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use sendmux_core::ids::TeamId;
use sendmux_core::store::TeamScope;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Need, Query, can, path_id};
use super::pagination::{List, ListParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::{DeliveryGroupId, ProviderId};
use sendmux_core::limits::{LimitName, limit_for};
use sendmux_core::outbound::providers::Security;
use sendmux_core::store::providers::{self as q, GroupRow, MemberRow, ProviderRow};
use sendmux_core::store::{audit, keys, now_ms, rfc3339};
use sendmux_core::validate;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_provider, list_providers))
        .routes(routes!(get_provider, update_provider, delete_provider))
        .routes(routes!(test_provider))
        .routes(routes!(create_group, list_groups))
        .routes(routes!(get_group, update_group, delete_group))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderType {
    Smtp,
    Ses,
}

/// `config` of an SMTP provider.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// A host name or IP address that is not in the operator's network.
    #[schema(pattern = r"^[A-Za-z0-9.:\[\]-]{1,253}$")]
    pub host: String,
    #[schema(minimum = 1, maximum = 65535)]
    #[serde(deserialize_with = "crate::schema::integer::required")]
    pub port: u16,
    #[serde(default)]
    pub security: Security,
    /// 1 to 512 bytes.
    #[schema(min_length = 1, max_length = 512)]
    pub username: Option<String>,
    /// 1 to 512 bytes; needs a username.
    #[schema(min_length = 1, max_length = 512)]
    pub password: Option<String>,
}

/// `config` of an Amazon SES provider.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SesConfig {
    #[schema(pattern = "^[a-z0-9-]{1,32}$", example = "us-east-1")]
    pub region: String,
    /// 1 to 256 bytes.
    #[schema(min_length = 1, max_length = 256)]
    pub access_key_id: String,
    /// 1 to 256 bytes.
    #[schema(min_length = 1, max_length = 256)]
    pub secret_access_key: String,
    /// Another SESv2 endpoint (an SES-compatible service or a test double).
    pub endpoint: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderIn {
    #[schema(value_type = crate::schema::Name)]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ProviderType,
    /// SmtpConfig or SesConfig, by `type`.
    #[schema(schema_with = crate::schema::provider_config)]
    pub config: Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderPatch {
    #[schema(value_type = Option<crate::schema::Name>)]
    pub name: Option<String>,
    /// Fields to change; secrets left out keep their stored value.
    #[schema(schema_with = crate::schema::provider_config_patch)]
    pub config: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderOut {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The settings without secrets; `*_set` flags say which secrets are stored.
    #[schema(value_type = Object)]
    pub config: Value,
    pub created_at: String,
    pub updated_at: String,
}

fn from_value_at<T: DeserializeOwned>(prefix: &str, value: Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        let param = match super::extract::field_param(&path, &msg) {
            p if p == "." => prefix.to_owned(),
            p => format!("{prefix}.{p}"),
        };
        ApiError::invalid(param, msg)
    })
}

fn hostname(param: &str, host: &str) -> ApiResult<()> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok { Ok(()) } else { Err(ApiError::invalid(param, "host must be a host name or IP address")) }
}

/// Splits a full config into what may be shown and what must be sealed.
fn split_config(kind: ProviderType, config: Value) -> ApiResult<(Value, Value)> {
    match kind {
        ProviderType::Smtp => {
            let c: SmtpConfig = from_value_at("config", config)?;
            hostname("config.host", &c.host)?;
            if c.port == 0 {
                return Err(ApiError::invalid("config.port", "port must be 1 to 65535"));
            }
            if c.password.is_some() && c.username.is_none() {
                return Err(ApiError::invalid("config.username", "A password needs a username"));
            }
            for (field, v) in [("username", &c.username), ("password", &c.password)] {
                if v.as_ref().is_some_and(|v| v.is_empty() || v.len() > 512) {
                    return Err(ApiError::invalid(
                        format!("config.{field}"),
                        format!("{field} must be 1 to 512 characters"),
                    ));
                }
            }
            Ok((
                json!({"host": c.host, "port": c.port, "security": c.security, "username": c.username}),
                json!({"password": c.password}),
            ))
        }
        ProviderType::Ses => {
            let c: SesConfig = from_value_at("config", config)?;
            let region_ok = !c.region.is_empty()
                && c.region.len() <= 32
                && c.region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !region_ok {
                return Err(ApiError::invalid("config.region", "region must look like us-east-1"));
            }
            for (field, v) in [("access_key_id", &c.access_key_id), ("secret_access_key", &c.secret_access_key)] {
                if v.is_empty() || v.len() > 256 {
                    return Err(ApiError::invalid(
                        format!("config.{field}"),
                        format!("{field} must be 1 to 256 characters"),
                    ));
                }
            }
            if let Some(e) = &c.endpoint {
                sendmux_core::outbound::ses::endpoint_url(e)
                    .map_err(|why| ApiError::invalid("config.endpoint", why))?;
            }
            Ok((
                json!({"region": c.region, "endpoint": c.endpoint}),
                json!({"access_key_id": c.access_key_id, "secret_access_key": c.secret_access_key}),
            ))
        }
    }
}

/// API.md §5: a provider may not point at the operator's network. The host (or the
/// endpoint's) is refused when it is, or resolves to, an address the provider guard
/// refuses; connections check again on the address they use.
async fn check_destination(state: &AppState, kind: ProviderType, public: &Value) -> ApiResult<()> {
    let guard = &state.outbound.guard;
    match kind {
        ProviderType::Smtp => {
            let host = public["host"].as_str().unwrap_or_default();
            let port = public["port"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(25);
            guard.check_host(host, port).await.map_err(|r| ApiError::invalid("config.host", format!("host {r}")))
        }
        ProviderType::Ses => {
            let Some(endpoint) = public["endpoint"].as_str() else { return Ok(()) };
            let url = sendmux_core::outbound::ses::endpoint_url(endpoint)
                .map_err(|why| ApiError::invalid("config.endpoint", why))?;
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                return Err(ApiError::invalid("config.endpoint", "endpoint must be an http(s) URL"));
            };
            guard
                .check_host(host, port)
                .await
                .map_err(|r| ApiError::invalid("config.endpoint", format!("endpoint {r}")))
        }
    }
}

fn parse_kind(s: &str) -> ApiResult<ProviderType> {
    match s {
        "smtp" => Ok(ProviderType::Smtp),
        "ses" => Ok(ProviderType::Ses),
        _ => Err(ApiError::internal("stored provider of unknown type")),
    }
}

fn provider_out(state: &AppState, row: ProviderRow) -> ApiResult<ProviderOut> {
    let mut config: Map<String, Value> = serde_json::from_str(&row.config).map_err(ApiError::internal)?;
    let secrets = open_secrets(state, &row)?;
    for (name, value) in secrets {
        match (name.as_str(), value) {
            ("access_key_id", Value::String(id)) => {
                let tail: String = id.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
                config.insert("access_key_id".into(), Value::String(format!("…{tail}")));
            }
            (_, v) => {
                config.insert(format!("{name}_set"), Value::Bool(!v.is_null()));
            }
        }
    }
    Ok(ProviderOut {
        id: row.id,
        name: row.name,
        kind: row.kind,
        config: Value::Object(config),
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    })
}

/// The sealed credentials of a provider, opened with the instance key.
pub fn open_secrets(state: &AppState, row: &ProviderRow) -> ApiResult<Map<String, Value>> {
    let plain = state.secrets.open(&row.sealed_secrets).ok_or_else(|| {
        ApiError::internal(format_args!("provider {} credentials do not open with SENDMUX_SECRET_KEY", row.id))
    })?;
    serde_json::from_slice(&plain).map_err(ApiError::internal)
}

/// Add an SMTP or SES provider.
#[utoipa::path(post, path = "/api/v1/providers", tag = "providers", request_body = ProviderIn, responses((status = 201, body = ProviderOut), (status = 422, body = crate::error::ErrorBody)))]
async fn create_provider(
    State(state): State<AppState>,
    Need(p, _): Need<can::ProvidersManage>,
    Json(input): Json<ProviderIn>,
) -> ApiResult<(StatusCode, axum::Json<ProviderOut>)> {
    let name = validate::name("name", &input.name, 100)?;
    let (public, secret) = split_config(input.kind, input.config)?;
    check_destination(&state, input.kind, &public).await?;
    let now = now_ms();
    let row = ProviderRow {
        id: ProviderId::new().into_string(),
        team_id: p.team_id.clone().into_string(),
        name,
        kind: serde_json::to_value(input.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        config: public.to_string(),
        sealed_secrets: state.secrets.seal(secret.to_string().as_bytes()),
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.store.begin().await?;
    state.store.lock_team(&mut tx, p.team_id.as_str()).await?;
    let limit = limit_for(&mut tx, &state.settings.limits, &p.team_id, LimitName::Providers).await?;
    if q::count(&mut tx.team(&p.team_id)).await? >= limit {
        return Err(ApiError::limit_exceeded(format!("This team has {limit} providers, its limit")));
    }
    q::insert(&mut tx, &row).await?;
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "provider.created",
        ("provider", &row.id),
        json!({"type": row.kind, "name": row.name}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok((StatusCode::CREATED, axum::Json(provider_out(&state, row)?)))
}

/// The team's providers (credentials are never returned).
#[utoipa::path(get, path = "/api/v1/providers", tag = "providers", params(ListParams), responses((status = 200, body = List<ProviderOut>)))]
async fn list_providers(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<ProviderOut>>> {
    p.require(Perm::ProvidersRead)?;
    let page = q.page(|c| ProviderId::parse(c).is_some())?;
    let mut conn = state.store.pool().acquire().await?;
    let rows = q::list(&mut conn.team(&p.team_id), page.before(), page.fetch()).await?;
    let (rows, next) = sendmux_core::store::page(rows, page.limit as usize, |r| r.id.clone());
    let data = rows.into_iter().map(|r| provider_out(&state, r)).collect::<ApiResult<Vec<_>>>()?;
    Ok(axum::Json(List { data, next_cursor: next }))
}

#[utoipa::path(get, path = "/api/v1/providers/{id}", tag = "providers", params(("id" = String, Path)), responses((status = 200, body = ProviderOut)))]
async fn get_provider(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ProviderOut>> {
    p.require(Perm::ProvidersRead)?;
    let id = path_id(&id, ProviderId::parse, "provider")?;
    let mut conn = state.store.pool().acquire().await?;
    let row = q::get(&mut conn.team(&p.team_id), id.as_str()).await?.ok_or_else(|| ApiError::not_found("provider"))?;
    Ok(axum::Json(provider_out(&state, row)?))
}

/// Change a provider; `config` fields given replace the stored ones.
#[utoipa::path(patch, path = "/api/v1/providers/{id}", tag = "providers", params(("id" = String, Path)), request_body = ProviderPatch, responses((status = 200, body = ProviderOut)))]
async fn update_provider(
    State(state): State<AppState>,
    Need(p, _): Need<can::ProvidersManage>,
    Path(id): Path<String>,
    Json(input): Json<ProviderPatch>,
) -> ApiResult<axum::Json<ProviderOut>> {
    let id = path_id(&id, ProviderId::parse, "provider")?;
    // A new destination is checked before the transaction: resolving a name takes time
    // no write should wait for.
    if let Some(patch) = &input.config {
        if patch["host"].is_string() {
            check_destination(&state, ProviderType::Smtp, patch).await?;
        }
        if patch["endpoint"].as_str().is_some_and(|e| sendmux_core::outbound::ses::endpoint_url(e).is_ok()) {
            check_destination(&state, ProviderType::Ses, patch).await?;
        }
    }
    let mut tx = state.store.begin().await?;
    let mut row =
        q::get(&mut tx.team(&p.team_id), id.as_str()).await?.ok_or_else(|| ApiError::not_found("provider"))?;
    if let Some(name) = &input.name {
        row.name = validate::name("name", name, 100)?;
    }
    if let Some(patch) = input.config {
        let Value::Object(patch) = patch else {
            return Err(ApiError::invalid("config", "config must be an object"));
        };
        let mut merged: Map<String, Value> = serde_json::from_str(&row.config).map_err(ApiError::internal)?;
        // Stored credentials follow the provider only while it points where it did:
        // a new destination must be given its credentials again, so nobody can
        // redirect a stored password to a host of their choosing.
        // API.md §5: host, port, security, endpoint or region.
        let destination = ["host", "port", "security", "endpoint", "region"];
        let moved = destination.iter().any(|k| patch.get(*k).is_some_and(|v| merged.get(*k) != Some(v)));
        if !moved {
            merged.extend(open_secrets(&state, &row)?);
        }
        merged.extend(patch);
        merged.retain(|_, v| !v.is_null());
        let (public, secret) = split_config(parse_kind(&row.kind)?, Value::Object(merged))?;
        row.config = public.to_string();
        row.sealed_secrets = state.secrets.seal(secret.to_string().as_bytes());
    }
    row.updated_at = now_ms();
    q::update(&mut tx, &row).await?;
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "provider.updated",
        ("provider", &row.id),
        json!({"name": row.name}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok(axum::Json(provider_out(&state, row)?))
}

/// Delete a provider no delivery group routes through.
#[utoipa::path(delete, path = "/api/v1/providers/{id}", tag = "providers", params(("id" = String, Path)), responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
async fn delete_provider(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Perm::ProvidersManage)?;
    let id = path_id(&id, ProviderId::parse, "provider")?;
    let mut tx = state.store.begin().await?;
    q::get(&mut tx.team(&p.team_id), id.as_str()).await?.ok_or_else(|| ApiError::not_found("provider"))?;
    let groups = q::groups_using(&mut tx.team(&p.team_id), id.as_str()).await?;
    if !groups.is_empty() {
        return Err(ApiError::conflict(format!(
            "Delivery groups still route through this provider: {}",
            groups.join(", ")
        )));
    }
    q::delete(&mut tx.team(&p.team_id), id.as_str()).await?;
    audit::record(&mut tx.team(&p.team_id), &p.actor(), "provider.deleted", ("provider", id.as_str()), json!({}))
        .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Failover,
    Weighted,
}

#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct GroupMember {
    /// A provider id of the team, or `managed` for the operator's managed SES.
    pub provider_id: String,
    /// Lower goes first with `failover`, 0..1000 (default: the member's position).
    #[schema(minimum = 0, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::schema::integer::optional")]
    pub priority: Option<i64>,
    /// Share of traffic with `weighted`, 1..1000 (default 1).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::schema::integer::optional")]
    pub weight: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupIn {
    #[schema(value_type = crate::schema::Name)]
    pub name: String,
    pub strategy: Strategy,
    /// 1 to 10 members, each a provider of the team.
    #[schema(min_items = 1, max_items = 10)]
    pub members: Vec<GroupMember>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    #[schema(value_type = Option<crate::schema::Name>)]
    pub name: Option<String>,
    pub strategy: Option<Strategy>,
    /// 1 to 10 members, each a provider of the team.
    #[schema(min_items = 1, max_items = 10)]
    pub members: Option<Vec<GroupMember>>,
}

#[derive(Serialize, ToSchema)]
pub struct GroupOut {
    pub id: String,
    pub name: String,
    pub strategy: String,
    pub members: Vec<GroupMember>,
    pub created_at: String,
    pub updated_at: String,
}

fn group_out(row: GroupRow, members: &[MemberRow]) -> GroupOut {
    let members = members
        .iter()
        .filter(|m| m.group_id == row.id)
        .map(|m| GroupMember {
            provider_id: m.provider_id.clone().unwrap_or_else(|| "managed".to_owned()),
            priority: Some(m.priority),
            weight: Some(m.weight),
        })
        .collect();
    GroupOut {
        id: row.id,
        name: row.name,
        strategy: row.strategy,
        members,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }
}

async fn check_members(
    state: &AppState,
    tx: &mut sendmux_core::store::Tx,
    team: &TeamId,
    group_id: &str,
    members: &[GroupMember],
) -> ApiResult<Vec<MemberRow>> {
    if members.is_empty() || members.len() > 10 {
        return Err(ApiError::invalid("members", "A delivery group needs 1 to 10 members"));
    }
    let mut out: Vec<MemberRow> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let provider_id = if m.provider_id == "managed" {
            if state.settings.managed_ses.is_none() {
                return Err(ApiError::invalid(
                    format!("members[{i}].provider_id"),
                    "This instance has no managed SES route",
                ));
            }
            None
        } else {
            let id = ProviderId::parse(&m.provider_id)
                .ok_or_else(|| ApiError::invalid(format!("members[{i}].provider_id"), "No such provider"))?;
            q::get(&mut tx.team(team), id.as_str())
                .await?
                .ok_or_else(|| ApiError::invalid(format!("members[{i}].provider_id"), "No such provider"))?;
            Some(id.into_string())
        };
        if out.iter().any(|o| o.provider_id == provider_id) {
            return Err(ApiError::invalid(
                format!("members[{i}].provider_id"),
                "A provider may appear once in a group",
            ));
        }
        let priority = m.priority.unwrap_or(i as i64);
        if !(0..=1000).contains(&priority) {
            return Err(ApiError::invalid(format!("members[{i}].priority"), "priority must be 0 to 1000"));
        }
        let weight = m.weight.unwrap_or(1);
        if !(1..=1000).contains(&weight) {
            return Err(ApiError::invalid(format!("members[{i}].weight"), "weight must be 1 to 1000"));
        }
        out.push(MemberRow { group_id: group_id.to_owned(), position: i as i64, provider_id, priority, weight });
    }
    Ok(out)
}

fn strategy_str(s: Strategy) -> &'static str {
    match s {
        Strategy::Failover => "failover",
        Strategy::Weighted => "weighted",
    }
}

/// Create a delivery group routing over the team's providers.
#[utoipa::path(post, path = "/api/v1/delivery-groups", tag = "providers", request_body = GroupIn, responses((status = 201, body = GroupOut)))]
async fn create_group(
    State(state): State<AppState>,
    Need(p, _): Need<can::ProvidersManage>,
    Json(input): Json<GroupIn>,
) -> ApiResult<(StatusCode, axum::Json<GroupOut>)> {
    let name = validate::name("name", &input.name, 100)?;
    let now = now_ms();
    let row = GroupRow {
        id: DeliveryGroupId::new().into_string(),
        team_id: p.team_id.clone().into_string(),
        name,
        strategy: strategy_str(input.strategy).to_owned(),
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.store.begin().await?;
    let members = check_members(&state, &mut tx, &p.team_id, &row.id, &input.members).await?;
    q::insert_group(&mut tx, &row, &members).await?;
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "delivery_group.created",
        ("delivery_group", &row.id),
        json!({"name": row.name}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok((StatusCode::CREATED, axum::Json(group_out(row, &members))))
}

#[utoipa::path(get, path = "/api/v1/delivery-groups", tag = "providers", params(ListParams), responses((status = 200, body = List<GroupOut>)))]
async fn list_groups(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<GroupOut>>> {
    p.require(Perm::ProvidersRead)?;
    let page = q.page(|c| DeliveryGroupId::parse(c).is_some())?;
    let mut conn = state.store.pool().acquire().await?;
    let rows = q::list_groups(&mut conn.team(&p.team_id), page.before(), page.fetch()).await?;
    let (rows, next) = sendmux_core::store::page(rows, page.limit as usize, |r| r.id.clone());
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let members = q::members_of(&mut conn.team(&p.team_id), &ids).await?;
    Ok(axum::Json(List { data: rows.into_iter().map(|r| group_out(r, &members)).collect(), next_cursor: next }))
}

#[utoipa::path(get, path = "/api/v1/delivery-groups/{id}", tag = "providers", params(("id" = String, Path)), responses((status = 200, body = GroupOut)))]
async fn get_group(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<GroupOut>> {
    p.require(Perm::ProvidersRead)?;
    let id = path_id(&id, DeliveryGroupId::parse, "delivery group")?;
    let mut conn = state.store.pool().acquire().await?;
    let row = q::get_group(&mut conn.team(&p.team_id), id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("delivery group"))?;
    let members = q::members_of(&mut conn.team(&p.team_id), std::slice::from_ref(&row.id)).await?;
    Ok(axum::Json(group_out(row, &members)))
}

#[utoipa::path(patch, path = "/api/v1/delivery-groups/{id}", tag = "providers", params(("id" = String, Path)), request_body = GroupPatch, responses((status = 200, body = GroupOut)))]
async fn update_group(
    State(state): State<AppState>,
    Need(p, _): Need<can::ProvidersManage>,
    Path(id): Path<String>,
    Json(input): Json<GroupPatch>,
) -> ApiResult<axum::Json<GroupOut>> {
    let id = path_id(&id, DeliveryGroupId::parse, "delivery group")?;
    let mut tx = state.store.begin().await?;
    let mut row = q::get_group(&mut tx.team(&p.team_id), id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("delivery group"))?;
    if let Some(name) = &input.name {
        row.name = validate::name("name", name, 100)?;
    }
    if let Some(s) = input.strategy {
        row.strategy = strategy_str(s).to_owned();
    }
    let members = match &input.members {
        Some(m) => Some(check_members(&state, &mut tx, &p.team_id, &row.id, m).await?),
        None => None,
    };
    q::update_group(&mut tx, &row, members.as_deref()).await?;
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "delivery_group.updated",
        ("delivery_group", &row.id),
        json!({"name": row.name}),
    )
    .await?;
    let row = q::get_group(&mut tx.team(&p.team_id), id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("delivery group"))?;
    let members = q::members_of(&mut tx.team(&p.team_id), std::slice::from_ref(&row.id)).await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok(axum::Json(group_out(row, &members)))
}

/// Delete a delivery group no active sending key is scoped to.
#[utoipa::path(delete, path = "/api/v1/delivery-groups/{id}", tag = "providers", params(("id" = String, Path)), responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
async fn delete_group(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Perm::ProvidersManage)?;
    let id = path_id(&id, DeliveryGroupId::parse, "delivery group")?;
    let mut tx = state.store.begin().await?;
    state.store.lock_team(&mut tx, p.team_id.as_str()).await?;
    q::get_group(&mut tx.team(&p.team_id), id.as_str()).await?.ok_or_else(|| ApiError::not_found("delivery group"))?;
    if keys::count_active_scoped_to(&mut tx.team(&p.team_id), id.as_str(), now_ms()).await? > 0 {
        return Err(ApiError::conflict("Active sending keys are scoped to this delivery group; revoke them first"));
    }
    q::delete_group(&mut tx.team(&p.team_id), id.as_str()).await?;
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "delivery_group.deleted",
        ("delivery_group", id.as_str()),
        json!({}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct ProviderTestOut {
    /// True when the connection, TLS and authentication (SMTP) or an authenticated call
    /// (SES) worked.
    pub ok: bool,
    /// What failed, in words a person can act on; null when `ok`.
    pub message: Option<String>,
    /// SES providers: where to point an SNS HTTPS subscription for bounce, complaint and
    /// delivery notifications.
    pub notification_url: Option<String>,
}

/// Check a provider for real: SMTP connects, says EHLO, upgrades to TLS and
/// authenticates as configured; SES makes an authenticated API call.
#[utoipa::path(post, path = "/api/v1/providers/{id}/test", tag = "providers", params(("id" = String, Path)), responses((status = 200, body = ProviderTestOut)))]
async fn test_provider(
    State(state): State<AppState>,
    Need(p, _): Need<can::ProvidersManage>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ProviderTestOut>> {
    let id = path_id(&id, ProviderId::parse, "provider")?;
    let row = {
        let mut conn = state.store.pool().acquire().await?;
        q::get(&mut conn.team(&p.team_id), id.as_str()).await?.ok_or_else(|| ApiError::not_found("provider"))?
    };
    let resolved = sendmux_core::outbound::providers::from_row(&state.secrets, &row).map_err(ApiError::internal)?;
    let (result, notification_url) = match &resolved.target {
        sendmux_core::outbound::providers::Target::Smtp(t) => (state.outbound.smtp.check(t).await, None),
        sendmux_core::outbound::providers::Target::Ses(t) => (
            sendmux_core::outbound::ses::check(&state.outbound.http, t).await,
            Some(super::suppressions::notification_path(&state, &row.id)),
        ),
    };
    Ok(axum::Json(ProviderTestOut { ok: result.is_ok(), message: result.err(), notification_url }))
}
