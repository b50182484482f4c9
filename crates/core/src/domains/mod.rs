//! Team domains (docs/API.md "Domains"): a team adds a name and gets the DNS records to
//! publish (ownership, DKIM, SPF and DMARC recommendations, MX); a check — on request or
//! in the background — looks them up through the configured resolver and moves the
//! domain between pending, verified and failed, raising `domain.verified` and
//! `domain.failed`. A verified domain's key signs the team's mail from it, and its
//! addresses receive mail. One team at most holds a name verified.

pub mod dkim;
pub mod dns;
pub mod name;

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::Core;
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::ids::{DomainId, TeamId};
use crate::store::TeamScope;
use crate::store::audit::Actor;
use crate::store::domains::{self as q, DomainRow};
use crate::store::events::{self, Subject};
use crate::store::{audit, now_ms};
use dns::Lookup;

pub const PENDING: &str = "pending";
pub const VERIFIED: &str = "verified";
pub const FAILED: &str = "failed";

/// Domains one team may hold.
pub const MAX_DOMAINS: i64 = 100;

/// What the caller asks for when adding a domain.
pub struct NewDomain {
    pub name: String,
    /// `rsa` (default) or `ed25519`.
    pub dkim_algorithm: Option<String>,
}

/// The last lookup of one record.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Check {
    pub status: String,
    pub checked_at: Option<i64>,
}

/// One DNS record a team publishes, with what the last lookup found.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// ownership | dkim | spf | dmarc | mx
    pub purpose: &'static str,
    /// TXT | MX
    pub kind: &'static str,
    pub name: String,
    pub value: String,
    pub status: String,
    pub checked_at: Option<i64>,
}

// ---- Rules --------------------------------------------------------------------------

fn checks_of(row: &DomainRow) -> BTreeMap<String, Check> {
    serde_json::from_str(&row.checks).unwrap_or_default()
}

fn check_of(checks: &BTreeMap<String, Check>, key: &str) -> Check {
    checks.get(key).cloned().unwrap_or_else(|| Check { status: PENDING.into(), checked_at: None })
}

pub fn ownership_name(name: &str) -> String {
    format!("_sendmux.{name}")
}

pub fn ownership_value(token: &str) -> String {
    format!("sendmux-verification={token}")
}

pub fn dkim_name(selector: &str, name: &str) -> String {
    format!("{selector}._domainkey.{name}")
}

/// The SPF record to recommend: the managed SES route's senders when there is one.
pub fn spf_value(settings: &Settings) -> String {
    if settings.managed_ses.is_some() { "v=spf1 include:amazonses.com ~all".into() } else { "v=spf1 a mx ~all".into() }
}

pub const DMARC_VALUE: &str = "v=DMARC1; p=none";

/// The records of `row` to publish, in the order a person adds them.
pub fn records(settings: &Settings, row: &DomainRow) -> Vec<Record> {
    let checks = checks_of(row);
    let rec = |purpose: &'static str, key: &str, kind: &'static str, name: String, value: String| {
        let c = check_of(&checks, key);
        Record { purpose, kind, name, value, status: c.status, checked_at: c.checked_at }
    };
    let mut out = vec![
        rec("ownership", "ownership", "TXT", ownership_name(&row.name), ownership_value(&row.token)),
        rec(
            "dkim",
            "dkim",
            "TXT",
            dkim_name(&row.dkim_selector, &row.name),
            dkim::record_value(&row.dkim_algorithm, &row.dkim_public_key),
        ),
    ];
    if let (Some(sel), Some(alg), Some(key)) =
        (&row.next_dkim_selector, &row.next_dkim_algorithm, &row.next_dkim_public_key)
    {
        out.push(rec("dkim", "dkim_next", "TXT", dkim_name(sel, &row.name), dkim::record_value(alg, key)));
    }
    out.push(rec("spf", "spf", "TXT", row.name.clone(), spf_value(settings)));
    out.push(rec("dmarc", "dmarc", "TXT", format!("_dmarc.{}", row.name), DMARC_VALUE.into()));
    out.push(rec("mx", "mx", "MX", row.name.clone(), format!("10 {}", settings.smtp.hostname.to_ascii_lowercase())));
    out
}

