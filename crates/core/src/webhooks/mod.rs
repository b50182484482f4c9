//! Signed webhooks: secrets and signatures (API.md §8), the retry schedule, the
//! delivery worker and the endpoint operations ([`manage`]). The address guard, shared
//! with outbound providers, is [`crate::guard`] (still reachable as `webhooks::guard`).

pub use crate::guard;
pub mod manage;
pub mod worker;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::time::Duration;

/// A new endpoint secret: `whsec_` and 32 random bytes in base64 (Standard Webhooks).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `X-Sendmux-Signature`: `sha256=` and the lower-case hex HMAC-SHA256 of the raw body,
/// keyed with the secret exactly as shown (its UTF-8 bytes, `whsec_` included).
pub fn sendmux_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac(secret.as_bytes(), &[body])))
}

/// One `v1,` entry of `webhook-signature` (Standard Webhooks): base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` keyed with the base64-decoded bytes after `whsec_`.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let ts = timestamp.to_string();
    Some(format!("v1,{}", STANDARD.encode(hmac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]))))
}

pub const MAX_ATTEMPTS: i64 = 8;
pub const WINDOW_MS: i64 = 24 * 3_600_000;

/// When to try again after `attempts_done` attempts of a delivery created at
/// `created_at`, or None when it has had its attempts or its 24 hours. The schedule's
/// delay is jittered by ±10 % and at least `retry_after` (the receiver's wish).
pub fn next_attempt(
    schedule: &[f64],
    attempts_done: i64,
    created_at: i64,
    now: i64,
    retry_after: Option<Duration>,
) -> Option<i64> {
    if attempts_done >= MAX_ATTEMPTS {
        return None;
    }
    let base = schedule.get((attempts_done - 1).max(0) as usize).or(schedule.last()).copied().unwrap_or(0.0);
    let jitter = 0.9 + 0.2 * (rand::rng().next_u32() as f64 / u32::MAX as f64);
    let mut delay_ms = (base * 1000.0 * jitter) as i64;
    if let Some(wish) = retry_after {
        delay_ms = delay_ms.max(wish.as_millis().min(WINDOW_MS as u128) as i64);
    }
    let end = created_at + WINDOW_MS;
    if now >= end {
        return None;
    }
    Some((now + delay_ms).min(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_known_answers() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog")
        let h = hex::encode(hmac(b"key", &[b"The quick brown fox ", b"jumps over the lazy dog"]));
        assert_eq!(h, "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
        assert!(sendmux_signature("whsec_abc", b"{}").starts_with("sha256="));
        assert_eq!(sendmux_signature("whsec_abc", b"{}").len(), 7 + 64);
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        assert!(standard_signature(&s, "evt_1", 1700000000, b"{}").unwrap().starts_with("v1,"));
        assert!(standard_signature("whsec_***", "evt_1", 1, b"{}").is_none());
    }

    #[test]
    fn retries_grow_stop_after_eight_and_stay_within_a_day() {
        let schedule = [5.0, 300.0, 1800.0, 7200.0, 18000.0, 25200.0, 25200.0];
        let t0 = 1_000_000;
        let mut now = t0;
        let mut delays = Vec::new();
        for done in 1..8 {
            let next = next_attempt(&schedule, done, t0, now, None).unwrap();
            delays.push(next - now);
            now = next;
        }
        assert!(next_attempt(&schedule, 8, t0, now, None).is_none());
        for (delay, base) in delays.iter().zip(schedule) {
            let base = (base * 1000.0) as i64;
            assert!((base * 9 / 10..=base * 11 / 10).contains(delay), "{delays:?}");
        }
        assert!(now - t0 <= WINDOW_MS);
        // Retry-After lengthens a wait, never shortens it, and never past the day.
        let next = next_attempt(&schedule, 1, t0, t0, Some(Duration::from_secs(120))).unwrap();
        assert!(next - t0 >= 120_000);
        let late = next_attempt(&schedule, 2, t0, t0 + WINDOW_MS - 10, Some(Duration::from_secs(3600))).unwrap();
        assert_eq!(late, t0 + WINDOW_MS);
    }
}
