//! Webhook endpoints (API.md §8): the operations behind `/webhooks` — create within the
//! team's webhook limit (the secret exists only in that answer), read, change, delete,
//! rotate the secret with a grace, send a test event, list deliveries with their
//! attempts, and replay one delivery or a time range. Each owns its transaction: checks,
//! store, audit entry, commit.

use serde_json::json;

use crate::Core;
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::error::{Error, Result};
use crate::ids::{DeliveryId, EventId, MailboxId, WebhookId};
use crate::limits::{LimitName, limit_for};
use crate::store::TeamScope;
use crate::store::webhooks::{self as q, AttemptRow, DeliveryRow, WebhookRow};
use crate::store::{Conn, audit, mailboxes, now_ms, rfc3339};
use crate::validate;

/// Most mailboxes one endpoint may filter on.
pub const MAX_MAILBOX_FILTER: usize = 100;
/// Longest endpoint URL.
pub const MAX_URL_LEN: usize = 2048;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 500;
/// The longest grace of a rotated secret, and the default.
pub const MAX_GRACE_SECONDS: i64 = 86_400;

/// A new endpoint as the caller asks for it.
pub struct NewWebhook {
    pub url: String,
    pub event_types: Vec<String>,
    /// None or empty: every mailbox.
    pub mailbox_ids: Option<Vec<String>>,
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// A change to an endpoint; None leaves a field as it is.
#[derive(Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// Some(empty): every mailbox.
    pub mailbox_ids: Option<Vec<String>>,
    pub description: Option<String>,
    /// Re-enabling clears why Sendmux disabled it.
    pub enabled: Option<bool>,
}

/// An endpoint with its signing secret, which exists only in this answer.
pub struct WithSecret {
    pub webhook: WebhookRow,
    pub secret: String,
}

/// A delivery and every attempt made of it.
pub struct Delivery {
    pub delivery: DeliveryRow,
    pub attempts: Vec<AttemptRow>,
}

/// Which deliveries of an endpoint to send again.
pub struct ReplayRange {
    /// RFC 3339; deliveries created at or after this.
    pub since: String,
    /// RFC 3339, exclusive (default: now).
    pub until: Option<String>,
    pub only_failed: bool,
}

/// What a range replay did.
#[derive(Debug, PartialEq, Eq)]
pub struct Replayed {
    /// Events queued again, one new delivery each.
    pub replayed: usize,
    /// Deliveries in the range whose payload had expired.
    pub expired: usize,
}

// ---- Rules --------------------------------------------------------------------------

/// An absolute http(s) URL without credentials, at most [`MAX_URL_LEN`] long; returned
/// normalised.
pub fn check_url(raw: &str) -> Result<String> {
    let bad = || Error::invalid("url", "url must be an absolute http(s) URL");
    let url = url::Url::parse(raw.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad());
    }
    // A host name (letters, digits, '-' and '.', after IDNA) or an IP address: the URL
    // parser also takes names such as `a*b` that no DNS answers for.
    match url.host() {
        None => return Err(bad()),
        Some(url::Host::Domain(d)) if !d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') => {
            return Err(bad());
        }
        Some(_) => {}
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid("url", "url must not carry credentials; verify the signature instead"));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(Error::invalid("url", format!("url must be at most {MAX_URL_LEN} characters")));
    }
    Ok(url.to_string())
}

/// At least one event type of API.md §7, each known; returned de-duplicated, in order, as
/// the stored comma list.
pub fn check_event_types(types: &[String]) -> Result<String> {
    if types.is_empty() {
        return Err(Error::invalid("event_types", "Name at least one event type"));
    }
    let mut out: Vec<&str> = Vec::new();
    for (i, t) in types.iter().enumerate() {
        if !crate::events::is_event_type(t) {
            return Err(Error::invalid(
                format!("event_types[{i}]"),
                format!("`{}` is not an event type", validate::truncate(t, 40)),
            ));
        }
        if !out.contains(&t.as_str()) {
            out.push(t);
        }
    }
    Ok(out.join(","))
}

/// The mailbox filter's ids, de-duplicated, each with its index in the request (to name
/// the field); None (every mailbox) for no list or an empty one. A malformed id is a
/// mailbox that does not exist.
pub fn parse_mailbox_filter(ids: Option<&[String]>) -> Result<Option<Vec<(usize, MailboxId)>>> {
    let Some(ids) = ids.filter(|ids| !ids.is_empty()) else { return Ok(None) };
    if ids.len() > MAX_MAILBOX_FILTER {
        return Err(Error::invalid("mailbox_ids", format!("At most {MAX_MAILBOX_FILTER} mailboxes")));
    }
    let mut out: Vec<(usize, MailboxId)> = Vec::with_capacity(ids.len());
    for (i, raw) in ids.iter().enumerate() {
        let id = MailboxId::parse(raw).ok_or_else(|| no_such_mailbox(i))?;
        if !out.iter().any(|(_, seen)| seen.as_str() == id.as_str()) {
            out.push((i, id));
        }
    }
    Ok(Some(out))
}

