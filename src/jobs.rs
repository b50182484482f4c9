//! Background work of `sendmux serve`: periodic maintenance (events past retention,
//! idempotency keys past 24 h); the send workers live in `outbound::worker`.
//! Every loop stops when the shutdown token fires.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::store::{events, now_ms};

/// One maintenance pass: drop events past their retention. Returns rows removed.
pub async fn maintenance_once(state: &AppState) -> anyhow::Result<u64> {
    let mut conn = state.store.pool().acquire().await?;
    let removed = events::delete_older_than(&mut conn, now_ms() - crate::events::RETENTION_MS).await?;
    if removed > 0 {
        tracing::info!(removed, "expired events removed");
    }
    crate::store::outbound::idempotency_expire(&mut conn, now_ms() - crate::api::emails::IDEMPOTENCY_TTL_MS).await?;
    Ok(removed)
}

/// Runs maintenance every `every` until `shutdown`.
pub async fn maintenance_loop(state: AppState, every: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(e) = maintenance_once(&state).await {
            tracing::warn!(error = %format!("{e:#}"), "maintenance failed; will retry");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
