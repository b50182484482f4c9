//! Changes announced to every node on PostgreSQL: `NOTIFY sendmux_changes` with a payload
//! naming what changed, sent inside the changing transaction so it is delivered when
//! (and only if) the change commits. Each node's listener
//! ([`crate::jobs::listen_for_changes`]) drops what its caches hold about it.
//!
//! Payloads: `t:<team_id>` (the team's cached reads), `c:<team_id>` (those and every
//! cached credential), `c:` (every cached credential).

use super::Conn;

pub const CHANNEL: &str = "sendmux_changes";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Anything a team's cached reads may show.
    Team,
    /// Keys, sessions, members, roles or limits: what a resolved credential holds.
    Credentials,
}

pub fn payload(change: Change, team_id: Option<&str>) -> String {
    let kind = match change {
        Change::Team => 't',
        Change::Credentials => 'c',
    };
    format!("{kind}:{}", team_id.unwrap_or(""))
}

pub fn parse(payload: &str) -> Option<(Change, Option<&str>)> {
    let (kind, team) = payload.split_once(':')?;
    let change = match kind {
        "t" => Change::Team,
        "c" => Change::Credentials,
        _ => return None,
    };
    let team = (!team.is_empty()).then_some(team);
    if change == Change::Team && team.is_none() {
        return None;
    }
    Some((change, team))
}

/// Queues the notification on `conn`; PostgreSQL sends it when the transaction commits
/// (at once outside one).
pub async fn announce(conn: &mut Conn, change: Change, team_id: Option<&str>) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload(change, team_id)).execute(conn).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        for (change, team) in
            [(Change::Team, Some("team_1")), (Change::Credentials, Some("team_2")), (Change::Credentials, None)]
        {
            assert_eq!(parse(&payload(change, team)), Some((change, team)));
        }
        assert_eq!(parse("t:"), None, "a team change names its team");
        assert_eq!(parse("x:team_1"), None);
        assert_eq!(parse("nonsense"), None);
    }
}
