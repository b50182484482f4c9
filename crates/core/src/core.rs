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
    /// commit, so a read racing the change cannot cache what it replaced. On PostgreSQL
    /// the change also reaches every other node's cache (`NOTIFY`, sent on commit).
    pub async fn commit(&self, tx: crate::store::Tx, team_id: &str) -> sqlx::Result<()> {
        self.commit_change(tx, team_id, crate::store::changes::Change::Team).await
    }

    /// Commits a change to credentials (keys, members, roles, limits) of `team_id`:
    /// also forgets every cached credential, on every node.
    pub async fn commit_credentials(&self, tx: crate::store::Tx, team_id: &str) -> sqlx::Result<()> {
        self.commit_change(tx, team_id, crate::store::changes::Change::Credentials).await
    }

    async fn commit_change(
        &self,
        mut tx: crate::store::Tx,
        team_id: &str,
        change: crate::store::changes::Change,
    ) -> sqlx::Result<()> {
        if self.store.backend() == crate::store::Backend::Postgres {
            crate::store::changes::announce(&mut tx, change, Some(team_id)).await?;
        }
        tx.commit().await?;
        self.cache.invalidate(team_id);
        if change == crate::store::changes::Change::Credentials {
            self.auth.invalidate();
        }
        self.bus.notify(team_id);
        Ok(())
    }

    /// A change to credentials committed outside [`Core::commit_credentials`] (a session
    /// ended): forgets every cached credential here and, on PostgreSQL, on every node.
    pub async fn credentials_changed(&self) -> sqlx::Result<()> {
        self.auth.invalidate();
        if self.store.backend() == crate::store::Backend::Postgres {
            let mut conn = self.store.pool().acquire().await?;
            crate::store::changes::announce(&mut conn, crate::store::changes::Change::Credentials, None).await?;
        }
        Ok(())
    }

    /// A change heard from another node (see [`crate::store::changes`]).
    pub fn apply_change(&self, payload: &str) {
        match crate::store::changes::parse(payload) {
            Some((change, team)) => {
                if let Some(team) = team {
                    self.cache.invalidate(team);
                }
                if change == crate::store::changes::Change::Credentials {
                    self.auth.invalidate();
                }
            }
            None => {
                tracing::warn!(payload, "unknown change notification; forgetting every cached read");
                self.cache.invalidate_all();
                self.auth.invalidate();
            }
        }
    }

    /// Turns the credential and read caches on or off, forgetting both either way.
    pub fn set_caching(&self, on: bool) {
        self.cache.set_enabled(on);
        self.auth.set_caching(on);
    }
}
