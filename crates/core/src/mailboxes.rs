//! Mailboxes (docs/API.md "Mailboxes"), their management rather than their messages: a
//! mailbox is created at an address in one of the instance's inbound domains within the
//! team's mailbox limit, renamed, tuned (spam threshold, retention, whether spam is
//! accepted) and deleted with its messages once no active mailbox key is scoped to it.
//! A mailbox key reads and tunes its own mailbox only.

use serde_json::json;

use crate::Core;
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::error::{Error, Result};
use crate::ids::MailboxId;
use crate::limits::{LimitName, limit_for};
use crate::store::TeamScope;
use crate::store::mailboxes::{self as q, MailboxRow};
use crate::store::{audit, erasures, inbound, keys, now_ms, usage};
use crate::validate;

pub const DEFAULT_SPAM_THRESHOLD: f64 = 5.0;
pub const DEFAULT_RETENTION_DAYS: i64 = 30;
/// Longest mailbox name, in characters.
pub const MAX_NAME: usize = 100;

/// Settings to change; None leaves one as it is.
#[derive(Default, Clone, Debug)]
pub struct SettingsChange {
    /// 0..=100.
    pub spam_threshold: Option<f64>,
    /// 1..=3650 days.
    pub retention_days: Option<i64>,
    pub accept_spam: Option<bool>,
    /// The delivery group mail from the mailbox goes through; `Some(None)` clears it.
    pub send_delivery_group_id: Option<Option<String>>,
    /// What an agent may send from the mailbox (SPEC §16).
    pub send_policy: Option<SendPolicy>,
}

impl SettingsChange {
    /// Whether the change touches what the mailbox may send.
    pub fn touches_sending(&self) -> bool {
        self.send_delivery_group_id.is_some() || self.send_policy.is_some()
    }
}

/// Bounds on mail sent from a mailbox: only to addresses that wrote to it, only to these
/// domains (empty: any), at most this many a rolling 24 hours.
#[derive(serde::Serialize, serde::Deserialize, Default, Clone, Debug, PartialEq)]
pub struct SendPolicy {
    #[serde(default)]
    pub reply_only: bool,
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    #[serde(default)]
    pub daily_limit: Option<i64>,
}

/// Most domains a send policy lists, and the largest daily limit.
pub const MAX_ALLOWED_DOMAINS: usize = 100;
pub const MAX_DAILY_LIMIT: i64 = 1_000_000;

impl SendPolicy {
    /// The mailbox's policy as stored.
    pub fn of(row: &MailboxRow) -> SendPolicy {
        row.send_policy.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default()
    }

    fn checked(mut self, prefix: &str) -> Result<SendPolicy> {
        if self.allowed_domains.len() > MAX_ALLOWED_DOMAINS {
            return Err(Error::invalid(
                format!("{prefix}send_policy.allowed_domains"),
                format!("At most {MAX_ALLOWED_DOMAINS} domains"),
            ));
        }
        for (i, d) in self.allowed_domains.iter_mut().enumerate() {
            let domain = d.trim().trim_start_matches('@').to_ascii_lowercase();
            let ok = !domain.is_empty()
                && domain.len() <= 253
                && domain.contains('.')
                && domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && !domain.starts_with('.')
                && !domain.ends_with('.');
            if !ok {
                return Err(Error::invalid(
                    format!("{prefix}send_policy.allowed_domains[{i}]"),
                    "Not a domain name (for example example.com)",
                ));
            }
            *d = domain;
        }
        if let Some(l) = self.daily_limit
            && !(1..=MAX_DAILY_LIMIT).contains(&l)
        {
            return Err(Error::invalid(
                format!("{prefix}send_policy.daily_limit"),
                format!("daily_limit must be 1 to {MAX_DAILY_LIMIT}"),
            ));
        }
        Ok(self)
    }
}

/// A new mailbox as the caller asks for it.
pub struct NewMailbox {
    pub address: String,
    pub name: Option<String>,
    pub settings: SettingsChange,
}

