//! Accept loop: connection limits overall and per client address (`421 4.7.0` beyond
//! them), one task per connection, graceful shutdown that lets sessions finish.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
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

/// Counts open connections per client (see [`client_of`]); a guard gives its slot back
/// on drop.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// Whom a connection from `ip` is counted against: an IPv4 address, or an IPv6 /64
/// (one host commonly holds a whole /64 and may use any address in it); an
/// IPv4-mapped IPv6 address is its IPv4 address.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
        },
    }
}

struct IpSlot {
    map: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let ip = client_of(ip);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// One IPv6 /64 is one client (a host holds a whole /64 and can use every address
    /// in it); IPv4 clients are counted by address, and an IPv4-mapped IPv6 address
    /// counts as its IPv4 address.
    #[test]
    fn connections_count_per_ipv4_address_and_per_ipv6_64() {
        let per_ip = Arc::new(PerIp::default());
        {
            let first = per_ip.take(ip("2001:db8:1:2::1"), 2).unwrap();
            let _second = per_ip.take(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 2).unwrap();
            assert!(per_ip.take(ip("2001:db8:1:2:1234::9"), 2).is_none(), "a third address in the same /64");
            assert!(per_ip.take(ip("2001:db8:1:3::1"), 2).is_some(), "the next /64 is another client");
            drop(first);
            let _again = per_ip.take(ip("2001:db8:1:2::77"), 2).expect("a slot given back is free");
            let _v4 = per_ip.take(ip("192.0.2.7"), 2).unwrap();
            let _mapped = per_ip.take(ip("::ffff:192.0.2.7"), 2).unwrap();
            assert!(per_ip.take(ip("192.0.2.7"), 2).is_none(), "the mapped address counted as 192.0.2.7");
            assert!(per_ip.take(ip("192.0.2.8"), 2).is_some(), "IPv4 neighbours are other clients");
        }
        assert!(per_ip.0.lock().is_empty(), "every slot is given back");
    }
}
