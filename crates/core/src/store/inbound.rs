//! Inbound message rows (one per mailbox copy) and the routing lookup from a recipient
//! address to its mailbox.

use super::mailboxes::MailboxRow;
use super::writer::Writer;
use super::{Conn, Team};

#[derive(sqlx::FromRow, serde::Serialize, Debug, Clone)]
pub struct MessageRow {
    pub id: String,
    pub team_id: String,
    pub mailbox_id: String,
    pub blob_key: String,
    pub size_bytes: i64,
    pub source: String,
    pub remote_ip: Option<String>,
    pub helo: Option<String>,
    pub mail_from: String,
    pub rcpt_to: String,
    pub from_address: Option<String>,
    pub from_name: Option<String>,
    pub subject: Option<String>,
    pub header_message_id: Option<String>,
    pub attachment_count: i64,
    pub spam_score: f64,
    pub is_spam: i64,
    pub auth_results: String,
    pub received_at: i64,
    pub plus_tag: Option<String>,
    /// `thr_…`; rows written before threads existed were given one each.
    pub thread_id: Option<String>,
    /// The new text, without quoted history or signature.
    pub extracted_text: Option<String>,
    /// `inbound`, or `outbound` for the copy of a message the mailbox sent.
    pub direction: String,
    /// From, to, subject and text, for search: written, never read back.
    #[sqlx(default)]
    pub search_text: Option<String>,
}

pub(crate) const COLUMNS: &str = "id, team_id, mailbox_id, blob_key, size_bytes, source, remote_ip, helo, mail_from, rcpt_to, \
     from_address, from_name, subject, header_message_id, attachment_count, spam_score, is_spam, auth_results, received_at, \
     plus_tag, thread_id, extracted_text, direction";

/// The mailbox at `address`, whatever its team: addresses are unique on the instance,
/// and SMTP routing starts from the address alone. Every later query is team-scoped.
pub async fn mailbox_by_address(conn: &mut Conn, address: &str) -> sqlx::Result<Option<MailboxRow>> {
    sqlx::query_as(
        "SELECT id, team_id, address, name, spam_threshold, retention_days, accept_spam, created_at, updated_at \
         FROM mailboxes WHERE address = $1",
    )
    .bind(address)
    .fetch_optional(conn)
    .await
}

/// The mailboxes at any of `addresses` (at most three: the address, the address
/// without its `+tag`, the domain's catch-all), whatever their team.
pub async fn mailboxes_by_addresses(conn: &mut Conn, addresses: &[String]) -> sqlx::Result<Vec<MailboxRow>> {
    let at = |i: usize| addresses.get(i).or(addresses.first()).map(String::as_str).unwrap_or_default();
    sqlx::query_as(
        "SELECT id, team_id, address, name, spam_threshold, retention_days, accept_spam, created_at, updated_at \
         FROM mailboxes WHERE address IN ($1, $2, $3)",
    )
    .bind(at(0))
    .bind(at(1))
    .bind(at(2))
    .fetch_all(conn)
    .await
}

pub async fn insert_many(w: &mut impl Writer, rows: &[&MessageRow]) -> anyhow::Result<()> {
    let columns = format!("{COLUMNS}, search_text");
    w.insert_rows("inbound_messages", &columns, rows, "").await.map(|_| ())
}

/// The body keys starting with `prefix` (one blob segment's) of messages with an id
/// at or after `since_id`: a bounded walk of the primary key, since a body's message id
/// is made just before the body is written.
pub async fn blob_keys_with_prefix(conn: &mut Conn, since_id: &str, prefix: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT blob_key FROM inbound_messages WHERE id >= $1 AND substr(blob_key, 1, length($2)) = $2")
        .bind(since_id)
        .bind(prefix)
        .fetch_all(conn)
        .await
}

pub async fn get(t: &mut Team<'_>, mailbox_id: &str, id: &str) -> sqlx::Result<Option<MessageRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM inbound_messages WHERE team_id = $1 AND mailbox_id = $2 AND id = $3"
    )))
    .bind(team_id)
    .bind(mailbox_id)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// What a message list keeps; `None` keeps everything.