/// A change to a mailbox; None leaves a field as it is.
#[derive(Default)]
pub struct MailboxChange {
    pub name: Option<String>,
    pub settings: Option<SettingsChange>,
}

// ---- Rules --------------------------------------------------------------------------

/// A mailbox address: a plain address (lower-cased) in one of `inbound_domains`. A
/// catch-all (`*@domain`) is for a team's verified domains only.
pub fn check_address(raw: &str, inbound_domains: &[String]) -> Result<String> {
    let address = validate::email("address", raw)?;
    if address.starts_with("*@") {
        return Err(Error::invalid("address", "A catch-all (*@domain) is only for a domain the team has verified"));
    }
    let domain = address.rsplit('@').next().unwrap_or_default();
    if !inbound_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
        return Err(Error::invalid(
            "address",
            format!(
                "This instance receives mail for {} and for the domains this team has verified only",
                inbound_domains.join(", ")
            ),
        ));
    }
    // The instance's domains are shared by every team, and mail to `local+tag@` reaches
    // `local@`: a mailbox at `local+tag@` would take mail meant for another team's `local@`.
    if address.split('@').next().is_some_and(|local| local.contains('+')) {
        return Err(Error::invalid(
            "address",
            format!("A `+` is for plus-addressing on {domain}: mail to local+tag@{domain} reaches local@{domain}"),
        ));
    }
    Ok(address)
}

/// An address on one of the team's verified domains (API.md §14), lower case with the
/// domain in ASCII: a plain address, or `*@domain` for the domain's catch-all. None when
/// the domain is not one the team verified.
async fn on_team_domain(core: &Core, team: &crate::ids::TeamId, raw: &str) -> Result<Option<String>> {
    let raw = raw.trim();
    let Some((local, _)) = raw.rsplit_once('@') else { return Ok(None) };
    let Some(domain) = crate::domains::domain_of(raw) else { return Ok(None) };
    if !crate::domains::team_verified(core, team, raw).await? {
        return Ok(None);
    }
    if local == "*" {
        return Ok(Some(format!("*@{domain}")));
    }
    Ok(Some(validate::email("address", &format!("{local}@{domain}"))?))
}

/// The mailbox's name, trimmed and checked.
pub fn check_name(raw: Option<&str>) -> Result<Option<String>> {
    raw.map(|n| validate::name("name", n, MAX_NAME)).transpose()
}

/// Applies `change` to `row` after checking each value; `prefix` names the settings
/// object in the request (`settings.` when they are nested).
pub fn apply_settings(row: &mut MailboxRow, change: &SettingsChange, prefix: &str) -> Result<()> {
    if let Some(t) = change.spam_threshold {
        if !t.is_finite() || !(0.0..=100.0).contains(&t) {
            return Err(Error::invalid(format!("{prefix}spam_threshold"), "spam_threshold must be 0 to 100"));
        }
        row.spam_threshold = t;
    }
    if let Some(d) = change.retention_days {
        if !(1..=3650).contains(&d) {
            return Err(Error::invalid(format!("{prefix}retention_days"), "retention_days must be 1 to 3650"));
        }
        row.retention_days = d;
    }
    if let Some(a) = change.accept_spam {
        row.accept_spam = i64::from(a);
    }
    if let Some(p) = &change.send_policy {
        let p = p.clone().checked(prefix)?;
        row.send_policy = Some(serde_json::to_string(&p).map_err(Error::internal)?);
    }
    if let Some(g) = &change.send_delivery_group_id {
        row.send_delivery_group_id = match g {
            None => None,
            Some(g) => Some(
                crate::ids::DeliveryGroupId::parse(g)
                    .ok_or_else(|| Error::invalid(format!("{prefix}send_delivery_group_id"), "No such delivery group"))?
                    .into_string(),
            ),
        };
    }
    Ok(())
}

/// The mailbox a mailbox key is scoped to; people and other keys have none.
pub fn own_id(caller: &Principal) -> Result<&str> {
    caller.mailbox_scope().ok_or_else(|| {
        Error::forbidden("This route is for mailbox keys; people and infrastructure keys use /api/v1/mailboxes/{id}")
    })
}

