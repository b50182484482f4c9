//! What every handler shares: the domain's [`Core`] plus what only HTTP needs (the
//! metrics exporter, the count of open event streams per key).

use std::ops::Deref;
use std::sync::Arc;

use sendmux_core::Core;

pub struct Inner {
    pub core: Arc<Core>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Open event streams per key, for the per-key cap.
    pub streams: parking_lot::Mutex<std::collections::HashMap<String, usize>>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl AppState {
    pub fn new(core: Arc<Core>, metrics: metrics_exporter_prometheus::PrometheusHandle) -> Self {
        Self(Arc::new(Inner { core, metrics, streams: Default::default() }))
    }
}

impl Deref for AppState {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.0.core
    }
}
