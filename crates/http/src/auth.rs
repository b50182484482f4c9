//! Sign-up, login, logout and accepting an invitation over HTTP: parse, call
//! `sendmux_core::people`, render the session.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use crate::error::ApiResult;
use crate::state::AppState;
use sendmux_core::people::{self, Acceptance, NewAccount, Session};
use sendmux_core::store::rfc3339;

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

impl From<Session> for SessionOut {
    fn from(s: Session) -> Self {
        Self { token: s.token, user_id: s.user_id, team_id: s.team_id, expires_at: rfc3339(s.expires_at) }
    }
}

/// Create a user and a team with that user as owner (when sign-up is open).
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "people", security(), request_body = SignupIn,
    responses((status = 201, body = SessionOut), (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
async fn signup(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(input): Json<SignupIn>,
) -> ApiResult<(StatusCode, axum::Json<SessionOut>)> {
    let new = NewAccount {
        email: input.email,
        password: input.password,
        team_name: input.team_name,
        ip: Some(peer.ip().to_string()),
    };
    Ok((StatusCode::CREATED, axum::Json(people::signup(&state, new).await?.into())))
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
    Ok(axum::Json(people::login(&state, &input.email, input.password).await?.into()))
}

/// Revoke the session token in the Authorization header.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "people", responses((status = 204), (status = 401, body = crate::error::ErrorBody)))]
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<StatusCode> {
    let token = super::bearer(&headers)?;
    people::logout(&state, token).await?;
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
    let acceptance = Acceptance { token, password: input.password, ip: Some(peer.ip().to_string()) };
    Ok(axum::Json(people::accept_invitation(&state, acceptance).await?.into()))
}
