//! The HTTP server loop: accepts connections within the node's limits and serves the
//! router on each (HTTP/1 and HTTP/2), draining on shutdown.

use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What one node admits.
pub struct Limits {
    pub header_timeout: std::time::Duration,
    pub max_connections: usize,
}

/// Serves `router` until `stop`, then lets the open connections finish (they close
/// once idle; event streams end on the same token). What `axum::serve` does, plus: a
/// connection must send its first request within `header_timeout` (HTTP/1 also each
/// later request head: hyper's header read timeout), and beyond `max_connections` a
/// new connection is closed at once, so half-open connections cannot pile up.
pub async fn serve(listener: TcpListener, router: axum::Router, limits: Limits, stop: CancellationToken) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    // The CONNECT protocol (WebSockets over HTTP/2), as `axum::serve` offers it; pings
    // find HTTP/2 peers that are gone.
    builder
        .http2()
        .enable_connect_protocol()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("sendmux_http_connections_refused_total").increment(1);
            drop(tcp);
            continue;
        };
        // No Nagle: event-stream frames and small answers go out as written.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let first_request = Arc::new(tokio::sync::Notify::new());
        let arrived = first_request.clone();
        let service = router.clone().map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            arrived.notify_one();
            req
        });
        let service = hyper_util::service::TowerToHyperService::new(service);
        let (builder, stop) = (builder.clone(), stop.clone());
        let header_timeout = limits.header_timeout;
        connections.spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(builder.serve_connection_with_upgrades(TokioIo::new(tcp), service));
            // Until a first request arrives hyper may still be telling HTTP/1 from
            // HTTP/2, where no timeout of its own applies yet.
            let mut first_deadline = std::pin::pin!(tokio::time::sleep(header_timeout));
            let (mut served, mut draining) = (false, false);
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(error = %e, "http connection ended with an error");
                        }
                        break;
                    }
                    _ = first_request.notified(), if !served => served = true,
                    _ = &mut first_deadline, if !served => break,
                    _ = stop.cancelled(), if !draining => {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}
