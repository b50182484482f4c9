//! People's accounts and sessions (docs/API.md §2 "People"): sign-up (when the operator
//! left it open), log-in, log-out, and accepting an invitation, which creates the
//! account when the invited email has none. None of these has a caller yet: each takes
//! what the person sent and answers with a session token (`smx_ses_…`), of which only
//! the hash is kept. What people do to their team is in [`crate::teams`].

use crate::Core;
use crate::auth::perms::Role;
use crate::auth::{INVITATION_PREFIX, SESSION_PREFIX, password};
use crate::config::Signup;
use crate::crypto::{random_token, token_hash};
use crate::error::{Error, Result};
use crate::ids::TeamId;
use crate::store::audit::{self, Actor};
use crate::store::{Conn, TeamScope, now_ms, people};
use crate::teams;
use crate::validate;

/// A new session: its token exists only in this answer.
pub struct Session {
    pub token: String,
    pub user_id: String,
    /// The team the session acts in without `X-Sendmux-Team`.
    pub team_id: Option<String>,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

/// What a person signs up with.
pub struct NewAccount {
    pub email: String,
    pub password: String,
    pub team_name: String,
    /// Where the request came from, for the audit entry.
    pub ip: Option<String>,
}

fn session_ttl_ms(core: &Core) -> i64 {
    core.settings.session_ttl_hours * 3_600_000
}

async fn new_session(core: &Core, conn: &mut Conn, user_id: &str) -> Result<(String, i64)> {
    let token = random_token(SESSION_PREFIX);
    let ttl = session_ttl_ms(core);
    people::insert_session(conn, user_id, &token_hash(&token), ttl).await?;
    Ok((token, now_ms() + ttl))
}

/// Creates a user and a team with that user as owner, and the owner's first session,
/// unless the operator closed sign-up or the email already has an account.
pub async fn signup(core: &Core, new: NewAccount) -> Result<Session> {
    if core.settings.signup == Signup::Closed {
        return Err(Error::forbidden("Sign-up is closed on this instance; ask the operator for an account"));
    }
    let email = validate::email("email", &new.email)?;
    password::validate(&new.password)?;
    let team_name = validate::name("team_name", &new.team_name, 100)?;
    let hash = core.passwords.hash(new.password).await?;
    let token = random_token(SESSION_PREFIX);
    let ttl = session_ttl_ms(core);
    let (team, user) = teams::create_with_owner(
        &core.store,
        teams::NewTeam {
            name: &team_name,
            owner_email: &email,
            password_hash: Some(hash),
            actor: None,
            ip: new.ip,
            require_new_user: true,
            session: Some((&token_hash(&token), ttl)),
        },
    )
    .await?;
    Ok(Session { token, user_id: user.id, team_id: Some(team.id), expires_at: now_ms() + ttl })
}

/// Exchanges email and password for a session in the team the person joined first. A
/// wrong email and a wrong password are refused alike.
pub async fn login(core: &Core, email: &str, password: String) -> Result<Session> {
    let email = email.trim().to_ascii_lowercase();
    let mut conn = core.store.pool().acquire().await?;
    let user = people::user_by_email(&mut conn, &email).await?;
    let ok = core.passwords.verify(password, user.as_ref().map(|u| u.password_hash.clone())).await;
    let user = match (ok, user) {
        (true, Some(user)) => user,
        _ => return Err(Error::unauthenticated("Wrong email or password")),
    };
    drop(conn);
    let mut conn = core.store.write_conn().await?;
    let (token, expires_at) = new_session(core, &mut conn, &user.id).await?;
    let team_id =
        people::session_memberships(&mut conn, &token_hash(&token)).await?.into_iter().find_map(|m| m.team_id);
    Ok(Session { token, user_id: user.id, team_id, expires_at })
}

/// Revokes the session whose token is `token`; it stops working at once.
pub async fn logout(core: &Core, token: &str) -> Result<()> {
    if !token.starts_with(SESSION_PREFIX) {
        return Err(Error::unauthenticated("Only a session token can log out"));
    }
    let mut conn = core.store.write_conn().await?;
    if !people::revoke_session(&mut conn, &token_hash(token)).await? {
        return Err(Error::unauthenticated("Invalid or expired session"));
    }
    drop(conn);
    core.credentials_changed().await?;
    Ok(())
}

/// Someone accepting an invitation.
pub struct Acceptance {
    /// The invitation token (`smx_inv_…`).
    pub token: String,
    /// The new account's password, or the existing account's password; required.
    pub password: Option<String>,
    /// Where the request came from, for the audit entry.
    pub ip: Option<String>,
}

/// Joins the team of a pending invitation with its role, creating the account when the
/// invited email has none, and opens a session in that team. The invitation is used up.
pub async fn accept_invitation(core: &Core, acceptance: Acceptance) -> Result<Session> {
    let Acceptance { token, password, ip } = acceptance;
    if !token.starts_with(INVITATION_PREFIX) {
        return Err(Error::not_found("invitation"));
    }
    let password = password.ok_or_else(|| Error::invalid("password", "password is required"))?;
    let mut conn = core.store.pool().acquire().await?;
    let invite = people::invitation_by_token(&mut conn, &token_hash(&token))
        .await?
        .filter(|i| i.accepted_at.is_none() && i.revoked_at.is_none() && i.expires_at > now_ms())
        .ok_or_else(|| Error::not_found("invitation"))?;
    let existing = people::user_by_email(&mut conn, &invite.email).await?;
    let new_hash = match &existing {
        Some(user) => {
            if !core.passwords.verify(password, Some(user.password_hash.clone())).await {
                return Err(Error::unauthenticated("Wrong password for the invited account"));
            }
            None
        }
        None => {
            password::validate(&password)?;
            Some(core.passwords.hash(password).await?)
        }
    };
    drop(conn);
    let role = Role::parse(&invite.role).unwrap_or(Role::Member);
    let team = TeamId::stored(invite.team_id.clone());
    let mut tx = core.store.begin().await?;
    if !people::accept_invitation(&mut tx, &invite.id).await? {
        return Err(Error::not_found("invitation"));
    }
    let user = match (existing, new_hash) {
        (Some(user), _) => user,
        (None, Some(hash)) => people::insert_user(&mut tx, &invite.email, &hash).await?,
        (None, None) => return Err(Error::internal("invitation accepted without a password hash")),
    };
    if people::member(&mut tx.team(&team), &user.id).await?.is_some() {
        return Err(Error::conflict("This account is already a member of the team"));
    }
    people::insert_membership(&mut tx.team(&team), &user.id, role).await?;
    let actor = Actor { kind: "user", id: user.id.clone(), ip };
    audit::record(
        &mut tx.team(&team),
        &actor,
        "member.joined",
        ("user", &user.id),
        serde_json::json!({"role": role, "invitation": invite.id}),
    )
    .await?;
    let (token, expires_at) = new_session(core, &mut tx, &user.id).await?;
    core.commit_credentials(tx, &invite.team_id).await?;
    Ok(Session { token, user_id: user.id, team_id: Some(invite.team_id), expires_at })
}

/// A person's own account as a session sees it: who they are and their teams.
pub struct Account {
    pub user_id: String,
    pub email: String,
    /// Oldest membership first.
    pub teams: Vec<AccountTeam>,
}

pub struct AccountTeam {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// The account behind a live session token, with every team it belongs to.
pub async fn account(core: &Core, token: &str) -> Result<Account> {
    let invalid = || Error::unauthenticated("Invalid or expired session");
    if !token.starts_with(SESSION_PREFIX) {
        return Err(invalid());
    }
    let mut conn = core.store.pool().acquire().await?;
    let rows = people::session_teams(&mut conn, &token_hash(token)).await?;
    let first = rows.first().ok_or_else(invalid)?;
    if first.expires_at <= now_ms() {
        return Err(invalid());
    }
    let (user_id, email) = (first.user_id.clone(), first.email.clone());
    let teams = rows
        .into_iter()
        .filter_map(|r| {
            Some(AccountTeam { id: r.team_id?, name: r.team_name?, role: r.role.as_deref().and_then(Role::parse)? })
        })
        .collect();
    Ok(Account { user_id, email, teams })
}
