//! Team limits (defaults from settings, raised per team by approved increase requests)
//! and per-credential request rate limiting.

pub mod rate;

use crate::config::LimitDefaults;
use crate::ids::TeamId;
use crate::store::TeamScope;
use crate::store::{Conn, limits as q};

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

/// The operator's decision on an increase request: approval sets the team's limit to
/// `granted` (default: what was requested). Used by the admin API and the CLI.
pub async fn decide(
    store: &crate::store::Store,
    id: &str,
    approve: bool,
    granted: Option<i64>,
    via: &str,
) -> crate::error::Result<q::IncreaseRow> {
    use crate::error::Error;
    use crate::store::audit;
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
