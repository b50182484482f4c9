//! Providers (SMTP relays, Amazon SES; credentials sealed at rest, never returned) and
//! delivery groups that route over them, over HTTP: parse, call
//! `sendmux_core::outbound::manage`, render.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Need, Query, can, path_id};
use super::pagination::{List, ListParams};
use crate::error::ApiResult;
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::{DeliveryGroupId, ProviderId};
use sendmux_core::outbound::manage::{self, GroupChange, NewGroup, NewProvider, ProviderChange};
use sendmux_core::outbound::providers::Security;
use sendmux_core::store::rfc3339;

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

impl From<ProviderType> for manage::ProviderType {
    fn from(t: ProviderType) -> Self {
        match t {
            ProviderType::Smtp => Self::Smtp,
            ProviderType::Ses => Self::Ses,
        }
    }
}

impl From<manage::Provider> for ProviderOut {
    fn from(p: manage::Provider) -> Self {
        Self {
            id: p.id,
            name: p.name,
            kind: p.kind,
            config: p.config,
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// Add an SMTP or SES provider.
#[utoipa::path(post, path = "/api/v1/providers", tag = "providers", request_body = ProviderIn, responses((status = 201, body = ProviderOut), (status = 422, body = crate::error::ErrorBody)))]
async fn create_provider(
    State(state): State<AppState>,
    Need(p, _): Need<can::ProvidersManage>,
    Json(input): Json<ProviderIn>,
) -> ApiResult<(StatusCode, axum::Json<ProviderOut>)> {
    let new = NewProvider { name: input.name, kind: input.kind.into(), config: input.config };
    Ok((StatusCode::CREATED, axum::Json(manage::create_provider(&state, &p, new).await?.into())))
}

/// The team's providers (credentials are never returned).
#[utoipa::path(get, path = "/api/v1/providers", tag = "providers", params(ListParams), responses((status = 200, body = List<ProviderOut>)))]
async fn list_providers(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<ProviderOut>>> {
    // Before the page is read: a caller who may not read gets 403 whatever it sent.
    p.require(Perm::ProvidersRead)?;
    let page = q.page(|c| ProviderId::parse(c).is_some())?;
    let rows = manage::list_providers(&state, &p, page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), ProviderOut::from)))
}

#[utoipa::path(get, path = "/api/v1/providers/{id}", tag = "providers", params(("id" = String, Path)), responses((status = 200, body = ProviderOut)))]
async fn get_provider(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ProviderOut>> {
    // Before the id is read: a caller who may not read gets 403 whatever it asked for.
    p.require(Perm::ProvidersRead)?;
    let id = path_id(&id, ProviderId::parse, "provider")?;
    Ok(axum::Json(manage::get_provider(&state, &p, &id).await?.into()))
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
    let change = ProviderChange { name: input.name, config: input.config };
    Ok(axum::Json(manage::update_provider(&state, &p, &id, change).await?.into()))
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
    manage::delete_provider(&state, &p, &id).await?;
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

impl From<Strategy> for manage::Strategy {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::Failover => Self::Failover,
            Strategy::Weighted => Self::Weighted,
        }
    }
}

impl From<GroupMember> for manage::GroupMember {
    fn from(m: GroupMember) -> Self {
        Self { provider_id: m.provider_id, priority: m.priority, weight: m.weight }
    }
}

fn members_in(members: Vec<GroupMember>) -> Vec<manage::GroupMember> {
    members.into_iter().map(Into::into).collect()
}

impl From<manage::Group> for GroupOut {
    fn from(g: manage::Group) -> Self {
        let members = g
            .members
            .into_iter()
            .map(|m| GroupMember {
                provider_id: m.provider_id.unwrap_or_else(|| sendmux_core::outbound::providers::MANAGED.to_owned()),
                priority: Some(m.priority),
                weight: Some(m.weight),
            })
            .collect();
        GroupOut {
            id: g.row.id,
            name: g.row.name,
            strategy: g.row.strategy,
            members,
            created_at: rfc3339(g.row.created_at),
            updated_at: rfc3339(g.row.updated_at),
        }
    }
}

/// Create a delivery group routing over the team's providers.
#[utoipa::path(post, path = "/api/v1/delivery-groups", tag = "providers", request_body = GroupIn, responses((status = 201, body = GroupOut)))]
async fn create_group(
    State(state): State<AppState>,
    Need(p, _): Need<can::ProvidersManage>,
    Json(input): Json<GroupIn>,
) -> ApiResult<(StatusCode, axum::Json<GroupOut>)> {
    let new = NewGroup { name: input.name, strategy: input.strategy.into(), members: members_in(input.members) };
    Ok((StatusCode::CREATED, axum::Json(manage::create_group(&state, &p, new).await?.into())))
}

#[utoipa::path(get, path = "/api/v1/delivery-groups", tag = "providers", params(ListParams), responses((status = 200, body = List<GroupOut>)))]
async fn list_groups(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<GroupOut>>> {
    // Before the page is read: a caller who may not read gets 403 whatever it sent.
    p.require(Perm::ProvidersRead)?;
    let page = q.page(|c| DeliveryGroupId::parse(c).is_some())?;
    let groups = manage::list_groups(&state, &p, page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(groups, |g| g.row.id.clone(), GroupOut::from)))
}

#[utoipa::path(get, path = "/api/v1/delivery-groups/{id}", tag = "providers", params(("id" = String, Path)), responses((status = 200, body = GroupOut)))]
async fn get_group(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<GroupOut>> {
    // Before the id is read: a caller who may not read gets 403 whatever it asked for.
    p.require(Perm::ProvidersRead)?;
    let id = path_id(&id, DeliveryGroupId::parse, "delivery group")?;
    Ok(axum::Json(manage::get_group(&state, &p, &id).await?.into()))
}

#[utoipa::path(patch, path = "/api/v1/delivery-groups/{id}", tag = "providers", params(("id" = String, Path)), request_body = GroupPatch, responses((status = 200, body = GroupOut)))]
async fn update_group(
    State(state): State<AppState>,
    Need(p, _): Need<can::ProvidersManage>,
    Path(id): Path<String>,
    Json(input): Json<GroupPatch>,
) -> ApiResult<axum::Json<GroupOut>> {
    let id = path_id(&id, DeliveryGroupId::parse, "delivery group")?;
    let change = GroupChange {
        name: input.name,
        strategy: input.strategy.map(Into::into),
        members: input.members.map(members_in),
    };
    Ok(axum::Json(manage::update_group(&state, &p, &id, change).await?.into()))
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
    manage::delete_group(&state, &p, &id).await?;
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
    let checked = manage::test_provider(&state, &p, &id).await?;
    Ok(axum::Json(ProviderTestOut {
        ok: checked.ok,
        message: checked.message,
        notification_url: checked.notification_url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde's refusal of an unknown field lists every field the struct has.
    fn fields_of<T: serde::de::DeserializeOwned>() -> String {
        match serde_json::from_value::<T>(serde_json::json!({"no_such_field": 1})) {
            Err(e) => e.to_string(),
            Ok(_) => String::from("accepted"),
        }
    }

    #[test]
    fn the_documented_configs_are_the_ones_the_service_reads() {
        // The request types here document `config`; `outbound::manage` reads it.
        assert_eq!(fields_of::<SmtpConfig>(), fields_of::<manage::SmtpConfig>());
        assert_eq!(fields_of::<SesConfig>(), fields_of::<manage::SesConfig>());
        assert!(fields_of::<SmtpConfig>().contains("`password`"), "{}", fields_of::<SmtpConfig>());
    }
}
