//! Sender authentication with `mail-auth`: SPF for the client address and envelope,
//! DKIM signatures, and DMARC alignment. DNS goes to the resolver chosen in settings
//! (`SENDMUX_DNS_SERVER`), so tests serve their own records on loopback.

use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, DmarcResult, MessageAuthenticator, SpfResult};
use serde::Serialize;
use std::net::IpAddr;
use std::time::Duration;

use crate::config::DnsServer;

/// The whole check gives up after this; what has not answered counts as `temperror`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Authenticator {
    inner: Option<MessageAuthenticator>,
}

#[derive(Serialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct SpfOut {
    pub result: String,
    pub domain: String,
}

#[derive(Serialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct DkimOut {
    pub result: String,
    pub domain: Option<String>,
    pub selector: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct DmarcOut {
    pub result: String,
    pub policy: String,
    pub domain: String,
}

/// What the checks found; `authentication` in the message JSON.
#[derive(Serialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct AuthResults {
    pub spf: SpfOut,
    pub dkim: Vec<DkimOut>,
    pub dmarc: DmarcOut,
}

impl AuthResults {
    pub fn none() -> Self {
        AuthResults {
            spf: SpfOut { result: "none".into(), domain: String::new() },
            dkim: Vec::new(),
            dmarc: DmarcOut { result: "none".into(), policy: "none".into(), domain: String::new() },
        }
    }
}

fn spf_name(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_name(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        // A body that no longer matches its signed hash was altered: that is a failed
        // verification (RFC 8601 "fail"), though mail-auth files it as neutral.
        DkimResult::Neutral(mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch)) => "fail",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn dmarc_name(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

impl Authenticator {
    pub fn new(server: DnsServer) -> anyhow::Result<Self> {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(3);
        opts.attempts = 2;
        // Negative answers are cached too, so a flood from one sender domain without
        // SPF or DMARC records does not become a flood of queries.
        opts.negative_min_ttl = Some(Duration::from_secs(60));
        opts.cache_size = 4096;
        let inner = match server {
            DnsServer::Off => None,
            DnsServer::System => Some(MessageAuthenticator::new_system_conf().map_err(|e| {
                anyhow::anyhow!("SENDMUX_DNS_SERVER=system: cannot read the system resolver configuration: {e}")
            })?),
            DnsServer::At(addr) => {
                let mut config = ResolverConfig::default();
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                config.add_name_server(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
                Some(
                    MessageAuthenticator::new(config, opts)
                        .map_err(|e| anyhow::anyhow!("SENDMUX_DNS_SERVER: cannot build a resolver: {e}"))?,
                )
            }
        };
        Ok(Self { inner })
    }

    /// Checks `raw` as received from `ip` (None for messages injected over the API,
    /// which have no SMTP client to check SPF against).
    pub async fn check(&self, raw: &[u8], ip: Option<IpAddr>, helo: &str, mail_from: &str) -> AuthResults {
        let Some(auth) = &self.inner else { return AuthResults::none() };
        match tokio::time::timeout(CHECK_TIMEOUT, self.check_with(auth, raw, ip, helo, mail_from)).await {
            Ok(r) => r,
            Err(_) => {
                let mut r = AuthResults::none();
                r.spf.result = "temperror".into();
                r.dmarc.result = "temperror".into();
                r
            }
        }
    }

    async fn check_with(
        &self,
        auth: &MessageAuthenticator,
        raw: &[u8],
        ip: Option<IpAddr>,
        helo: &str,
        mail_from: &str,
    ) -> AuthResults {
        let Some(message) = AuthenticatedMessage::parse(raw) else { return AuthResults::none() };
        let dkim = auth.verify_dkim(&message).await;
        let dkim_out: Vec<DkimOut> = dkim
            .iter()
            .map(|o| DkimOut {
                result: dkim_name(o.result()).into(),
                domain: o.signature().map(|s| s.d.clone()),
                selector: o.signature().map(|s| s.s.clone()),
            })
            .collect();
        let helo_domain = if helo.is_empty() { "unknown" } else { helo };
        let mail_from_domain = mail_from.rsplit_once('@').map(|(_, d)| d).unwrap_or(helo_domain).to_owned();
        let spf = match ip {
            Some(ip) => {
                let out = auth
                    .verify_spf(mail_auth::spf::verify::SpfParameters::verify(ip, helo_domain, "sendmux", mail_from))
                    .await;
                Some(out)
            }
            None => None,
        };
        let spf_out = match &spf {
            Some(o) => SpfOut { result: spf_name(o.result()).into(), domain: o.domain().to_owned() },
            None => SpfOut { result: "none".into(), domain: mail_from_domain.clone() },
        };
        let no_spf = mail_auth::SpfOutput::new(mail_from_domain.clone());
        let dmarc = auth
            .verify_dmarc(mail_auth::dmarc::verify::DmarcParameters::new(
                &message,
                &dkim,
                &mail_from_domain,
                spf.as_ref().unwrap_or(&no_spf),
            ))
            .await;
        // A published record that neither SPF nor DKIM aligns with is a DMARC fail.
        let result = dmarc_name(&dmarc.result());
        let policy = match dmarc.policy() {
            mail_auth::dmarc::Policy::None => "none",
            mail_auth::dmarc::Policy::Quarantine => "quarantine",
            mail_auth::dmarc::Policy::Reject => "reject",
            mail_auth::dmarc::Policy::Unspecified => "none",
        };
        AuthResults {
            spf: spf_out,
            dkim: dkim_out,
            dmarc: DmarcOut { result: result.into(), policy: policy.into(), domain: dmarc.domain().to_owned() },
        }
    }
}
