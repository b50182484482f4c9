//! Team limits (docs/API.md §4 "Limits"): defaults from settings, raised per team by
//! approved increase requests; what a team uses of each; increase requests, which a team
//! may make from 80 % use, above the current limit and one pending per limit, and the
//! operator decides. And per-credential request rate limiting.

pub mod rate;

use crate::Core;
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::config::LimitDefaults;
use crate::error::{Error, Result};
use crate::ids::TeamId;
use crate::store::TeamScope;
use crate::store::{Conn, audit, keys, mailboxes, now_ms, providers, webhooks};
use crate::store::{limits as q, limits::IncreaseRow};
use crate::validate;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitName {
    ActiveKeys,
    Webhooks,
    SendingRatePerMinute,
    Mailboxes,
    Providers,
}

impl LimitName {
    pub const ALL: [LimitName; 5] = [
        LimitName::ActiveKeys,
        LimitName::Webhooks,
        LimitName::SendingRatePerMinute,
        LimitName::Mailboxes,
        LimitName::Providers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitName::ActiveKeys => "active_keys",
            LimitName::Webhooks => "webhooks",
            LimitName::SendingRatePerMinute => "sending_rate_per_minute",
            LimitName::Mailboxes => "mailboxes",
            LimitName::Providers => "providers",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }

    pub fn default_value(self, d: &LimitDefaults) -> i64 {
        match self {
            LimitName::ActiveKeys => d.active_keys,
            LimitName::Webhooks => d.webhooks,
            LimitName::SendingRatePerMinute => d.sending_rate_per_minute,
            LimitName::Mailboxes => d.mailboxes,
            LimitName::Providers => d.providers,
        }
    }
}

/// The limit in force for the team: its override, or the instance default.
pub async fn limit_for(conn: &mut Conn, defaults: &LimitDefaults, team: &TeamId, name: LimitName) -> sqlx::Result<i64> {
    let overrides = q::overrides(&mut conn.team(team)).await?;
    Ok(overrides
        .iter()
        .find(|(n, _)| n == name.as_str())
        .map(|(_, v)| *v)
        .unwrap_or_else(|| name.default_value(defaults)))
}

/// True from 80 % of the limit on: the point where an increase may be requested.
pub fn increase_requestable(used: i64, limit: i64) -> bool {
    used.saturating_mul(5) >= limit.saturating_mul(4)
}

/// One limit of a team with what the team uses of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    pub name: LimitName,
    pub limit: i64,
    pub used: i64,
    /// `used` in percent of `limit`, to one decimal.
    pub percent: f64,
    /// From 80 % of the limit: an increase may be requested.
    pub increase_requestable: bool,
}

/// What the team uses of `name` now; the sending rate is that of its busiest sending key.
async fn used(core: &Core, conn: &mut Conn, team: &TeamId, name: LimitName) -> Result<i64> {
    let now = now_ms();
    Ok(match name {
        LimitName::ActiveKeys => keys::count_active(&mut conn.team(team), now).await?,
        LimitName::Mailboxes => mailboxes::count(&mut conn.team(team)).await?,
        LimitName::Providers => providers::count(&mut conn.team(team)).await?,
        LimitName::Webhooks => webhooks::count(&mut conn.team(team)).await?,
        LimitName::SendingRatePerMinute => {
            let mut max = 0;
            for key in keys::active_sending_key_ids(&mut conn.team(team), now).await? {
                max = max.max(core.limiter.used(conn, &key, now).await?);
            }
            max
        }
    })
}

async fn usage(core: &Core, conn: &mut Conn, team: &TeamId, name: LimitName) -> Result<Usage> {
    let limit = limit_for(conn, &core.settings.limits, team, name).await?;
    let used = used(core, conn, team, name).await?;
    let percent = ((used as f64) * 1000.0 / (limit as f64)).round() / 10.0;
    Ok(Usage { name, limit, used, percent, increase_requestable: increase_requestable(used, limit) })
}

/// Every limit of the caller's team with its use, in [`LimitName::ALL`] order.
pub async fn list(core: &Core, caller: &Principal) -> Result<Vec<Usage>> {
    caller.require(Perm::LimitsRead)?;
    let mut conn = core.store.pool().acquire().await?;
    let mut all = Vec::with_capacity(LimitName::ALL.len());
    for name in LimitName::ALL {
        all.push(usage(core, &mut conn, &caller.team_id, name).await?);
    }
    Ok(all)
}

