//! Everything the domain's operations and background workers share, built once by the
//! binary at start: settings, the store, credentials, caches, the event bus, bodies, the
//! inbound and outbound pipelines. Surfaces (HTTP, SMTP, the CLI) hold it behind an `Arc`.

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::crypto::SecretBox;
use crate::limits::rate::RateLimiter;
use crate::store::Store;

pub struct Core {
    pub settings: std::sync::Arc<Settings>,
    pub store: Store,
    pub auth: Authenticator,
    pub limiter: RateLimiter,
    pub secrets: std::sync::Arc<SecretBox>,
    pub passwords: crate::auth::password::Passwords,
    pub cache: std::sync::Arc<crate::cache::ReadCache>,
    pub bus: std::sync::Arc<crate::events::Bus>,
    /// Cancelled when the server stops: long-lived work (streams, workers) ends on it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Raw bodies of inbound messages and large outbound requests.
    pub blobs: std::sync::Arc<dyn crate::blob::BlobStore>,
    /// SPF/DKIM/DMARC checks through the configured DNS server.
    pub mail_auth: crate::inbound::authenticate::Authenticator,
    /// Group commit of inbound messages.
    pub inbound_committer: crate::inbound::Committer,
    pub outbound: std::sync::Arc<crate::outbound::Runtime>,
}

/// The store and the message bodies: all that maintenance, expiry and erasure touch.
#[derive(Clone)]
pub struct Storage {
    pub store: Store,
    pub blobs: std::sync::Arc<dyn crate::blob::BlobStore>,
}

impl Core {
    /// The narrow part of the core that background storage work takes.
    pub fn storage(&self) -> Storage {
        Storage { store: self.store.clone(), blobs: self.blobs.clone() }
    }

    /// Commits a change to `team_id` and drops the team's cached reads: after the
    /// commit, so a read racing the change cannot cache what it replaced.
    pub async fn commit(&self, tx: crate::store::Tx, team_id: &str) -> sqlx::Result<()> {
        tx.commit().await?;
        self.cache.invalidate(team_id);
        self.bus.notify(team_id);
        Ok(())
    }
}
