//! The SMTP listener of `sendmux serve`: accepts connections within the connection
//! limits, runs a [`session::Session`] on each (upgrading to TLS on STARTTLS) and hands
//! recipients and messages to the inbound pipeline.

pub mod listener;
pub mod session;
pub mod tls;
