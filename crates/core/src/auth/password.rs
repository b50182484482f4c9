//! Argon2id password hashing, off the async threads and with a bounded number of
//! hashes at once: each takes ~19 MiB and a core's worth of work, so a burst of logins
//! must queue rather than exhaust memory.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use std::sync::OnceLock;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// A hash of a password nobody has, verified when the email is unknown so that a login
/// takes as long whether or not the account exists.
static DUMMY_HASH: OnceLock<String> = OnceLock::new();

pub fn validate(password: &str) -> Result<()> {
    let len = password.chars().count();
    if !(10..=256).contains(&len) {
        return Err(Error::invalid("password", "The password must be 10 to 256 characters long"));
    }
    Ok(())
}

pub struct Passwords {
    slots: Semaphore,
}

impl Default for Passwords {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
        Self { slots: Semaphore::new(cores * 2) }
    }
}

impl Passwords {
    pub async fn hash(&self, password: String) -> Result<String> {
        let _slot = self.slots.acquire().await.map_err(Error::internal)?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
    }

    /// Verifies `password` against `stored`, or against a dummy hash when `stored` is None.
    pub async fn verify(&self, password: String, stored: Option<String>) -> bool {
        let Ok(_slot) = self.slots.acquire().await else { return false };
        tokio::task::spawn_blocking(move || {
            let known = stored.is_some();
            let stored = stored.unwrap_or_else(|| {
                DUMMY_HASH
                    .get_or_init(|| {
                        let salt = SaltString::generate(&mut OsRng);
                        Argon2::default()
                            .hash_password(b"not-a-real-password", &salt)
                            .map(|h| h.to_string())
                            .unwrap_or_default()
                    })
                    .clone()
            });
            let ok = PasswordHash::new(&stored)
                .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
            ok && known
        })
        .await
        .unwrap_or(false)
    }
}
