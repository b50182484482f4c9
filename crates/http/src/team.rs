//! The caller's team: read, rename, delete, transfer ownership, members, invitations.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use sendmux_core::store::TeamScope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Need, Query, can, path_id};
use super::pagination::{List, ListParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::perms::{Perm, Role};
use sendmux_core::auth::{INVITATION_PREFIX, Principal};
use sendmux_core::crypto::{random_token, token_hash};
use sendmux_core::ids::{InvitationId, UserId};
use sendmux_core::store::audit;
use sendmux_core::store::people::{self, InvitationRow, MemberRow, TeamRow};
use sendmux_core::store::rfc3339;
use sendmux_core::validate;

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

/// The acting person's role as it is now, read after locking the team: a decision
/// made on a role that changed since the request was authenticated cannot land.
async fn role_now(state: &AppState, tx: &mut sendmux_core::store::Tx, p: &Principal) -> ApiResult<Role> {
    state.store.lock_team(tx, p.team_id.as_str()).await?;
    let user_id = p.user_id().ok_or_else(|| ApiError::forbidden("Only people manage the team"))?;
    let member = people::member(&mut tx.team(&p.team_id), user_id).await?.ok_or_else(|| ApiError::not_found("team"))?;
    Role::parse(&member.role).ok_or_else(|| ApiError::internal("membership without a role"))
}

/// The team the credential belongs to.
#[utoipa::path(get, path = "/api/v1/team", tag = "team", responses((status = 200, body = TeamOut)))]
async fn get_team(State(state): State<AppState>, Caller(p): Caller) -> ApiResult<axum::Json<TeamOut>> {
    p.require(Perm::TeamRead)?;
    let mut conn = state.store.pool().acquire().await?;
    let team = people::get_team(&mut conn.team(&p.team_id)).await?.ok_or_else(|| ApiError::not_found("team"))?;
    Ok(axum::Json(team.into()))
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
    let mut tx = state.store.begin().await?;
    if let Some(name) = input.name {
        let name = validate::name("name", &name, 100)?;
        people::rename_team(&mut tx.team(&p.team_id), &name).await?;
        audit::record(
            &mut tx.team(&p.team_id),
            &p.actor(),
            "team.updated",
            ("team", p.team_id.as_str()),
            serde_json::json!({"name": name}),
        )
        .await?;
    }
    let team = people::get_team(&mut tx.team(&p.team_id)).await?.ok_or_else(|| ApiError::not_found("team"))?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok(axum::Json(team.into()))
}

/// Delete the team and everything it owns (owner only).
#[utoipa::path(delete, path = "/api/v1/team", tag = "team", responses((status = 204)))]
async fn delete_team(State(state): State<AppState>, Caller(p): Caller) -> ApiResult<StatusCode> {
    p.require(Perm::TeamDelete)?;
    let mut tx = state.store.begin().await?;
    if !role_now(&state, &mut tx, &p).await?.permissions().has(Perm::TeamDelete) {
        return Err(ApiError::forbidden("Only the owner can delete the team"));
    }
    // The rows go by cascade; the message bodies on disk after the commit, queued for
    // erasure in the same transaction so a crash cannot leave them behind.
    if !people::delete_team(&mut tx.team(&p.team_id)).await? {
        return Err(ApiError::not_found("team"));
    }
    let bodies = [sendmux_core::store::erasures::team_key(p.team_id.as_str())];
    sendmux_core::store::erasures::queue(&mut tx, &bodies, sendmux_core::store::now_ms()).await?;
    state.commit(tx, p.team_id.as_str()).await?;
    state.auth.invalidate();
    sendmux_core::erasure::erase_bodies(&state.storage(), &bodies).await;
    tracing::info!(team_id = %p.team_id, actor = %p.actor().id, "team deleted");
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
    let me = p.user_id().ok_or_else(|| ApiError::forbidden("Only the owner can transfer the team"))?.to_owned();
    let target = UserId::parse(&input.user_id).ok_or_else(|| ApiError::invalid("user_id", "No such member"))?;
    if target.as_str() == me {
        return Err(ApiError::invalid("user_id", "You already own this team"));
    }
    let mut tx = state.store.begin().await?;
    state.store.lock_team(&mut tx, p.team_id.as_str()).await?;
    people::member(&mut tx.team(&p.team_id), target.as_str())
        .await?
        .ok_or_else(|| ApiError::invalid("user_id", "No such member"))?;
    if !people::transfer(&mut tx.team(&p.team_id), &me, target.as_str()).await? {
        return Err(ApiError::forbidden("Only the owner can transfer the team"));
    }
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "team.transferred",
        ("user", target.as_str()),
        serde_json::json!({"previous_owner": me}),
    )
    .await?;
    let member = people::member(&mut tx.team(&p.team_id), target.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    state.commit(tx, p.team_id.as_str()).await?;
    state.auth.invalidate();
    Ok(axum::Json(member.into()))
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
    p.require(Perm::MembersRead)?;
    let page = q.page(|c| UserId::parse(c).is_some())?;
    let mut conn = state.store.pool().acquire().await?;
    let rows = people::list_members(&mut conn.team(&p.team_id), page.before(), page.fetch()).await?;
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
    if input.role == Role::Owner {
        return Err(ApiError::invalid("role", "Ownership moves only by POST /api/v1/team/transfer"));
    }
    let mut tx = state.store.begin().await?;
    if !role_now(&state, &mut tx, &p).await?.permissions().has(Perm::MembersManage) {
        return Err(ApiError::forbidden("This credential lacks the `members.manage` permission"));
    }
    let current = people::member(&mut tx.team(&p.team_id), user_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    if current.role == "owner" || !people::set_role(&mut tx.team(&p.team_id), user_id.as_str(), input.role).await? {
        return Err(ApiError::forbidden("The owner's role changes only by transferring ownership"));
    }
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "member.updated",
        ("user", user_id.as_str()),
        serde_json::json!({"role": input.role, "previous_role": current.role}),
    )
    .await?;
    let member = people::member(&mut tx.team(&p.team_id), user_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    state.commit(tx, p.team_id.as_str()).await?;
    state.auth.invalidate();
    Ok(axum::Json(member.into()))
}

/// Remove a member (admin and up), or leave the team (anyone but the owner).
#[utoipa::path(delete, path = "/api/v1/team/members/{user_id}", tag = "team", params(("user_id" = String, Path)), responses((status = 204)))]
async fn remove_member(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(user_id): Path<String>,
) -> ApiResult<StatusCode> {
    let user_id = path_id(&user_id, UserId::parse, "member")?;
    if p.user_id() != Some(user_id.as_str()) {
        p.require(Perm::MembersManage)?;
    }
    let mut tx = state.store.begin().await?;
    let acting = role_now(&state, &mut tx, &p).await?;
    if p.user_id() != Some(user_id.as_str()) && !acting.permissions().has(Perm::MembersManage) {
        return Err(ApiError::forbidden("This credential lacks the `members.manage` permission"));
    }
    let current = people::member(&mut tx.team(&p.team_id), user_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    if current.role == "owner" || !people::remove_member(&mut tx.team(&p.team_id), user_id.as_str()).await? {
        return Err(ApiError::conflict("The owner cannot be removed; transfer ownership first"));
    }
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "member.removed",
        ("user", user_id.as_str()),
        serde_json::json!({"role": current.role}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    state.auth.invalidate();
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
    let email = validate::email("email", &input.email)?;
    if input.role == Role::Owner {
        return Err(ApiError::invalid("role", "Invite as admin, developer or member; ownership moves by transfer"));
    }
    let token = random_token(INVITATION_PREFIX);
    let mut tx = state.store.begin().await?;
    if let Some(user) = people::user_by_email(&mut tx, &email).await?
        && people::member(&mut tx.team(&p.team_id), &user.id).await?.is_some()
    {
        return Err(ApiError::conflict("This person is already a member").with_param("email"));
    }
    let ttl = state.settings.invitation_ttl_hours * 3_600_000;
    let row = people::insert_invitation(
        &mut tx.team(&p.team_id),
        &email,
        input.role,
        &token_hash(&token),
        &p.actor().id,
        ttl,
    )
    .await?;
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "member.invited",
        ("invitation", &row.id),
        serde_json::json!({"email": email, "role": input.role}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok((StatusCode::CREATED, axum::Json(InvitationOut::from_row(row, Some(token)))))
}

/// The team's invitations (tokens are never shown again).
#[utoipa::path(get, path = "/api/v1/team/invitations", tag = "team", params(ListParams), responses((status = 200, body = List<InvitationOut>)))]
async fn list_invitations(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<InvitationOut>>> {
    p.require(Perm::MembersRead)?;
    let page = q.page(|c| InvitationId::parse(c).is_some())?;
    let mut conn = state.store.pool().acquire().await?;
    let rows = people::list_invitations(&mut conn.team(&p.team_id), page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), |r| InvitationOut::from_row(r, None))))
}

/// Withdraw a pending invitation (admin and up).
#[utoipa::path(delete, path = "/api/v1/team/invitations/{id}", tag = "team", params(("id" = String, Path)), responses((status = 204)))]
async fn revoke_invitation(
    State(state): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    p.require(Perm::MembersManage)?;
    let id = path_id(&id, InvitationId::parse, "invitation")?;
    let mut tx = state.store.begin().await?;
    if !people::revoke_invitation(&mut tx.team(&p.team_id), id.as_str()).await? {
        return Err(ApiError::not_found("invitation"));
    }
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "invitation.revoked",
        ("invitation", id.as_str()),
        serde_json::json!({}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}
