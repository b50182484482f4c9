//! The team's logs (docs/API.md §11 "Logs"): the audit trail of who (a user, a key, the
//! operator) changed what, when and from where, and every outbound delivery attempt;
//! both newest first, for callers holding `logs.read`.

use crate::Core;
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::error::{Error, Result};
use crate::store::TeamScope;
use crate::store::{audit, outbound};

pub use crate::store::audit::AuditRow;
pub use crate::store::outbound::AttemptRow;

/// Which log: `audit` (the default) or `delivery`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    Audit,
    Delivery,
}

impl LogKind {
    /// The log a `kind` names; none names the audit trail.
    pub fn parse(kind: Option<&str>) -> Result<Self> {
        match kind {
            None | Some("audit") => Ok(Self::Audit),
            Some("delivery") => Ok(Self::Delivery),
            Some(_) => Err(Error::malformed("kind must be audit or delivery").with_param("kind")),
        }
    }
}

/// A page of the team's audit trail, before the `before` id.
pub async fn audit(core: &Core, caller: &Principal, before: Option<&str>, limit: i64) -> Result<Vec<AuditRow>> {
    caller.require(Perm::LogsRead)?;
    let mut conn = core.store.pool().acquire().await?;
    Ok(audit::list(&mut conn.team(&caller.team_id), before, limit).await?)
}

/// A page of the team's delivery attempts, before the `before` id.
pub async fn deliveries(core: &Core, caller: &Principal, before: Option<&str>, limit: i64) -> Result<Vec<AttemptRow>> {
    caller.require(Perm::LogsRead)?;
    let mut conn = core.store.pool().acquire().await?;
    Ok(outbound::list_attempts(&mut conn.team(&caller.team_id), before, limit).await?)
}

pub use crate::store::audit::AuditFilter;

/// A page of the team's audit trail narrowed by `filter`, before the `before` id.
pub async fn audit_filtered(
    core: &Core,
    caller: &Principal,
    filter: &AuditFilter,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditRow>> {
    caller.require(Perm::LogsRead)?;
    for (param, value, max) in
        [("action", &filter.action, 64), ("actor", &filter.actor_id, 64), ("target", &filter.target_id, 64)]
    {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(Error::invalid(param, format!("{param} is at most {max} characters")));
        }
    }
    let mut conn = core.store.pool().acquire().await?;
    Ok(audit::list_filtered(&mut conn.team(&caller.team_id), filter, before, limit).await?)
}
