//! Creating a team with its owner: shared by sign-up, the admin API and the CLI.

use crate::auth::perms::Role;
use crate::error::{Error, Result};
use crate::ids::TeamId;
use crate::store::Store;
use crate::store::TeamScope;
use crate::store::audit::{self, Actor};
use crate::store::people::{self, TeamRow, UserRow};

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