/// What the lookups of one check found, per record (`dkim_next` only during a rotation).
#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub ownership: Option<Lookup>,
    pub dkim: Option<Lookup>,
    pub dkim_next: Option<Lookup>,
    pub spf: Option<Lookup>,
    pub dmarc: Option<Lookup>,
    pub mx: Option<Lookup>,
}

/// Looks every record of `row` up, concurrently; no store access.
pub async fn look_up(dns: &dns::Dns, row: &DomainRow) -> Findings {
    let next = async {
        match &row.next_dkim_selector {
            Some(sel) => Some(dns.txt(&dkim_name(sel, &row.name)).await),
            None => None,
        }
    };
    let (ownership_at, dkim_at, dmarc_at) =
        (ownership_name(&row.name), dkim_name(&row.dkim_selector, &row.name), format!("_dmarc.{}", row.name));
    let (ownership, dkim, dkim_next, spf, dmarc, mx) = tokio::join!(
        dns.txt(&ownership_at),
        dns.txt(&dkim_at),
        next,
        dns.txt(&row.name),
        dns.txt(&dmarc_at),
        dns.mx(&row.name),
    );
    Findings {
        ownership: Some(ownership),
        dkim: Some(dkim),
        dkim_next,
        spf: Some(spf),
        dmarc: Some(dmarc),
        mx: Some(mx),
    }
}

/// A change of a domain's status that raises an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Verified,
    Failed,
}

impl Transition {
    pub fn event_type(self) -> &'static str {
        match self {
            Transition::Verified => "domain.verified",
            Transition::Failed => "domain.failed",
        }
    }
}

