//! The live mailbox stream over a WebSocket (API.md §16): `GET
//! /api/v1/mailbox/events/ws` with the SSE stream's controls as query parameters (or
//! `Last-Event-ID` as a header) and its guarantees, from the same reader
//! (`stream::Reader`): every refusal is an HTTP answer before the upgrade; then each
//! event is one text frame holding the event JSON, heartbeats are WebSocket pings, and
//! the server closes with 1000 after `close_after`, 1008 when the key is revoked, 1001
//! when the node shuts down.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{SinkExt, StreamExt};

use super::extract::Query;
use super::stream::{self, End, Frame, StreamParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;

/// The largest frame or message a client may send.
const MAX_CLIENT_FRAME: usize = 4096;
/// What a socket reads into at first; a longer frame grows it as it comes (tungstenite
/// reserves a frame's length once its header is read).
const READ_BUFFER: usize = 512;

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/api/v1/mailbox/events/ws", axum::routing::get(mailbox_events_ws))
}

async fn mailbox_events_ws(
    State(state): State<AppState>,
    Caller(p): Caller,
    headers: HeaderMap,
    Query(q): Query<StreamParams>,
    request: Request,
) -> ApiResult<Response> {
    // Every check of the SSE stream, before the upgrade.
    let reader = stream::open(&state, &p, &headers, &q).await?;
    let (mut parts, _) = request.into_parts();
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state).await.map_err(|_| {
        ApiError::bad_request("This endpoint needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)")
    })?;
    metrics::counter!("sendmux_websockets_opened_total").increment(1);
    // The client has nothing to say but pongs and a close: a frame or message over 4 KiB
    // ends the connection instead of being buffered (tungstenite's default is 64 MiB).
    // Buffers sized for that too: tungstenite reserves 128 KiB to read into up front and
    // batches writes up to 128 KiB, which made an idle socket cost ~130 KiB
    // (bench/events.sh ws: 131 KiB, 6.8 KiB with a 4 KiB read buffer); events go out one
    // frame at a time anyway.
    let upgrade = upgrade
        .max_frame_size(MAX_CLIENT_FRAME)
        .max_message_size(MAX_CLIENT_FRAME)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0);
    Ok(upgrade.on_upgrade(move |socket| serve(socket, reader)))
}

async fn serve(socket: WebSocket, mut reader: stream::Reader) {
    let (mut tx, mut rx) = socket.split();
    // The client's frames are read on their own, by one future that lives as long as the
    // socket: a frame from the client never cancels and restarts `next_frame` (which
    // would read the log again), so talking costs the client a read, not us a query.
    // Pongs and anything else it says are dropped; its close or leaving ends the loop.
    let client_left = async {
        while let Some(Ok(message)) = rx.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    tokio::pin!(client_left);
    let end = loop {
        tokio::select! {
            frame = reader.next_frame() => {
                let message = match frame {
                    Ok(Frame::Event { payload, .. }) => Message::Text(payload.into()),
                    Ok(Frame::Ping) => Message::Ping(Default::default()),
                    Ok(Frame::Connected) => continue,
                    Err(end) => break Some(end),
                };
                if tx.send(message).await.is_err() {
                    break None;
                }
            }
            // The client left or closed: axum answers its close frame.
            () = &mut client_left => break None,
        }
    };
    if let Some(end) = end {
        let (code, reason) = match end {
            End::Deadline => (close_code::NORMAL, "close_after reached"),
            End::Revoked => (close_code::POLICY, "the key is no longer valid"),
            End::Shutdown => (close_code::AWAY, "the server is shutting down"),
            End::Failed => (close_code::ERROR, "the event log could not be read"),
        };
        let _ = tx.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
        let _ = tx.flush().await;
    }
}
