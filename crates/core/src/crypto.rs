//! Secrets at rest (provider credentials) sealed with ChaCha20-Poly1305, and the random
//! tokens and their one-way hashes used for keys, sessions and invitations.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Seals and opens small secrets with the instance key (`SENDMUX_SECRET_KEY`).
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
    /// HMAC key derived from the instance key, for tokens that must be recomputable.
    mac_key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox([redacted])")
    }
}

impl SecretBox {
    /// Accepts 32 bytes written as 64 hex digits or as base64.
    pub fn from_encoded(encoded: &str) -> Result<Self, String> {
        let encoded = encoded.trim();
        let bytes = if encoded.len() == 64 && encoded.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(encoded).map_err(|_| "not hex".to_owned())?
        } else {
            STANDARD
                .decode(encoded)
                .or_else(|_| URL_SAFE_NO_PAD.decode(encoded))
                .map_err(|_| "must be 32 bytes as 64 hex digits or base64".to_owned())?
        };
        if bytes.len() != 32 {
            return Err(format!("must be 32 bytes (64 hex digits), got {} bytes", bytes.len()));
        }
        let mac_key: [u8; 32] = Sha256::new().chain_update(b"sendmux-mac\0").chain_update(&bytes).finalize().into();
        Ok(Self { cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)), mac_key })
    }

    /// A fresh random key, hex encoded, for the data folder on first start.
    pub fn generate_encoded() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        hex::encode(key)
    }

    /// A token bound to `label` that only holders of the instance key can compute (hex
    /// HMAC-SHA256), for URLs such as a provider's notification endpoint.
    pub fn derive_token(&self, label: &str) -> String {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key).expect("any key length");
        mac.update(label.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        // Encryption with a valid key and a 12-byte nonce cannot fail.
        out.extend(self.cipher.encrypt(Nonce::from_slice(&nonce), plaintext).unwrap_or_default());
        STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        let bytes = STANDARD.decode(sealed).ok()?;
        if bytes.len() < 12 + 16 {
            return None;
        }
        let (nonce, ct) = bytes.split_at(12);
        self.cipher.decrypt(Nonce::from_slice(nonce), ct).ok()
    }
}

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Random characters in a token: 40 base62 characters carry ~238 bits, so the 8 shown
/// in listings (`prefix`, `last4`) still leave well over 160 unknown.
pub const TOKEN_CHARS: usize = 40;

/// `prefix` followed by [`TOKEN_CHARS`] base62 characters from the OS generator.
pub fn random_token(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut out = String::with_capacity(prefix.len() + TOKEN_CHARS);
    out.push_str(prefix);
    while out.len() < prefix.len() + TOKEN_CHARS {
        // Rejection sampling keeps the alphabet uniform.
        let b = (rng.next_u32() & 0xff) as u8;
        if (b as usize) < ALPHABET.len() * 4 {
            out.push(ALPHABET[(b as usize) % ALPHABET.len()] as char);
        }
    }
    out
}

/// SHA-256 of a high-entropy token. Tokens carry ≥160 random bits, so a fast hash is
/// as strong as a password hash here and keeps the request path cheap.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time equality for secrets of equal length.
pub fn secure_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_round_trip_and_resist_tampering() {
        let b = SecretBox::from_encoded(&SecretBox::generate_encoded()).unwrap();
        let sealed = b.seal(b"hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(b.open(&sealed).unwrap(), b"hunter2");
        let mut raw = STANDARD.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(b.open(&STANDARD.encode(raw)).is_none());
        let other = SecretBox::from_encoded(&SecretBox::generate_encoded()).unwrap();
        assert!(other.open(&sealed).is_none());
    }

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let a = random_token("smx_inf_");
        let b = random_token("smx_inf_");
        assert!(a.starts_with("smx_inf_") && a.len() == 8 + TOKEN_CHARS);
        assert_ne!(a, b);
        assert!(a[8..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(token_hash(&a).len(), 64);
    }
}