/// Applies `found` to `row` as of `now`: each record's status (a record that matched
/// before and no longer does has `failed`; one that never matched is `pending`; a lookup
/// without an answer changes nothing), a finished DKIM rotation, `receiving`, the
/// domain's status and reason, and the next check. Returns the transition, if any.
pub fn apply(settings: &Settings, row: &mut DomainRow, found: &Findings, now: i64) -> Option<Transition> {
    let mut checks = checks_of(row);
    let mut problems: Vec<String> = Vec::new();
    let hostname = settings.smtp.hostname.to_ascii_lowercase();
    let mut set =
        |checks: &mut BTreeMap<String, Check>, key: &str, lookup: &Option<Lookup>, ok: &dyn Fn(&str) -> bool| {
            let Some(lookup) = lookup else { return };
            let prev = check_of(checks, key);
            let status = match lookup {
                Lookup::Failed(why) => {
                    problems.push(why.clone());
                    return;
                }
                Lookup::Found(values) if values.iter().any(|v| ok(v)) => VERIFIED,
                _ if prev.status == VERIFIED || prev.status == FAILED => FAILED,
                _ => PENDING,
            };
            checks.insert(key.to_owned(), Check { status: status.into(), checked_at: Some(now) });
        };
    let ownership = ownership_value(&row.token);
    set(&mut checks, "ownership", &found.ownership, &|v| v.trim() == ownership);
    let current = row.dkim_public_key.clone();
    set(&mut checks, "dkim", &found.dkim, &|v| dkim::record_matches(v, &current));
    if let Some(next) = row.next_dkim_public_key.clone() {
        set(&mut checks, "dkim_next", &found.dkim_next, &|v| dkim::record_matches(v, &next));
    }
    set(&mut checks, "spf", &found.spf, &|v| v.trim_start().to_ascii_lowercase().starts_with("v=spf1"));
    set(&mut checks, "dmarc", &found.dmarc, &|v| v.trim_start().to_ascii_uppercase().starts_with("V=DMARC1"));
    set(&mut checks, "mx", &found.mx, &|v| v == hostname);

    // A rotation ends when the new key's record is published: it signs from then on.
    if check_of(&checks, "dkim_next").status == VERIFIED
        && let (Some(sel), Some(alg), Some(public), Some(private)) = (
            row.next_dkim_selector.take(),
            row.next_dkim_algorithm.take(),
            row.next_dkim_public_key.take(),
            row.next_dkim_private_key.take(),
        )
    {
        row.dkim_selector = sel;
        row.dkim_algorithm = alg;
        row.dkim_public_key = public;
        row.dkim_private_key = private;
        if let Some(c) = checks.remove("dkim_next") {
            checks.insert("dkim".into(), c);
        }
    }

    let ownership_ok = check_of(&checks, "ownership").status == VERIFIED;
    let dkim_ok = check_of(&checks, "dkim").status == VERIFIED;
    if !ownership_ok {
        problems.insert(0, format!("the TXT record {} is missing or does not match", ownership_name(&row.name)));
    }
    if !dkim_ok {
        let at = dkim_name(&row.dkim_selector, &row.name);
        problems.insert(usize::from(!ownership_ok), format!("the DKIM TXT record {at} is missing or does not match"));
    }
    let before = row.status.clone();
    row.status = if ownership_ok && dkim_ok {
        VERIFIED
    } else if before == VERIFIED || before == FAILED {
        FAILED
    } else {
        PENDING
    }
    .to_owned();
    row.receiving = i64::from(row.status == VERIFIED && check_of(&checks, "mx").status == VERIFIED);
    row.reason = if row.status == VERIFIED && problems.is_empty() {
        None
    } else if row.status == VERIFIED {
        Some(format!("Verified; the last check could not finish: {}", problems.join("; ")))
    } else if row.status == FAILED {
        Some(format!(
            "No longer verified (mail from it is not signed and mail to it is refused): {}",
            problems.join("; ")
        ))
    } else {
        Some(format!("Not verified yet: {}", problems.join("; ")))
    };
    row.checks = serde_json::to_string(&checks).unwrap_or_else(|_| "{}".into());
    row.checked_at = Some(now);
    row.updated_at = now;
    let every =
        if row.status == VERIFIED { settings.domains.verified_check_secs } else { settings.domains.pending_check_secs };
    row.next_check_at = now + every as i64 * 1000;
    match (before.as_str(), row.status.as_str()) {
        (b, VERIFIED) if b != VERIFIED => {
            row.verified_at = Some(now);
            Some(Transition::Verified)
        }
        (VERIFIED, FAILED) => Some(Transition::Failed),
        _ => None,
    }
}

fn random_selector() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..8).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("smx{tail}")
}

// ---- Operations ---------------------------------------------------------------------

