//! What every handler shares: settings, the store, authentication and rate limits.

use std::ops::Deref;
use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::crypto::SecretBox;
use crate::limits::rate::RateLimiter;
use crate::store::Store;

pub struct Inner {
    pub settings: Settings,
    pub store: Store,
    pub auth: Authenticator,
    pub limiter: RateLimiter,
    pub secrets: SecretBox,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub passwords: crate::auth::password::Passwords,
    pub cache: crate::cache::ReadCache,
    pub bus: std::sync::Arc<crate::events::Bus>,
    /// Open event streams per key, for the per-key cap.
    pub streams: parking_lot::Mutex<std::collections::HashMap<String, usize>>,
    /// Cancelled when the server stops: long-lived work (streams, workers) ends on it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Raw bodies of inbound messages.
    pub blobs: Box<dyn crate::blob::BlobStore>,
    /// SPF/DKIM/DMARC checks through the configured DNS server.
    pub mail_auth: crate::inbound::authenticate::Authenticator,
    /// Group commit of inbound messages.
    pub inbound_committer: crate::inbound::Committer,
    pub outbound: crate::outbound::Runtime,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Commits a change to `team_id` and drops the team's cached reads: after the
    /// commit, so a read racing the change cannot cache what it replaced.
    pub async fn commit(&self, tx: crate::store::Tx, team_id: &str) -> sqlx::Result<()> {
        tx.commit().await?;
        self.cache.invalidate(team_id);
        self.bus.notify(team_id);
        Ok(())
    }
}
