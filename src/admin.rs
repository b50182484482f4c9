//! Operator tasks for the CLI, run against the store with the same code as the admin API.

use anyhow::{Context, anyhow};

use sendmux_core::auth::password;
use sendmux_core::billing::TeamUsage;
use sendmux_core::config::Settings;
use sendmux_core::store::{Store, audit::Actor, limits as q, now_ms, rfc3339};
use sendmux_core::{Error, validate};

pub enum Task {
    CreateTeam { name: String, owner_email: String, owner_password: Option<String> },
    Decide { id: String, approve: bool, limit: Option<i64> },
    ListIncreases { all: bool },
    Usage { month: String },
}

/// A refusal as the operator reads it: the flag it is about, then why.
fn user_error(e: Error) -> anyhow::Error {
    match (&e, e.param()) {
        (Error::Internal(cause), _) => anyhow!("{cause:#}"),
        (_, Some(p)) => anyhow!("{p}: {e}"),
        (_, None) => anyhow!("{e}"),
    }
}

pub async fn run(task: Task, settings: &Settings) -> anyhow::Result<()> {
    let store = Store::connect(settings).await?;
    store.migrate().await?;
    match task {
        Task::CreateTeam { name, owner_email, owner_password } => {
            let name = validate::name("--name", &name, 100).map_err(user_error)?;
            let email = validate::email("--owner-email", &owner_email).map_err(user_error)?;
            let hash = match owner_password {
                Some(pw) => {
                    password::validate(&pw).map_err(|e| user_error(e.with_param("--owner-password")))?;
                    Some(password::Passwords::default().hash(pw).await.map_err(user_error)?)
                }
                None => None,
            };
            let (team, user) = sendmux_core::teams::create_with_owner(
                &store,
                sendmux_core::teams::NewTeam {
                    name: &name,
                    owner_email: &email,
                    password_hash: hash,
                    actor: Some(Actor::operator("cli")),
                    ip: None,
                    require_new_user: false,
                    session: None,
                },
            )
            .await
            .map_err(|e| match e.param() {
                Some("owner_password") => {
                    anyhow!("--owner-password (or SENDMUX_OWNER_PASSWORD) is required for a new user")
                }
                _ => user_error(e),
            })?;
            println!("team {} ({}) created; owner {} <{}>", team.id, team.name, user.id, user.email);
        }
        Task::Decide { id, approve, limit } => {
            let row = sendmux_core::limits::decide(&store, &id, approve, limit, "cli")
                .await
                .map_err(user_error)
                .context(id.clone())?;
            println!(
                "{} {}: {} for team {} ({} {} -> {})",
                row.id,
                row.status,
                row.limit_name,
                row.team_id,
                row.current_limit,
                if approve { "raised" } else { "kept" },
                row.granted.unwrap_or(row.current_limit)
            );
        }
        Task::ListIncreases { all } => {
            let mut conn = store.pool().acquire().await?;
            let rows = q::list_requests(&mut conn, None, if all { None } else { Some("pending") }, None, 1000).await?;
            if rows.is_empty() {
                println!("no {}increase requests", if all { "" } else { "pending " });
            }
            for r in rows {
                println!(
                    "{}  {}  {}  {}  {} -> {}  {}  {:?}",
                    r.id,
                    rfc3339(r.created_at),
                    r.team_id,
                    r.status,
                    r.current_limit,
                    r.requested,
                    r.limit_name,
                    r.reason
                );
            }
        }
        Task::Usage { month } => {
            let (month, from, to) = sendmux_core::billing::month("--month", Some(&month)).map_err(user_error)?;
            let mut conn = store.pool().acquire().await?;
            let teams = sendmux_core::billing::every_team_usage(&settings.prices, &mut conn, from, to, now_ms())
                .await
                .map_err(user_error)?;
            print!("{}", usage_report(&month, &teams));
        }
    }
    store.close().await;
    Ok(())
}

/// One line per team and metric, tab-separated so it pastes into a spreadsheet:
/// `team_id  team_name  metric  quantity  unit  unit_price  amount`, then the seats and
/// the team's total.
pub fn usage_report(month: &str, teams: &[TeamUsage]) -> String {
    let mut out = format!("usage for {month} (UTC, USD)\n");
    out.push_str("team_id\tteam_name\tmetric\tquantity\tunit\tunit_price\tamount\n");
    if teams.is_empty() {
        out.push_str("no teams\n");
    }
    for t in teams {
        let u = &t.usage;
        let name = t.team_name.replace(['\t', '\n', '\r'], " ");
        for i in &u.line_items {
            out.push_str(&format!(
                "{}\t{name}\t{}\t{}\t{}\t{}\t{}\n",
                u.team_id, i.metric, i.quantity, i.unit, i.unit_price, i.amount
            ));
        }
        out.push_str(&format!("{}\t{name}\tseats\t{}\tseat\t0\t{}\n", u.team_id, u.seats.count, u.seats.amount));
        out.push_str(&format!("{}\t{name}\ttotal\t\t\t\t{}\n", u.team_id, u.total));
    }
    out
}
