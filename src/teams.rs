//! Creating a team with its owner: shared by sign-up, the admin API and the CLI.

use crate::auth::perms::Role;
use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use crate::store::audit::{self, Actor};
use crate::store::people::{self, TeamRow, UserRow};

/// Creates the team and makes `owner_email` its owner, creating that user when it does
/// not exist yet (then `password_hash` is required). An existing user keeps their
/// password.
pub async fn create_with_owner(
    store: &Store,
    name: &str,
    owner_email: &str,
    password_hash: Option<String>,
    ip: Option<String>,
    actor: Option<Actor>,
    require_new_user: bool,
) -> ApiResult<(TeamRow, UserRow)> {
    let mut tx = store.begin().await?;
    let user = match people::user_by_email(&mut tx, owner_email).await? {
        Some(_) if require_new_user => {
            return Err(
                ApiError::conflict("An account with this email already exists; log in instead").with_param("email")
            );
        }
        Some(user) => user,
        None => {
            let hash = password_hash
                .ok_or_else(|| ApiError::invalid("owner_password", "A password is required for a new user"))?;
            people::insert_user(&mut tx, owner_email, &hash).await?
        }
    };
    let team = people::insert_team(&mut tx, name).await?;
    people::insert_membership(&mut tx, &team.id, &user.id, Role::Owner).await?;
    let actor = actor.unwrap_or(Actor { kind: "user", id: user.id.clone(), ip });
    audit::record(
        &mut tx,
        &team.id,
        &actor,
        "team.created",
        ("team", &team.id),
        serde_json::json!({"name": name, "owner": user.id}),
    )
    .await?;
    tx.commit().await?;
    Ok((team, user))
}
