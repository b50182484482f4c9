//! Providers and delivery groups (docs/API.md §5), their management rather than sending
//! through them (that is `outbound::providers`): a provider is an SMTP relay or Amazon
//! SES whose config is checked, whose destination may not be the operator's network,
//! and whose credentials are sealed at rest and never shown; a delivery group routes
//! over the team's providers (or the operator's managed SES) by priority or weight.
//! Each operation owns its transaction: checks, store, audit entry, commit.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::providers::{MANAGED, Security, Target};
use crate::Core;
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::error::{Error, Result};
use crate::ids::{DeliveryGroupId, ProviderId, TeamId};
use crate::limits::{LimitName, limit_for};
use crate::store::TeamScope;
use crate::store::providers::{self as q, GroupRow, MemberRow, ProviderRow};
use crate::store::{Tx, audit, keys, now_ms};
use crate::validate;

/// Longest provider or delivery group name, in characters.
pub const MAX_NAME: usize = 100;
/// Most members of one delivery group.
pub const MAX_MEMBERS: usize = 10;

/// What a provider connects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderType {
    Smtp,
    Ses,
}

impl ProviderType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::Ses => "ses",
        }
    }

    fn of(row: &ProviderRow) -> Result<Self> {
        match row.kind.as_str() {
            "smtp" => Ok(Self::Smtp),
            "ses" => Ok(Self::Ses),
            _ => Err(Error::internal("stored provider of unknown type")),
        }
    }
}

/// `config` of an SMTP provider, as it is read from the caller's JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// `config` of an Amazon SES provider, as it is read from the caller's JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesConfig {
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Another SESv2 endpoint (an SES-compatible service or a test double).
    pub endpoint: Option<String>,
}

/// A new provider as the caller asks for it; `config` is an `SmtpConfig` or a
/// `SesConfig` by `kind`, as JSON.
pub struct NewProvider {
    pub name: String,
    pub kind: ProviderType,
    pub config: Value,
}

/// A change to a provider; None leaves a field as it is. `config` fields given replace
/// the stored ones (null removes one); secrets left out keep their stored value while
/// the destination stays the same.
#[derive(Default)]
pub struct ProviderChange {
    pub name: Option<String>,
    pub config: Option<Value>,
}

/// A provider as it may be shown: its settings without secrets.
pub struct Provider {
    pub id: String,
    pub name: String,
    /// `smtp` or `ses`.
    pub kind: String,
    /// The settings without secrets; `*_set` flags say which secrets are stored, and an
    /// SES `access_key_id` shows its last four characters.
    pub config: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What `POST /providers/{id}/test` found.
pub struct ProviderCheck {
    /// True when the connection, TLS and authentication (SMTP) or an authenticated call
    /// (SES) worked.
    pub ok: bool,
    /// What failed; None when `ok`.
    pub message: Option<String>,
    /// SES providers: where SNS posts bounce, complaint and delivery notifications.
    pub notification_url: Option<String>,
}

/// How a delivery group orders its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Failover,
    Weighted,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::Weighted => "weighted",
        }
    }
}

/// A member of a delivery group as the caller names it.
#[derive(Clone, Debug)]
pub struct GroupMember {
    /// A provider id of the team, or `managed` for the operator's managed SES.
    pub provider_id: String,
    /// Lower goes first with `failover` (default: the member's position).
    pub priority: Option<i64>,
    /// Share of traffic with `weighted`, 1..=1000 (default 1).
    pub weight: Option<i64>,
}

/// A new delivery group as the caller asks for it.
pub struct NewGroup {
    pub name: String,
    pub strategy: Strategy,
    pub members: Vec<GroupMember>,
}

/// A change to a delivery group; None leaves a field as it is, `members` replaces them
/// all.
#[derive(Default)]
pub struct GroupChange {
    pub name: Option<String>,
    pub strategy: Option<Strategy>,
    pub members: Option<Vec<GroupMember>>,
}

/// A delivery group with its members in order.
pub struct Group {
    pub row: GroupRow,
    pub members: Vec<MemberRow>,
}

// ---- Rules --------------------------------------------------------------------------

fn hostname(param: &str, host: &str) -> Result<()> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok { Ok(()) } else { Err(Error::invalid(param, "host must be a host name or IP address")) }
}

