//! Conversations (SPEC §16). Every message, inbound or outbound, gets a thread when it
//! is stored: the thread of the newest message it names in `In-Reply-To`, then
//! `References` (newest first), then its own `Message-ID` (a copy seen before); without
//! any known reference, a message whose subject reads as a reply or forward ("Re:",
//! "Fwd:", "AW:" …) joins the mailbox's latest thread with the same normalised subject
//! and the same correspondent; otherwise it starts a thread. Lookups run before the
//! message's transaction, so two messages of one new conversation that arrive at the
//! same instant may start two threads; the references written with them join later mail
//! to the first one that committed.
//!
//! The operations list a mailbox's threads and show one, oldest message first; they
//! resolve the mailbox exactly as `inbound::messages` does.

use serde_json::{Value, json};

use crate::Core;
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::error::{Error, Result};
use crate::ids::{TeamId, ThreadId};
use crate::inbound::messages;
use crate::store::inbound::MessageRow;
use crate::store::threads::{self as q, RefRow, ThreadRow};
use crate::store::{Store, TeamScope, rfc3339};

/// Most messages a thread view shows.
pub const MAX_THREAD_MESSAGES: i64 = 100;
/// Most characters of each message's `extracted_text` a thread view shows.
pub const THREAD_TEXT_CHARS: usize = 16 * 1024;

/// A Message-ID as a reference key (angle brackets and blanks dropped).
pub fn id_key(message_id: &str) -> Option<String> {
    let id = message_id.trim().trim_start_matches('<').trim_end_matches('>').trim();
    (!id.is_empty() && id.len() <= 900).then(|| format!("m:{id}"))
}

/// A subject without its reply and forward prefixes and list tags, lower-cased, blanks
/// collapsed; and whether any reply or forward prefix was there.
pub fn normalise_subject(subject: &str) -> (String, bool) {
    const PREFIXES: &[&str] = &["re", "fwd", "fw", "aw", "sv", "wg", "vs", "tr", "rif", "antw", "odp", "ref"];
    // A subject key holds at most 500 bytes, and each pass below rescans what is left:
    // read the first 1,000 bytes and strip at most 20 prefixes and tags.
    let mut s = subject[..subject.floor_char_boundary(1000.min(subject.len()))].trim();
    let mut replied = false;
    for _ in 0..20 {
        let before = s;
        if let Some(rest) = s.strip_prefix('[').and_then(|r| r.split_once(']')).map(|(_, r)| r) {
            s = rest.trim_start();
        }
        if let Some((head, rest)) = s.split_once(':') {
            // "Re:", "RE[2]:", "Fwd:", "AW:"
            let word = head.split('[').next().unwrap_or("").trim().to_ascii_lowercase();
            if PREFIXES.contains(&word.as_str()) && head.len() <= 8 {
                s = rest.trim_start();
                replied = true;
            }
        }
        if s == before {
            break;
        }
    }
    let normal: Vec<String> = s.split_whitespace().map(str::to_lowercase).collect();
    (normal.join(" "), replied)
}

/// The subject key of a mailbox's conversation with `correspondent`.
pub fn subject_key(mailbox_id: &str, subject: &str, correspondent: &str) -> Option<String> {
    let (normal, _) = normalise_subject(subject);
    let who = correspondent.trim().to_lowercase();
    // An address is at most 254 bytes (RFC 5321); a longer "correspondent" keys nothing.
    (!normal.is_empty() && !who.is_empty() && normal.len() <= 500 && who.len() <= 254)
        .then(|| format!("s:{mailbox_id}:{normal}:{who}"))
}

/// What a message says about its conversation.
pub struct Threading<'a> {
    pub message_id: Option<&'a str>,
    pub in_reply_to: &'a [String],
    pub references: &'a [String],
    pub subject: Option<&'a str>,
}

impl Threading<'_> {
    /// Header keys in order of preference: the direct parent, the references newest
    /// first, the message itself.
    fn header_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        let refs = self.in_reply_to.iter().chain(self.references.iter().rev()).map(String::as_str);
        for k in refs.chain(self.message_id).filter_map(id_key) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        // A hostile References header names thousands: the nearest 50 are enough.
        keys.truncate(50);
        keys
    }

    fn is_reply(&self) -> bool {
        self.subject.is_some_and(|s| normalise_subject(s).1)
    }
}

/// The thread of a message of `team`; `fallback` is the subject key to try (mail from
/// a mailbox's correspondent) when no header reference is known.
pub async fn resolve(store: &Store, team: &str, t: &Threading<'_>, fallback: Option<&str>) -> anyhow::Result<String> {
    let keys = t.header_keys();
    let fallback = fallback.filter(|_| t.is_reply());
    if keys.is_empty() && fallback.is_none() {
        return Ok(ThreadId::new().into_string());
    }
    let team = TeamId::stored(team.to_owned());
    let mut conn = store.pool().acquire().await?;
    if let Some(found) = q::lookup(&mut conn.team(&team), &keys).await? {
        return Ok(found);
    }
    if let Some(key) = fallback
        && let Some(found) = q::lookup(&mut conn.team(&team), &[key.to_owned()]).await?
    {
        return Ok(found);
    }
    Ok(ThreadId::new().into_string())
}

