//! Outbound mail: validation and MIME building, delivery-group routing, the SMTP and SES
//! providers (and their management with delivery groups, `manage`), the send worker that
//! drains the queue, SES notifications and suppressions.

pub mod accept;
pub mod manage;
pub mod mime;
pub mod notifications;
pub mod providers;
pub mod routing;
pub mod send;
pub mod ses;
pub mod smtp;
pub mod suppressions;
pub mod validate;
pub mod worker;

/// What one provider said about one message.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Accepted for every recipient except `rejected` (address, reply), which refused
    /// permanently.
    Sent { response: String, provider_message_id: Option<String>, rejected: Vec<(String, String)> },
    /// Every recipient refused permanently: the recipients' fault, not the provider's.
    Bounced { response: String, rejected: Vec<(String, String)> },
    /// The provider is down or answered "try later": the next member may take it.
    Transient(String),
    /// The provider refused for a reason that is not a recipient's (credentials,
    /// sender, content, account): the next member may take it; nobody else means failed.
    Permanent(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Sent { .. } => "sent",
            Outcome::Bounced { .. } => "bounced",
            Outcome::Transient(_) => "deferred",
            Outcome::Permanent(_) => "failed",
        }
    }

    pub fn response(&self) -> &str {
        match self {
            Outcome::Sent { response, .. } | Outcome::Bounced { response, .. } => response,
            Outcome::Transient(r) | Outcome::Permanent(r) => r,
        }
    }
}

/// Shared by the API and the workers: connection pools, the HTTP client for SES, and a
/// wake-up for workers when a message is queued.
pub struct Runtime {
    pub smtp: smtp::SmtpPool,
    pub http: ses::SesHttp,
    /// The provider address guard (SENDMUX_PROVIDER_ALLOWED_NETWORKS exempts networks).
    pub guard: std::sync::Arc<crate::guard::Guard>,
    pub wake: tokio::sync::Notify,
    /// Group commit of accepted mail.
    pub accept: accept::Committer,
}

impl Runtime {
    /// Needs a tokio runtime (it starts the committer task).
    pub fn new(
        settings: &crate::config::Settings,
        store: crate::store::Store,
        bus: std::sync::Arc<crate::events::Bus>,
    ) -> anyhow::Result<Self> {
        let guard = std::sync::Arc::new(crate::guard::Guard::new(settings.provider_allowed_networks.clone()));
        Ok(Self {
            smtp: smtp::SmtpPool::new(settings.outbound.smtp_pool_size, guard.clone()),
            http: ses::SesHttp::new(guard.clone(), settings.outbound.smtp_pool_size)?,
            guard,
            wake: tokio::sync::Notify::new(),
            accept: accept::Committer::start(store, bus)?,
        })
    }
}
