//! The live mailbox stream (API.md §9): `GET /api/v1/mailbox/events` as Server-Sent
//! Events. The stream reads the event log from a position — the client's
//! `Last-Event-ID`, or the log's head — and follows it; wake-ups from the bus only say
//! "read again", so the backlog and live events join with no gap and no duplicate.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sendmux_core::ids::TeamId;
use sendmux_core::store::TeamScope;
use serde::Deserialize;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Query;
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::EventId;
use sendmux_core::store::events;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(mailbox_events))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Comma list of event types (default `message.received,message.received.spam`).
    pub event_types: Option<String>,
    /// Heartbeat comment interval in seconds, 10..300 (default 30).
    #[param(value_type = Option<u64>, minimum = 10, maximum = 300)]
    pub ping: Option<String>,
    /// The server ends the stream after this many seconds, 30..3600 (default 600).
    #[param(value_type = Option<u64>, minimum = 30, maximum = 3600)]
    pub close_after: Option<String>,
    /// Resume after this event (the `Last-Event-ID` header wins when both are given).
    #[param(pattern = "^(|evt_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26})$")]
    pub last_event_id: Option<String>,
}

/// Validated stream controls.
pub struct Controls {
    pub types: Vec<String>,
    pub ping: Duration,
    pub close_after: Duration,
    pub last_event_id: Option<String>,
}

fn seconds(raw: Option<&str>, param: &str, range: std::ops::RangeInclusive<u64>, default: u64) -> ApiResult<Duration> {
    let Some(raw) = raw else { return Ok(Duration::from_secs(default)) };
    raw.trim().parse::<u64>().ok().filter(|v| range.contains(v)).map(Duration::from_secs).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{param} must be a whole number of seconds from {} to {}",
            range.start(),
            range.end()
        ))
        .with_param(param)
    })
}

impl Controls {
    pub fn parse(q: &StreamParams, headers: &HeaderMap) -> ApiResult<Self> {
        let types: Vec<String> = match q.event_types.as_deref() {
            None => vec!["message.received".into(), "message.received.spam".into()],
            Some(list) => {
                let mut out: Vec<String> = Vec::new();
                for t in list.split(',').map(str::trim) {
                    if !sendmux_core::events::is_event_type(t) {
                        return Err(ApiError::bad_request(format!(
                            "`{}` is not an event type",
                            sendmux_core::validate::truncate(t, 40)
                        ))
                        .with_param("event_types"));
                    }
                    if !out.iter().any(|o| o == t) {
                        out.push(t.to_owned());
                    }
                }
                out
            }
        };
        let header_id = match headers.get("last-event-id") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError::bad_request("Last-Event-ID is not an event id").with_param("Last-Event-ID"))?
                    .trim()
                    .to_owned(),
            ),
        };
        let (last_event_id, param) = match header_id {
            Some(h) => (Some(h), "Last-Event-ID"),
            None => (q.last_event_id.clone(), "last_event_id"),
        };
        let last_event_id = match last_event_id.filter(|id| !id.is_empty()) {
            None => None,
            Some(id) => Some(
                EventId::parse(&id)
                    .ok_or_else(|| ApiError::bad_request("not an event id (evt_…)").with_param(param))?
                    .into_string(),
            ),
        };
        Ok(Self {
            types,
            ping: seconds(q.ping.as_deref(), "ping", 10..=300, 30)?,
            close_after: seconds(q.close_after.as_deref(), "close_after", 30..=3600, 600)?,
            last_event_id,
        })
    }
}

/// Holds one of a key's stream slots until the stream ends (SSE, WebSocket, and a
/// person's console feed, under the person's id).
pub(crate) struct Slot {
    state: AppState,
    key: String,
}

impl Slot {
    /// Takes one of `key`'s `SENDMUX_STREAM_MAX_PER_KEY` slots, or refuses with 429.
    pub(crate) fn take(state: &AppState, key: String) -> ApiResult<Slot> {
        let mut streams = state.0.streams.lock();
        let open = streams.entry(key.clone()).or_insert(0);
        if *open >= state.settings.stream_max_per_key {
            let mut e = ApiError::rate_limited(5);
            e.message = format!("This key already holds {} open streams", state.settings.stream_max_per_key).into();
            return Err(e);
        }
        *open += 1;
        Ok(Slot { state: state.clone(), key })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut streams = self.state.0.streams.lock();
        if let Some(n) = streams.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.key);
            }
        }
    }
}

