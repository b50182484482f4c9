//! A delivery-group member turned into something to send through: the team's SMTP or
//! SES provider with its credentials opened, or the operator's managed SES.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ses::SesTarget;
use super::smtp::SmtpTarget;
use crate::config::Settings;
use crate::crypto::SecretBox;
use crate::store::providers::ProviderRow;

/// The member id used for the operator's managed SES route.
pub const MANAGED: &str = "managed";

#[derive(Clone, Debug)]
pub enum Target {
    Smtp(SmtpTarget),
    Ses(SesTarget),
}

#[derive(Clone, Debug)]
pub struct Resolved {
    /// A provider id, or `managed`.
    pub id: String,
    pub target: Target,
}

impl Resolved {
    pub fn kind(&self) -> &'static str {
        match self.target {
            Target::Smtp(_) => "smtp",
            Target::Ses(_) => "ses",
        }
    }
    pub fn is_managed(&self) -> bool {
        self.id == MANAGED
    }
}

fn s(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_owned)
}

pub fn from_row(secrets: &SecretBox, row: &ProviderRow) -> Result<Resolved, String> {
    let config: Map<String, Value> = serde_json::from_str(&row.config).map_err(|_| "stored config is not JSON")?;
    let plain = secrets
        .open(&row.sealed_secrets)
        .ok_or_else(|| format!("provider {} credentials do not open with SENDMUX_SECRET_KEY", row.id))?;
    let secret: Map<String, Value> = serde_json::from_slice(&plain).map_err(|_| "stored secrets are not JSON")?;
    let target = match row.kind.as_str() {
        "smtp" => {
            let security = match config.get("security").and_then(Value::as_str) {
                Some("none") => Security::None,
                Some("tls") => Security::Tls,
                _ => Security::Starttls,
            };
            let digest =
                hex::encode(&Sha256::new().chain_update(&row.config).chain_update(&row.sealed_secrets).finalize()[..8]);
            Target::Smtp(SmtpTarget {
                pool_key: format!("{}:{digest}", row.id),
                host: s(&config, "host").unwrap_or_default(),
                port: config.get("port").and_then(Value::as_u64).unwrap_or(25) as u16,
                security,
                username: s(&config, "username"),
                password: s(&secret, "password"),
            })
        }
        "ses" => Target::Ses(SesTarget {
            region: s(&config, "region").unwrap_or_default(),
            endpoint: s(&config, "endpoint"),
            access_key_id: s(&secret, "access_key_id").unwrap_or_default(),
            secret_access_key: s(&secret, "secret_access_key").unwrap_or_default(),
            guarded: true,
        }),
        other => return Err(format!("provider {} has unknown type {other}", row.id)),
    };
    Ok(Resolved { id: row.id.clone(), target })
}

/// The operator's managed SES route, when configured.
pub fn managed(settings: &Settings) -> Option<Resolved> {
    let m = settings.managed_ses.as_ref()?;
    Some(Resolved {
        id: MANAGED.to_owned(),
        target: Target::Ses(SesTarget {
            region: m.region.clone(),
            endpoint: m.endpoint.clone(),
            access_key_id: m.access_key_id.clone(),
            secret_access_key: m.secret_access_key.expose().to_owned(),
            guarded: false,
        }),
    })
}

pub use super::smtp::Security;