// ---- Operations ---------------------------------------------------------------------

/// Creates a mailbox within the team's mailbox limit; an address is one team's mailbox
/// at most.
pub async fn create(core: &Core, caller: &Principal, new: NewMailbox) -> Result<MailboxRow> {
    caller.require(Perm::MailboxesManage)?;
    let team = &caller.team_id;
    let address = match check_address(&new.address, &core.settings.inbound_domains) {
        Ok(address) => address,
        Err(refused) => on_team_domain(core, team, &new.address).await?.ok_or(refused)?,
    };
    let now = now_ms();
    let mut row = MailboxRow {
        id: MailboxId::new().into_string(),
        team_id: team.as_str().to_owned(),
        address,
        name: check_name(new.name.as_deref())?,
        spam_threshold: DEFAULT_SPAM_THRESHOLD,
        retention_days: DEFAULT_RETENTION_DAYS,
        accept_spam: 1,
        created_at: now,
        updated_at: now,
        send_delivery_group_id: None,
        send_policy: None,
    };
    apply_settings(&mut row, &new.settings, "settings.")?;
    let mut tx = core.store.begin().await?;
    core.store.lock_team(&mut tx, team.as_str()).await?;
    let limit = limit_for(&mut tx, &core.settings.limits, team, LimitName::Mailboxes).await?;
    if q::count(&mut tx.team(team)).await? >= limit {
        return Err(Error::limit_exceeded(format!("This team has {limit} mailboxes, its limit")));
    }
    if let Some(group) = &row.send_delivery_group_id
        && crate::store::providers::get_group(&mut tx.team(team), group).await?.is_none()
    {
        // Like any other team's resource: not found (API.md §1), as on a settings change.
        return Err(Error::not_found("delivery group"));
    }
    // A team domain is checked again under the team's lock: a domain deleted since
    // `on_team_domain` looked takes its addresses with it.
    let domain = crate::domains::domain_of(&row.address).unwrap_or_default();
    if !core.settings.inbound_domains.iter().any(|d| d.eq_ignore_ascii_case(&domain))
        && crate::store::domains::status_of(&mut tx.team(team), &domain).await?.as_deref()
            != Some(crate::domains::VERIFIED)
    {
        return Err(Error::invalid("address", "This team no longer holds the address's domain verified"));
    }
    q::insert(&mut tx, &row).await.map_err(|e| match Error::from(e) {
        Error::Conflict(_) => Error::conflict("This address is already a mailbox").with_param("address"),
        e => e,
    })?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "mailbox.created",
        ("mailbox", &row.id),
        json!({"address": row.address}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(row)
}

/// A page of the team's mailboxes, newest first, before the `before` id.
pub async fn list(core: &Core, caller: &Principal, before: Option<&str>, limit: i64) -> Result<Vec<MailboxRow>> {
    caller.require(Perm::MailboxesRead)?;
    let mut conn = core.store.pool().acquire().await?;
    Ok(q::list(&mut conn.team(&caller.team_id), before, limit).await?)
}

/// One mailbox of the caller's team.
pub async fn get(core: &Core, caller: &Principal, id: &MailboxId) -> Result<MailboxRow> {
    caller.require(Perm::MailboxesRead)?;
    let mut conn = core.store.pool().acquire().await?;
    q::get(&mut conn.team(&caller.team_id), id.as_str()).await?.ok_or_else(|| Error::not_found("mailbox"))
}

/// Renames a mailbox or changes its settings (`settings.` in the request).
pub async fn update(core: &Core, caller: &Principal, id: &MailboxId, change: MailboxChange) -> Result<MailboxRow> {
    caller.require(Perm::MailboxesManage)?;
    let name = change.name.as_deref().map(|n| check_name(Some(n))).transpose()?;
    patch(core, caller, id.as_str(), name, change.settings.as_ref(), "settings.").await
}

/// Changes a mailbox's settings (the request is the settings object).
pub async fn update_settings(
    core: &Core,
    caller: &Principal,
    id: &MailboxId,
    change: SettingsChange,
) -> Result<MailboxRow> {
    caller.require(Perm::MailboxesManage)?;
    patch(core, caller, id.as_str(), None, Some(&change), "").await
}

/// The mailbox of a mailbox key.
pub async fn own(core: &Core, caller: &Principal) -> Result<MailboxRow> {
    caller.require(Perm::MailboxRead)?;
    let id = own_id(caller)?;
    let mut conn = core.store.pool().acquire().await?;
    q::get(&mut conn.team(&caller.team_id), id).await?.ok_or_else(|| Error::not_found("mailbox"))
}

/// Changes the settings of a mailbox key's mailbox (`mailbox.settings.update`).
pub async fn update_own_settings(core: &Core, caller: &Principal, change: SettingsChange) -> Result<MailboxRow> {
    caller.require(Perm::MailboxSettingsUpdate)?;
    let id = own_id(caller)?;
    // The guardrails of an agent are set by people and infrastructure keys, never by
    // the mailbox key they bound.
    if change.touches_sending() {
        return Err(Error::forbidden(
            "A mailbox key cannot change send_delivery_group_id or send_policy; people and infrastructure keys can",
        ));
    }
    patch(core, caller, id, None, Some(&change), "").await
}

async fn patch(
    core: &Core,
    caller: &Principal,
    id: &str,
    name: Option<Option<String>>,
    settings: Option<&SettingsChange>,
    prefix: &str,
) -> Result<MailboxRow> {
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    let mut row = q::get(&mut tx.team(team), id).await?.ok_or_else(|| Error::not_found("mailbox"))?;
    if let Some(name) = name {
        row.name = name;
    }
    if let Some(s) = settings {
        apply_settings(&mut row, s, prefix)?;
        if let Some(Some(_)) = &s.send_delivery_group_id {
            let group = row.send_delivery_group_id.clone().unwrap_or_default();
            // Like any other team's resource: not found (API.md §1).
            if crate::store::providers::get_group(&mut tx.team(team), &group).await?.is_none() {
                return Err(Error::not_found("delivery group"));
            }
        }
    }
    row.updated_at = now_ms();
    q::update(&mut tx, &row).await?;
    let details = json!({"spam_threshold": row.spam_threshold, "retention_days": row.retention_days, "accept_spam": row.accept_spam != 0,
        "send_delivery_group_id": row.send_delivery_group_id, "send_policy": SendPolicy::of(&row)});
    audit::record(&mut tx.team(team), &caller.actor(), "mailbox.updated", ("mailbox", &row.id), details).await?;
    core.commit(tx, team.as_str()).await?;
    Ok(row)
}

/// Deletes a mailbox no active mailbox key is scoped to, with its messages: their bytes
/// leave the team's storage and their bodies are erased.
pub async fn delete(core: &Core, caller: &Principal, id: &MailboxId) -> Result<()> {
    caller.require(Perm::MailboxesManage)?;
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    core.store.lock_team(&mut tx, team.as_str()).await?;
    q::get(&mut tx.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("mailbox"))?;
    if keys::count_active_scoped_to(&mut tx.team(team), id.as_str(), now_ms()).await? > 0 {
        return Err(Error::conflict("Active mailbox keys are scoped to this mailbox; revoke them first"));
    }
    // Its messages go with it (ON DELETE CASCADE); their bytes leave the team's storage.
    let messages = inbound::of_mailbox(&mut tx.team(team), id.as_str()).await?;
    let now = now_ms();
    for m in &messages {
        usage::storage_change(&mut tx.team(team), Some(id.as_str()), Some(&m.id), -m.size_bytes, now).await?;
    }
    q::delete(&mut tx.team(team), id.as_str()).await?;
    audit::record(&mut tx.team(team), &caller.actor(), "mailbox.deleted", ("mailbox", id.as_str()), json!({})).await?;
    let bodies: Vec<String> = messages.iter().map(|m| m.blob_key.clone()).collect();
    erasures::queue(&mut tx, &bodies, now).await?;
    core.commit(tx, team.as_str()).await?;
    crate::erasure::erase_bodies(&core.storage(), &bodies).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["localhost".into(), "in.example.com".into()]
    }

    fn row() -> MailboxRow {
        MailboxRow {
            id: "mbx_1".into(),
            team_id: "tm_1".into(),
            address: "a@localhost".into(),
            name: None,
            spam_threshold: DEFAULT_SPAM_THRESHOLD,
            retention_days: DEFAULT_RETENTION_DAYS,
            accept_spam: 1,
            created_at: 0,
            updated_at: 0,
            send_delivery_group_id: None,
            send_policy: None,
        }
    }

    #[test]
    fn addresses_must_be_plain_and_in_an_inbound_domain() {
        assert_eq!(check_address(" Support@In.Example.com ", &domains()).unwrap(), "support@in.example.com");
        assert_eq!(check_address("bot@localhost", &domains()).unwrap(), "bot@localhost");
        let err = check_address("bot@elsewhere.example", &domains()).unwrap_err();
        assert_eq!(err.param(), Some("address"));
        assert!(err.to_string().contains("localhost, in.example.com"), "{err}");
        // A subdomain or a look-alike suffix is another domain.
        for other in ["bot@sub.in.example.com", "bot@evil-in.example.com", "bot@in.example.com.evil.net"] {
            assert!(check_address(other, &domains()).is_err(), "{other}");
        }
        for bad in ["not an address", "Robot <bot@localhost>", "bot@[127.0.0.1]", "@localhost", "bot@", ""] {
            assert_eq!(check_address(bad, &domains()).unwrap_err().param(), Some("address"), "{bad}");
        }
        // No inbound domains: no mailbox at all.
        assert!(check_address("bot@localhost", &[]).is_err());
    }

    #[test]
    fn settings_are_range_checked_and_name_their_field() {
        let mut r = row();
        let change = SettingsChange {
            spam_threshold: Some(7.5),
            retention_days: Some(3650),
            accept_spam: Some(false),
            ..Default::default()
        };
        apply_settings(&mut r, &change, "settings.").unwrap();
        assert_eq!((r.spam_threshold, r.retention_days, r.accept_spam), (7.5, 3650, 0));
        for (change, param) in [
            (SettingsChange { spam_threshold: Some(f64::NAN), ..Default::default() }, "settings.spam_threshold"),
            (SettingsChange { spam_threshold: Some(f64::INFINITY), ..Default::default() }, "settings.spam_threshold"),
            (SettingsChange { spam_threshold: Some(-0.1), ..Default::default() }, "settings.spam_threshold"),
            (SettingsChange { spam_threshold: Some(100.1), ..Default::default() }, "settings.spam_threshold"),
            (SettingsChange { retention_days: Some(0), ..Default::default() }, "settings.retention_days"),
            (SettingsChange { retention_days: Some(3651), ..Default::default() }, "settings.retention_days"),
        ] {
            let mut r = row();
            assert_eq!(apply_settings(&mut r, &change, "settings.").unwrap_err().param(), Some(param));
        }
        let mut r = row();
        let err =
            apply_settings(&mut r, &SettingsChange { retention_days: Some(-1), ..Default::default() }, "").unwrap_err();
        assert_eq!(err.param(), Some("retention_days"));
        // Nothing asked, nothing changed.
        let mut r = row();
        apply_settings(&mut r, &SettingsChange::default(), "").unwrap();
        assert_eq!((r.spam_threshold, r.retention_days, r.accept_spam), (5.0, 30, 1));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(check_name(None).unwrap(), None);
        assert_eq!(check_name(Some("  Support ")).unwrap().as_deref(), Some("Support"));
        assert_eq!(check_name(Some("   ")).unwrap_err().param(), Some("name"));
        assert!(check_name(Some(&"x".repeat(MAX_NAME + 1))).is_err());
        assert!(check_name(Some("a\u{0}b")).is_err());
    }
}