/// What a stream sends next, whatever carries it (SSE or WebSocket).
pub(crate) enum Frame {
    /// A log event: its id, type and JSON.
    Event {
        id: String,
        kind: String,
        payload: String,
    },
    Ping,
    /// The opening comment of an SSE stream.
    Connected,
}

/// Why a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// `close_after` passed.
    Deadline,
    /// The key was revoked, expired or deleted (or could not be checked).
    Revoked,
    /// The node is shutting down.
    Shutdown,
    /// The log could not be read.
    Failed,
}

pub(crate) struct Reader {
    state: AppState,
    team_id: TeamId,
    mailbox_id: String,
    types: Vec<String>,
    cursor: i64,
    pending: VecDeque<Frame>,
    wake: tokio::sync::watch::Receiver<u64>,
    ping: Duration,
    next_ping: Instant,
    deadline: Instant,
    /// The key the stream was opened with; checked every [`RECHECK`] so a revoked or
    /// expired key's stream ends on every node within a second (API.md §3).
    key_id: Option<String>,
    next_check: Instant,
    /// `retry:` goes out with the first event, not alone: a block holding only a field
    /// without data is dispatched as an empty event by some clients (httpx-sse).
    retry_sent: bool,
    done: Option<End>,
    /// The id of the last event of the mailbox read from the log, of any type: a
    /// position to resume from.
    pub(crate) last_read: Option<String>,
    _slot: Slot,
}

const PAGE: i64 = 200;
const RECHECK: Duration = Duration::from_millis(900);

impl Reader {
    /// Reads the log after the cursor into `pending`; true when a full page came back.
    async fn fill(&mut self) -> Result<bool, sqlx::Error> {
        let mut conn = self.state.store.pool().acquire().await?;
        let rows = events::after(&mut conn.team(&self.team_id), Some(&self.mailbox_id), self.cursor, PAGE).await?;
        let full = rows.len() as i64 == PAGE;
        for row in rows {
            self.cursor = row.seq;
            self.last_read = Some(row.id.clone());
            if self.types.contains(&row.kind) {
                self.pending.push_back(Frame::Event { id: row.id, kind: row.kind, payload: row.payload });
            }
        }
        Ok(full)
    }

    /// True while the stream's key is neither revoked, expired nor deleted.
    async fn credential_valid(&self) -> bool {
        let Some(key_id) = &self.key_id else { return true };
        let row = match self.state.store.pool().acquire().await {
            Ok(mut conn) => sendmux_core::store::keys::get(&mut conn.team(&self.team_id), key_id).await,
            Err(e) => Err(e),
        };
        match row {
            Ok(row) => row.is_some_and(|r| r.is_active(sendmux_core::store::now_ms())),
            Err(e) => {
                // The store is unreachable: the stream cannot vouch for its key.
                tracing::warn!(error = %e, "event stream cannot check its key; ending it");
                false
            }
        }
    }

    /// The SSE form of the next frame.
    async fn next_chunk(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        let chunk = match self.next_frame().await {
            Err(_) => return None,
            Ok(Frame::Connected) => Bytes::from_static(b": connected\n\n"),
            Ok(Frame::Ping) => Bytes::from_static(b": ping\n\n"),
            Ok(Frame::Event { id, kind, payload }) => {
                let retry = if std::mem::replace(&mut self.retry_sent, true) { "" } else { "retry: 2000\n" };
                Bytes::from(format!("{retry}id: {id}\nevent: {kind}\ndata: {payload}\n\n"))
            }
        };
        Some((Ok(chunk), self))
    }

