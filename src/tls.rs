//! STARTTLS material: the operator's certificate and key (PEM files named in settings),
//! or a self-signed pair generated into the data folder on first start and reused after.

use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

use sendmux_core::config::Settings;

pub fn acceptor(settings: &Settings) -> anyhow::Result<TlsAcceptor> {
    let (cert_path, key_path) = match (&settings.smtp.tls_cert, &settings.smtp.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let cert = settings.data_dir.join("smtp-tls-cert.pem");
            let key = settings.data_dir.join("smtp-tls-key.pem");
            if !cert.exists() || !key.exists() {
                generate(&settings.smtp.hostname, &cert, &key)?;
                tracing::info!(cert = %cert.display(), "generated a self-signed SMTP TLS certificate");
            }
            (cert, key)
        }
    };
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&cert_path)
            .with_context(|| format!("SENDMUX_SMTP_TLS_CERT: cannot read {}", cert_path.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("SENDMUX_SMTP_TLS_CERT: {} is not PEM", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("SENDMUX_SMTP_TLS_CERT: {} holds no certificate", cert_path.display());
    }
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&key_path)
            .with_context(|| format!("SENDMUX_SMTP_TLS_KEY: cannot read {}", key_path.display()))?,
    ))
    .ok()
    .flatten()
    .with_context(|| format!("SENDMUX_SMTP_TLS_KEY: {} holds no PEM private key", key_path.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("SENDMUX_SMTP_TLS_CERT / SENDMUX_SMTP_TLS_KEY: the key does not fit the certificate")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn generate(hostname: &str, cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    let names = vec![hostname.to_owned(), "localhost".to_owned()];
    let cert = rcgen::generate_simple_self_signed(names).context("generating a self-signed certificate")?;
    sendmux_core::files::create_private_dir(cert_path.parent().unwrap_or(Path::new(".")))?;
    // A half-written pair from an interrupted start is replaced whole.
    let _ = std::fs::remove_file(cert_path);
    let _ = std::fs::remove_file(key_path);
    sendmux_core::files::write_private(key_path, &cert.signing_key.serialize_pem())
        .with_context(|| format!("writing {}", key_path.display()))?;
    sendmux_core::files::write_private(cert_path, &cert.cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    Ok(())
}
