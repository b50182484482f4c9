//! API keys (docs/API.md "Keys"): who may create, rotate and revoke which key, and the
//! transaction that does it — checks, store, audit entry, commit, cache invalidation.
//!
//! **No key mints power it lacks.** A person creates, rotates or revokes only keys whose
//! permissions their role holds (plus `email.send`: sending keys are what key managers
//! exist to hand out). An infrastructure key never touches infrastructure keys; it makes
//! a mailbox key only if it holds `mailboxes.manage` and a sending key only if it holds
//! `providers.manage`, and it rotates or revokes only keys it could have made.

use crate::Core;
use crate::auth::perms::{KeyKind, Perm, PermSet};
use crate::auth::{Credential, Principal, parse_permissions};
use crate::crypto::{random_token, token_hash};
use crate::error::{Error, Result};
use crate::ids::{DeliveryGroupId, KeyId, MailboxId};
use crate::limits::{LimitName, limit_for};
use crate::store::TeamScope;
use crate::store::keys::{self as q, KeyRow};
use crate::store::{audit, mailboxes, now_ms, providers};
use crate::validate;

/// What a caller asks for when creating a key; `permissions: None` means the kind's
/// defaults, narrowed to what the caller may grant.
pub struct NewKey {
    pub name: String,
    pub kind: KeyKind,
    pub permissions: Option<Vec<String>>,
    pub delivery_group_id: Option<String>,
    pub mailbox_id: Option<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
}

/// A key with its secret, which exists only in this answer.
pub struct WithSecret {
    pub key: KeyRow,
    pub secret: String,
}

/// The most a caller may put into a key it creates, rotates or revokes.
pub fn ceiling(caller: &Principal) -> PermSet {
    match caller.credential {
        Credential::User { .. } => caller.perms.with(Perm::EmailSend),
        Credential::Key { .. } if caller.perms.has(Perm::ProvidersManage) => caller.perms.with(Perm::EmailSend),
        Credential::Key { .. } => caller.perms,
    }
}

/// Refuses a key of `kind` holding `perms` that `caller` could not have made.
pub fn may_manage(caller: &Principal, kind: KeyKind, perms: PermSet, what: &str) -> Result<()> {
    if caller.key_kind().is_some() && kind == KeyKind::Infrastructure {
        return Err(Error::forbidden("An API key may manage sending and mailbox keys only"));
    }
    let ceiling = ceiling(caller);
    match Perm::KEY_PERMISSIONS.into_iter().find(|perm| perms.has(*perm) && !ceiling.has(*perm)) {
        None => Ok(()),
        Some(perm) => Err(Error::forbidden(format!(
            "You cannot {what} a key with `{}`, a permission you do not hold yourself",
            perm.name()
        ))),
    }
}

/// The permissions a new key will carry: the named ones (each of the kind's set), or the
/// kind's defaults the caller holds.
pub fn requested_permissions(caller: &Principal, kind: KeyKind, named: Option<&[String]>) -> Result<PermSet> {
    match named {
        None => {
            let allowed = ceiling(caller);
            let set = PermSet::of(
                &Perm::KEY_PERMISSIONS
                    .into_iter()
                    .filter(|perm| kind.default_permissions().has(*perm) && allowed.has(*perm))
                    .collect::<Vec<_>>(),
            );
            if set == PermSet::empty() {
                return Err(Error::forbidden(format!(
                    "You hold none of the permissions a {} key carries",
                    kind.as_str()
                )));
            }
            Ok(set)
        }
        Some(list) => {
            let mut set = PermSet::empty();
            for (i, raw) in list.iter().enumerate() {
                let perm =
                    Perm::parse_key_permission(raw).filter(|perm| kind.allowed().contains(perm)).ok_or_else(|| {
                        Error::invalid(
                            format!("permissions[{i}]"),
                            format!(
                                "`{}` is not a permission a {} key may carry",
                                validate::truncate(raw, 40),
                                kind.as_str()
                            ),
                        )
                    })?;
                set = set.with(perm);
            }
            if set == PermSet::empty() {
                return Err(Error::invalid("permissions", "A key needs at least one permission"));
            }
            Ok(set)
        }
    }
}

