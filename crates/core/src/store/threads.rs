//! Threads (SPEC §16): the references a later message may point at (`thread_refs`) and
//! the per-mailbox thread views, aggregated from the mailbox's messages.

use super::Team;
use super::inbound::{COLUMNS, MessageRow};
use super::writer::Writer;

/// One reference of a thread: a Message-ID (`m:<id>`) or a mailbox's normalised subject
/// and correspondent (`s:<mailbox>:<subject>:<address>`).
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct RefRow {
    pub team_id: String,
    pub ref_key: String,
    pub thread_id: String,
    pub created_at: i64,
}

const REF_COLUMNS: &str = "team_id, ref_key, thread_id, created_at";

/// Records `rows`: a Message-ID keeps the thread it was first seen in; a subject key
/// follows the newest thread of that subject and correspondent.
pub async fn insert_refs(w: &mut impl Writer, rows: &[RefRow]) -> anyhow::Result<()> {
    let (ids, subjects): (Vec<&RefRow>, Vec<&RefRow>) = rows.iter().partition(|r| r.ref_key.starts_with("m:"));
    if !ids.is_empty() {
        w.insert_rows("thread_refs", REF_COLUMNS, &ids, "ON CONFLICT (team_id, ref_key) DO NOTHING").await?;
    }
    if !subjects.is_empty() {
        w.insert_rows(
            "thread_refs",
            REF_COLUMNS,
            &subjects,
            "ON CONFLICT (team_id, ref_key) DO UPDATE SET thread_id = excluded.thread_id, created_at = excluded.created_at",
        )
        .await?;
    }
    Ok(())
}

/// The thread of the first of `keys` (in order of preference) that the team knows, in
/// one query (two when a key names mail this instance sent). A Message-ID this instance
/// made (`<msg_…@domain>`, `outbound::mime::message_id_header`) is found from the sent
/// message's own row by its id, so sending writes no reference.
pub async fn lookup(t: &mut Team<'_>, keys: &[String]) -> sqlx::Result<Option<String>> {
    if keys.is_empty() {
        return Ok(None);
    }
    let (conn, team_id) = t.split();
    let placeholders = (0..keys.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
    let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(format!(
        "SELECT ref_key, thread_id FROM thread_refs WHERE team_id = $1 AND ref_key IN ({placeholders})"
    )))
    .bind(team_id);
    for key in keys {
        query = query.bind(key);
    }
    let mut found: Vec<(String, String)> = query.fetch_all(&mut *conn).await?;
    let sent: Vec<(String, &String)> = keys.iter().filter_map(|k| Some((sent_id(k)?, k))).collect();
    if !sent.is_empty() {
        let placeholders = (0..sent.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
        let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(format!(
            "SELECT mime_message_id, thread_id FROM outbound_messages \
             WHERE team_id = $1 AND id IN ({placeholders}) AND thread_id IS NOT NULL"
        )))
        .bind(team_id);
        for (id, _) in &sent {
            query = query.bind(id);
        }
        // The whole Message-ID must match, not just the id inside it.
        found
            .extend(query.fetch_all(&mut *conn).await?.into_iter().map(|(mime, thread)| (format!("m:{mime}"), thread)));
    }
    Ok(keys.iter().find_map(|k| found.iter().find(|(key, _)| key == k).map(|(_, thread)| thread.clone())))
}

/// The id of the sent message a reference key names, when it is one this instance made:
/// `m:msg_<ulid, lower case>@domain` → `msg_<ULID>`.
fn sent_id(key: &str) -> Option<String> {
    let (local, _) = key.strip_prefix("m:msg_")?.split_once('@')?;
    (local.len() == 26 && local.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| format!("msg_{}", local.to_ascii_uppercase()))
}

/// A thread as a mailbox sees it.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct ThreadRow {
    pub thread_id: String,
    pub message_count: i64,
    pub first_message_id: String,
    pub last_message_id: String,
    pub first_message_at: i64,
    pub last_message_at: i64,
    pub subject: Option<String>,
    pub last_from: Option<String>,
}

