//! The Sendmux domain: the services that own the rules (one module per capability), the
//! store they write through, and the background workers. Nothing here knows HTTP; the
//! surfaces (`sendmux-http`, the SMTP listener, the CLI) call these operations.
//! docs/ARCHITECTURE.md draws the layers.

#![forbid(unsafe_code)]

pub mod auth;
pub mod batch;
pub mod billing;
pub mod blob;
pub mod cache;
pub mod config;
mod core;
pub mod crypto;
pub mod domains;
pub mod erasure;
pub mod error;
pub mod events;
pub mod files;
pub mod guard;
pub mod ids;
pub mod inbound;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod logs;
pub mod mailbox_send;
pub mod mailboxes;
pub mod outbound;
pub mod people;
pub mod store;
pub mod teams;
pub mod threads;
pub mod validate;
pub mod webhooks;

pub use crate::core::{Core, Storage};
pub use error::{Error, Result};