fn secret_parts(secret: &str) -> (String, String) {
    (secret[..12].to_owned(), secret[secret.len() - 4..].to_owned())
}

fn stored_kind(row: &KeyRow) -> Result<KeyKind> {
    KeyKind::parse(&row.kind).ok_or_else(|| Error::internal(format_args!("key {} has unknown kind", row.id)))
}

/// Creates a key within the team's active-key limit; the secret is returned this once.
pub async fn create(core: &Core, caller: &Principal, new: NewKey) -> Result<WithSecret> {
    let name = validate::name("name", &new.name, 100)?;
    let perms = requested_permissions(caller, new.kind, new.permissions.as_deref())?;
    may_manage(caller, new.kind, perms, "create")?;
    let now = now_ms();
    let expires_at = match &new.expires_at {
        None => None,
        Some(raw) => {
            let t = validate::timestamp("expires_at", raw)?;
            if t <= now {
                return Err(Error::invalid("expires_at", "expires_at must be in the future"));
            }
            Some(t)
        }
    };
    let team = &caller.team_id;
    let team_id = team.as_str();
    let mut tx = core.store.begin().await?;
    core.store.lock_team(&mut tx, team_id).await?;
    let (delivery_group_id, mailbox_id) = match new.kind {
        KeyKind::Infrastructure => {
            if new.delivery_group_id.is_some() || new.mailbox_id.is_some() {
                let param = if new.delivery_group_id.is_some() { "delivery_group_id" } else { "mailbox_id" };
                return Err(Error::invalid(param, "Infrastructure keys are scoped to the team"));
            }
            (None, None)
        }
        KeyKind::Sending => {
            if new.mailbox_id.is_some() {
                return Err(Error::invalid("mailbox_id", "Sending keys are scoped to a delivery group"));
            }
            let raw = new
                .delivery_group_id
                .as_deref()
                .ok_or_else(|| Error::invalid("delivery_group_id", "Sending keys need a delivery_group_id"))?;
            let id = DeliveryGroupId::parse(raw)
                .ok_or_else(|| Error::invalid("delivery_group_id", "No such delivery group"))?;
            providers::get_group(&mut tx.team(team), id.as_str())
                .await?
                .ok_or_else(|| Error::invalid("delivery_group_id", "No such delivery group"))?;
            (Some(id.into_string()), None)
        }
        KeyKind::Mailbox => {
            if new.delivery_group_id.is_some() {
                return Err(Error::invalid("delivery_group_id", "Mailbox keys are scoped to a mailbox"));
            }
            let raw = new
                .mailbox_id
                .as_deref()
                .ok_or_else(|| Error::invalid("mailbox_id", "Mailbox keys need a mailbox_id"))?;
            let id = MailboxId::parse(raw).ok_or_else(|| Error::invalid("mailbox_id", "No such mailbox"))?;
            mailboxes::get(&mut tx.team(team), id.as_str())
                .await?
                .ok_or_else(|| Error::invalid("mailbox_id", "No such mailbox"))?;
            (None, Some(id.into_string()))
        }
    };
    let limit = limit_for(&mut tx, &core.settings.limits, team, LimitName::ActiveKeys).await?;
    if q::count_active(&mut tx.team(team), now).await? >= limit {
        return Err(Error::limit_exceeded(format!(
            "This team has {limit} active keys, its limit; revoke one or request an increase"
        )));
    }
    let secret = random_token(new.kind.token_prefix());
    let (prefix, last4) = secret_parts(&secret);
    let row = KeyRow {
        id: KeyId::new().into_string(),
        team_id: team_id.to_owned(),
        name,
        kind: new.kind.as_str().to_owned(),
        permissions: perms.key_permission_names().join(","),
        delivery_group_id,
        mailbox_id,
        prefix,
        last4,
        created_by: caller.actor().id,
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    q::insert(&mut tx, &row, &token_hash(&secret)).await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "key.created",
        ("key", &row.id),
        serde_json::json!({"kind": row.kind, "permissions": row.permissions}),
    )
    .await?;
    core.commit(tx, team_id).await?;
    Ok(WithSecret { key: row, secret })
}

