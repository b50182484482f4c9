//! From a recipient address to the mailbox that takes it: the mailbox at the address;
//! else, for `local+tag@domain`, the one at `local@domain` (the message keeps `tag` as
//! `plus_tag`); else, on a team domain, the domain's catch-all (`*@domain`). A mailbox on
//! a team domain receives only while its team holds the domain verified (API.md §6, §14).
//! A catch-all candidate exists only off the instance's own domains: a `*@` mailbox can
//! only be made on a verified team domain.

use crate::Core;
use crate::ids::TeamId;
use crate::store::TeamScope;

use super::Recipient;

/// The mailbox `address` (lower case) goes to, or None (the SMTP answer is `550 5.1.1`).
pub async fn resolve(core: &Core, address: &str) -> anyhow::Result<Option<Recipient>> {
    let Some((local, _)) = address.rsplit_once('@') else { return Ok(None) };
    let Some(domain) = crate::domains::domain_of(address) else { return Ok(None) };
    if local.is_empty() || local == "*" {
        return Ok(None);
    }
    let operator = core.settings.inbound_domains.contains(&domain);
    let tag = local.split_once('+').filter(|(base, _)| !base.is_empty());
    let mut candidates: Vec<(String, Option<&str>)> = vec![(format!("{local}@{domain}"), None)];
    if let Some((base, tag)) = tag {
        candidates.push((format!("{base}@{domain}"), Some(tag)));
    }
    if !operator {
        candidates.push((format!("*@{domain}"), tag.map(|(_, t)| t)));
    }
    let addresses: Vec<String> = candidates.iter().map(|(a, _)| a.clone()).collect();
    let mut conn = core.store.pool().acquire().await?;
    let found = crate::store::inbound::mailboxes_by_addresses(&mut conn, &addresses).await?;
    let Some((mailbox, tag)) =
        candidates.iter().find_map(|(a, tag)| found.iter().find(|m| m.address == *a).map(|m| (m.clone(), *tag)))
    else {
        return Ok(None);
    };
    if !operator {
        // A mailbox on one of its team's domains receives while the domain is verified.
        // (One on a name the operator has since stopped receiving for, made before,
        // keeps its mail: no team domain holds it.)
        let team = TeamId::stored(mailbox.team_id.clone());
        let status = crate::store::domains::status_of(&mut conn.team(&team), &domain).await?;
        if status.is_some_and(|s| s != crate::domains::VERIFIED) {
            return Ok(None);
        }
    }
    let mut recipient = Recipient::from(mailbox);
    recipient.plus_tag = tag.filter(|t| !t.is_empty()).map(str::to_owned);
    Ok(Some(recipient))
}
