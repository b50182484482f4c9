//! Sign-up, login, logout and accepting an invitation.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use sendmux_core::ids::TeamId;
use sendmux_core::store::TeamScope;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use sendmux_core::auth::{INVITATION_PREFIX, SESSION_PREFIX, password, perms::Role};
use sendmux_core::config::Signup;
use sendmux_core::crypto::{random_token, token_hash};
use sendmux_core::store::audit::{self, Actor};
use sendmux_core::store::{now_ms, people, rfc3339};
use sendmux_core::validate;

/// Routes that take a password: rate-limited per client address.
pub fn password_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(signup)).routes(routes!(login)).routes(routes!(accept_invitation))
}

/// Logout: the token in the header is the whole request.
pub fn logout_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(logout))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupIn {
    #[schema(value_type = crate::schema::Email)]
    pub email: String,
    #[schema(value_type = crate::schema::Password)]
    pub password: String,
    #[schema(value_type = crate::schema::Name)]
    pub team_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionOut {
    /// Session token (`smx_ses_…`), used as `Authorization: Bearer`.
    pub token: String,
    pub user_id: String,
    pub team_id: Option<String>,
    pub expires_at: String,
}

async fn new_session(
    state: &AppState,
    conn: &mut sendmux_core::store::Conn,
    user_id: &str,
) -> ApiResult<(String, i64)> {
    let token = random_token(SESSION_PREFIX);
    let ttl = state.settings.session_ttl_hours * 3_600_000;
    people::insert_session(conn, user_id, &token_hash(&token), ttl).await?;
    Ok((token, now_ms() + ttl))
}

/// Create a user and a team with that user as owner (when sign-up is open).
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "people", security(), request_body = SignupIn,
    responses((status = 201, body = SessionOut), (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
async fn signup(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(input): Json<SignupIn>,
) -> ApiResult<(StatusCode, axum::Json<SessionOut>)> {
    if state.settings.signup == Signup::Closed {
        return Err(ApiError::forbidden("Sign-up is closed on this instance; ask the operator for an account"));
    }
    let email = validate::email("email", &input.email)?;
    password::validate(&input.password)?;
    let team_name = validate::name("team_name", &input.team_name, 100)?;
    let hash = state.passwords.hash(input.password).await?;
    let token = random_token(SESSION_PREFIX);
    let ttl = state.settings.session_ttl_hours * 3_600_000;
    let (team, user) = sendmux_core::teams::create_with_owner(
        &state.store,
        sendmux_core::teams::NewTeam {
            name: &team_name,
            owner_email: &email,
            password_hash: Some(hash),
            actor: None,
            ip: Some(peer.ip().to_string()),
            require_new_user: true,
            session: Some((&token_hash(&token), ttl)),
        },
    )
    .await?;
    let expires = now_ms() + ttl;
    Ok((
        StatusCode::CREATED,
        axum::Json(SessionOut { token, user_id: user.id, team_id: Some(team.id), expires_at: rfc3339(expires) }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    pub email: String,
    pub password: String,
}

/// Exchange email and password for a session token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "people", security(), request_body = LoginIn,
    responses((status = 200, body = SessionOut), (status = 401, body = crate::error::ErrorBody)))]
async fn login(State(state): State<AppState>, Json(input): Json<LoginIn>) -> ApiResult<axum::Json<SessionOut>> {
    let email = input.email.trim().to_ascii_lowercase();
    let mut conn = state.store.pool().acquire().await?;
    let user = people::user_by_email(&mut conn, &email).await?;
    let ok = state.passwords.verify(input.password, user.as_ref().map(|u| u.password_hash.clone())).await;
    let user = match (ok, user) {
        (true, Some(user)) => user,
        _ => return Err(ApiError::unauthenticated("Wrong email or password")),
    };
    drop(conn);
    let mut conn = state.store.write_conn().await?;
    let (token, expires) = new_session(&state, &mut conn, &user.id).await?;
    let team_id: Option<String> =
        people::session_memberships(&mut conn, &token_hash(&token)).await?.into_iter().find_map(|m| m.team_id);
    Ok(axum::Json(SessionOut { token, user_id: user.id, team_id, expires_at: rfc3339(expires) }))
}

/// Revoke the session token in the Authorization header.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "people", responses((status = 204), (status = 401, body = crate::error::ErrorBody)))]
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<StatusCode> {
    let token = super::bearer(&headers)?;
    if !token.starts_with(SESSION_PREFIX) {
        return Err(ApiError::unauthenticated("Only a session token can log out"));
    }
    let mut conn = state.store.write_conn().await?;
    if !people::revoke_session(&mut conn, &token_hash(token)).await? {
        return Err(ApiError::unauthenticated("Invalid or expired session"));
    }
    state.auth.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AcceptIn {
    /// Required: the new account's password, or the existing account's password.
    #[schema(value_type = crate::schema::Password, required = true)]
    pub password: Option<String>,
}

/// Join the team of an invitation; creates the account when the email has none.
#[utoipa::path(post, path = "/api/v1/auth/invitations/{token}/accept", tag = "people", security(), request_body = AcceptIn,
    params(("token" = String, Path, description = "The invitation token (smx_inv_…)")),
    responses((status = 200, body = SessionOut), (status = 404, body = crate::error::ErrorBody)))]
async fn accept_invitation(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    Json(input): Json<AcceptIn>,
) -> ApiResult<axum::Json<SessionOut>> {
    if !token.starts_with(INVITATION_PREFIX) {
        return Err(ApiError::not_found("invitation"));
    }
    let password = input.password.ok_or_else(|| ApiError::invalid("password", "password is required"))?;
    let mut conn = state.store.pool().acquire().await?;
    let invite = people::invitation_by_token(&mut conn, &token_hash(&token))
        .await?
        .filter(|i| i.accepted_at.is_none() && i.revoked_at.is_none() && i.expires_at > now_ms())
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    let existing = people::user_by_email(&mut conn, &invite.email).await?;
    let new_hash = match &existing {
        Some(user) => {
            if !state.passwords.verify(password, Some(user.password_hash.clone())).await {
                return Err(ApiError::unauthenticated("Wrong password for the invited account"));
            }
            None
        }
        None => {
            password::validate(&password)?;
            Some(state.passwords.hash(password).await?)
        }
    };
    drop(conn);
    let role = Role::parse(&invite.role).unwrap_or(Role::Member);
    let mut tx = state.store.begin().await?;
    if !people::accept_invitation(&mut tx, &invite.id).await? {
        return Err(ApiError::not_found("invitation"));
    }
    let user = match (existing, new_hash) {
        (Some(user), _) => user,
        (None, Some(hash)) => people::insert_user(&mut tx, &invite.email, &hash).await?,
        (None, None) => return Err(ApiError::internal("invitation accepted without a password hash")),
    };
    if people::member(&mut tx.team(&TeamId::stored(invite.team_id.clone())), &user.id).await?.is_some() {
        return Err(ApiError::conflict("This account is already a member of the team"));
    }
    people::insert_membership(&mut tx.team(&TeamId::stored(invite.team_id.clone())), &user.id, role).await?;
    let actor = Actor { kind: "user", id: user.id.clone(), ip: Some(peer.ip().to_string()) };
    audit::record(
        &mut tx.team(&TeamId::stored(invite.team_id.clone())),
        &actor,
        "member.joined",
        ("user", &user.id),
        serde_json::json!({"role": role, "invitation": invite.id}),
    )
    .await?;
    let (token, expires) = new_session(&state, &mut tx, &user.id).await?;
    state.commit(tx, &invite.team_id).await?;
    Ok(axum::Json(SessionOut { token, user_id: user.id, team_id: Some(invite.team_id), expires_at: rfc3339(expires) }))
}
