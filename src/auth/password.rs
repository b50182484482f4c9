//! Argon2id password hashing, run off the async threads.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};

use crate::error::{ApiError, ApiResult};

/// A hash of a password nobody has, verified when the email is unknown so that a login
/// takes as long whether or not the account exists.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn validate(password: &str) -> ApiResult<()> {
    let len = password.chars().count();
    if !(10..=256).contains(&len) {
        return Err(ApiError::invalid("password", "The password must be 10 to 256 characters long"));
    }
    Ok(())
}

pub async fn hash(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Verifies `password` against `stored`, or against a dummy hash when `stored` is None.
pub async fn verify(password: String, stored: Option<String>) -> bool {
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