    /// The next frame, in log order, or why the stream ends. Cancel-safe: a frame is
    /// taken from `pending` only when it is returned, and the log's cursor moves only
    /// with the frames it queued.
    pub(crate) async fn next_frame(&mut self) -> Result<Frame, End> {
        loop {
            if Instant::now() >= self.next_check {
                if !Box::pin(self.credential_valid()).await {
                    return Err(End::Revoked);
                }
                self.next_check = Instant::now() + RECHECK;
            }
            if let Some(frame) = self.pending.pop_front() {
                return Ok(frame);
            }
            if let Some(end) = self.done {
                return Err(end);
            }
            if Instant::now() >= self.deadline {
                return Err(End::Deadline);
            }
            // Mark every wake-up so far as seen *before* reading: one that arrives
            // during the read then still ends the wait below, and the event it
            // announces is read at once rather than with the next one.
            self.wake.borrow_and_update();
            // Boxed: the read's state lives only while it runs, keeping an idle
            // stream's future small.
            match Box::pin(self.fill()).await {
                Ok(true) => continue,
                Ok(false) if !self.pending.is_empty() => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "event stream cannot read the log; ending it");
                    return Err(End::Failed);
                }
            }
            tokio::select! {
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                _ = tokio::time::sleep_until(self.next_ping) => {
                    self.next_ping = Instant::now() + self.ping;
                    return Ok(Frame::Ping);
                }
                _ = tokio::time::sleep_until(self.deadline) => self.done = Some(End::Deadline),
                _ = tokio::time::sleep_until(self.next_check) => {}
                _ = self.state.shutdown.cancelled() => self.done = Some(End::Shutdown),
            }
        }
    }
}

/// The mailbox key's live event stream. Controls are checked before the stream starts.
#[utoipa::path(get, path = "/api/v1/mailbox/events", tag = "mailbox", params(StreamParams),
    responses((status = 200, content_type = "text/event-stream", description = "id/event/data frames and `: ping` comments"),
              (status = 400, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
async fn mailbox_events(
    State(state): State<AppState>,
    Caller(p): Caller,
    headers: HeaderMap,
    Query(q): Query<StreamParams>,
) -> ApiResult<Response> {
    let mut reader = open(&state, &p, &headers, &q).await?;
    // A comment only: no client dispatches it.
    reader.pending.push_front(Frame::Connected);
    metrics::counter!("sendmux_streams_opened_total").increment(1);
    let body = Body::from_stream(futures::stream::unfold(reader, Reader::next_chunk));
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}

/// Checks the caller and the controls, takes a stream slot of the key and places the
/// reader at the head of the log or after `Last-Event-ID`: everything that can refuse
/// a stream happens here, before any byte of it (or a WebSocket upgrade).
pub(crate) async fn open(
    state: &AppState,
    p: &sendmux_core::auth::Principal,
    headers: &HeaderMap,
    q: &StreamParams,
) -> ApiResult<Reader> {
    p.require(Perm::MailboxRead)?;
    p.mailbox_scope().ok_or_else(|| ApiError::forbidden("The event stream is for mailbox keys"))?;
    let controls = Controls::parse(q, headers)?;
    open_with(state, p, controls).await
}

/// [`open`] with controls already made: the checks, the key's stream slot and the start
/// position, for a surface without HTTP controls (MCP's `wait_for_message`).
pub(crate) async fn open_with(
    state: &AppState,
    p: &sendmux_core::auth::Principal,
    controls: Controls,
) -> ApiResult<Reader> {
    p.require(Perm::MailboxRead)?;
    let mailbox_id =
        p.mailbox_scope().ok_or_else(|| ApiError::forbidden("The event stream is for mailbox keys"))?.to_owned();
    let slot = Slot::take(state, p.rate_bucket.clone())?;
    // Subscribe before choosing the start, so no wake-up falls between the two.
    let wake = state.bus.subscribe(p.team_id.as_str());
    let cursor = {
        let mut conn = state.store.pool().acquire().await?;
        match &controls.last_event_id {
            None => events::head(&mut conn.team(&p.team_id)).await?,
            Some(id) => events::resume_position(&mut conn.team(&p.team_id), id)
                .await?
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID names no event").with_param("Last-Event-ID"))?,
        }
    };
    let now = Instant::now();
    let reader = Reader {
        state: state.clone(),
        team_id: p.team_id.clone(),
        mailbox_id,
        types: controls.types,
        cursor,
        pending: VecDeque::new(),
        wake,
        ping: controls.ping,
        next_ping: now + controls.ping,
        deadline: now + controls.close_after,
        key_id: match &p.credential {
            sendmux_core::auth::Credential::Key { key_id, .. } => Some(key_id.clone()),
            sendmux_core::auth::Credential::User { .. } => None,
        },
        next_check: now + RECHECK,
        retry_sent: false,
        done: None,
        last_read: controls.last_event_id.clone(),
        _slot: slot,
    };
    Ok(reader)
}
