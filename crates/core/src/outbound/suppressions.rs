//! The team's suppression list (docs/API.md "Suppressions"): addresses mail is no longer
//! sent to after a permanent bounce or a complaint (see [`super::notifications`]). People
//! and keys that read providers list it; those that manage providers remove an address,
//! so mail to it is sent again.

use serde_json::json;

use crate::Core;
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::error::{Error, Result};
use crate::store::TeamScope;
use crate::store::audit;
use crate::store::outbound::{self as q, SuppressionRow};

/// The longest cursor this list gives out: an address.
pub const MAX_CURSOR: usize = 320;

/// A cursor of this list: the last address of the previous page.
pub fn check_cursor(cursor: Option<&str>) -> Result<()> {
    match cursor {
        Some(c) if c.chars().count() > MAX_CURSOR => {
            Err(Error::malformed("cursor is not one this API gave out").with_param("cursor"))
        }
        _ => Ok(()),
    }
}

/// A page of the team's suppressed addresses in address order, after `after`.
pub async fn list(core: &Core, caller: &Principal, after: Option<&str>, limit: i64) -> Result<Vec<SuppressionRow>> {
    caller.require(Perm::ProvidersRead)?;
    check_cursor(after)?;
    let mut conn = core.store.pool().acquire().await?;
    Ok(q::list_suppressions(&mut conn.team(&caller.team_id), after, limit).await?)
}

/// Removes an address from the list (compared without case).
pub async fn delete(core: &Core, caller: &Principal, address: &str) -> Result<()> {
    caller.require(Perm::ProvidersManage)?;
    let address = address.trim().to_ascii_lowercase();
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    if !q::delete_suppression(&mut tx.team(team), &address).await? {
        return Err(Error::not_found("suppressed address"));
    }
    audit::record(&mut tx.team(team), &caller.actor(), "suppression.deleted", ("suppression", &address), json!({}))
        .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_addresses_at_most() {
        check_cursor(None).unwrap();
        check_cursor(Some("a@example.org")).unwrap();
        let err = check_cursor(Some(&"a".repeat(MAX_CURSOR + 1))).unwrap_err();
        assert_eq!(err.param(), Some("cursor"));
    }
}