#[derive(Default, Debug, Clone)]
pub struct Filter {
    /// Spam only (true) or the rest (false).
    pub spam: Option<bool>,
    pub thread_id: Option<String>,
    /// Received at or after (ms).
    pub since: Option<i64>,
    /// Received before (ms).
    pub until: Option<i64>,
    /// Words that must all appear in from, to, subject or text: each one plain (no
    /// quotes), as `inbound::messages::search_words` makes them. `Some` of none
    /// matches nothing.
    pub words: Option<Vec<String>>,
}

/// The full-text query for `words`: on SQLite an FTS5 query of quoted phrases, on
/// PostgreSQL plain text for `plainto_tsquery`; either way every word must match.
pub(crate) fn text_query(sqlite: bool, words: &[String]) -> String {
    if sqlite { words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" ") } else { words.join(" ") }
}

/// The condition on an `inbound_messages` row that its text matches the query in
/// parameter `$n` (made by [`text_query`]).
pub(crate) fn text_match(sqlite: bool, n: u8) -> String {
    if sqlite {
        format!("rowid IN (SELECT rowid FROM inbound_messages_fts WHERE inbound_messages_fts MATCH ${n})")
    } else {
        format!("to_tsvector('simple', coalesce(search_text, '')) @@ plainto_tsquery('simple', ${n})")
    }
}

/// Newest first, kept by `filter`.
pub async fn list(
    t: &mut Team<'_>,
    mailbox_id: &str,
    filter: &Filter,
    before: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<MessageRow>> {
    let (conn, team_id) = t.split();
    let sqlite = conn.backend_name().eq_ignore_ascii_case("sqlite");
    let query = filter.words.as_deref().map(|words| text_query(sqlite, words));
    let matches = text_match(sqlite, 9);
    // A list shows no extracted text: leave it in the table (up to 256 KiB a row).
    let columns = COLUMNS.replace("extracted_text", "NULL AS extracted_text");
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM inbound_messages WHERE team_id = $1 AND mailbox_id = $2 \
         AND ($3 IS NULL OR is_spam = $3) AND ($4 IS NULL OR id < $4) \
         AND ($6 IS NULL OR thread_id = $6) AND ($7 IS NULL OR received_at >= $7) \
         AND ($8 IS NULL OR received_at < $8) AND ($9 IS NULL OR {matches}) ORDER BY id DESC LIMIT $5"
    )))
    .bind(team_id)
    .bind(mailbox_id)
    .bind(filter.spam.map(i64::from))
    .bind(before)
    .bind(limit)
    .bind(filter.thread_id.as_deref())
    .bind(filter.since)
    .bind(filter.until)
    .bind(query)
    .fetch_all(conn)
    .await
}

/// A message past its mailbox's retention.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Expired {
    pub id: String,
    pub team_id: String,
    pub mailbox_id: String,
    pub blob_key: String,
    pub size_bytes: i64,
}

/// Up to `limit` messages older than their mailbox's `retention_days` at `now`.
pub async fn expired(conn: &mut Conn, now: i64, limit: i64) -> sqlx::Result<Vec<Expired>> {
    sqlx::query_as(
        "SELECT m.id, m.team_id, m.mailbox_id, m.blob_key, m.size_bytes FROM inbound_messages m \
         JOIN mailboxes b ON b.team_id = m.team_id AND b.id = m.mailbox_id \
         WHERE m.received_at < $1 - b.retention_days * 86400000 ORDER BY m.received_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn delete(t: &mut Team<'_>, id: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done = sqlx::query("DELETE FROM inbound_messages WHERE team_id = $1 AND id = $2")
        .bind(team_id)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Every message of one mailbox, for deleting the mailbox with its bodies.
pub async fn of_mailbox(t: &mut Team<'_>, mailbox_id: &str) -> sqlx::Result<Vec<Expired>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(
        "SELECT id, team_id, mailbox_id, blob_key, size_bytes FROM inbound_messages \
         WHERE team_id = $1 AND mailbox_id = $2",
    )
    .bind(team_id)
    .bind(mailbox_id)
    .fetch_all(conn)
    .await
}
