//! Team domains over HTTP (`/api/v1/domains`): add, list, read, delete, verify now,
//! rotate the DKIM key. Parse, call `sendmux_core::domains`, render.

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
use sendmux_core::auth::perms::Perm;
use sendmux_core::config::Settings;
use sendmux_core::domains::{self, NewDomain};
use sendmux_core::ids::DomainId;
use sendmux_core::store::domains::DomainRow;
use sendmux_core::store::{rfc3339, rfc3339_opt};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_domain, list_domains))
        .routes(routes!(get_domain, delete_domain))
        .routes(routes!(verify_domain))
        .routes(routes!(rotate_dkim))
}

/// A DKIM key algorithm a team may ask for.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum DkimAlgorithmIn {
    /// `rsa-sha256` with a 2048-bit key (the default).
    Rsa,
    /// `ed25519-sha256` (RFC 8463).
    Ed25519,
}

impl DkimAlgorithmIn {
    fn name(self) -> &'static str {
        match self {
            DkimAlgorithmIn::Rsa => "rsa",
            DkimAlgorithmIn::Ed25519 => "ed25519",
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainIn {
    /// A domain name, in Unicode or punycode (kept as ASCII): not a public suffix and not
    /// one of the instance's own inbound domains.
    #[schema(value_type = crate::schema::DomainName)]
    pub name: String,
    pub dkim_algorithm: Option<DkimAlgorithmIn>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateDkimIn {
    /// The new key's algorithm; by default the current one's.
    pub dkim_algorithm: Option<DkimAlgorithmIn>,
}

#[derive(Serialize, ToSchema)]
pub struct RecordOut {
    /// ownership | dkim | spf | dmarc | mx
    pub purpose: &'static str,
    /// TXT | MX
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub value: String,
    /// pending | verified | failed
    pub status: String,
    pub checked_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DkimOut {
    /// The selector whose key signs mail now.
    pub selector: String,
    /// rsa-sha256 | ed25519-sha256
    pub algorithm: String,
    /// During a rotation: the new selector, signing once its record is found.
    pub pending_selector: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DomainOut {
    pub id: String,
    /// ASCII (punycode for IDNs).
    pub name: String,
    /// The name in Unicode.
    pub unicode_name: String,
    /// pending | verified | failed
    pub status: String,
    /// Verified, with the MX record pointing at this instance.
    pub receiving: bool,
    /// Why the domain is not (or no longer) verified, from the last check.
    pub reason: Option<String>,
    pub records: Vec<RecordOut>,
    pub dkim: DkimOut,
    pub created_at: String,
    pub verified_at: Option<String>,
    pub checked_at: Option<String>,
}

impl DomainOut {
    fn from_row(settings: &Settings, d: DomainRow) -> Self {
        let records = domains::records(settings, &d)
            .into_iter()
            .map(|r| RecordOut {
                purpose: r.purpose,
                kind: r.kind,
                name: r.name,
                value: r.value,
                status: r.status,
                checked_at: rfc3339_opt(r.checked_at),
            })
            .collect();
        Self {
            unicode_name: domains::name::unicode(&d.name),
            id: d.id,
            name: d.name,
            status: d.status,
            receiving: d.receiving != 0,
            reason: d.reason,
            records,
            dkim: DkimOut {
                selector: d.dkim_selector,
                algorithm: d.dkim_algorithm,
                pending_selector: d.next_dkim_selector,
            },
            created_at: rfc3339(d.created_at),
            verified_at: rfc3339_opt(d.verified_at),
            checked_at: rfc3339_opt(d.checked_at),
        }
    }
}

fn domain_id(raw: &str) -> ApiResult<DomainId> {
    path_id(raw, DomainId::parse, "domain")
}

/// Add a domain: the answer lists the DNS records to publish.
#[utoipa::path(post, path = "/api/v1/domains", tag = "domains", request_body = DomainIn, responses((status = 201, body = DomainOut), (status = 409, body = crate::error::ErrorBody)))]
async fn create_domain(
    State(state): State<AppState>,
    Need(p, _): Need<can::DomainsManage>,
    Json(input): Json<DomainIn>,
) -> ApiResult<(StatusCode, axum::Json<DomainOut>)> {
    let new = NewDomain { name: input.name, dkim_algorithm: input.dkim_algorithm.map(|a| a.name().to_owned()) };
    let row = domains::create(&state, &p, new).await?;
    Ok((StatusCode::CREATED, axum::Json(DomainOut::from_row(&state.settings, row))))
}

#[utoipa::path(get, path = "/api/v1/domains", tag = "domains", params(ListParams), responses((status = 200, body = List<DomainOut>)))]
async fn list_domains(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<DomainOut>>> {
    p.require(Perm::DomainsRead)?;
    let page = q.page(|c| DomainId::parse(c).is_some())?;
    let rows = domains::list(&state, &p, page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), |r| DomainOut::from_row(&state.settings, r))))
}

#[utoipa::path(get, path = "/api/v1/domains/{id}", tag = "domains", params(("id" = String, Path)), responses((status = 200, body = DomainOut)))]
async fn get_domain(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DomainOut>> {
    let id = domain_id(&id)?;
    Ok(axum::Json(DomainOut::from_row(&state.settings, domains::get(&state, &p, &id).await?)))
}

/// Delete a domain no mailbox is on.
#[utoipa::path(delete, path = "/api/v1/domains/{id}", tag = "domains", params(("id" = String, Path)), responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
async fn delete_domain(
    State(state): State<AppState>,
    Need(p, _): Need<can::DomainsManage>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = domain_id(&id)?;
    domains::delete(&state, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Look the domain's records up now (through the configured DNS server).
#[utoipa::path(post, path = "/api/v1/domains/{id}/verify", tag = "domains", params(("id" = String, Path)), responses((status = 200, body = DomainOut), (status = 409, body = crate::error::ErrorBody)))]
async fn verify_domain(
    State(state): State<AppState>,
    Need(p, _): Need<can::DomainsManage>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DomainOut>> {
    let id = domain_id(&id)?;
    Ok(axum::Json(DomainOut::from_row(&state.settings, domains::verify(&state, &p, &id).await?)))
}

/// Start a DKIM key rotation: a new selector and key; the old key signs until the new
/// record is found.
#[utoipa::path(post, path = "/api/v1/domains/{id}/dkim/rotate", tag = "domains", params(("id" = String, Path)), request_body = RotateDkimIn, responses((status = 200, body = DomainOut)))]
async fn rotate_dkim(
    State(state): State<AppState>,
    Need(p, _): Need<can::DomainsManage>,
    Path(id): Path<String>,
    Json(input): Json<RotateDkimIn>,
) -> ApiResult<axum::Json<DomainOut>> {
    let id = domain_id(&id)?;
    let row = domains::rotate_dkim(&state, &p, &id, input.dkim_algorithm.map(DkimAlgorithmIn::name)).await?;
    Ok(axum::Json(DomainOut::from_row(&state.settings, row)))
}