/// Checks a full config and splits it into what may be shown and what must be sealed.
pub fn split_config(kind: ProviderType, config: Value) -> Result<(Value, Value)> {
    match kind {
        ProviderType::Smtp => {
            let c: SmtpConfig = validate::json_at("config", config)?;
            hostname("config.host", &c.host)?;
            if c.port == 0 {
                return Err(Error::invalid("config.port", "port must be 1 to 65535"));
            }
            if c.password.is_some() && c.username.is_none() {
                return Err(Error::invalid("config.username", "A password needs a username"));
            }
            for (field, v) in [("username", &c.username), ("password", &c.password)] {
                if v.as_ref().is_some_and(|v| v.is_empty() || v.len() > 512) {
                    return Err(Error::invalid(
                        format!("config.{field}"),
                        format!("{field} must be 1 to 512 characters"),
                    ));
                }
            }
            Ok((
                json!({"host": c.host, "port": c.port, "security": c.security, "username": c.username}),
                json!({"password": c.password}),
            ))
        }
        ProviderType::Ses => {
            let c: SesConfig = validate::json_at("config", config)?;
            let region_ok = !c.region.is_empty()
                && c.region.len() <= 32
                && c.region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !region_ok {
                return Err(Error::invalid("config.region", "region must look like us-east-1"));
            }
            for (field, v) in [("access_key_id", &c.access_key_id), ("secret_access_key", &c.secret_access_key)] {
                if v.is_empty() || v.len() > 256 {
                    return Err(Error::invalid(
                        format!("config.{field}"),
                        format!("{field} must be 1 to 256 characters"),
                    ));
                }
            }
            if let Some(e) = &c.endpoint {
                super::ses::endpoint_url(e).map_err(|why| Error::invalid("config.endpoint", why))?;
            }
            Ok((
                json!({"region": c.region, "endpoint": c.endpoint}),
                json!({"access_key_id": c.access_key_id, "secret_access_key": c.secret_access_key}),
            ))
        }
    }
}

/// docs/API.md §5: a provider may not point at the operator's network. The host (or the
/// endpoint's) is refused when it is, or resolves to, an address the provider guard
/// refuses; connections check again on the address they use.
async fn check_destination(core: &Core, kind: ProviderType, public: &Value) -> Result<()> {
    let guard = &core.outbound.guard;
    match kind {
        ProviderType::Smtp => {
            let host = public["host"].as_str().unwrap_or_default();
            let port = public["port"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(25);
            guard.check_host(host, port).await.map_err(|r| Error::invalid("config.host", format!("host {r}")))
        }
        ProviderType::Ses => {
            let Some(endpoint) = public["endpoint"].as_str() else { return Ok(()) };
            let url = super::ses::endpoint_url(endpoint).map_err(|why| Error::invalid("config.endpoint", why))?;
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                return Err(Error::invalid("config.endpoint", "endpoint must be an http(s) URL"));
            };
            guard.check_host(host, port).await.map_err(|r| Error::invalid("config.endpoint", format!("endpoint {r}")))
        }
    }
}

/// The sealed credentials of a provider, opened with the instance key.
fn open_secrets(core: &Core, row: &ProviderRow) -> Result<Map<String, Value>> {
    let plain = core.secrets.open(&row.sealed_secrets).ok_or_else(|| {
        Error::internal(format_args!("provider {} credentials do not open with SENDMUX_SECRET_KEY", row.id))
    })?;
    serde_json::from_slice(&plain).map_err(Error::internal)
}

