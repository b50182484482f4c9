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
    /// Team domain checks through the same DNS server, without an answer cache.
    pub domain_dns: crate::domains::dns::Dns,
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
    /// Builds the core over an opened, migrated store, the instance key and the body
    /// store; starts the committers.
    pub fn new(
        settings: Settings,
        store: Store,
        secrets: SecretBox,
        blobs: std::sync::Arc<dyn crate::blob::BlobStore>,
    ) -> anyhow::Result<Core> {
        use std::sync::Arc;
        let bus = Arc::new(crate::events::Bus::default());
        Ok(Core {
            limiter: RateLimiter::new(store.clone()),
            auth: Authenticator::new(
                store.clone(),
                settings.limits.sending_rate_per_minute,
                settings.rate_limit_per_minute,
            ),
            secrets: Arc::new(secrets),
            passwords: Default::default(),
            cache: Arc::new(crate::cache::ReadCache::with_budget(
                store.backend() == crate::store::Backend::Sqlite,
                settings.read_cache_bytes,
            )),
            shutdown: tokio_util::sync::CancellationToken::new(),
            blobs,
            mail_auth: crate::inbound::authenticate::Authenticator::new(settings.dns_server)?,
            domain_dns: crate::domains::dns::Dns::new(settings.dns_server)?,
            inbound_committer: crate::inbound::Committer::start(store.clone(), bus.clone())?,
            outbound: Arc::new(crate::outbound::Runtime::new(&settings, store.clone(), bus.clone())?),
            bus,
            store,
            settings: Arc::new(settings),
        })
    }

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
