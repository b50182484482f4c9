//! Accept loop: connection limits overall and per client address (`421 4.7.0` beyond
//! them), one task per connection, graceful shutdown that lets sessions finish.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::session::{End, Handler, Session, SessionConfig};

pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

/// Counts open connections per client address; a guard gives its slot back on drop.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

struct IpSlot {
    map: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut map = self.0.lock();
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot { map: self.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.map.0.lock();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

pub struct SmtpServer<H: Handler> {
    pub listener: TcpListener,
    pub handler: Arc<H>,
    pub config: SessionConfig,
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
}

impl<H: Handler> SmtpServer<H> {
    /// Accepts until `shutdown`, then waits for open sessions (they answer `421` at their
    /// next command and close).
    pub async fn run(self, shutdown: CancellationToken) {
        let total = Arc::new(Semaphore::new(self.limits.max_connections));
        let per_ip = Arc::new(PerIp::default());
        let tracker = TaskTracker::new();
        let shared = Arc::new(self);
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = shared.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "smtp accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let permit = total.clone().try_acquire_owned().ok();
            let slot = per_ip.take(peer.ip(), shared.limits.max_connections_per_ip);
            let (Some(permit), Some(slot)) = (permit, slot) else {
                metrics::counter!("sendmux_smtp_connections_refused_total").increment(1);
                tracker.spawn(refuse(stream));
                continue;
            };
            let server = shared.clone();
            let stop = shutdown.clone();
            let span = tracing::info_span!("smtp_session", peer = %peer);
            tracker.spawn(
                async move {
                    metrics::counter!("sendmux_smtp_sessions_total").increment(1);
                    let _held = (permit, slot);
                    if let Err(e) = server.session(stream, peer, stop).await {
                        tracing::debug!(error = %e, "smtp session ended with an I/O error");
                    }
                }
                .instrument(span),
            );
        }
        tracker.close();
        tracker.wait().await;
    }

    async fn session(&self, stream: TcpStream, peer: SocketAddr, shutdown: CancellationToken) -> std::io::Result<()> {
        let mut config = self.config.clone();
        config.tls_available = self.tls.is_some();
        let mut session = Session::new(self.handler.clone(), config, Some(peer.ip()), shutdown);
        match session.run(stream).await? {
            End::Closed => Ok(()),
            End::StartTls(stream) => {
                let Some(acceptor) = &self.tls else { return Ok(()) };
                let handshake = tokio::time::timeout(self.config.command_timeout, acceptor.accept(stream)).await;
                let tls = match handshake {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                        return Ok(());
                    }
                    Err(_) => return Ok(()),
                };
                session.started_tls();
                session.run(tls).await.map(|_| ())
            }
        }
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(b"421 4.7.0 Too many connections, try again later\r\n").await;
        let _ = stream.shutdown().await;
    })
    .await;
}
