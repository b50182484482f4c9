//! Sendmux: a multi-tenant email API in one binary. This crate is the binary's wiring:
//! [`app::App`] builds the domain core (`sendmux-core`), binds the HTTP API
//! (`sendmux-http`) and the SMTP listener (`sendmux-smtp`), and runs the workers; the
//! CLI's operator tasks live in [`admin`]. See docs/ARCHITECTURE.md.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
mod tls;

pub use sendmux_core::{
    Core, Storage, auth, billing, blob, cache, config, crypto, events, guard, ids, inbound, jobs, limits, outbound,
    store, teams, webhooks,
};
pub use sendmux_http as api;
pub use sendmux_http::state;