/// The references a stored message leaves for later mail: its own Message-ID and the
/// ones it names (kept for their first thread), and `subject_keys` (moved to this thread).
pub fn refs(team: &str, thread_id: &str, t: &Threading<'_>, subject_keys: &[String], now: i64) -> Vec<RefRow> {
    let row = |ref_key: String| RefRow {
        team_id: team.to_owned(),
        ref_key,
        thread_id: thread_id.to_owned(),
        created_at: now,
    };
    t.header_keys().into_iter().chain(subject_keys.iter().cloned()).map(row).collect()
}

/// Gives each inbound copy in `rows` its thread and returns the references to store
/// with them. Copies of one message in one team share a thread.
pub async fn assign_inbound(
    store: &Store,
    rows: &mut [MessageRow],
    t: &Threading<'_>,
    now: i64,
) -> anyhow::Result<Vec<RefRow>> {
    let mut out = Vec::new();
    let mut by_team: Vec<(String, String)> = Vec::new();
    for row in rows.iter_mut() {
        let skey = match (t.subject, row.from_address.as_deref()) {
            (Some(s), Some(from)) => subject_key(&row.mailbox_id, s, from),
            _ => None,
        };
        let thread = match by_team.iter().find(|(team, _)| *team == row.team_id) {
            Some((_, thread)) => thread.clone(),
            None => {
                let thread = resolve(store, &row.team_id, t, skey.as_deref()).await?;
                by_team.push((row.team_id.clone(), thread.clone()));
                thread
            }
        };
        out.extend(refs(&row.team_id, &thread, t, skey.as_slice(), now));
        row.thread_id = Some(thread);
    }
    out.sort_by(|a, b| (&a.team_id, &a.ref_key).cmp(&(&b.team_id, &b.ref_key)));
    out.dedup_by(|a, b| a.team_id == b.team_id && a.ref_key == b.ref_key);
    Ok(out)
}

// ---- Operations ---------------------------------------------------------------------

/// The list form of a thread.
pub fn summary(mailbox_id: &str, t: &ThreadRow) -> Value {
    json!({
        "id": t.thread_id,
        "mailbox_id": mailbox_id,
        "subject": t.subject,
        "message_count": t.message_count,
        "first_message_at": rfc3339(t.first_message_at),
        "last_message_at": rfc3339(t.last_message_at),
        "last_message_id": t.last_message_id,
        "last_from": t.last_from,
    })
}

/// A page of a mailbox's threads, the most recently active first, before the thread
/// whose last message is `before`.
pub async fn list(
    core: &Core,
    caller: &Principal,
    mailbox_id: Option<&str>,
    query: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> Result<(String, Vec<ThreadRow>)> {
    caller.require(Perm::MailboxRead)?;
    let words = query.map(messages::search_words).transpose()?;
    let mbx = messages::mailbox(core, caller, mailbox_id).await?;
    if words.as_ref().is_some_and(Vec::is_empty) {
        return Ok((mbx.id, Vec::new()));
    }
    let mut conn = core.store.pool().acquire().await?;
    let rows = q::list(&mut conn.team(&caller.team_id), &mbx.id, words.as_deref(), before, limit).await?;
    Ok((mbx.id, rows))
}

/// One thread with its messages, oldest first (at most [`MAX_THREAD_MESSAGES`]); each
/// message has its `extracted_text` when the caller may read content.
pub async fn get(core: &Core, caller: &Principal, mailbox_id: Option<&str>, id: &str) -> Result<Value> {
    caller.require(Perm::MailboxRead)?;
    let mbx = messages::mailbox(core, caller, mailbox_id).await?;
    let id = ThreadId::parse(id).ok_or_else(|| Error::not_found("thread"))?;
    let mut conn = core.store.pool().acquire().await?;
    let thread = q::get(&mut conn.team(&caller.team_id), &mbx.id, id.as_str())
        .await?
        .ok_or_else(|| Error::not_found("thread"))?;
    let rows = q::messages(&mut conn.team(&caller.team_id), &mbx.id, id.as_str(), None, MAX_THREAD_MESSAGES).await?;
    let content = caller.perms.has(Perm::MessageContentRead);
    let list: Vec<Value> = rows
        .iter()
        .map(|m| {
            let mut v = messages::summary(m);
            if content {
                v["extracted_text"] = json!(m.extracted_text);
            }
            v
        })
        .collect();
    let mut out = summary(&mbx.id, &thread);
    out["messages"] = Value::Array(list);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{normalise_subject, subject_key};

    #[test]
    fn subjects_normalise() {
        assert_eq!(normalise_subject("Re: [list] FWD:  Your   Order"), ("your order".to_owned(), true));
        assert_eq!(normalise_subject("AW: RE[2]: Hallo"), ("hallo".to_owned(), true));
        assert_eq!(normalise_subject("Invoice: March"), ("invoice: march".to_owned(), false));
    }

    #[test]
    fn hostile_subjects_cost_bounded_work() {
        // Five million bytes of tags: only the first 1,000 bytes are read.
        let subject = format!("{}x:", "[a]".repeat(1_700_000));
        let (normal, replied) = normalise_subject(&subject);
        // 20 tags stripped from the first 1,000 bytes; the rest of the cut is left as is.
        assert!(normal.starts_with("[a]") && normal.len() < 1000 && !replied, "{}", &normal[..normal.len().min(80)]);
        // A multi-byte character across the cut does not panic.
        assert!(normalise_subject(&"é".repeat(1000)).0.len() <= 1000);
        // A correspondent longer than an address keys nothing.
        assert_eq!(subject_key("mbx_1", "Re: hi", &"a".repeat(300)), None);
        assert!(subject_key("mbx_1", "Re: hi", "bob@example.com").is_some());
    }
}
