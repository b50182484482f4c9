//! DKIM keys of team domains: generated here (RSA-2048 by default, Ed25519 on request),
//! published as the `p=` of a TXT record, kept sealed, and used with `mail-auth`'s
//! signer to sign outbound mail before it is handed to a provider.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};

use crate::crypto::SecretBox;
use crate::error::{Error, Result};

pub const RSA: &str = "rsa-sha256";
pub const ED25519: &str = "ed25519-sha256";

/// RSA modulus size of generated keys.
pub const RSA_BITS: usize = 2048;

/// The headers a signature covers, when present. `From` is listed twice so a second
/// `From` added on the way breaks the signature.
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "In-Reply-To",
    "References",
];

/// The algorithm a request names (`rsa`, `ed25519`; default RSA), as stored.
pub fn algorithm(requested: Option<&str>, param: &str) -> Result<&'static str> {
    match requested {
        None | Some("rsa") => Ok(RSA),
        Some("ed25519") => Ok(ED25519),
        Some(_) => Err(Error::invalid(param, "dkim_algorithm must be rsa or ed25519")),
    }
}

/// A new key pair: the private key (DER: PKCS#1 for RSA, PKCS#8 for Ed25519) and the
/// public key as the record's `p=` (RSA: SubjectPublicKeyInfo; Ed25519: the raw 32 bytes,
/// RFC 8463), base64.
pub struct KeyPair {
    pub private_der: Vec<u8>,
    pub public_b64: String,
}

/// Generates a key pair; RSA takes a while, so this runs off the async threads.
pub async fn generate(algorithm: &'static str) -> Result<KeyPair> {
    // An RSA-2048 key takes tens of milliseconds of CPU, and tenants ask for keys (new
    // domains, rotations): one key at a time per node, so asking can use one core at most.
    static KEYGEN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let _turn = KEYGEN.acquire().await.map_err(Error::internal)?;
    tokio::task::spawn_blocking(move || generate_now(algorithm)).await.map_err(Error::internal)?
}

fn generate_now(algorithm: &str) -> Result<KeyPair> {
    if algorithm == ED25519 {
        let pkcs8 = Ed25519Key::generate_pkcs8().map_err(Error::internal)?;
        let public = Ed25519Key::from_pkcs8_der(&pkcs8).map_err(Error::internal)?.public_key();
        return Ok(KeyPair { private_der: pkcs8, public_b64: STANDARD.encode(public) });
    }
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePublicKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS).map_err(Error::internal)?;
    let private_der = key.to_pkcs1_der().map_err(Error::internal)?.as_bytes().to_vec();
    let public = key.to_public_key().to_public_key_der().map_err(Error::internal)?;
    Ok(KeyPair { private_der, public_b64: STANDARD.encode(public.as_bytes()) })
}

/// The TXT record value that publishes a public key.
pub fn record_value(algorithm: &str, public_b64: &str) -> String {
    let k = if algorithm == ED25519 { "ed25519" } else { "rsa" };
    format!("v=DKIM1; k={k}; p={public_b64}")
}

/// Whether a published TXT record carries `public_b64` as its key (tags in any order,
/// whitespace inside `p=` ignored).
pub fn record_matches(txt: &str, public_b64: &str) -> bool {
    let mut p = None;
    let mut version_ok = true;
    for tag in txt.split(';') {
        let Some((k, v)) = tag.split_once('=') else { continue };
        match k.trim() {
            "p" => p = Some(v.chars().filter(|c| !c.is_whitespace()).collect::<String>()),
            "v" => version_ok = v.trim() == "DKIM1",
            _ => {}
        }
    }
    version_ok && p.as_deref() == Some(public_b64)
}

enum Key {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// Signs mail as one domain with one selector's key.
pub struct Signer {
    key: Key,
}

impl Signer {
    /// Opens a sealed private key; the error says why it cannot be used (for the log).
    pub fn open(
        secrets: &SecretBox,
        domain: &str,
        selector: &str,
        algorithm: &str,
        sealed: &str,
    ) -> std::result::Result<Self, String> {
        let der = secrets.open(sealed).ok_or("the DKIM key cannot be opened with this instance's key")?;
        let key = if algorithm == ED25519 {
            let key = Ed25519Key::from_pkcs8_der(&der).map_err(|e| format!("bad Ed25519 key: {e}"))?;
            Key::Ed25519(with_template(
                DkimSigner::from_key(key).domain(domain).selector(selector).headers(SIGNED_HEADERS.iter().copied()),
            ))
        } else {
            let der = rustls::pki_types::PrivateKeyDer::Pkcs1(rustls::pki_types::PrivatePkcs1KeyDer::from(der));
            let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| format!("bad RSA key: {e}"))?;
            Key::Rsa(with_template(
                DkimSigner::from_key(key).domain(domain).selector(selector).headers(SIGNED_HEADERS.iter().copied()),
            ))
        };
        Ok(Signer { key })
    }

    /// `message` with a `DKIM-Signature` header in front.
    pub fn sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let signature = match &self.key {
            Key::Rsa(s) => s.sign(message),
            Key::Ed25519(s) => s.sign(message),
        }
        .map_err(|e| format!("DKIM signing failed: {e}"))?;
        let header = signature.to_header();
        let mut out = Vec::with_capacity(header.len() + message.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(message);
        Ok(out)
    }
}

fn with_template<K: mail_auth::common::crypto::SigningKey>(s: DkimSigner<K, Done>) -> DkimSigner<K, Done> {
    s.header_canonicalization(Canonicalization::Relaxed).body_canonicalization(Canonicalization::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_their_records_match() {
        let secrets = SecretBox::from_encoded(&SecretBox::generate_encoded()).unwrap();
        for alg in [ED25519, RSA] {
            let pair = generate_now(alg).unwrap();
            let record = record_value(alg, &pair.public_b64);
            assert!(record_matches(&record, &pair.public_b64), "{record}");
            assert!(!record_matches(&record.replace("DKIM1", "DKIM2"), &pair.public_b64));
            assert!(!record_matches("v=DKIM1; p=", &pair.public_b64));
            let signer = Signer::open(&secrets, "example.com", "smx1", alg, &secrets.seal(&pair.private_der)).unwrap();
            let signed =
                signer.sign(b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n").unwrap();
            let text = String::from_utf8(signed).unwrap();
            assert!(text.starts_with("DKIM-Signature: "), "{text}");
            assert!(text.contains("d=example.com") && text.contains("s=smx1"), "{text}");
            assert!(text.ends_with("\r\n\r\nbody\r\n"));
        }
        assert_eq!(algorithm(None, "x").unwrap(), RSA);
        assert_eq!(algorithm(Some("ed25519"), "x").unwrap(), ED25519);
        assert_eq!(algorithm(Some("dsa"), "dkim_algorithm").unwrap_err().param(), Some("dkim_algorithm"));
    }
}
