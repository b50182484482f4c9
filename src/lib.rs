//! Sendmux: a multi-tenant email API in one binary. See docs/ARCHITECTURE.md.

#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod billing;
pub mod blob;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod error;
pub mod events;
pub mod guard;
pub mod ids;
pub mod inbound;
pub mod jobs;
pub mod limits;
pub mod outbound;
pub mod smtp;
pub mod state;
pub mod store;
pub mod teams;
pub mod webhooks;
