//! The team (docs/API.md §2 "People"): creating one with its owner (sign-up, the admin
//! API and the CLI), and what its people do to it — rename it, delete it, transfer its
//! ownership, change and remove members, invite and withdraw invitations. Each operation
//! checks the caller's role, validates, changes the store in one transaction with its
//! audit entry and commits; changes to who holds which role drop cached credentials.
//!
//! **Roles are read again under the team's lock.** Deleting the team and changing or
//! removing members decide on the acting person's role as it is after locking the team,
//! not as it was when the request was authenticated, so a decision made by someone
//! demoted meanwhile cannot land.

use crate::Core;
use crate::auth::perms::{Perm, Role};
use crate::auth::{INVITATION_PREFIX, Principal};
use crate::crypto::{random_token, token_hash};
use crate::error::{Error, Result};
use crate::ids::{TeamId, UserId};
use crate::store::audit::{self, Actor};
use crate::store::people::{self, InvitationRow, MemberRow, TeamRow, UserRow};
use crate::store::{Store, TeamScope, Tx, erasures, now_ms};
use crate::validate;

pub struct NewTeam<'a> {
    pub name: &'a str,
    pub owner_email: &'a str,
    /// Required when the owner has no account yet; an existing user keeps their password.
    pub password_hash: Option<String>,
    /// Who creates it: the operator, or (None) the new owner signing up from `ip`.
    pub actor: Option<Actor>,
    pub ip: Option<String>,
    /// Sign-up: an existing account with this email is a conflict.
    pub require_new_user: bool,
    /// The owner's first session (token hash, lifetime in ms), committed with the team.
    pub session: Option<(&'a str, i64)>,
}

/// Creates the team and makes `owner_email` its owner, creating that user when it does
/// not exist yet, in one transaction.
pub async fn create_with_owner(store: &Store, new: NewTeam<'_>) -> Result<(TeamRow, UserRow)> {
    let mut tx = store.begin().await?;
    let user = match people::user_by_email(&mut tx, new.owner_email).await? {
        Some(_) if new.require_new_user => {
            return Err(
                Error::conflict("An account with this email already exists; log in instead").with_param("email")
            );
        }
        Some(user) => user,
        None => {
            let hash = new
                .password_hash
                .ok_or_else(|| Error::invalid("owner_password", "A password is required for a new user"))?;
            people::insert_user(&mut tx, new.owner_email, &hash).await?
        }
    };
    let team = people::insert_team(&mut tx, new.name).await?;
    people::insert_membership(&mut tx.team(&TeamId::stored(team.id.clone())), &user.id, Role::Owner).await?;
    let actor = new.actor.unwrap_or(Actor { kind: "user", id: user.id.clone(), ip: new.ip });
    let details = serde_json::json!({"name": new.name, "owner": user.id});
    audit::record(&mut tx.team(&TeamId::stored(team.id.clone())), &actor, "team.created", ("team", &team.id), details)
        .await?;
    if let Some((token_hash, ttl_ms)) = new.session {
        people::insert_session(&mut tx, &user.id, token_hash, ttl_ms).await?;
    }
    tx.commit().await?;
    Ok((team, user))
}

/// The acting person's role as it is now, read after locking the team: a decision made
/// on a role that changed since the request was authenticated cannot land.
async fn role_now(core: &Core, tx: &mut Tx, caller: &Principal) -> Result<Role> {
    core.store.lock_team(tx, caller.team_id.as_str()).await?;
    let user_id = caller.user_id().ok_or_else(|| Error::forbidden("Only people manage the team"))?;
    let member =
        people::member(&mut tx.team(&caller.team_id), user_id).await?.ok_or_else(|| Error::not_found("team"))?;
    Role::parse(&member.role).ok_or_else(|| Error::internal("membership without a role"))
}

/// The caller's team.
pub async fn get(core: &Core, caller: &Principal) -> Result<TeamRow> {
    caller.require(Perm::TeamRead)?;
    let mut conn = core.store.pool().acquire().await?;
    people::get_team(&mut conn.team(&caller.team_id)).await?.ok_or_else(|| Error::not_found("team"))
}