/// `{matching}` is replaced by a condition on the thread ids to show (`TRUE`: all).
const THREADS: &str = "WITH t AS ( \
       SELECT thread_id, COUNT(*) AS message_count, MIN(id) AS first_message_id, MAX(id) AS last_message_id, \
              MIN(received_at) AS first_message_at, MAX(received_at) AS last_message_at \
       FROM inbound_messages WHERE team_id = $1 AND mailbox_id = $2 AND thread_id IS NOT NULL \
       AND ($3 IS NULL OR thread_id = $3) AND {matching} GROUP BY thread_id) \
     SELECT t.thread_id, t.message_count, t.first_message_id, t.last_message_id, t.first_message_at, \
            t.last_message_at, f.subject, l.from_address AS last_from \
     FROM t JOIN inbound_messages f ON f.id = t.first_message_id JOIN inbound_messages l ON l.id = t.last_message_id \
     WHERE ($4 IS NULL OR t.last_message_id < $4) ORDER BY t.last_message_id DESC LIMIT $5";

/// A mailbox's threads, the most recently active first, before the thread whose last
/// message is `before`; with `words`, only threads with a message that matches them all
/// (as a message search does).
pub async fn list(
    t: &mut Team<'_>,
    mailbox_id: &str,
    words: Option<&[String]>,
    before: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<ThreadRow>> {
    let (conn, team_id) = t.split();
    let sqlite = conn.backend_name().eq_ignore_ascii_case("sqlite");
    let Some(words) = words else {
        return sqlx::query_as(sqlx::AssertSqlSafe(THREADS.replace("{matching}", "TRUE")))
            .bind(team_id)
            .bind(mailbox_id)
            .bind(None::<&str>)
            .bind(before)
            .bind(limit)
            .fetch_all(conn)
            .await;
    };
    let matching = format!(
        "thread_id IN (SELECT thread_id FROM inbound_messages WHERE team_id = $1 AND mailbox_id = $2 AND {})",
        super::inbound::text_match(sqlite, 6)
    );
    sqlx::query_as(sqlx::AssertSqlSafe(THREADS.replace("{matching}", &matching)))
        .bind(team_id)
        .bind(mailbox_id)
        .bind(None::<&str>)
        .bind(before)
        .bind(limit)
        .bind(super::inbound::text_query(sqlite, words))
        .fetch_all(conn)
        .await
}

pub async fn get(t: &mut Team<'_>, mailbox_id: &str, thread_id: &str) -> sqlx::Result<Option<ThreadRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(THREADS.replace("{matching}", "TRUE")))
        .bind(team_id)
        .bind(mailbox_id)
        .bind(Some(thread_id))
        .bind(None::<&str>)
        .bind(1i64)
        .fetch_optional(conn)
        .await
}

/// A thread's messages in the mailbox, oldest first, after `after`.
pub async fn messages(
    t: &mut Team<'_>,
    mailbox_id: &str,
    thread_id: &str,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<MessageRow>> {
    let (conn, team_id) = t.split();
    // A thread view shows each message's extracted text cut to its first
    // `THREAD_TEXT_CHARS` characters (the message view has all of it), so one view
    // holds at most a few MiB however the thread was filled.
    let columns = COLUMNS.replace(
        "extracted_text",
        &format!("substr(extracted_text, 1, {}) AS extracted_text", crate::threads::THREAD_TEXT_CHARS),
    );
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM inbound_messages WHERE team_id = $1 AND mailbox_id = $2 AND thread_id = $3 \
         AND ($4 IS NULL OR id > $4) ORDER BY id LIMIT $5"
    )))
    .bind(team_id)
    .bind(mailbox_id)
    .bind(thread_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Whether `address` has written to the mailbox: mail that came over SMTP and was not
/// spam. Mail injected through the API (`email.receive`) does not count, so a key that may
/// both inject and send cannot open `reply_only` for itself.
pub async fn has_written(t: &mut Team<'_>, mailbox_id: &str, address: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM inbound_messages WHERE team_id = $1 AND mailbox_id = $2 AND direction = 'inbound' \
         AND source = 'smtp' AND is_spam = 0 AND lower(from_address) = $3",
    )
    .bind(team_id)
    .bind(mailbox_id)
    .bind(address.to_lowercase())
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// How many messages the mailbox sent since `since` (ms).
pub async fn sent_since(t: &mut Team<'_>, mailbox_id: &str, since: i64) -> sqlx::Result<i64> {
    let (conn, team_id) = t.split();
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM inbound_messages WHERE team_id = $1 AND mailbox_id = $2 AND direction = 'outbound' \
         AND received_at >= $3",
    )
    .bind(team_id)
    .bind(mailbox_id)
    .bind(since)
    .fetch_one(conn)
    .await
}
