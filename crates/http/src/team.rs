//! The caller's team over HTTP: parse, call `sendmux_core::teams`, render (read, rename,
//! delete, transfer ownership, members, invitations; an invitation's token shown once).

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
use sendmux_core::auth::perms::{Perm, Role};
use sendmux_core::ids::{InvitationId, UserId};
use sendmux_core::store::people::{InvitationRow, MemberRow, TeamRow};
use sendmux_core::store::rfc3339;
use sendmux_core::teams::{self, TeamChange};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_team, update_team, delete_team))
        .routes(routes!(transfer))
        .routes(routes!(list_members))
        .routes(routes!(update_member, remove_member))
        .routes(routes!(invite, list_invitations))
        .routes(routes!(revoke_invitation))
}

#[derive(Serialize, ToSchema)]
pub struct TeamOut {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<TeamRow> for TeamOut {
    fn from(t: TeamRow) -> Self {
        Self { id: t.id, name: t.name, created_at: rfc3339(t.created_at), updated_at: rfc3339(t.updated_at) }
    }
}

/// The team the credential belongs to.
#[utoipa::path(get, path = "/api/v1/team", tag = "team", responses((status = 200, body = TeamOut)))]
async fn get_team(State(state): State<AppState>, Caller(p): Caller) -> ApiResult<axum::Json<TeamOut>> {
    Ok(axum::Json(teams::get(&state, &p).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamPatch {
    #[schema(value_type = Option<crate::schema::Name>)]
    pub name: Option<String>,
}

/// Rename the team (admin and up).
#[utoipa::path(patch, path = "/api/v1/team", tag = "team", request_body = TeamPatch, responses((status = 200, body = TeamOut)))]
async fn update_team(
    State(state): State<AppState>,
    Need(p, _): Need<can::TeamUpdate>,
    Json(input): Json<TeamPatch>,
) -> ApiResult<axum::Json<TeamOut>> {
    Ok(axum::Json(teams::update(&state, &p, TeamChange { name: input.name }).await?.into()))
}

/// Delete the team and everything it owns (owner only).
#[utoipa::path(delete, path = "/api/v1/team", tag = "team", responses((status = 204)))]
async fn delete_team(State(state): State<AppState>, Caller(p): Caller) -> ApiResult<StatusCode> {
    teams::delete(&state, &p).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferIn {
    /// The member who becomes owner; the current owner becomes admin.
    pub user_id: String,
}

/// Transfer ownership to another member (owner only).
#[utoipa::path(post, path = "/api/v1/team/transfer", tag = "team", request_body = TransferIn, responses((status = 200, body = MemberOut)))]
async fn transfer(
    State(state): State<AppState>,
    Need(p, _): Need<can::TeamTransfer>,
    Json(input): Json<TransferIn>,
) -> ApiResult<axum::Json<MemberOut>> {
    Ok(axum::Json(teams::transfer(&state, &p, &input.user_id).await?.into()))
}

#[derive(Serialize, ToSchema)]
pub struct MemberOut {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub joined_at: String,
}

impl From<MemberRow> for MemberOut {
    fn from(m: MemberRow) -> Self {
        Self { user_id: m.user_id, email: m.email, role: m.role, joined_at: rfc3339(m.created_at) }
    }
}

/// The team's members.
#[utoipa::path(get, path = "/api/v1/team/members", tag = "team", params(ListParams), responses((status = 200, body = List<MemberOut>)))]
async fn list_members(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<MemberOut>>> {
    // Before the page is read, so a caller without it is refused whatever the cursor.
    p.require(Perm::MembersRead)?;
    let page = q.page(|c| UserId::parse(c).is_some())?;
    let rows = teams::members(&state, &p, page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.user_id.clone(), MemberOut::from)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    /// admin, developer or member; ownership moves only by transfer.
    #[schema(value_type = crate::schema::AssignableRole)]
    pub role: Role,
}

/// Change a member's role (admin and up; the owner's role changes only by transfer).
#[utoipa::path(patch, path = "/api/v1/team/members/{user_id}", tag = "team", request_body = MemberPatch,
    params(("user_id" = String, Path)), responses((status = 200, body = MemberOut)))]
async fn update_member(
    State(state): State<AppState>,
    Need(p, _): Need<can::MembersManage>,
    Path(user_id): Path<String>,
    Json(input): Json<MemberPatch>,
) -> ApiResult<axum::Json<MemberOut>> {
    let user_id = path_id(&user_id, UserId::parse, "member")?;
    Ok(axum::Json(teams::update_member(&state, &p, &user_id, input.role).await?.into()))
}

/// Remove a member (admin and up), or leave the team (anyone but the owner).
#[utoipa::path(delete, path = "/api/v1/team/members/{user_id}", tag = "team", params(("user_id" = String, Path)), responses((status = 204)))]
async fn remove_member(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(user_id): Path<String>,
) -> ApiResult<StatusCode> {
    let user_id = path_id(&user_id, UserId::parse, "member")?;
    teams::remove_member(&state, &p, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationIn {
    #[schema(value_type = crate::schema::Email)]
    pub email: String,
    /// admin, developer or member; ownership moves only by transfer.
    #[schema(value_type = crate::schema::AssignableRole)]
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct InvitationOut {
    pub id: String,
    pub email: String,
    pub role: String,
    pub status: &'static str,
    pub created_at: String,
    pub expires_at: String,
    /// Shown once, on creation: accept with POST /api/v1/auth/invitations/{token}/accept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl InvitationOut {
    fn from_row(i: InvitationRow, token: Option<String>) -> Self {
        let status = if i.accepted_at.is_some() {
            "accepted"
        } else if i.revoked_at.is_some() {
            "revoked"
        } else if i.expires_at <= sendmux_core::store::now_ms() {
            "expired"
        } else {
            "pending"
        };
        Self {
            id: i.id,
            email: i.email,
            role: i.role,
            status,
            created_at: rfc3339(i.created_at),
            expires_at: rfc3339(i.expires_at),
            token,
        }
    }
}

/// Invite someone by email with a role (admin and up). The token is shown once.
#[utoipa::path(post, path = "/api/v1/team/invitations", tag = "team", request_body = InvitationIn, responses((status = 201, body = InvitationOut)))]
async fn invite(
    State(state): State<AppState>,
    Need(p, _): Need<can::MembersManage>,
    Json(input): Json<InvitationIn>,
) -> ApiResult<(StatusCode, axum::Json<InvitationOut>)> {
    let created = teams::invite(&state, &p, &input.email, input.role).await?;
    Ok((StatusCode::CREATED, axum::Json(InvitationOut::from_row(created.invitation, Some(created.token)))))
}

/// The team's invitations (tokens are never shown again).
#[utoipa::path(get, path = "/api/v1/team/invitations", tag = "team", params(ListParams), responses((status = 200, body = List<InvitationOut>)))]
async fn list_invitations(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<InvitationOut>>> {
    // Before the page is read, so a caller without it is refused whatever the cursor.
    p.require(Perm::MembersRead)?;
    let page = q.page(|c| InvitationId::parse(c).is_some())?;
    let rows = teams::invitations(&state, &p, page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), |r| InvitationOut::from_row(r, None))))
}

/// Withdraw a pending invitation (admin and up).
#[utoipa::path(delete, path = "/api/v1/team/invitations/{id}", tag = "team", params(("id" = String, Path)), responses((status = 204)))]
async fn revoke_invitation(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    // Before the id is read, so a caller without it is refused whatever the id.
    p.require(Perm::MembersManage)?;
    let id = path_id(&id, InvitationId::parse, "invitation")?;
    teams::revoke_invitation(&state, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
