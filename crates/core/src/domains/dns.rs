//! DNS lookups for domain checks through the configured resolver (`SENDMUX_DNS_SERVER`,
//! the one SPF, DKIM and DMARC checks use), with no answer cache: a team that just
//! published (or removed) a record sees the change on the next check.

use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::proto::rr::RData;
use std::time::Duration;

use crate::config::DnsServer;

/// What one lookup found.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// The records of the asked type (TXT strings joined; MX exchanges lower case without
    /// the final dot).
    Found(Vec<String>),
    /// The name or the type does not exist.
    Missing,
    /// No answer to rely on (timeout, server failure, lookups off): nothing changes.
    Failed(String),
}

impl Lookup {
    pub fn values(&self) -> &[String] {
        match self {
            Lookup::Found(v) => v,
            _ => &[],
        }
    }
}

pub struct Dns {
    resolver: Option<TokioResolver>,
}

/// The whole lookup gives up after this.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(8);

impl Dns {
    pub fn new(server: DnsServer) -> anyhow::Result<Self> {
        let build = |config: ResolverConfig, mut opts: ResolverOpts| -> anyhow::Result<TokioResolver> {
            opts.timeout = Duration::from_secs(3);
            opts.attempts = 2;
            opts.positive_max_ttl = Some(Duration::ZERO);
            opts.negative_max_ttl = Some(Duration::ZERO);
            let auth = mail_auth::MessageAuthenticator::new(config, opts)
                .map_err(|e| anyhow::anyhow!("SENDMUX_DNS_SERVER: cannot build a resolver: {e}"))?;
            Ok(auth.resolver().clone())
        };
        let resolver = match server {
            DnsServer::Off => None,
            DnsServer::System => {
                let (config, opts) = mail_auth::hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                    anyhow::anyhow!("SENDMUX_DNS_SERVER=system: cannot read the system resolver configuration: {e}")
                })?;
                Some(build(config, opts)?)
            }
            DnsServer::At(addr) => {
                let mut config = ResolverConfig::default();
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                config.add_name_server(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
                Some(build(config, ResolverOpts::default())?)
            }
        };
        Ok(Self { resolver })
    }

    pub async fn txt(&self, name: &str) -> Lookup {
        self.lookup(name, false).await
    }

    pub async fn mx(&self, name: &str) -> Lookup {
        self.lookup(name, true).await
    }

    async fn lookup(&self, name: &str, mx: bool) -> Lookup {
        let Some(resolver) = &self.resolver else {
            return Lookup::Failed("DNS lookups are off on this instance (SENDMUX_DNS_SERVER=off)".into());
        };
        // Fully qualified: no search domain is tried.
        let fqdn = format!("{name}.");
        let asked = async {
            if mx { resolver.mx_lookup(fqdn.as_str()).await } else { resolver.txt_lookup(fqdn.as_str()).await }
        };
        let answer = match tokio::time::timeout(LOOKUP_TIMEOUT, asked).await {
            Err(_) => return Lookup::Failed(format!("looking up {name} timed out")),
            Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => return Lookup::Missing,
            Ok(Err(e)) => {
                // The resolver's own words stay in the log: they may describe the
                // operator's network to the team that asked.
                tracing::info!(name, error = %e, "a domain check's lookup failed");
                return Lookup::Failed(format!("looking up {name} got no answer from the resolver"));
            }
            Ok(Ok(answer)) => answer,
        };
        let mut values = Vec::new();
        for record in answer.answers() {
            match &record.data {
                RData::TXT(txt) if !mx => {
                    let mut joined = Vec::new();
                    for part in txt.txt_data.iter() {
                        joined.extend_from_slice(part);
                    }
                    values.push(String::from_utf8_lossy(&joined).into_owned());
                }
                RData::MX(m) if mx => {
                    values.push(m.exchange.to_lowercase().to_ascii().trim_end_matches('.').to_owned());
                }
                _ => {}
            }
        }
        if values.is_empty() { Lookup::Missing } else { Lookup::Found(values) }
    }
}