fn no_such_mailbox(i: usize) -> Error {
    Error::invalid(format!("mailbox_ids[{i}]"), "No such mailbox")
}

/// The description, trimmed and checked.
pub fn check_description(raw: Option<&str>) -> Result<Option<String>> {
    raw.map(|d| validate::name("description", d, MAX_DESCRIPTION)).transpose()
}

/// The grace of a rotated secret: 0..=[`MAX_GRACE_SECONDS`], by default the maximum.
pub fn check_grace(grace_seconds: Option<i64>) -> Result<i64> {
    let grace = grace_seconds.unwrap_or(MAX_GRACE_SECONDS);
    if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
        return Err(Error::invalid("grace_seconds", format!("grace_seconds must be from 0 to {MAX_GRACE_SECONDS}")));
    }
    Ok(grace)
}

/// The delivery status a list may filter on.
pub fn check_delivery_status(status: Option<&str>) -> Result<()> {
    match status {
        None | Some("pending" | "succeeded" | "failed") => Ok(()),
        Some(_) => Err(Error::malformed("status must be pending, succeeded or failed").with_param("status")),
    }
}

/// The range `[since, until)` in Unix milliseconds; `until` defaults to `now`.
pub fn replay_window(since: &str, until: Option<&str>, now: i64) -> Result<(i64, i64)> {
    let since = validate::timestamp("since", since)?;
    let until = until.map(|u| validate::timestamp("until", u)).transpose()?.unwrap_or(now);
    if until <= since {
        return Err(Error::invalid("until", "until must be after since"));
    }
    Ok((since, until))
}

/// One new delivery per event among `rows` (the first of each event id), and how many
/// could not be replayed because their payload had been purged. Linear in `rows`.
pub fn replay_plan(team_id: &str, webhook_id: &str, rows: &[DeliveryRow]) -> (Vec<DeliveryRow>, usize) {
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let mut again = Vec::new();
    let mut expired = 0;
    for d in rows.iter().filter(|d| seen.insert(d.event_id.as_str())) {
        match d.payload.as_deref() {
            Some(payload) => again.push(q::new_delivery(team_id, webhook_id, &d.event_id, &d.event_type, payload)),
            None => expired += 1,
        }
    }
    (again, expired)
}

/// The stored mailbox filter, each id checked to be a mailbox of the caller's team.
async fn check_mailboxes(conn: &mut Conn, caller: &Principal, ids: Option<&[String]>) -> Result<Option<String>> {
    let Some(ids) = parse_mailbox_filter(ids)? else { return Ok(None) };
    for (i, id) in &ids {
        mailboxes::get(&mut conn.team(&caller.team_id), id.as_str()).await?.ok_or_else(|| no_such_mailbox(*i))?;
    }
    Ok(Some(ids.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>().join(",")))
}

async fn with_attempts(conn: &mut Conn, delivery: DeliveryRow) -> Result<Delivery> {
    let attempts = q::attempts_of(conn, &delivery.id).await?;
    Ok(Delivery { delivery, attempts })
}

// ---- Operations ---------------------------------------------------------------------