/// Issues a new secret; the old one keeps working for `grace_seconds` (0..=86400).
pub async fn rotate(core: &Core, caller: &Principal, id: &KeyId, grace_seconds: i64) -> Result<WithSecret> {
    if !(0..=86_400).contains(&grace_seconds) {
        return Err(Error::invalid("grace_seconds", "grace_seconds must be from 0 to 86400"));
    }
    let team = &caller.team_id;
    let team_id = team.as_str();
    let now = now_ms();
    let mut tx = core.store.begin().await?;
    let row = q::get(&mut tx.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("key"))?;
    // A new secret hands over the key's powers: only to someone who could have made it.
    may_manage(caller, stored_kind(&row)?, parse_permissions(&row.permissions), "rotate")?;
    if !row.is_active(now) {
        return Err(Error::conflict("Only an active key can be rotated"));
    }
    let secret = random_token(stored_kind(&row)?.token_prefix());
    let (prefix, last4) = secret_parts(&secret);
    q::rotate(&mut tx.team(team), id.as_str(), &token_hash(&secret), &prefix, &last4, now + grace_seconds * 1000)
        .await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "key.rotated",
        ("key", id.as_str()),
        serde_json::json!({"grace_seconds": grace_seconds}),
    )
    .await?;
    let row = q::get(&mut tx.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("key"))?;
    core.commit_credentials(tx, team_id).await?;
    Ok(WithSecret { key: row, secret })
}

/// Revokes a key at once; revoking a revoked key changes nothing.
pub async fn revoke(core: &Core, caller: &Principal, id: &KeyId) -> Result<KeyRow> {
    let team = &caller.team_id;
    let team_id = team.as_str();
    let mut tx = core.store.begin().await?;
    let row = q::get(&mut tx.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("key"))?;
    may_manage(caller, stored_kind(&row)?, parse_permissions(&row.permissions), "revoke")?;
    if row.revoked_at.is_none() {
        q::revoke(&mut tx.team(team), id.as_str(), now_ms()).await?;
        audit::record(&mut tx.team(team), &caller.actor(), "key.revoked", ("key", id.as_str()), serde_json::json!({}))
            .await?;
    }
    let row = q::get(&mut tx.team(team), id.as_str()).await?.ok_or_else(|| Error::not_found("key"))?;
    core.commit_credentials(tx, team_id).await?;
    Ok(row)
}

/// One key of the caller's team, without its secret.
pub async fn get(core: &Core, caller: &Principal, id: &KeyId) -> Result<KeyRow> {
    caller.require(Perm::KeysRead)?;
    let mut conn = core.store.pool().acquire().await?;
    q::get(&mut conn.team(&caller.team_id), id.as_str()).await?.ok_or_else(|| Error::not_found("key"))
}

