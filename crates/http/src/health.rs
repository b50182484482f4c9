//! Liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;
use sendmux_core::store::Backend;
use serde::Serialize;
use utoipa::ToSchema;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(), responses((status = 200, description = "alive")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Whether this node takes work, and which work (`SENDMUX_ROLES`).
#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ready`, `draining` (stopping: a load balancer should take it out) or
    /// `unavailable` (the store does not answer).
    status: &'static str,
    /// What this node runs: `api`, `smtp`, `worker`.
    roles: Vec<&'static str>,
    /// `sqlite` or `postgres`.
    store: &'static str,
}

/// The node is ready: the store answers and it is not stopping; says what it runs.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(), responses(
    (status = 200, body = Readiness, description = "ready"),
    (status = 503, body = Readiness, description = "draining or the store does not answer"),
))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let roles = state.settings.roles.names();
    let store = match state.store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let answer = |code, status| (code, axum::Json(Readiness { status, roles: roles.clone(), store }));
    if state.shutdown.is_cancelled() {
        return answer(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match state.store.ping().await {
        Ok(()) => answer(StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "store not reachable");
            answer(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(), responses((status = 200)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.0.metrics.render())
}