/// Adds an endpoint within the team's webhook limit; its secret is returned this once.
pub async fn create(core: &Core, caller: &Principal, new: NewWebhook) -> Result<WithSecret> {
    caller.require(Perm::WebhooksManage)?;
    let url = check_url(&new.url)?;
    let event_types = check_event_types(&new.event_types)?;
    let description = check_description(new.description.as_deref())?;
    let secret = super::new_secret();
    let team = &caller.team_id;
    let now = now_ms();
    let mut tx = core.store.begin().await?;
    core.store.lock_team(&mut tx, team.as_str()).await?;
    let mailbox_ids = check_mailboxes(&mut tx, caller, new.mailbox_ids.as_deref()).await?;
    let limit = limit_for(&mut tx, &core.settings.limits, team, LimitName::Webhooks).await?;
    if q::count(&mut tx.team(team)).await? >= limit {
        return Err(Error::limit_exceeded(format!(
            "This team has {limit} webhooks, its limit; delete one or request an increase"
        )));
    }
    let row = WebhookRow {
        id: WebhookId::new().into_string(),
        team_id: team.as_str().to_owned(),
        url,
        description,
        event_types,
        mailbox_ids,
        enabled: i64::from(new.enabled.unwrap_or(true)),
        disabled_reason: None,
        failing_since: None,
        last_success_at: None,
        created_at: now,
        updated_at: now,
    };
    q::insert(&mut tx, &row, &core.secrets.seal(secret.as_bytes())).await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "webhook.created",
        ("webhook", &row.id),
        json!({"url": row.url}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(WithSecret { webhook: row, secret })
}

/// A page of the team's endpoints, newest first, before the `before` id.
pub async fn list(core: &Core, caller: &Principal, before: Option<&str>, limit: i64) -> Result<Vec<WebhookRow>> {
    caller.require(Perm::WebhooksRead)?;
    let mut conn = core.store.pool().acquire().await?;
    Ok(q::list(&mut conn.team(&caller.team_id), before, limit).await?)
}

/// One endpoint of the caller's team, without its secret.
pub async fn get(core: &Core, caller: &Principal, id: &WebhookId) -> Result<WebhookRow> {
    caller.require(Perm::WebhooksRead)?;
    let mut conn = core.store.pool().acquire().await?;
    find(&mut conn, caller, id).await
}

async fn find(conn: &mut Conn, caller: &Principal, id: &WebhookId) -> Result<WebhookRow> {
    q::get(&mut conn.team(&caller.team_id), id.as_str()).await?.ok_or_else(|| Error::not_found("webhook"))
}

/// Changes an endpoint; `enabled: true` re-enables one Sendmux disabled.
pub async fn update(core: &Core, caller: &Principal, id: &WebhookId, change: WebhookChange) -> Result<WebhookRow> {
    caller.require(Perm::WebhooksManage)?;
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    let mut row = find(&mut tx, caller, id).await?;
    if let Some(url) = &change.url {
        row.url = check_url(url)?;
    }
    if let Some(types) = &change.event_types {
        row.event_types = check_event_types(types)?;
    }
    if change.mailbox_ids.is_some() {
        row.mailbox_ids = check_mailboxes(&mut tx, caller, change.mailbox_ids.as_deref()).await?;
    }
    if change.description.is_some() {
        row.description = check_description(change.description.as_deref())?;
    }
    if let Some(enabled) = change.enabled {
        if enabled && row.enabled == 0 {
            row.disabled_reason = None;
            row.failing_since = None;
        }
        row.enabled = i64::from(enabled);
    }
    row.updated_at = now_ms();
    q::update(&mut tx, &row).await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "webhook.updated",
        ("webhook", &row.id),
        json!({"url": row.url, "enabled": row.enabled != 0}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(row)
}

/// Deletes an endpoint.
pub async fn delete(core: &Core, caller: &Principal, id: &WebhookId) -> Result<()> {
    caller.require(Perm::WebhooksManage)?;
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    if !q::delete(&mut tx.team(team), id.as_str()).await? {
        return Err(Error::not_found("webhook"));
    }
    audit::record(&mut tx.team(team), &caller.actor(), "webhook.deleted", ("webhook", id.as_str()), json!({})).await?;
    core.commit(tx, team.as_str()).await?;
    Ok(())
}

/// A new signing secret, returned this once; the current ones keep signing for
/// `grace_seconds` (default and most [`MAX_GRACE_SECONDS`]).
pub async fn rotate_secret(
    core: &Core,
    caller: &Principal,
    id: &WebhookId,
    grace_seconds: Option<i64>,
) -> Result<WithSecret> {
    caller.require(Perm::WebhooksManage)?;
    let grace = check_grace(grace_seconds)?;
    let secret = super::new_secret();
    let team = &caller.team_id;
    let mut tx = core.store.begin().await?;
    let row = find(&mut tx, caller, id).await?;
    q::expire_secrets(&mut tx, &row.id, now_ms() + grace * 1000).await?;
    q::add_secret(&mut tx, &row.id, &core.secrets.seal(secret.as_bytes())).await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "webhook.secret_rotated",
        ("webhook", &row.id),
        json!({"grace_seconds": grace}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(WithSecret { webhook: row, secret })
}

/// Queues a `webhook.test` event to the endpoint now.
pub async fn send_test(core: &Core, caller: &Principal, id: &WebhookId) -> Result<Delivery> {
    caller.require(Perm::WebhooksManage)?;
    let team = &caller.team_id;
    let webhook = {
        let mut conn = core.store.pool().acquire().await?;
        find(&mut conn, caller, id).await?
    };
    let event_id = EventId::new().into_string();
    let payload = json!({
        "id": event_id,
        "type": "webhook.test",
        "created_at": rfc3339(now_ms()),
        "data": {"webhook_id": webhook.id, "message": "A test delivery from Sendmux"},
    })
    .to_string();
    let mut tx = core.store.begin().await?;
    let d = q::enqueue(&mut tx.team(team), &webhook.id, &event_id, "webhook.test", &payload).await?;
    core.commit(tx, team.as_str()).await?;
    let mut conn = core.store.pool().acquire().await?;
    with_attempts(&mut conn, d).await
}

/// A page of the endpoint's deliveries (optionally of one status), newest first, before
/// the `before` id, each with every attempt.
pub async fn deliveries(
    core: &Core,
    caller: &Principal,
    id: &WebhookId,
    status: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<Delivery>> {
    caller.require(Perm::WebhooksRead)?;
    check_delivery_status(status)?;
    let mut conn = core.store.pool().acquire().await?;
    let webhook = find(&mut conn, caller, id).await?;
    let rows = q::list_deliveries(&mut conn.team(&caller.team_id), &webhook.id, status, before, limit).await?;
    let mut out = Vec::with_capacity(rows.len());
    for d in rows {
        out.push(with_attempts(&mut conn, d).await?);
    }
    Ok(out)
}

/// Queues a delivery's event again (same event id, same bytes) as a new delivery.
pub async fn replay(core: &Core, caller: &Principal, id: &WebhookId, delivery_id: &DeliveryId) -> Result<Delivery> {
    caller.require(Perm::WebhooksManage)?;
    let team = &caller.team_id;
    let d = {
        let mut conn = core.store.pool().acquire().await?;
        let webhook = find(&mut conn, caller, id).await?;
        q::get_delivery(&mut conn.team(team), &webhook.id, delivery_id.as_str())
            .await?
            .ok_or_else(|| Error::not_found("delivery"))?
    };
    let payload = d
        .payload
        .as_deref()
        .ok_or_else(|| Error::conflict("The payload of this delivery has expired (kept 7 days)"))?;
    let mut tx = core.store.begin().await?;
    let again = q::enqueue(&mut tx.team(team), &d.webhook_id, &d.event_id, &d.event_type, payload).await?;
    core.commit(tx, team.as_str()).await?;
    let mut conn = core.store.pool().acquire().await?;
    with_attempts(&mut conn, again).await
}

/// Queues again every event delivered to the endpoint in a time range, once each.
pub async fn replay_range(core: &Core, caller: &Principal, id: &WebhookId, range: ReplayRange) -> Result<Replayed> {
    caller.require(Perm::WebhooksManage)?;
    let team = &caller.team_id;
    // Read and de-duplicate (one new delivery per event) before the write transaction,
    // which then only inserts: up to 10,000 rows must not hold every writer up.
    let (webhook, rows) = {
        let mut conn = core.store.pool().acquire().await?;
        let webhook = find(&mut conn, caller, id).await?;
        let (since, until) = replay_window(&range.since, range.until.as_deref(), now_ms())?;
        let rows = q::deliveries_between(&mut conn.team(team), &webhook.id, since, until, range.only_failed).await?;
        (webhook, rows)
    };
    let (again, expired) = replay_plan(team.as_str(), &webhook.id, &rows);
    let replayed = again.len();
    let mut tx = core.store.begin().await?;
    q::enqueue_many(&mut tx, &again).await?;
    audit::record(
        &mut tx.team(team),
        &caller.actor(),
        "webhook.replayed",
        ("webhook", &webhook.id),
        json!({"replayed": replayed, "since": range.since}),
    )
    .await?;
    core.commit(tx, team.as_str()).await?;
    Ok(Replayed { replayed, expired })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn urls_are_absolute_http_without_credentials() {
        assert_eq!(check_url(" https://hooks.example.com/in ").unwrap(), "https://hooks.example.com/in");
        assert_eq!(check_url("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080/");
        assert_eq!(check_url("https://Bücher.example/").unwrap(), "https://xn--bcher-kva.example/");
        for bad in [
            "",
            "hooks.example.com/in",
            "/relative",
            "ftp://example.com/",
            "file:///etc/passwd",
            "mailto:a@b.c",
            "http://a.example*",
            "http://a_b.example/",
        ] {
            assert_eq!(check_url(bad).unwrap_err().param(), Some("url"), "{bad}");
        }
        let err = check_url("https://user:pw@example.com/").unwrap_err();
        assert!(err.to_string().contains("credentials"), "{err}");
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(check_url(&long).unwrap_err().to_string().contains("2048"));
    }

    #[test]
    fn event_types_must_be_known_and_are_deduplicated() {
        assert_eq!(
            check_event_types(&strings(&["message.received", "message.bounced", "message.received"])).unwrap(),
            "message.received,message.bounced"
        );
        assert_eq!(check_event_types(&[]).unwrap_err().param(), Some("event_types"));
        let err = check_event_types(&strings(&["message.received", "message.exploded"])).unwrap_err();
        assert_eq!(err.param(), Some("event_types[1]"));
        assert!(err.to_string().contains("message.exploded"));
        // A hostile name is quoted cut short.
        let err = check_event_types(&[format!("x{}", "y".repeat(1000))]).unwrap_err();
        assert!(err.to_string().len() < 100);
        // The comma of the stored list cannot be smuggled in.
        assert!(check_event_types(&strings(&["message.received,message.bounced"])).is_err());
    }

    #[test]
    fn the_mailbox_filter_is_parsed_deduplicated_and_bounded() {
        assert!(parse_mailbox_filter(None).unwrap().is_none());
        assert!(parse_mailbox_filter(Some(&[])).unwrap().is_none());
        let a = MailboxId::new().into_string();
        let b = MailboxId::new().into_string();
        let ids = parse_mailbox_filter(Some(&[a.clone(), b.clone(), a.clone()])).unwrap().unwrap();
        let got: Vec<(usize, &str)> = ids.iter().map(|(i, id)| (*i, id.as_str())).collect();
        assert_eq!(got, vec![(0, a.as_str()), (1, b.as_str())]);
        let err = parse_mailbox_filter(Some(&[a.clone(), "mbx_nope".into()])).unwrap_err();
        assert_eq!(err.param(), Some("mailbox_ids[1]"));
        assert!(parse_mailbox_filter(Some(&[format!("{a},{b}")])).is_err());
        let many = vec![a; MAX_MAILBOX_FILTER + 1];
        assert_eq!(parse_mailbox_filter(Some(&many)).unwrap_err().param(), Some("mailbox_ids"));
    }

    #[test]
    fn grace_status_and_range_are_checked() {
        assert_eq!(check_grace(None).unwrap(), MAX_GRACE_SECONDS);
        assert_eq!(check_grace(Some(0)).unwrap(), 0);
        for bad in [-1, MAX_GRACE_SECONDS + 1, i64::MAX] {
            assert_eq!(check_grace(Some(bad)).unwrap_err().param(), Some("grace_seconds"));
        }
        check_delivery_status(None).unwrap();
        check_delivery_status(Some("failed")).unwrap();
        let err = check_delivery_status(Some("lost")).unwrap_err();
        assert!(
            matches!(&err, Error::About { param, source } if param == "status" && matches!(**source, Error::Malformed(_)))
        );
        let now = 1_800_000_000_000;
        let (since, until) = replay_window("2026-01-01T00:00:00Z", None, now).unwrap();
        assert_eq!(until, now);
        assert!(since < until);
        assert_eq!(replay_window("yesterday", None, now).unwrap_err().param(), Some("since"));
        let err = replay_window("2026-01-02T00:00:00Z", Some("2026-01-01T00:00:00Z"), now).unwrap_err();
        assert_eq!(err.param(), Some("until"));
        let err = replay_window("2026-01-01T00:00:00Z", Some("2026-01-01T00:00:00Z"), now).unwrap_err();
        assert_eq!(err.param(), Some("until"));
    }

    #[test]
    fn a_range_replay_sends_each_event_once_and_counts_purged_payloads() {
        let row = |event: &str, payload: Option<&str>| {
            let mut d = q::new_delivery("tm_1", "whk_1", event, "message.received", payload.unwrap_or(""));
            d.payload = payload.map(str::to_owned);
            d
        };
        let rows = vec![
            row("evt_a", Some("{\"a\":1}")),
            row("evt_a", Some("{\"a\":1}")),
            row("evt_b", None),
            row("evt_c", Some("{\"c\":1}")),
            row("evt_b", Some("{\"b\":1}")),
        ];
        let (again, expired) = replay_plan("tm_1", "whk_1", &rows);
        let events: Vec<&str> = again.iter().map(|d| d.event_id.as_str()).collect();
        assert_eq!(events, vec!["evt_a", "evt_c"]);
        assert_eq!(expired, 1);
        assert!(again.iter().all(|d| d.webhook_id == "whk_1" && d.team_id == "tm_1"));
        assert_eq!(again[0].payload.as_deref(), Some("{\"a\":1}"));
        // New deliveries, not the old rows again.
        assert!(again.iter().all(|d| rows.iter().all(|r| r.id != d.id)));
    }
}