/// A change to the team; None leaves a field as it is.
#[derive(Default)]
pub struct TeamChange {
    pub name: Option<String>,
}

/// Renames the team (admin and up).
pub async fn update(core: &Core, caller: &Principal, change: TeamChange) -> Result<TeamRow> {
    caller.require(Perm::TeamUpdate)?;
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    if let Some(name) = change.name {
        let name = validate::name("name", &name, 100)?;
        people::rename_team(&mut tx.team(team), &name).await?;
        audit::record(
            &mut tx.team(team),
            &caller.actor(),
            "team.updated",
            ("team", team.as_str()),
            serde_json::json!({"name": name}),
        )
        .await?;
    }
    let row = people::get_team(&mut tx.team(team)).await?.ok_or_else(|| Error::not_found("team"))?;
    core.commit(tx, team.as_str()).await?;
    Ok(row)
}

/// Deletes the team and everything it owns (owner only), then erases its message bodies.
pub async fn delete(core: &Core, caller: &Principal) -> Result<()> {
    caller.require(Perm::TeamDelete)?;
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    if !role_now(core, &mut tx, caller).await?.permissions().has(Perm::TeamDelete) {
        return Err(Error::forbidden("Only the owner can delete the team"));
    }
    // The rows go by cascade; the message bodies on disk after the commit, queued for
    // erasure in the same transaction so a crash cannot leave them behind.
    if !people::delete_team(&mut tx.team(team)).await? {
        return Err(Error::not_found("team"));
    }
    let bodies = [erasures::team_key(team.as_str())];
    erasures::queue(&mut tx, &bodies, now_ms()).await?;
    core.commit_credentials(tx, team.as_str()).await?;
    crate::erasure::erase_bodies(&core.storage(), &bodies).await;
    tracing::info!(team_id = %team, actor = %caller.actor().id, "team deleted");
    Ok(())
}

/// Makes the member `user_id` the owner (owner only); the current owner becomes admin.
pub async fn transfer(core: &Core, caller: &Principal, user_id: &str) -> Result<MemberRow> {
    caller.require(Perm::TeamTransfer)?;
    let me = caller.user_id().ok_or_else(|| Error::forbidden("Only the owner can transfer the team"))?.to_owned();
    let target = UserId::parse(user_id).ok_or_else(|| Error::invalid("user_id", "No such member"))?;
    if target.as_str() == me {
        return Err(Error::invalid("user_id", "You already own this team"));
    }
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    core.store.lock_team(&mut tx, team.as_str()).await?;
    people::member(&mut tx.team(team), target.as_str())
        .await?
        .ok_or_else(|| Error::invalid("user_id", "No such member"))?;
    if !people::transfer(&mut tx.team(team), &me, target.as_str()).await? {
        return Err(Error::forbidden("Only the owner can transfer the team"));
    }
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "team.transferred",
        ("user", target.as_str()),
        serde_json::json!({"previous_owner": me}),
    )
    .await?;
    let member =
        people::member(&mut tx.team(team), target.as_str()).await?.ok_or_else(|| Error::not_found("member"))?;
    core.commit_credentials(tx, team.as_str()).await?;
    Ok(member)
}

/// A page of the team's members, before the `before` user id.
pub async fn members(core: &Core, caller: &Principal, before: Option<&str>, limit: i64) -> Result<Vec<MemberRow>> {
    caller.require(Perm::MembersRead)?;
    let mut conn = core.store.pool().acquire().await?;
    Ok(people::list_members(&mut conn.team(&caller.team_id), before, limit).await?)
}