/// Adds a domain: checks the name, generates its DKIM key (sealed at rest) and its
/// ownership token. The domain is pending until its records are published and checked.
pub async fn create(core: &Core, caller: &Principal, new: NewDomain) -> Result<DomainRow> {
    caller.require(Perm::DomainsManage)?;
    let name = name::check(&new.name, &core.settings.inbound_domains)?;
    let algorithm = dkim::algorithm(new.dkim_algorithm.as_deref(), "dkim_algorithm")?;
    let team = &caller.team_id;
    {
        let mut conn = core.store.pool().acquire().await?;
        let existing = q::list(&mut conn.team(team), None, MAX_DOMAINS + 1).await?;
        if existing.iter().any(|d| d.name == name) {
            return Err(Error::conflict(format!("This team already has the domain {name}")).with_param("name"));
        }
        if existing.len() as i64 >= MAX_DOMAINS {
            return Err(Error::limit_exceeded(format!("A team holds at most {MAX_DOMAINS} domains")));
        }
    }
    let key = dkim::generate(algorithm).await?;
    let now = now_ms();
    let row = DomainRow {
        id: DomainId::new().into_string(),
        team_id: team.as_str().to_owned(),
        name,
        status: PENDING.into(),
        receiving: 0,
        token: crate::crypto::random_token(""),
        dkim_selector: random_selector(),
        dkim_algorithm: algorithm.into(),
        dkim_public_key: key.public_b64,
        dkim_private_key: core.secrets.seal(&key.private_der),
        next_dkim_selector: None,
        next_dkim_algorithm: None,
        next_dkim_public_key: None,
        next_dkim_private_key: None,
        checks: "{}".into(),
        reason: Some("Not verified yet: publish the records, then verify".into()),
        verified_at: None,
        checked_at: None,
        next_check_at: now + core.settings.domains.pending_check_secs as i64 * 1000,
        created_at: now,
        updated_at: now,
    };
    let mut tx = core.store.begin().await?;
    core.store.lock_team(&mut tx, team.as_str()).await?;
    if q::list(&mut tx.team(team), None, MAX_DOMAINS + 1).await?.len() as i64 >= MAX_DOMAINS {
        return Err(Error::limit_exceeded(format!("A team holds at most {MAX_DOMAINS} domains")));
    }
    q::insert(&mut tx.team(team), &row).await.map_err(|e| match Error::from(e) {
        Error::Conflict(_) => {
            Error::conflict(format!("This team already has the domain {}", row.name)).with_param("name")
        }
        e => e,
    })?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "domain.created",
        ("domain", &row.id),
        json!({"name": row.name, "dkim_algorithm": row.dkim_algorithm}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(row)
}

/// A page of the team's domains, newest first, before the `before` id.
pub async fn list(core: &Core, caller: &Principal, before: Option<&str>, limit: i64) -> Result<Vec<DomainRow>> {
    caller.require(Perm::DomainsRead)?;
    let mut conn = core.store.pool().acquire().await?;
    Ok(q::list(&mut conn.team(&caller.team_id), before, limit).await?)
}

/// One domain of the caller's team.
pub async fn get(core: &Core, caller: &Principal, id: &DomainId) -> Result<DomainRow> {
    caller.require(Perm::DomainsRead)?;
    let mut conn = core.store.pool().acquire().await?;
    q::get(&mut conn.team(&caller.team_id), id.as_str()).await?.ok_or_else(|| Error::not_found("domain"))
}

/// Deletes a domain no mailbox of the team is on.
pub async fn delete(core: &Core, caller: &Principal, id: &DomainId) -> Result<()> {
    caller.require(Perm::DomainsManage)?;
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    core.store.lock_team(&mut tx, team.as_str()).await?;
    let row = q::get(&mut tx.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("domain"))?;
    let mailboxes = q::mailboxes_on(&mut tx.team(team), &row.name).await?;
    if mailboxes > 0 {
        return Err(Error::conflict(format!(
            "{mailboxes} mailbox(es) of this team are on {}; delete them first",
            row.name
        )));
    }
    q::delete(&mut tx.team(team), id.as_str()).await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "domain.deleted",
        ("domain", id.as_str()),
        json!({"name": row.name}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(())
}

/// Looks the domain's records up now and answers it with what was found. Verifying a
/// name another team holds verified is a conflict.
pub async fn verify(core: &Core, caller: &Principal, id: &DomainId) -> Result<DomainRow> {
    caller.require(Perm::DomainsManage)?;
    let row = {
        let mut conn = core.store.pool().acquire().await?;
        q::get(&mut conn.team(&caller.team_id), id.as_str()).await?.ok_or_else(|| Error::not_found("domain"))?
    };
    check_and_save(core, row, Some(&caller.actor())).await
}

/// Starts a DKIM key rotation with a new selector (and, if asked, another algorithm).
/// On a verified domain the current key keeps signing until the new record is found; on
/// one that is not verified yet the new key replaces the current one at once.
pub async fn rotate_dkim(
    core: &Core,
    caller: &Principal,
    id: &DomainId,
    requested_algorithm: Option<&str>,
) -> Result<DomainRow> {
    caller.require(Perm::DomainsManage)?;
    let team = &caller.team_id;
    let current = get(core, caller, id).await?;
    let algorithm = match requested_algorithm {
        Some(a) => dkim::algorithm(Some(a), "dkim_algorithm")?,
        None if current.dkim_algorithm == dkim::ED25519 => dkim::ED25519,
        None => dkim::RSA,
    };
    let key = dkim::generate(algorithm).await?;
    let selector = random_selector();
    let sealed = core.secrets.seal(&key.private_der);
    let mut tx = core.store.begin().await?;
    let mut row = q::get(&mut tx.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("domain"))?;
    let mut checks = checks_of(&row);
    checks.remove("dkim_next");
    if row.status == VERIFIED {
        row.next_dkim_selector = Some(selector.clone());
        row.next_dkim_algorithm = Some(algorithm.into());
        row.next_dkim_public_key = Some(key.public_b64);
        row.next_dkim_private_key = Some(sealed);
    } else {
        row.dkim_selector = selector.clone();
        row.dkim_algorithm = algorithm.into();
        row.dkim_public_key = key.public_b64;
        row.dkim_private_key = sealed;
        row.next_dkim_selector = None;
        row.next_dkim_algorithm = None;
        row.next_dkim_public_key = None;
        row.next_dkim_private_key = None;
        checks.remove("dkim");
    }
    row.checks = serde_json::to_string(&checks).map_err(Error::internal)?;
    row.updated_at = now_ms();
    q::update(&mut tx.team(team), &row).await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "domain.dkim_rotated",
        ("domain", &row.id),
        json!({"name": row.name, "selector": selector, "dkim_algorithm": algorithm}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(row)
}

/// Looks `row`'s records up (no transaction open meanwhile), then saves what was found,
/// with the event of a transition, in one transaction. `actor` is the person or key who
/// asked (None for the background check, which records no audit entry and, when another
/// team holds the name, keeps the status and says so in `reason`).
async fn check_and_save(core: &Core, row: DomainRow, actor: Option<&Actor>) -> Result<DomainRow> {
    let found = look_up(&core.domain_dns, &row).await;
    let team = TeamId::stored(row.team_id.clone());
    let mut tx = core.store.begin().await?;
    core.store.lock_team(&mut tx, team.as_str()).await?;
    let Some(mut fresh) = q::get(&mut tx.team(&team), &row.id).await? else {
        return Err(Error::not_found("domain"));
    };
    // Keys changed while looking (a rotation): these findings are about other records.
    if fresh.dkim_selector != row.dkim_selector || fresh.next_dkim_selector != row.next_dkim_selector {
        return Ok(fresh);
    }
    let now = now_ms();
    let before = fresh.clone();
    let mut transition = apply(&core.settings, &mut fresh, &found, now);
    if transition == Some(Transition::Verified) && q::verified_elsewhere(&mut tx.team(&team), &fresh.name).await? {
        if actor.is_some() {
            return Err(Error::conflict(format!("{} is verified by another team on this instance", fresh.name)));
        }
        let mut kept = before.clone();
        kept.checks = fresh.checks.clone();
        kept.checked_at = fresh.checked_at;
        kept.updated_at = now;
        kept.next_check_at = now + core.settings.domains.pending_check_secs as i64 * 1000;
        kept.reason = Some(format!("{} is verified by another team on this instance", fresh.name));
        fresh = kept;
        transition = None;
    }
    q::update(&mut tx.team(&team), &fresh).await?;
    if let Some(t) = transition {
        let data = json!({
            "domain_id": fresh.id,
            "name": fresh.name,
            "status": fresh.status,
            "reason": fresh.reason,
            "url": format!("/api/v1/domains/{}", fresh.id),
        });
        events::append(&mut tx, team.as_str(), t.event_type(), Subject::default(), data)
            .await
            .map_err(Error::Internal)?;
    }
    if let Some(actor) = actor {
        let details = json!({"name": fresh.name, "status": fresh.status, "was": before.status});
        audit::record(&mut tx.team(&team), actor, "domain.checked", ("domain", &fresh.id), details).await?;
    }
    core.commit(tx, team.as_str()).await?;
    if let Some(t) = transition {
        tracing::info!(domain = %fresh.name, team = %team, event = t.event_type(), "domain status changed");
    }
    Ok(fresh)
}

/// Checks every domain whose time has come (pending ones every few minutes, verified
/// ones daily; `SENDMUX_DOMAIN_CHECK_*_SECONDS`). Each is claimed first, so several nodes
/// never check one domain at once. Returns how many were checked.
pub async fn check_due(core: &Core) -> anyhow::Result<usize> {
    let now = now_ms();
    let due = {
        let mut conn = core.store.pool().acquire().await?;
        q::due(&mut conn, now, 50).await?
    };
    let mut checked = 0;
    for row in due {
        let team = TeamId::stored(row.team_id.clone());
        let claimed = {
            let mut conn = core.store.write_conn().await?;
            q::claim(&mut conn.team(&team), &row.id, row.next_check_at, now + 120_000).await?
        };
        if !claimed {
            continue;
        }
        match check_and_save(core, row, None).await {
            Ok(_) => checked += 1,
            Err(Error::NotFound(_)) => {}
            Err(e) => tracing::warn!(error = %e, team = %team, "checking a domain's DNS records failed; will retry"),
        }
    }
    Ok(checked)
}

/// The background check: runs [`check_due`] every few seconds (at most the pending
/// interval) until shutdown.
pub async fn check_loop(core: Arc<Core>, shutdown: tokio_util::sync::CancellationToken) {
    let every = Duration::from_secs(core.settings.domains.pending_check_secs.clamp(1, 30));
    loop {
        if let Err(e) = check_due(&core).await {
            tracing::warn!(error = %format!("{e:#}"), "domain check pass failed; will retry");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

// ---- Sending and receiving ------------------------------------------------------------

/// The domain of an address, in the ASCII form domains are stored in.
pub fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    if domain.is_ascii() { Some(domain.to_ascii_lowercase()) } else { idna::domain_to_ascii(domain).ok() }
}

/// Whether the team has verified the domain of `address`.
pub async fn team_verified(core: &Core, team: &TeamId, address: &str) -> Result<bool> {
    let Some(domain) = domain_of(address) else { return Ok(false) };
    let mut conn = core.store.pool().acquire().await?;
    Ok(q::is_verified(&mut conn.team(team), &domain).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::from_sources(None, &[("SENDMUX_SMTP_HOSTNAME".into(), "mx.sendmux.test".into())]).unwrap()
    }

    fn row() -> DomainRow {
        DomainRow {
            id: "dom_1".into(),
            team_id: "team_1".into(),
            name: "acme.example".into(),
            status: PENDING.into(),
            receiving: 0,
            token: "tok".into(),
            dkim_selector: "smxa".into(),
            dkim_algorithm: dkim::RSA.into(),
            dkim_public_key: "AAAA".into(),
            dkim_private_key: "sealed".into(),
            next_dkim_selector: None,
            next_dkim_algorithm: None,
            next_dkim_public_key: None,
            next_dkim_private_key: None,
            checks: "{}".into(),
            reason: None,
            verified_at: None,
            checked_at: None,
            next_check_at: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn found(ownership: &str, dkim: &str, mx: &str) -> Findings {
        let txt = |v: &str| Some(if v.is_empty() { Lookup::Missing } else { Lookup::Found(vec![v.to_owned()]) });
        Findings {
            ownership: txt(ownership),
            dkim: txt(dkim),
            dkim_next: None,
            spf: txt("v=spf1 -all"),
            dmarc: Some(Lookup::Missing),
            mx: if mx.is_empty() { Some(Lookup::Missing) } else { Some(Lookup::Found(vec![mx.to_owned()])) },
        }
    }

    #[test]
    fn a_domain_goes_pending_verified_failed_and_back() {
        let s = settings();
        let mut r = row();
        assert_eq!(apply(&s, &mut r, &found("", "", ""), 1), None);
        assert_eq!(r.status, PENDING);
        assert!(r.reason.as_deref().unwrap().contains("_sendmux.acme.example"), "{:?}", r.reason);
        let ok = found("sendmux-verification=tok", "v=DKIM1; k=rsa; p=AA AA", "mx.sendmux.test");
        assert_eq!(apply(&s, &mut r, &ok, 2), Some(Transition::Verified));
        assert_eq!((r.status.as_str(), r.receiving, r.verified_at, r.reason.as_deref()), (VERIFIED, 1, Some(2), None));
        let recs = records(&s, &r);
        let status = |p: &str| recs.iter().find(|x| x.purpose == p).unwrap().status.clone();
        assert_eq!(
            (status("ownership"), status("spf"), status("dmarc")),
            ("verified".into(), "verified".into(), "pending".into())
        );
        // A lookup without an answer changes nothing.
        let mut silent = ok.clone();
        silent.dkim = Some(Lookup::Failed("timeout".into()));
        assert_eq!(apply(&s, &mut r, &silent, 3), None);
        assert_eq!(r.status, VERIFIED);
        // The DKIM record disappears: failed, not receiving, with the reason.
        assert_eq!(
            apply(&s, &mut r, &found("sendmux-verification=tok", "", "mx.sendmux.test"), 4),
            Some(Transition::Failed)
        );
        assert_eq!((r.status.as_str(), r.receiving), (FAILED, 0));
        assert!(r.reason.as_deref().unwrap().contains("smxa._domainkey.acme.example"), "{:?}", r.reason);
        let dkim = records(&s, &r).into_iter().find(|x| x.purpose == "dkim").unwrap();
        assert_eq!((dkim.status.as_str(), dkim.checked_at), ("failed", Some(4)));
        assert_eq!(apply(&s, &mut r, &ok, 5), Some(Transition::Verified));
    }

    #[test]
    fn a_rotation_ends_when_the_new_record_is_found() {
        let s = settings();
        let mut r = row();
        let ok = found("sendmux-verification=tok", "v=DKIM1; p=AAAA", "");
        apply(&s, &mut r, &ok, 1);
        r.next_dkim_selector = Some("smxb".into());
        r.next_dkim_algorithm = Some(dkim::ED25519.into());
        r.next_dkim_public_key = Some("BBBB".into());
        r.next_dkim_private_key = Some("sealed2".into());
        assert_eq!(records(&s, &r).iter().filter(|x| x.purpose == "dkim").count(), 2);
        let mut waiting = ok.clone();
        waiting.dkim_next = Some(Lookup::Missing);
        apply(&s, &mut r, &waiting, 2);
        assert_eq!(r.dkim_selector, "smxa");
        let mut published = ok.clone();
        published.dkim_next = Some(Lookup::Found(vec!["v=DKIM1; k=ed25519; p=BBBB".into()]));
        assert_eq!(apply(&s, &mut r, &published, 3), None);
        assert_eq!(
            (r.dkim_selector.as_str(), r.dkim_algorithm.as_str(), r.status.as_str()),
            ("smxb", dkim::ED25519, VERIFIED)
        );
        assert!(r.next_dkim_selector.is_none());
        assert_eq!(records(&s, &r).iter().filter(|x| x.purpose == "dkim").count(), 1);
    }

    #[test]
    fn addresses_give_their_domain_in_ascii() {
        assert_eq!(domain_of("a@Acme.Example").as_deref(), Some("acme.example"));
        assert_eq!(domain_of("a@bücher.example").as_deref(), Some("xn--bcher-kva.example"));
        assert_eq!(domain_of("nobody"), None);
    }
}