/// An increase of one limit as the team asks for it.
pub struct IncreaseRequest {
    pub name: LimitName,
    pub requested: i64,
    pub reason: String,
}

/// Asks the operator to raise a limit: from 80 % use, for a value above the current
/// limit (at most 1,000,000,000), while no other request for that limit is pending.
pub async fn request_increase(core: &Core, caller: &Principal, request: IncreaseRequest) -> Result<IncreaseRow> {
    caller.require(Perm::LimitsRequest)?;
    let IncreaseRequest { name, requested, reason } = request;
    let reason = validate::name("reason", &reason, 1000)?;
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    core.store.lock_team(&mut tx, team.as_str()).await?;
    let current = usage(core, &mut tx, team, name).await?;
    if requested <= current.limit || requested > 1_000_000_000 {
        return Err(Error::invalid(
            "requested",
            format!("requested must be above the current limit ({}) and at most 1000000000", current.limit),
        ));
    }
    if !current.increase_requestable {
        return Err(Error::conflict(format!(
            "An increase can be requested from 80% of the limit; {} is at {}%",
            name.as_str(),
            current.percent
        )));
    }
    let pending = q::list_requests(&mut tx, Some(team.as_str()), Some("pending"), None, 100).await?;
    if pending.iter().any(|r| r.limit_name == name.as_str()) {
        return Err(Error::conflict("A request for this limit is already pending"));
    }
    let row =
        q::insert_request(&mut tx.team(team), name.as_str(), current.limit, requested, &reason, &caller.actor().id)
            .await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "limit.increase_requested",
        ("increase_request", &row.id),
        serde_json::json!({"limit": name.as_str(), "requested": requested}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(row)
}

/// A page of the caller's team's increase requests and their decisions, before the
/// `before` id.
pub async fn increase_requests(
    core: &Core,
    caller: &Principal,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<IncreaseRow>> {
    caller.require(Perm::LimitsRead)?;
    let mut conn = core.store.pool().acquire().await?;
    Ok(q::list_requests(&mut conn, Some(caller.team_id.as_str()), None, before, limit).await?)
}

/// The operator's decision on an increase request: approval sets the team's limit to
/// `granted` (default: what was requested). Used by the admin API and the CLI.
pub async fn decide(
    store: &crate::store::Store,
    id: &str,
    approve: bool,
    granted: Option<i64>,
    via: &str,
) -> Result<IncreaseRow> {
    let mut tx = store.begin().await?;
    let row = q::get_request(&mut tx, id).await?.ok_or_else(|| Error::not_found("increase request"))?;
    if row.status != "pending" {
        return Err(Error::conflict(format!("This request is already {}", row.status)));
    }
    let granted = if approve {
        let value = granted.unwrap_or(row.requested);
        if !(1..=1_000_000_000).contains(&value) {
            return Err(Error::invalid("limit", "limit must be 1 to 1000000000"));
        }
        q::set_override(&mut tx.team(&TeamId::stored(row.team_id.clone())), &row.limit_name, value).await?;
        Some(value)
    } else {
        None
    };
    let status = if approve { "approved" } else { "denied" };
    if !q::decide(&mut tx, id, status, granted).await? {
        return Err(Error::conflict("This request was decided concurrently"));
    }
    let action = if approve { "limit.increase_approved" } else { "limit.increase_denied" };
    audit::record(
        &mut tx.team(&TeamId::stored(row.team_id.clone())),
        &audit::Actor::operator(via),
        action,
        ("increase_request", id),
        serde_json::json!({"limit": row.limit_name, "granted": granted}),
    )
    .await?;
    let row = q::get_request(&mut tx, id).await?.ok_or_else(|| Error::not_found("increase request"))?;
    // Limits are part of a resolved credential: every node (on PostgreSQL) forgets its
    // cached ones when this commits, the CLI's changes included.
    if store.backend() == crate::store::Backend::Postgres {
        crate::store::changes::announce(
            &mut tx,
            crate::store::changes::Change::Credentials,
            Some(row.team_id.as_str()),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increases_open_at_eighty_percent() {
        assert!(!increase_requestable(79, 100));
        assert!(increase_requestable(80, 100));
        assert!(increase_requestable(8, 10));
        assert!(!increase_requestable(7, 10));
        assert!(increase_requestable(1440, 1800));
        assert!(!increase_requestable(1439, 1800));
    }
}