/// Gives a member another role (admin and up). Nobody becomes owner this way, and the
/// owner's role changes only by [`transfer`].
pub async fn update_member(core: &Core, caller: &Principal, user_id: &UserId, role: Role) -> Result<MemberRow> {
    caller.require(Perm::MembersManage)?;
    if role == Role::Owner {
        return Err(Error::invalid("role", "Ownership moves only by POST /api/v1/team/transfer"));
    }
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    if !role_now(core, &mut tx, caller).await?.permissions().has(Perm::MembersManage) {
        return Err(Error::forbidden("This credential lacks the `members.manage` permission"));
    }
    let current =
        people::member(&mut tx.team(team), user_id.as_str()).await?.ok_or_else(|| Error::not_found("member"))?;
    if current.role == Role::Owner.as_str() || !people::set_role(&mut tx.team(team), user_id.as_str(), role).await? {
        return Err(Error::forbidden("The owner's role changes only by transferring ownership"));
    }
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "member.updated",
        ("user", user_id.as_str()),
        serde_json::json!({"role": role, "previous_role": current.role}),
    )
    .await?;
    let member =
        people::member(&mut tx.team(team), user_id.as_str()).await?.ok_or_else(|| Error::not_found("member"))?;
    core.commit_credentials(tx, team.as_str()).await?;
    Ok(member)
}

/// Removes a member (admin and up), or the caller leaves the team (anyone but the owner,
/// who cannot be removed).
pub async fn remove_member(core: &Core, caller: &Principal, user_id: &UserId) -> Result<()> {
    let leaving = caller.user_id() == Some(user_id.as_str());
    if !leaving {
        caller.require(Perm::MembersManage)?;
    }
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    let acting = role_now(core, &mut tx, caller).await?;
    if !leaving && !acting.permissions().has(Perm::MembersManage) {
        return Err(Error::forbidden("This credential lacks the `members.manage` permission"));
    }
    let current =
        people::member(&mut tx.team(team), user_id.as_str()).await?.ok_or_else(|| Error::not_found("member"))?;
    if current.role == Role::Owner.as_str() || !people::remove_member(&mut tx.team(team), user_id.as_str()).await? {
        return Err(Error::conflict("The owner cannot be removed; transfer ownership first"));
    }
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "member.removed",
        ("user", user_id.as_str()),
        serde_json::json!({"role": current.role}),
    )
    .await?;
    core.commit_credentials(tx, team.as_str()).await?;
    Ok(())
}

/// An invitation with its token, which exists only in this answer.
pub struct WithToken {
    pub invitation: InvitationRow,
    pub token: String,
}

/// Invites `email` with `role` (admin and up; never as owner, ownership moves by
/// [`transfer`]). The token is accepted once, within the instance's invitation lifetime.
pub async fn invite(core: &Core, caller: &Principal, email: &str, role: Role) -> Result<WithToken> {
    caller.require(Perm::MembersManage)?;
    let email = validate::email("email", email)?;
    if role == Role::Owner {
        return Err(Error::invalid("role", "Invite as admin, developer or member; ownership moves by transfer"));
    }
    let team = &caller.team_id;
    let token = random_token(INVITATION_PREFIX);
    let mut tx = core.store.begin().await?;
    if let Some(user) = people::user_by_email(&mut tx, &email).await?
        && people::member(&mut tx.team(team), &user.id).await?.is_some()
    {
        return Err(Error::conflict("This person is already a member").with_param("email"));
    }
    let ttl = core.settings.invitation_ttl_hours * 3_600_000;
    let row = people::insert_invitation(&mut tx.team(team), &email, role, &token_hash(&token), &caller.actor().id, ttl)
        .await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "member.invited",
        ("invitation", &row.id),
        serde_json::json!({"email": email, "role": role}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(WithToken { invitation: row, token })
}

/// A page of the team's invitations (without tokens), before the `before` id.
pub async fn invitations(
    core: &Core,
    caller: &Principal,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<InvitationRow>> {
    caller.require(Perm::MembersRead)?;
    let mut conn = core.store.pool().acquire().await?;
    Ok(people::list_invitations(&mut conn.team(&caller.team_id), before, limit).await?)
}

/// Withdraws a pending invitation (admin and up).
pub async fn revoke_invitation(core: &Core, caller: &Principal, id: &crate::ids::InvitationId) -> Result<()> {
    caller.require(Perm::MembersManage)?;
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    if !people::revoke_invitation(&mut tx.team(team), id.as_str()).await? {
        return Err(Error::not_found("invitation"));
    }
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "invitation.revoked",
        ("invitation", id.as_str()),
        serde_json::json!({}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(())
}
