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