/// A stored provider as it may be shown: credentials are never returned (docs/API.md
/// §5), only whether each is set and an SES key id's last four characters.
fn shown(core: &Core, row: ProviderRow) -> Result<Provider> {
    let mut config: Map<String, Value> = serde_json::from_str(&row.config).map_err(Error::internal)?;
    for (name, value) in open_secrets(core, &row)? {
        match (name.as_str(), value) {
            ("access_key_id", Value::String(id)) => {
                let tail: String = id.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
                config.insert("access_key_id".into(), Value::String(format!("…{tail}")));
            }
            (_, v) => {
                config.insert(format!("{name}_set"), Value::Bool(!v.is_null()));
            }
        }
    }
    Ok(Provider {
        id: row.id,
        name: row.name,
        kind: row.kind,
        config: Value::Object(config),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// The members of a group as stored rows: 1 to 10 distinct providers of the team (or
/// the managed route when the instance has one), with priorities and weights in range.
async fn check_members(
    core: &Core,
    tx: &mut Tx,
    team: &TeamId,
    group_id: &str,
    members: &[GroupMember],
) -> Result<Vec<MemberRow>> {
    if members.is_empty() || members.len() > MAX_MEMBERS {
        return Err(Error::invalid("members", "A delivery group needs 1 to 10 members"));
    }
    let mut out: Vec<MemberRow> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let provider_id = if m.provider_id == MANAGED {
            if core.settings.managed_ses.is_none() {
                return Err(Error::invalid(
                    format!("members[{i}].provider_id"),
                    "This instance has no managed SES route",
                ));
            }
            None
        } else {
            let id = ProviderId::parse(&m.provider_id)
                .ok_or_else(|| Error::invalid(format!("members[{i}].provider_id"), "No such provider"))?;
            q::get(&mut tx.team(team), id.as_str())
                .await?
                .ok_or_else(|| Error::invalid(format!("members[{i}].provider_id"), "No such provider"))?;
            Some(id.into_string())
        };
        if out.iter().any(|o| o.provider_id == provider_id) {
            return Err(Error::invalid(format!("members[{i}].provider_id"), "A provider may appear once in a group"));
        }
        let priority = m.priority.unwrap_or(i as i64);
        if !(0..=1000).contains(&priority) {
            return Err(Error::invalid(format!("members[{i}].priority"), "priority must be 0 to 1000"));
        }
        let weight = m.weight.unwrap_or(1);
        if !(1..=1000).contains(&weight) {
            return Err(Error::invalid(format!("members[{i}].weight"), "weight must be 1 to 1000"));
        }
        out.push(MemberRow { group_id: group_id.to_owned(), position: i as i64, provider_id, priority, weight });
    }
    Ok(out)
}

// ---- Providers ----------------------------------------------------------------------

/// Adds a provider within the team's provider limit; its credentials are sealed.
pub async fn create_provider(core: &Core, caller: &Principal, new: NewProvider) -> Result<Provider> {
    caller.require(Perm::ProvidersManage)?;
    let name = validate::name("name", &new.name, MAX_NAME)?;
    let (public, secret) = split_config(new.kind, new.config)?;
    check_destination(core, new.kind, &public).await?;
    let team = &caller.team_id;
    let now = now_ms();
    let row = ProviderRow {
        id: ProviderId::new().into_string(),
        team_id: team.as_str().to_owned(),
        name,
        kind: new.kind.as_str().to_owned(),
        config: public.to_string(),
        sealed_secrets: core.secrets.seal(secret.to_string().as_bytes()),
        created_at: now,
        updated_at: now,
    };
    let mut tx = core.store.begin().await?;
    core.store.lock_team(&mut tx, team.as_str()).await?;
    let limit = limit_for(&mut tx, &core.settings.limits, team, LimitName::Providers).await?;
    if q::count(&mut tx.team(team)).await? >= limit {
        return Err(Error::limit_exceeded(format!("This team has {limit} providers, its limit")));
    }
    q::insert(&mut tx, &row).await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "provider.created",
        ("provider", &row.id),
        json!({"type": row.kind, "name": row.name}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    shown(core, row)
}

/// A page of the team's providers, newest first, before the `before` id.
pub async fn list_providers(
    core: &Core,
    caller: &Principal,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<Provider>> {
    caller.require(Perm::ProvidersRead)?;
    let mut conn = core.store.pool().acquire().await?;
    let rows = q::list(&mut conn.team(&caller.team_id), before, limit).await?;
    rows.into_iter().map(|r| shown(core, r)).collect()
}

/// One provider of the caller's team.
pub async fn get_provider(core: &Core, caller: &Principal, id: &ProviderId) -> Result<Provider> {
    caller.require(Perm::ProvidersRead)?;
    let mut conn = core.store.pool().acquire().await?;
    let row =
        q::get(&mut conn.team(&caller.team_id), id.as_str()).await?.ok_or_else(|| Error::not_found("provider"))?;
    shown(core, row)
}

/// Renames a provider or changes its config. A new destination must come with its
/// credentials again (docs/API.md §5), so nobody can redirect a stored password.
pub async fn update_provider(
    core: &Core,
    caller: &Principal,
    id: &ProviderId,
    change: ProviderChange,
) -> Result<Provider> {
    caller.require(Perm::ProvidersManage)?;
    // A new destination is checked before the transaction: resolving a name takes time
    // no write should wait for.
    if let Some(patch) = &change.config {
        if patch["host"].is_string() {
            check_destination(core, ProviderType::Smtp, patch).await?;
        }
        if patch["endpoint"].as_str().is_some_and(|e| super::ses::endpoint_url(e).is_ok()) {
            check_destination(core, ProviderType::Ses, patch).await?;
        }
    }
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    let mut row = q::get(&mut tx.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("provider"))?;
    if let Some(name) = &change.name {
        row.name = validate::name("name", name, MAX_NAME)?;
    }
    if let Some(patch) = change.config {
        let Value::Object(patch) = patch else {
            return Err(Error::invalid("config", "config must be an object"));
        };
        let mut merged: Map<String, Value> = serde_json::from_str(&row.config).map_err(Error::internal)?;
        // Stored credentials follow the provider only while it points where it did:
        // a new destination must be given its credentials again, so nobody can
        // redirect a stored password to a host of their choosing.
        // docs/API.md §5: host, port, security, endpoint or region.
        let destination = ["host", "port", "security", "endpoint", "region"];
        let moved = destination.iter().any(|k| patch.get(*k).is_some_and(|v| merged.get(*k) != Some(v)));
        if !moved {
            merged.extend(open_secrets(core, &row)?);
        }
        merged.extend(patch);
        merged.retain(|_, v| !v.is_null());
        let (public, secret) = split_config(ProviderType::of(&row)?, Value::Object(merged))?;
        row.config = public.to_string();
        row.sealed_secrets = core.secrets.seal(secret.to_string().as_bytes());
    }
    row.updated_at = now_ms();
    q::update(&mut tx, &row).await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "provider.updated",
        ("provider", &row.id),
        json!({"name": row.name}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    shown(core, row)
}

/// Deletes a provider no delivery group routes through.
pub async fn delete_provider(core: &Core, caller: &Principal, id: &ProviderId) -> Result<()> {
    caller.require(Perm::ProvidersManage)?;
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    q::get(&mut tx.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("provider"))?;
    let groups = q::groups_using(&mut tx.team(team), id.as_str()).await?;
    if !groups.is_empty() {
        return Err(Error::conflict(format!(
            "Delivery groups still route through this provider: {}",
            groups.join(", ")
        )));
    }
    q::delete(&mut tx.team(team), id.as_str()).await?;
    audit::record(&mut tx.team(team), &caller.actor(), "provider.deleted", ("provider", id.as_str()), json!({}))
        .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(())
}

/// Checks a provider for real: SMTP connects, says EHLO, upgrades to TLS and
/// authenticates as configured; SES makes an authenticated API call.
pub async fn test_provider(core: &Core, caller: &Principal, id: &ProviderId) -> Result<ProviderCheck> {
    caller.require(Perm::ProvidersManage)?;
    let row = {
        let mut conn = core.store.pool().acquire().await?;
        q::get(&mut conn.team(&caller.team_id), id.as_str()).await?.ok_or_else(|| Error::not_found("provider"))?
    };
    let resolved = super::providers::from_row(&core.secrets, &row).map_err(Error::internal)?;
    let (result, notification_url) = match &resolved.target {
        Target::Smtp(t) => (core.outbound.smtp.check(t).await, None),
        Target::Ses(t) => {
            (super::ses::check(&core.outbound.http, t).await, Some(super::notifications::path(core, &row.id)))
        }
    };
    Ok(ProviderCheck { ok: result.is_ok(), message: result.err(), notification_url })
}

// ---- Delivery groups ----------------------------------------------------------------

/// Creates a delivery group routing over the team's providers.
pub async fn create_group(core: &Core, caller: &Principal, new: NewGroup) -> Result<Group> {
    caller.require(Perm::ProvidersManage)?;
    let name = validate::name("name", &new.name, MAX_NAME)?;
    let team = &caller.team_id;
    let now = now_ms();
    let row = GroupRow {
        id: DeliveryGroupId::new().into_string(),
        team_id: team.as_str().to_owned(),
        name,
        strategy: new.strategy.as_str().to_owned(),
        created_at: now,
        updated_at: now,
    };
    let mut tx = core.store.begin().await?;
    let members = check_members(core, &mut tx, team, &row.id, &new.members).await?;
    q::insert_group(&mut tx, &row, &members).await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "delivery_group.created",
        ("delivery_group", &row.id),
        json!({"name": row.name}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(Group { row, members })
}

/// A page of the team's delivery groups with their members, newest first, before the
/// `before` id.
pub async fn list_groups(core: &Core, caller: &Principal, before: Option<&str>, limit: i64) -> Result<Vec<Group>> {
    caller.require(Perm::ProvidersRead)?;
    let team = &caller.team_id;
    let mut conn = core.store.pool().acquire().await?;
    let rows = q::list_groups(&mut conn.team(team), before, limit).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let members = q::members_of(&mut conn.team(team), &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let members = members.iter().filter(|m| m.group_id == row.id).cloned().collect();
            Group { row, members }
        })
        .collect())
}

/// One delivery group of the caller's team with its members.
pub async fn get_group(core: &Core, caller: &Principal, id: &DeliveryGroupId) -> Result<Group> {
    caller.require(Perm::ProvidersRead)?;
    let team = &caller.team_id;
    let mut conn = core.store.pool().acquire().await?;
    let row =
        q::get_group(&mut conn.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("delivery group"))?;
    let members = q::members_of(&mut conn.team(team), std::slice::from_ref(&row.id)).await?;
    Ok(Group { row, members })
}

/// Renames a delivery group, changes its strategy or replaces its members.
pub async fn update_group(core: &Core, caller: &Principal, id: &DeliveryGroupId, change: GroupChange) -> Result<Group> {
    caller.require(Perm::ProvidersManage)?;
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    let mut row =
        q::get_group(&mut tx.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("delivery group"))?;
    if let Some(name) = &change.name {
        row.name = validate::name("name", name, MAX_NAME)?;
    }
    if let Some(s) = change.strategy {
        row.strategy = s.as_str().to_owned();
    }
    let members = match &change.members {
        Some(m) => Some(check_members(core, &mut tx, team, &row.id, m).await?),
        None => None,
    };
    q::update_group(&mut tx, &row, members.as_deref()).await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "delivery_group.updated",
        ("delivery_group", &row.id),
        json!({"name": row.name}),
    )
    .await?;
    let row = q::get_group(&mut tx.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("delivery group"))?;
    let members = q::members_of(&mut tx.team(team), std::slice::from_ref(&row.id)).await?;
    core.commit(tx, team.as_str()).await?;
    Ok(Group { row, members })
}

/// Deletes a delivery group no active sending key is scoped to.
pub async fn delete_group(core: &Core, caller: &Principal, id: &DeliveryGroupId) -> Result<()> {
    caller.require(Perm::ProvidersManage)?;
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    core.store.lock_team(&mut tx, team.as_str()).await?;
    q::get_group(&mut tx.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("delivery group"))?;
    if keys::count_active_scoped_to(&mut tx.team(team), id.as_str(), now_ms()).await? > 0 {
        return Err(Error::conflict("Active sending keys are scoped to this delivery group; revoke them first"));
    }
    q::delete_group(&mut tx.team(team), id.as_str()).await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "delivery_group.deleted",
        ("delivery_group", id.as_str()),
        json!({}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_split_from_what_may_be_shown() {
        let (public, secret) = split_config(
            ProviderType::Smtp,
            json!({"host": "smtp.example.com", "port": 587, "username": "u", "password": "p"}),
        )
        .unwrap();
        assert_eq!(public, json!({"host": "smtp.example.com", "port": 587, "security": "starttls", "username": "u"}));
        assert_eq!(secret, json!({"password": "p"}));
        let (public, secret) = split_config(
            ProviderType::Ses,
            json!({"region": "eu-west-1", "access_key_id": "AKIA", "secret_access_key": "s"}),
        )
        .unwrap();
        assert_eq!(public, json!({"region": "eu-west-1", "endpoint": null}));
        assert_eq!(secret, json!({"access_key_id": "AKIA", "secret_access_key": "s"}));
    }

    #[test]
    fn config_refusals_name_their_field() {
        for (kind, config, param) in [
            (ProviderType::Smtp, json!({"host": "a b", "port": 25}), "config.host"),
            (ProviderType::Smtp, json!({"host": "h", "port": 0}), "config.port"),
            (ProviderType::Smtp, json!({"host": "h", "port": 70000}), "config.port"),
            (ProviderType::Smtp, json!({"host": "h", "port": 25, "password": "p"}), "config.username"),
            (ProviderType::Smtp, json!({"host": "h", "port": 25, "username": ""}), "config.username"),
            (ProviderType::Smtp, json!({"port": 25}), "config.host"),
            (ProviderType::Smtp, json!({"host": "h", "port": 25, "region": "x"}), "config.region"),
            (ProviderType::Smtp, json!("smtp.example.com"), "config"),
            (
                ProviderType::Ses,
                json!({"region": "EU", "access_key_id": "a", "secret_access_key": "s"}),
                "config.region",
            ),
            (
                ProviderType::Ses,
                json!({"region": "eu-west-1", "access_key_id": "", "secret_access_key": "s"}),
                "config.access_key_id",
            ),
            (
                ProviderType::Ses,
                json!({"region": "eu-west-1", "access_key_id": "a", "secret_access_key": "s", "endpoint": "ftp://x"}),
                "config.endpoint",
            ),
        ] {
            let err = split_config(kind, config.clone()).unwrap_err();
            assert_eq!(err.param(), Some(param), "{config}: {err}");
        }
    }
}
