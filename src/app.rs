//! Startup and shutdown: open and migrate the store, bind every listener (reporting the
//! real ports, so port 0 works), then serve until the shutdown signal and drain.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::crypto::SecretBox;
use crate::limits::rate::RateLimiter;
use crate::state::{AppState, Inner};
use crate::store::Store;

pub struct App {
    http: TcpListener,
    http_addr: SocketAddr,
    smtp: TcpListener,
    smtp_addr: SocketAddr,
    smtp_tls: tokio_rustls::TlsAcceptor,
    state: AppState,
}

/// The process-wide Prometheus recorder (the `metrics` facade is global by design).
fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // A recorder installed earlier (another App in this process) keeps working.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The instance key: from settings, or generated into the data folder on first start.
/// A check value in the store refuses a key that differs from the one the data was
/// sealed with.
async fn secret_box(settings: &Settings, store: &Store) -> anyhow::Result<SecretBox> {
    let encoded = match &settings.secret_key {
        Some(k) => k.expose().to_owned(),
        None => {
            let path = settings.data_dir.join("secret.key");
            match std::fs::read_to_string(&path) {
                Ok(k) => k.trim().to_owned(),
                Err(_) => {
                    create_private_dir(&settings.data_dir)?;
                    let key = SecretBox::generate_encoded();
                    write_private(&path, &key).with_context(|| format!("writing {}", path.display()))?;
                    tracing::info!(path = %path.display(), "generated SENDMUX_SECRET_KEY into the data folder");
                    if settings.is_postgres() {
                        tracing::warn!("every node sharing this PostgreSQL database needs the same SENDMUX_SECRET_KEY");
                    }
                    key
                }
            }
        }
    };
    let sb = SecretBox::from_encoded(&encoded).map_err(|e| anyhow::anyhow!("SENDMUX_SECRET_KEY: {e}"))?;
    let check = store.instance_setting_or_insert("secret_key_check", &sb.seal(b"sendmux")).await?;
    if sb.open(&check).as_deref() != Some(b"sendmux".as_slice()) {
        anyhow::bail!("SENDMUX_SECRET_KEY: does not match the key this database's secrets were sealed with");
    }
    Ok(sb)
}

/// Creates `path` and any missing parents readable by this user only (0700, whatever
/// the umask), as SPEC §13 asks of everything in the data folder.
pub(crate) fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

