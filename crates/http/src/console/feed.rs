//! The team's events: the latest page (filtered by type) and a live feed over
//! Server-Sent Events that the page's script follows — through `sendmux_core::events`.
//! The stream ends when the session does (checked every [`RECHECK`]).

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;

use super::layout::{self, badge, empty, next_link, time};
use super::session::{Session, error_page};
use crate::state::AppState;
use sendmux_core::auth::Principal;
use sendmux_core::events::{self, EVENT_TYPES};
use sendmux_core::store::events::EventRow;

#[derive(Deserialize, Default)]
pub struct FeedQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    cursor: Option<String>,
}

/// One line of the feed: what the event is about.
fn summary(e: &EventRow) -> String {
    let v: serde_json::Value = serde_json::from_str(&e.payload).unwrap_or_default();
    let d = &v["data"];
    let pick = |k: &str| d[k].as_str().map(str::to_owned);
    let from = pick("from").or_else(|| d["from"]["address"].as_str().map(str::to_owned));
    let to = match &d["to"] {
        serde_json::Value::Array(a) => {
            a.iter().filter_map(|x| x.as_str().or(x["address"].as_str())).collect::<Vec<_>>().join(", ")
        }
        serde_json::Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let mut parts = Vec::new();
    if let Some(f) = from {
        parts.push(format!("from {f}"));
    }
    if !to.is_empty() {
        parts.push(format!("to {to}"));
    }
    if let Some(s) = pick("subject") {
        parts.push(format!("“{s}”"));
    }
    parts.join(" ")
}

pub async fn page(State(state): State<AppState>, Query(q): Query<FeedQuery>, s: Session) -> Response {
    let kind = q.kind.as_deref().filter(|k| !k.is_empty());
    let cursor = q.cursor.as_deref().filter(|c| sendmux_core::ids::EventId::parse(c).is_some());
    let rows = match events::list(&state, &s.p, kind, cursor, 51).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let (rows, next) = sendmux_core::store::page(rows, 50, |r| r.id.clone());
    let body = html! {
        section.card {
            div.card-head {
                h2 { "Live" }
                p.live-status #live-status aria-live="polite" { "Live updates need JavaScript; reload the page to see new events." }
            }
            ul.feed #live-feed data-stream=(super::LIVE_FEED_PATH) {}
        }
        section.card {
            div.card-head {
                h2 { "Recent events" }
                form.inline method="get" action="/events" {
                    label.visually-hidden for="event-type" { "Event type" }
                    select #event-type name="type" {
                        option value="" { "All types" }
                        @for t in EVENT_TYPES { option value=(t) selected[Some(t) == kind] { (t) } }
                    }
                    button.secondary type="submit" { "Filter" }
                }
            }
            @if rows.is_empty() {
                (empty("No events yet", "Events are kept 7 days. Receive a mail in a mailbox or send one, and it appears here.", None))
            } @else {
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "Type" } th scope="col" { "About" } th scope="col" { "Event" } th scope="col" { "When" } } }
                    tbody { @for e in &rows { tr {
                        td { (badge(&e.kind)) } td { (summary(e)) } td { code { (e.id) } } td { (time(e.created_at)) }
                    } } }
                } }
                (next_link("/events", &[("type", kind.unwrap_or(""))], next.as_deref()))
            }
        }
    };
    layout::page(&s, "/events", "Events", body)
}

const PAGE: i64 = 100;
const RECHECK: Duration = Duration::from_millis(900);
const PING: Duration = Duration::from_secs(20);
/// The browser reconnects (with `Last-Event-ID`) after the server ends the stream.
const CLOSE_AFTER: Duration = Duration::from_secs(300);

struct Feed {
    state: AppState,
    p: Principal,
    token: String,
    cursor: i64,
    pending: std::collections::VecDeque<Bytes>,
    wake: tokio::sync::watch::Receiver<u64>,
    next_ping: Instant,
    next_check: Instant,
    deadline: Instant,
    done: bool,
    _slot: crate::stream::Slot,
}

impl Feed {
    async fn fill(&mut self) -> bool {
        match events::after(&self.state, &self.p, self.cursor, PAGE).await {
            Ok(rows) => {
                let full = rows.len() as i64 == PAGE;
                for e in rows {
                    self.cursor = e.seq;
                    let data = serde_json::json!({
                        "id": e.id, "type": e.kind, "summary": summary(&e),
                        "created_at": sendmux_core::store::rfc3339(e.created_at),
                    });
                    self.pending.push_back(Bytes::from(format!("id: {}\nevent: event\ndata: {data}\n\n", e.seq)));
                }
                full
            }
            Err(e) => {
                tracing::warn!(error = %e, "console feed cannot read the log; ending it");
                self.done = true;
                false
            }
        }
    }

    async fn next_chunk(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        loop {
            if Instant::now() >= self.next_check {
                // The session signed out or expired: the feed ends with it.
                let team = Some(self.p.team_id.as_str().to_owned());
                if self.state.auth.authenticate(&self.token, team.as_deref()).await.is_err() {
                    return None;
                }
                self.next_check = Instant::now() + RECHECK;
            }
            if let Some(chunk) = self.pending.pop_front() {
                return Some((Ok(chunk), self));
            }
            if self.done || Instant::now() >= self.deadline {
                return None;
            }
            self.wake.borrow_and_update();
            if Box::pin(self.fill()).await || !self.pending.is_empty() {
                continue;
            }
            tokio::select! {
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                _ = tokio::time::sleep_until(self.next_ping) => {
                    self.next_ping = Instant::now() + PING;
                    return Some((Ok(Bytes::from_static(b": ping\n\n")), self));
                }
                _ = tokio::time::sleep_until(self.deadline) => self.done = true,
                _ = tokio::time::sleep_until(self.next_check) => {}
                _ = self.state.shutdown.cancelled() => self.done = true,
            }
        }
    }
}

pub async fn stream(State(state): State<AppState>, headers: HeaderMap, s: Session) -> Response {
    // A person's feeds share the stream limit a key has (per person, every session).
    let slot = match crate::stream::Slot::take(&state, s.p.rate_bucket.clone()) {
        Ok(slot) => slot,
        Err(e) => return error_page(Some(&s), e),
    };
    let wake = state.bus.subscribe(s.p.team_id.as_str());
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
    let cursor = match resume {
        Some(c) => Ok(c),
        None => events::head(&state, &s.p).await,
    };
    let cursor = match cursor {
        Ok(c) => c,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let now = Instant::now();
    let token = s.token().to_owned();
    let feed = Feed {
        state: state.clone(),
        p: s.p,
        token,
        cursor,
        pending: std::collections::VecDeque::from([Bytes::from_static(b"retry: 3000\n: connected\n\n")]),
        wake,
        next_ping: now + PING,
        next_check: now + RECHECK,
        deadline: now + CLOSE_AFTER,
        done: false,
        _slot: slot,
    };
    let mut res = Body::from_stream(futures::stream::unfold(feed, Feed::next_chunk)).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}