/// A page of the team's keys, newest first, before the `before` id.
pub async fn list(core: &Core, caller: &Principal, before: Option<&str>, limit: i64) -> Result<Vec<KeyRow>> {
    caller.require(Perm::KeysRead)?;
    let mut conn = core.store.pool().acquire().await?;
    Ok(q::list(&mut conn.team(&caller.team_id), before, limit).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;
    use crate::auth::perms::Role;

    fn person(role: Role) -> Principal {
        Principal {
            team_id: crate::ids::TeamId::new(),
            credential: Credential::User { user_id: "usr_x".into(), role, session_id: "ses_x".into() },
            perms: role.permissions(),
            scope: Scope::Team,
            ip: None,
            rate_limit: 100,
            rate_bucket: "usr_x".into(),
        }
    }

    fn infra_key(granted: &[Perm]) -> Principal {
        Principal {
            team_id: crate::ids::TeamId::new(),
            credential: Credential::Key { key_id: "key_x".into(), kind: KeyKind::Infrastructure },
            perms: KeyKind::Infrastructure.effective(PermSet::of(granted)),
            scope: Scope::Team,
            ip: None,
            rate_limit: 100,
            rate_bucket: "key_x".into(),
        }
    }

    fn perms(names: &[&str]) -> PermSet {
        PermSet::of(&names.iter().map(|n| Perm::parse_key_permission(n).unwrap()).collect::<Vec<_>>())
    }

    #[test]
    fn an_infrastructure_key_without_mailbox_access_cannot_mint_a_mailbox_key() {
        let caller = infra_key(&[Perm::KeysManage]);
        let err = may_manage(&caller, KeyKind::Mailbox, perms(&["mailbox.read"]), "create").unwrap_err();
        assert!(matches!(err, Error::Forbidden(ref m) if m.contains("mailbox.read")), "{err}");
        // Nor through the defaults: it holds none of a mailbox key's permissions.
        assert!(matches!(requested_permissions(&caller, KeyKind::Mailbox, None), Err(Error::Forbidden(_))));
        let manager = infra_key(&[Perm::KeysManage, Perm::MailboxesManage]);
        may_manage(&manager, KeyKind::Mailbox, perms(&["mailbox.read", "email.receive"]), "create").unwrap();
    }

    #[test]
    fn an_infrastructure_key_makes_sending_keys_only_with_providers_manage() {
        let without = infra_key(&[Perm::KeysManage, Perm::MailboxesManage]);
        assert!(may_manage(&without, KeyKind::Sending, perms(&["email.send"]), "create").is_err());
        let with = infra_key(&[Perm::KeysManage, Perm::ProvidersManage]);
        may_manage(&with, KeyKind::Sending, perms(&["email.send"]), "create").unwrap();
        assert_eq!(requested_permissions(&with, KeyKind::Sending, None).unwrap(), perms(&["email.send"]));
    }

    #[test]
    fn no_key_touches_an_infrastructure_key_even_with_every_permission() {
        let all = infra_key(&Perm::KEY_PERMISSIONS);
        for what in ["create", "rotate", "revoke"] {
            assert!(may_manage(&all, KeyKind::Infrastructure, perms(&["logs.read"]), what).is_err());
        }
    }

    #[test]
    fn people_grant_only_what_their_role_holds() {
        let developer = person(Role::Developer);
        // A developer manages keys and webhooks but not providers or mailboxes.
        may_manage(&developer, KeyKind::Infrastructure, perms(&["webhooks.manage", "logs.read"]), "create").unwrap();
        may_manage(&developer, KeyKind::Sending, perms(&["email.send"]), "create").unwrap();
        may_manage(&developer, KeyKind::Mailbox, perms(&["mailbox.read"]), "create").unwrap();
        for above in ["providers.manage", "mailboxes.manage", "billing.read"] {
            for what in ["create", "rotate", "revoke"] {
                let err = may_manage(&developer, KeyKind::Infrastructure, perms(&[above]), what).unwrap_err();
                assert!(matches!(err, Error::Forbidden(ref m) if m.contains(above) && m.contains(what)), "{err}");
            }
        }
        assert!(may_manage(&developer, KeyKind::Mailbox, perms(&["email.receive"]), "create").is_err());
        // The defaults are narrowed to the role: a developer's infrastructure key gets
        // webhooks.manage and logs.read only.
        assert_eq!(
            requested_permissions(&developer, KeyKind::Infrastructure, None).unwrap(),
            perms(&["webhooks.manage", "logs.read"])
        );
        let owner = person(Role::Owner);
        may_manage(&owner, KeyKind::Infrastructure, perms(&["providers.manage", "keys.manage"]), "create").unwrap();
    }

    #[test]
    fn named_permissions_must_belong_to_the_kind() {
        let owner = person(Role::Owner);
        let err = requested_permissions(&owner, KeyKind::Sending, Some(&["mailbox.read".into()])).unwrap_err();
        assert_eq!(err.param(), Some("permissions[0]"));
        let err = requested_permissions(&owner, KeyKind::Mailbox, Some(&[])).unwrap_err();
        assert_eq!(err.param(), Some("permissions"));
    }
}