pub(crate) fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let store = Store::connect(&settings).await?;
        store.migrate().await?;
        let secrets = secret_box(&settings, &store).await?;
        let http = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("SENDMUX_HTTP_ADDR: cannot listen on {}", settings.http_addr))?;
        let http_addr = http.local_addr()?;
        let smtp = TcpListener::bind(settings.smtp_addr)
            .await
            .with_context(|| format!("SENDMUX_SMTP_ADDR: cannot listen on {}", settings.smtp_addr))?;
        let smtp_addr = smtp.local_addr()?;
        let smtp_tls = crate::smtp::tls::acceptor(&settings)?;
        let blobs = crate::blob::FsBlobStore::new(settings.data_dir.join("blobs"))
            .with_context(|| format!("creating {}", settings.data_dir.join("blobs").display()))?;
        let mail_auth = crate::inbound::authenticate::Authenticator::new(settings.dns_server)?;
        let auth =
            Authenticator::new(store.clone(), settings.limits.sending_rate_per_minute, settings.rate_limit_per_minute);
        let bus = Arc::new(crate::events::Bus::default());
        let state = AppState(Arc::new(Inner {
            limiter: RateLimiter::new(store.clone()),
            auth,
            secrets,
            metrics: metrics_handle(),
            passwords: Default::default(),
            cache: crate::cache::ReadCache::with_budget(
                store.backend() == crate::store::Backend::Sqlite,
                settings.read_cache_bytes,
            ),
            bus: bus.clone(),
            streams: Default::default(),
            shutdown: CancellationToken::new(),
            blobs: Box::new(blobs),
            mail_auth,
            inbound_committer: crate::inbound::Committer::start(store.clone(), bus.clone())?,
            outbound: crate::outbound::Runtime::new(&settings, store.clone(), bus.clone())?,
            store,
            settings,
        }));
        tracing::info!(http = %http_addr, smtp = %smtp_addr, "listening");
        if state.settings.managed_ses.is_some() {
            // The operator points the managed SES route's SNS subscription here.
            let path = crate::api::suppressions::notification_path(&state, crate::outbound::providers::MANAGED);
            tracing::info!(path = %path, "managed SES notifications endpoint");
        }
        Ok(App { http, http_addr, smtp, smtp_addr, smtp_tls, state })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtp_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled, then lets requests in flight finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let router = crate::api::router(self.state.clone());
        // One token for everything long-lived: the caller's stop also stops streams.
        let stop_all = self.state.shutdown.clone();
        let caller = shutdown.clone();
        tokio::spawn(async move {
            caller.cancelled().await;
            stop_all.cancel();
        });
        let shutdown = self.state.shutdown.clone();
        let mut workers = tokio::task::JoinSet::new();
        let sender = crate::webhooks::worker::Sender::new(
            crate::webhooks::guard::Guard::new(self.state.settings.webhook_allowed_networks.clone()),
            std::time::Duration::from_secs(self.state.settings.webhook_timeout_secs),
        )?;
        workers.spawn(crate::webhooks::worker::worker_loop(self.state.clone(), sender, shutdown.clone()));
        if let Some(url) = self.state.settings.database_url.as_ref().filter(|_| self.state.settings.is_postgres()) {
            workers.spawn(crate::jobs::listen_for_events(
                self.state.clone(),
                url.expose().to_owned(),
                shutdown.clone(),
            ));
        }
        if !self.state.settings.is_postgres() {
            workers.spawn(crate::jobs::checkpoint_loop(
                self.state.store.clone(),
                std::time::Duration::from_millis(100),
                shutdown.clone(),
            ));
        }
        let settler = self.state.clone();
        workers.spawn(async move {
            if let Err(e) = crate::jobs::settle_abandoned_bodies(&settler).await {
                tracing::warn!(error = %format!("{e:#}"), "settling message bodies left by a crash failed");
            }
        });
        workers.spawn(crate::jobs::maintenance_loop(
            self.state.clone(),
            std::time::Duration::from_secs(600),
            shutdown.clone(),
        ));
        let smtp = &self.state.settings.smtp;
        let smtp_server = crate::smtp::listener::SmtpServer {
            listener: self.smtp,
            handler: Arc::new(crate::inbound::smtp::SmtpHandler { state: self.state.clone() }),
            config: crate::smtp::session::SessionConfig {
                hostname: smtp.hostname.clone(),
                max_message_bytes: smtp.max_message_bytes,
                max_recipients: smtp.max_recipients,
                command_timeout: std::time::Duration::from_secs(smtp.command_timeout_secs),
                data_timeout: std::time::Duration::from_secs(smtp.data_timeout_secs),
                tls_available: true,
            },
            tls: Some(self.smtp_tls),
            limits: crate::smtp::listener::Limits {
                max_connections: smtp.max_connections,
                max_connections_per_ip: smtp.max_connections_per_ip,
            },
        };
        workers.spawn(smtp_server.run(shutdown.clone()));
        for _ in 0..self.state.settings.outbound.workers {
            workers.spawn(crate::outbound::worker::worker_loop(self.state.clone(), shutdown.clone()));
        }
        let limits = HttpLimits {
            header_timeout: std::time::Duration::from_secs(self.state.settings.http_header_timeout_secs),
            max_connections: self.state.settings.http_max_connections,
        };
        serve_http(self.http, router, limits, shutdown.clone()).await;
        // The listener has drained; stop the workers (they finish their current step).
        shutdown.cancel();
        while workers.join_next().await.is_some() {}
        // Nothing writes bodies any more: seal the open segments, so a clean stop leaves
        // none to settle.
        self.state.blobs.close().await;
        self.state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

struct HttpLimits {
    header_timeout: std::time::Duration,
    max_connections: usize,
}

/// Serves `router` until `stop`, then lets the open connections finish (they close
/// once idle; event streams end on the same token). What `axum::serve` does, plus: a
/// connection must send its first request within `header_timeout` (HTTP/1 also each
/// later request head: hyper's header read timeout), and beyond `max_connections` a
/// new connection is closed at once, so half-open connections cannot pile up.
async fn serve_http(listener: TcpListener, router: axum::Router, limits: HttpLimits, stop: CancellationToken) {
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

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received; draining");
        token.cancel();
    });
}
