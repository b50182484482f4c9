//! Startup and shutdown: open and migrate the store, bind every listener (reporting the
//! real ports, so port 0 works), then serve until the shutdown signal and drain.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sendmux_core::Core;
use sendmux_core::config::{BlobLocation, Settings};
use sendmux_core::crypto::SecretBox;
use sendmux_core::store::Store;
use sendmux_http::state::AppState;

pub struct App {
    http: TcpListener,
    http_addr: SocketAddr,
    /// The SMTP listener and its certificate, on a node with the `smtp` role.
    smtp: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
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
                    sendmux_core::files::create_private_dir(&settings.data_dir)?;
                    let key = SecretBox::generate_encoded();
                    sendmux_core::files::write_private(&path, &key)
                        .with_context(|| format!("writing {}", path.display()))?;
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

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let store = Store::connect(&settings).await?;
        store.migrate().await?;
        let secrets = secret_box(&settings, &store).await?;
        let http = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("SENDMUX_HTTP_ADDR: cannot listen on {}", settings.http_addr))?;
        let http_addr = http.local_addr()?;
        let smtp = match settings.roles.smtp {
            false => None,
            true => {
                let listener = TcpListener::bind(settings.smtp_addr)
                    .await
                    .with_context(|| format!("SENDMUX_SMTP_ADDR: cannot listen on {}", settings.smtp_addr))?;
                Some((listener, crate::tls::acceptor(&settings)?))
            }
        };
        let smtp_addr = smtp.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
        let blobs: Arc<dyn sendmux_core::blob::BlobStore> = match &settings.blobs {
            BlobLocation::Folder => Arc::new(
                sendmux_core::blob::FsBlobStore::new(settings.data_dir.join("blobs"))
                    .with_context(|| format!("creating {}", settings.data_dir.join("blobs").display()))?,
            ),
            BlobLocation::S3(at) => Arc::new(
                sendmux_core::blob::s3::S3BlobStore::connect(at)
                    .await
                    .with_context(|| format!("SENDMUX_BLOB_URL: cannot reach bucket {}", at.bucket))?,
            ),
        };
        let core = Arc::new(Core::new(settings, store, secrets, blobs)?);
        let state = AppState::new(core, metrics_handle());
        let smtp_text = smtp_addr.map_or_else(|| "off".to_owned(), |a| a.to_string());
        tracing::info!(http = %http_addr, smtp = %smtp_text, roles = ?state.settings.roles.names(), "listening");
        if state.settings.managed_ses.is_some() {
            // The operator points the managed SES route's SNS subscription here.
            let path =
                sendmux_http::suppressions::notification_path(&state, sendmux_core::outbound::providers::MANAGED);
            tracing::info!(path = %path, "managed SES notifications endpoint");
        }
        Ok(App { http, http_addr, smtp, state })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where SMTP listens; `None` on a node without the `smtp` role.
    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.smtp.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled, then lets requests in flight finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let router = sendmux_http::router(self.state.clone());
        // One token for everything long-lived: the caller's stop also stops streams.
        let stop_all = self.state.shutdown.clone();
        let caller = shutdown.clone();
        tokio::spawn(async move {
            caller.cancelled().await;
            stop_all.cancel();
        });
        let shutdown = self.state.shutdown.clone();
        let roles = self.state.settings.roles;
        let mut workers = tokio::task::JoinSet::new();
        // Every role: events committed on other nodes ring this node's bus (streams,
        // the webhook worker) and their changes reach its caches; SQLite's log is
        // checkpointed.
        if let Some(url) = self.state.settings.database_url.as_ref().filter(|_| self.state.settings.is_postgres()) {
            workers.spawn(sendmux_core::jobs::listen_for_changes(
                self.state.0.core.clone(),
                url.expose().to_owned(),
                shutdown.clone(),
            ));
        }
        if !self.state.settings.is_postgres() {
            workers.spawn(sendmux_core::jobs::checkpoint_loop(
                self.state.store.clone(),
                std::time::Duration::from_millis(100),
                shutdown.clone(),
            ));
        }
        // Bodies a crash of this node left half-written are this node's to settle.
        let settler = self.state.storage();
        workers.spawn(async move {
            if let Err(e) = sendmux_core::jobs::settle_abandoned_bodies(&settler).await {
                tracing::warn!(error = %format!("{e:#}"), "settling message bodies left by a crash failed");
            }
        });
        if roles.worker {
            let sender = sendmux_core::webhooks::worker::Sender::new(
                sendmux_core::webhooks::guard::Guard::new(self.state.settings.webhook_allowed_networks.clone()),
                std::time::Duration::from_secs(self.state.settings.webhook_timeout_secs),
            )?;
            workers.spawn(sendmux_core::webhooks::worker::worker_loop(
                sendmux_core::webhooks::worker::WebhookWorker::new(&self.state),
                sender,
                shutdown.clone(),
            ));
            for _ in 0..self.state.settings.outbound.workers {
                workers.spawn(sendmux_core::outbound::worker::worker_loop(
                    sendmux_core::outbound::worker::SendWorker::new(&self.state),
                    shutdown.clone(),
                ));
            }
            workers.spawn(sendmux_core::domains::check_loop(self.state.0.core.clone(), shutdown.clone()));
            workers.spawn(sendmux_core::jobs::maintenance_loop(
                self.state.storage(),
                std::time::Duration::from_secs(600),
                shutdown.clone(),
            ));
        }
        if let Some((listener, tls)) = self.smtp {
            let smtp = &self.state.settings.smtp;
            let smtp_server = sendmux_smtp::listener::SmtpServer {
                listener,
                handler: Arc::new(sendmux_core::inbound::smtp::SmtpHandler { state: self.state.0.core.clone() }),
                config: sendmux_smtp::session::SessionConfig {
                    hostname: smtp.hostname.clone(),
                    max_message_bytes: smtp.max_message_bytes,
                    max_recipients: smtp.max_recipients,
                    command_timeout: std::time::Duration::from_secs(smtp.command_timeout_secs),
                    data_timeout: std::time::Duration::from_secs(smtp.data_timeout_secs),
                    tls_available: true,
                },
                tls: Some(tls),
                limits: sendmux_smtp::listener::Limits {
                    max_connections: smtp.max_connections,
                    max_connections_per_ip: smtp.max_connections_per_ip,
                },
            };
            // On shutdown it stops accepting and waits for open sessions to finish.
            workers.spawn(smtp_server.run(shutdown.clone()));
        }
        let limits = sendmux_http::serve::Limits {
            header_timeout: std::time::Duration::from_secs(self.state.settings.http_header_timeout_secs),
            max_connections: self.state.settings.http_max_connections,
        };
        sendmux_http::serve::serve(self.http, router, limits, shutdown.clone()).await;
        // HTTP has drained (on a node without the `api` role it served only health and
        // metrics); SMTP sessions finish, workers finish their current step.
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
