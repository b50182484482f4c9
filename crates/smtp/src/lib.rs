//! An SMTP server: the protocol state machine of one session ([`session::Session`],
//! generic over its stream and over the [`session::Handler`] that decides on recipients
//! and takes messages) and the listener that accepts connections within limits and
//! upgrades them on STARTTLS. It knows nothing of Sendmux.

#![forbid(unsafe_code)]

pub mod listener;
pub mod session;
