//! Settings: embedded defaults, then an optional TOML file, then `SENDMUX_*` environment
//! variables. Every value is parsed once at start; a bad one names its variable.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A value that must never reach a log: `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signup {
    Open,
    Closed,
}

/// A CIDR block such as `127.0.0.0/8` or `::1/128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::*;
        match (self.addr, ip) {
            (V4(net), V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (V6(net), V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr.parse().map_err(|_| format!("'{s}' is not a CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("'{s}' has a bad prefix length"))?
            }
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

/// Operator-configured managed Amazon SES route shared by all teams.
#[derive(Clone, Debug)]
pub struct ManagedSes {
    pub region: String,
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// Default team limits; operators raise them per team through increase requests.
#[derive(Clone, Debug)]
pub struct LimitDefaults {
    pub active_keys: i64,
    pub webhooks: i64,
    pub sending_rate_per_minute: i64,
    pub mailboxes: i64,
    pub providers: i64,
}

/// Where message bodies live (`SENDMUX_BLOB_URL`).
#[derive(Clone, Debug)]
pub enum BlobLocation {
    /// Segment files in `<data folder>/blobs`: one node.
    Folder,
    /// S3-compatible object storage: every node shares it.
    S3(S3Location),
}

/// A bucket and how to reach it (`SENDMUX_BLOB_URL=s3://bucket/prefix`, `SENDMUX_S3_*`).
#[derive(Clone, Debug)]
pub struct S3Location {
    pub bucket: String,
    /// Inside the bucket; may be empty.
    pub prefix: String,
    /// `None`: AWS's own endpoint for the region.
    pub endpoint: Option<String>,
    pub region: String,
    /// `None`: the standard AWS credential chain (environment, instance role).
    pub credentials: Option<(String, Secret)>,
}

/// What one node runs (`SENDMUX_ROLES`, API.md §12); every role by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// The HTTP API (a node without it still answers `/healthz`, `/readyz`, `/metrics`).
    pub api: bool,
    /// The SMTP listener that receives mail.
    pub smtp: bool,
    /// The send and webhook workers and maintenance (retention, erasure).
    pub worker: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { api: true, smtp: true, worker: true };

    /// The roles by name, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        [("api", self.api), ("smtp", self.smtp), ("worker", self.worker)]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect()
    }
}

impl FromStr for Roles {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut roles = Roles { api: false, smtp: false, worker: false };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "api" => roles.api = true,
                "smtp" => roles.smtp = true,
                "worker" => roles.worker = true,
                other => return Err(format!("'{other}' is not a role (api, smtp, worker)")),
            }
        }
        if roles.names().is_empty() {
            return Err("name at least one role: api, smtp, worker".into());
        }
        Ok(roles)
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// What this node runs.
    pub roles: Roles,
    /// Where message bodies live.
    pub blobs: BlobLocation,
    pub http_addr: SocketAddr,
    /// The URL people reach (`SENDMUX_PUBLIC_URL`), without a trailing slash; None:
    /// `http://` + the HTTP address. An `https` URL makes the console's cookies `Secure`.
    pub public_url: Option<String>,
    pub smtp_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<Secret>,
    pub inbound_domains: Vec<String>,
    pub signup: Signup,
    pub admin_token: Option<Secret>,
    pub secret_key: Option<Secret>,
    pub webhook_allowed_networks: Vec<Network>,
    /// CIDRs exempt from the provider address guard (SMTP hosts, SES endpoints).
    pub provider_allowed_networks: Vec<Network>,
    pub managed_ses: Option<ManagedSes>,
    pub limits: LimitDefaults,
    /// Requests per 60 s for credentials other than sending keys.
    pub rate_limit_per_minute: i64,
    /// Sign-up, login and invitation attempts per minute from one client address.
    pub auth_rate_limit_per_minute: i64,
    pub session_ttl_hours: i64,
    pub invitation_ttl_hours: i64,
    /// Largest JSON body the control-plane API reads.
    pub max_json_bytes: usize,
    /// An HTTP/1 connection that has not sent a whole request head this long after it
    /// opened (or after its previous answer) is closed; so is any connection whose
    /// first request has not arrived by then.
    pub http_header_timeout_secs: u64,
    /// Time to answer one request, reading its body included (not the event stream).
    pub http_request_timeout_secs: u64,
    /// Open HTTP connections; one more is closed at once.
    pub http_max_connections: usize,
    pub log_format: LogFormat,
    pub database_max_connections: u32,
    /// Delay before each webhook attempt after the first (seconds; 7 entries for 8
    /// attempts), jittered ±10 % and clamped to 24 h after the event.
    pub webhook_retry_schedule: Vec<f64>,
    pub webhook_timeout_secs: u64,
    /// Webhook requests in flight at once per node.
    pub webhook_concurrency: usize,
    /// Open `GET /api/v1/mailbox/events` streams allowed per key.
    pub stream_max_per_key: usize,
    /// Bytes the in-memory read cache may hold (a team at most an eighth of them).
    pub read_cache_bytes: usize,
    /// Usage prices (USD).
    pub prices: Prices,
    pub smtp: SmtpSettings,
    pub dns_server: DnsServer,
    pub outbound: OutboundSettings,
    pub domains: DomainSettings,
}

/// Team domains (API.md §14): the sender rule and how often DNS is checked again.
#[derive(Clone, Debug)]
pub struct DomainSettings {
    /// `SENDMUX_REQUIRE_VERIFIED_SENDER`: every route, not only the managed one, needs
    /// `from` on a domain the team verified.
    pub require_verified_sender: bool,
    /// Pending (and failed) domains are looked up again this often.
    pub pending_check_secs: u64,
    /// Verified domains are looked up again this often.
    pub verified_check_secs: u64,
}

/// Which DNS server SPF, DKIM and DMARC checks ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsServer {
    /// The system's resolver configuration (`/etc/resolv.conf`).
    System,
    /// One server at this address (UDP and TCP), e.g. a local resolver or a test's.
    At(SocketAddr),
    /// No lookups: every check reports `none` (for closed networks).
    Off,
}

/// The SMTP listener's limits and TLS material.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// The name in the greeting and EHLO reply.
    pub hostname: String,
    /// PEM certificate chain and private key for STARTTLS; both or neither. When
    /// neither is given a self-signed pair is generated into the data folder.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
}

/// The send queue and its workers.
#[derive(Clone, Debug)]
pub struct OutboundSettings {
    /// Largest message accepted by `POST /emails` (bodies plus decoded attachments).
    pub max_email_bytes: usize,
    /// How long transient failures are retried before a message is `failed`.
    pub retry_window_ms: i64,
    /// The first retry waits this long; each next one twice as long (at most an hour).
    pub retry_initial_ms: i64,
    /// Worker tasks per node; each claims a batch of messages at a time. 0: this node
    /// only accepts mail (other nodes, or `run_pending_jobs` in tests, send it).
    pub workers: usize,
    /// Messages one worker claims (and sends concurrently) at a time.
    pub batch: usize,
    /// How long a claimed message stays invisible to other workers.
    pub lease_ms: i64,
    /// Idle connections kept per SMTP provider.
    pub smtp_pool_size: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A setting that could not be used; `Display` names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

fn bad(variable: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { variable: variable.to_owned(), problem: problem.into() }
}

/// The names every source may set, without the `SENDMUX_` prefix, lower case.
const KNOWN: &[&str] = &[
    "roles",
    "blob_url",
    "s3_endpoint",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
    "http_addr",
    "public_url",
    "smtp_addr",
    "data_dir",
    "database_url",
    "inbound_domains",
    "signup",
    "admin_token",
    "secret_key",
    "webhook_allowed_networks",
    "provider_allowed_networks",
    "managed_ses_region",
    "managed_ses_endpoint",
    "managed_ses_access_key_id",
    "managed_ses_secret_access_key",
    "limit_active_keys",
    "limit_webhooks",
    "limit_sending_rate_per_minute",
    "limit_mailboxes",
    "limit_providers",
    "rate_limit_per_minute",
    "auth_rate_limit_per_minute",
    "session_ttl_hours",
    "invitation_ttl_hours",
    "max_json_bytes",
    "http_header_timeout_secs",
    "http_request_timeout_secs",
    "http_max_connections",
    "log_format",
    "database_max_connections",
    "webhook_retry_schedule",
    "webhook_timeout_secs",
    "webhook_concurrency",
    "stream_max_per_key",
    "read_cache_bytes",
    "price_outbound_per_1000",
    "price_managed_ses_per_1000",
    "price_inbound_per_1000",
    "price_storage_per_gb_month",
    "smtp_hostname",
    "smtp_tls_cert",
    "smtp_tls_key",
    "smtp_max_message_bytes",
    "smtp_max_recipients",
    "smtp_max_connections",
    "smtp_max_connections_per_ip",
    "smtp_command_timeout_secs",
    "smtp_data_timeout_secs",
    "dns_server",
    "max_email_bytes",
    "outbound_retry_window_seconds",
    "outbound_retry_initial_seconds",
    "outbound_workers",
    "outbound_batch",
    "outbound_lease_seconds",
    "outbound_smtp_pool_size",
    "require_verified_sender",
    "domain_check_pending_seconds",
    "domain_check_verified_seconds",
];

impl Settings {
    /// Defaults, then the TOML file named by `config_file` or `SENDMUX_CONFIG`, then the
    /// process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_sources(config_file, &env)
    }

    /// As [`Settings::load`], reading variables from `env` instead of the process.
    pub fn from_sources(config_file: Option<&Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut raw: BTreeMap<String, (String, String)> = BTreeMap::new();
        let file = config_file
            .map(Path::to_path_buf)
            .or_else(|| env.iter().find(|(k, _)| k == "SENDMUX_CONFIG").map(|(_, v)| PathBuf::from(v)));
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| bad("SENDMUX_CONFIG", format!("cannot read {}: {e}", path.display())))?;
            let table: toml::Table = text
                .parse()
                .map_err(|e| bad("SENDMUX_CONFIG", format!("{} is not valid TOML: {e}", path.display())))?;
            for (key, value) in table {
                let name = format!("{} key `{key}`", path.display());
                if !KNOWN.contains(&key.as_str()) {
                    return Err(bad(&name, "unknown setting"));
                }
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => return Err(bad(&name, format!("unsupported value {other}"))),
                };
                raw.insert(key, (name, text));
            }
        }
        for (key, value) in env {
            if let Some(name) = key.strip_prefix("SENDMUX_") {
                let lower = name.to_ascii_lowercase();
                if KNOWN.contains(&lower.as_str()) {
                    raw.insert(lower, (key.clone(), value.clone()));
                }
            }
        }
        Self::parse(&raw)
    }

    fn parse(raw: &BTreeMap<String, (String, String)>) -> Result<Self, ConfigError> {
        let get = |key: &str| raw.get(key).map(|(n, v)| (n.as_str(), v.trim()));
        let var = |key: &str| format!("SENDMUX_{}", key.to_ascii_uppercase());
        fn parse_as<T: FromStr>(raw: Option<(&str, &str)>, default: T, what: &str) -> Result<T, ConfigError> {
            match raw {
                None => Ok(default),
                Some((name, v)) => v.parse().map_err(|_| bad(name, format!("'{v}' is not {what}"))),
            }
        }
        let int = |key: &str, default: i64, min: i64, max: i64| -> Result<i64, ConfigError> {
            let v = parse_as(get(key), default, "a whole number")?;
            if !(min..=max).contains(&v) {
                let name = get(key).map(|(n, _)| n.to_owned()).unwrap_or_else(|| var(key));
                return Err(bad(&name, format!("{v} is outside {min}..={max}")));
            }
            Ok(v)
        };
        let opt_secret = |key: &str| get(key).filter(|(_, v)| !v.is_empty()).map(|(_, v)| Secret::new(v));

        let http_addr =
            parse_as(get("http_addr"), SocketAddr::from(([127, 0, 0, 1], 8080)), "an address like 127.0.0.1:8080")?;
        let smtp_addr =
            parse_as(get("smtp_addr"), SocketAddr::from(([127, 0, 0, 1], 2525)), "an address like 127.0.0.1:2525")?;
        let public_url = match get("public_url").filter(|(_, v)| !v.is_empty()) {
            None => None,
            Some((name, v)) => {
                let parsed = url::Url::parse(v).map_err(|_| bad(name, format!("'{v}' is not a URL")))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                    return Err(bad(name, "must be an http:// or https:// URL"));
                }
                Some(v.trim_end_matches('/').to_owned())
            }
        };
        let data_dir = PathBuf::from(get("data_dir").map(|(_, v)| v).unwrap_or("./data"));
        if data_dir.as_os_str().is_empty() {
            return Err(bad(&var("data_dir"), "must not be empty"));
        }

        let mut database_url = opt_secret("database_url");
        if let Some(url) = &database_url {
            let u = url.expose();
            if !(u.starts_with("sqlite:") || u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                let name = get("database_url").map(|(n, _)| n).unwrap_or("SENDMUX_DATABASE_URL");
                return Err(bad(name, "must start with sqlite: or postgres://"));
            }
            database_url = Some(Secret::new(plain_on_loopback(u)));
        }

        let mut inbound_domains = Vec::new();
        for d in get("inbound_domains").map(|(_, v)| v).unwrap_or("localhost").split(',') {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if d.is_empty() {
                continue;
            }
            let valid = d.len() <= 253
                && d.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                let name = get("inbound_domains").map(|(n, _)| n).unwrap_or("SENDMUX_INBOUND_DOMAINS");
                return Err(bad(name, format!("'{d}' is not a domain name")));
            }
            inbound_domains.push(d);
        }

        let signup = match get("signup") {
            None => Signup::Closed,
            Some((_, "open")) => Signup::Open,
            Some((_, "closed")) => Signup::Closed,
            Some((name, v)) => return Err(bad(name, format!("'{v}' must be open or closed"))),
        };

        let admin_token = opt_secret("admin_token");
        if let (Some(t), Some((name, _))) = (&admin_token, get("admin_token"))
            && t.expose().len() < 16
        {
            return Err(bad(name, "must be at least 16 characters"));
        }
        let secret_key = opt_secret("secret_key");
        if let (Some(k), Some((name, _))) = (&secret_key, get("secret_key")) {
            crate::crypto::SecretBox::from_encoded(k.expose()).map_err(|e| bad(name, e))?;
        }

        let mut webhook_allowed_networks = Vec::new();
        if let Some((name, v)) = get("webhook_allowed_networks") {
            for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                webhook_allowed_networks.push(part.parse().map_err(|e| bad(name, e))?);
            }
        }
        let mut provider_allowed_networks = Vec::new();
        if let Some((name, v)) = get("provider_allowed_networks") {
            for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                provider_allowed_networks.push(part.parse().map_err(|e| bad(name, e))?);
            }
        }

        let ses_keys = ["managed_ses_region", "managed_ses_access_key_id", "managed_ses_secret_access_key"];
        let managed_ses = if ses_keys.iter().any(|k| get(k).is_some()) || get("managed_ses_endpoint").is_some() {
            for k in ses_keys {
                if get(k).is_none_or(|(_, v)| v.is_empty()) {
                    return Err(bad(&var(k), "is required when any SENDMUX_MANAGED_SES_* setting is given"));
                }
            }
            let endpoint = get("managed_ses_endpoint").map(|(_, v)| v.to_owned()).filter(|v| !v.is_empty());
            if let Some(e) = &endpoint {
                let ok = url::Url::parse(e).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                if !ok {
                    return Err(bad(&var("managed_ses_endpoint"), format!("'{e}' is not an http(s) URL")));
                }
            }
            Some(ManagedSes {
                region: get("managed_ses_region").map(|(_, v)| v.to_owned()).unwrap_or_default(),
                endpoint,
                access_key_id: get("managed_ses_access_key_id").map(|(_, v)| v.to_owned()).unwrap_or_default(),
                secret_access_key: opt_secret("managed_ses_secret_access_key").unwrap_or_else(|| Secret::new("")),
            })
        } else {
            None
        };

        let limits = LimitDefaults {
            active_keys: int("limit_active_keys", 100, 1, 1_000_000)?,
            webhooks: int("limit_webhooks", 10, 1, 1_000_000)?,
            sending_rate_per_minute: int("limit_sending_rate_per_minute", 1800, 1, 100_000_000)?,
            mailboxes: int("limit_mailboxes", 1000, 1, 100_000_000)?,
            providers: int("limit_providers", 25, 1, 1_000_000)?,
        };

        let log_format = match get("log_format") {
            None | Some((_, "text")) => LogFormat::Text,
            Some((_, "json")) => LogFormat::Json,
            Some((name, v)) => return Err(bad(name, format!("'{v}' must be text or json"))),
        };

        let webhook_retry_schedule = match get("webhook_retry_schedule") {
            None => vec![5.0, 300.0, 1800.0, 7200.0, 18000.0, 25200.0, 25200.0],
            Some((name, v)) => {
                let delays: Option<Vec<f64>> = v
                    .split(',')
                    .map(|d| d.trim().parse::<f64>().ok().filter(|d| d.is_finite() && (0.0..=86_400.0).contains(d)))
                    .collect();
                match delays {
                    Some(d) if (1..=20).contains(&d.len()) => d,
                    _ => {
                        return Err(bad(
                            name,
                            format!("'{v}' must be 1 to 20 comma-separated delays in seconds, each 0..86400"),
                        ));
                    }
                }
            }
        };

        let price = |key: &str, default: rust_decimal::Decimal| -> Result<rust_decimal::Decimal, ConfigError> {
            match get(key) {
                None => Ok(default),
                Some((name, v)) => v
                    .parse::<rust_decimal::Decimal>()
                    .ok()
                    .filter(|d| !d.is_sign_negative() && d.scale() <= 6)
                    .ok_or_else(|| bad(name, format!("'{v}' is not a price such as 0.15 (up to 6 decimals)"))),
            }
        };
        let defaults = Prices::default();
        let prices = Prices {
            outbound_per_1000: price("price_outbound_per_1000", defaults.outbound_per_1000)?,
            managed_ses_per_1000: price("price_managed_ses_per_1000", defaults.managed_ses_per_1000)?,
            inbound_per_1000: price("price_inbound_per_1000", defaults.inbound_per_1000)?,
            storage_per_gb_month: price("price_storage_per_gb_month", defaults.storage_per_gb_month)?,
        };

        let path_opt = |key: &str| get(key).filter(|(_, v)| !v.is_empty()).map(|(_, v)| PathBuf::from(v));
        let (tls_cert, tls_key) = (path_opt("smtp_tls_cert"), path_opt("smtp_tls_key"));
        if tls_cert.is_some() != tls_key.is_some() {
            // Name the one that was given: that is the line the operator wrote.
            let given = if tls_cert.is_some() { "smtp_tls_cert" } else { "smtp_tls_key" };
            let name = get(given).map(|(n, _)| n.to_owned()).unwrap_or_else(|| var(given));
            return Err(bad(&name, "SENDMUX_SMTP_TLS_CERT and SENDMUX_SMTP_TLS_KEY go together"));
        }
        let hostname = get("smtp_hostname").map(|(_, v)| v.to_owned()).unwrap_or_else(|| "localhost".to_owned());
        if hostname.is_empty() || !hostname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
            return Err(bad(&var("smtp_hostname"), format!("'{hostname}' is not a host name")));
        }
        let smtp = SmtpSettings {
            hostname,
            tls_cert,
            tls_key,
            max_message_bytes: int("smtp_max_message_bytes", 25 << 20, 1024, 1 << 30)? as usize,
            max_recipients: int("smtp_max_recipients", 100, 1, 10_000)? as usize,
            max_connections: int("smtp_max_connections", 1000, 1, 1_000_000)? as usize,
            max_connections_per_ip: int("smtp_max_connections_per_ip", 100, 1, 1_000_000)? as usize,
            command_timeout_secs: int("smtp_command_timeout_secs", 300, 1, 3600)? as u64,
            data_timeout_secs: int("smtp_data_timeout_secs", 180, 1, 3600)? as u64,
        };
        let dns_server = match get("dns_server") {
            None | Some((_, "system")) => DnsServer::System,
            Some((_, "off")) => DnsServer::Off,
            Some((name, v)) => DnsServer::At(
                v.parse()
                    .map_err(|_| bad(name, format!("'{v}' must be system, off or an address like 127.0.0.1:53")))?,
            ),
        };

        let roles = match get("roles") {
            None => Roles::ALL,
            Some((name, v)) => v.parse().map_err(|e: String| bad(name, e))?,
        };

        let blobs = match get("blob_url").filter(|(_, v)| !v.is_empty()) {
            None => BlobLocation::Folder,
            Some((name, v)) => {
                let url = url::Url::parse(v)
                    .ok()
                    .filter(|u| u.scheme() == "s3" && u.host_str().is_some_and(|h| !h.is_empty()))
                    .ok_or_else(|| bad(name, format!("'{v}' must look like s3://bucket/prefix")))?;
                let endpoint = get("s3_endpoint").map(|(_, v)| v.to_owned()).filter(|v| !v.is_empty());
                if let Some(e) = &endpoint
                    && !url::Url::parse(e).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
                {
                    return Err(bad(&var("s3_endpoint"), format!("'{e}' is not an http(s) URL")));
                }
                let credentials = match (opt_secret("s3_access_key_id"), opt_secret("s3_secret_access_key")) {
                    (Some(id), Some(secret)) => Some((id.expose().to_owned(), secret)),
                    (None, None) => None,
                    _ => {
                        return Err(bad(
                            &var("s3_secret_access_key"),
                            "SENDMUX_S3_ACCESS_KEY_ID and SENDMUX_S3_SECRET_ACCESS_KEY go together",
                        ));
                    }
                };
                BlobLocation::S3(S3Location {
                    bucket: url.host_str().unwrap_or_default().to_owned(),
                    prefix: url.path().trim_matches('/').to_owned(),
                    endpoint,
                    region: get("s3_region").map(|(_, v)| v.to_owned()).unwrap_or_else(|| "us-east-1".into()),
                    credentials,
                })
            }
        };

        Ok(Settings {
            roles,
            blobs,
            http_addr,
            public_url,
            smtp_addr,
            data_dir,
            database_url,
            inbound_domains,
            signup,
            admin_token,
            secret_key,
            webhook_allowed_networks,
            provider_allowed_networks,
            managed_ses,
            limits,
            rate_limit_per_minute: int("rate_limit_per_minute", 6000, 1, 100_000_000)?,
            auth_rate_limit_per_minute: int("auth_rate_limit_per_minute", 30, 1, 100_000_000)?,
            session_ttl_hours: int("session_ttl_hours", 24 * 30, 1, 24 * 366)?,
            invitation_ttl_hours: int("invitation_ttl_hours", 24 * 7, 1, 24 * 90)?,
            max_json_bytes: int("max_json_bytes", 1 << 20, 1024, 64 << 20)? as usize,
            http_header_timeout_secs: int("http_header_timeout_secs", 30, 1, 3600)? as u64,
            http_request_timeout_secs: int("http_request_timeout_secs", 60, 1, 86_400)? as u64,
            http_max_connections: int("http_max_connections", 10_000, 1, 10_000_000)? as usize,
            log_format,
            database_max_connections: int("database_max_connections", 16, 1, 1000)? as u32,
            webhook_retry_schedule,
            webhook_timeout_secs: int("webhook_timeout_secs", 15, 1, 300)? as u64,
            webhook_concurrency: int("webhook_concurrency", 256, 1, 10_000)? as usize,
            stream_max_per_key: int("stream_max_per_key", 20, 1, 1_000_000)? as usize,
            read_cache_bytes: int("read_cache_bytes", crate::cache::DEFAULT_BUDGET_BYTES as i64, 0, 1 << 40)? as usize,
            prices,
            smtp,
            dns_server,
            outbound: OutboundSettings {
                max_email_bytes: int("max_email_bytes", 10 << 20, 1024, 40 << 20)? as usize,
                retry_window_ms: int("outbound_retry_window_seconds", 86_400, 0, 30 * 86_400)? * 1000,
                retry_initial_ms: int("outbound_retry_initial_seconds", 60, 0, 86_400)? * 1000,
                workers: int("outbound_workers", 4, 0, 256)? as usize,
                batch: int("outbound_batch", 32, 1, 1000)? as usize,
                lease_ms: int("outbound_lease_seconds", 300, 10, 86_400)? * 1000,
                smtp_pool_size: int("outbound_smtp_pool_size", 16, 1, 1000)? as usize,
            },
            domains: DomainSettings {
                require_verified_sender: match get("require_verified_sender") {
                    None | Some((_, "false")) => false,
                    Some((_, "true")) => true,
                    Some((name, v)) => return Err(bad(name, format!("'{v}' must be true or false"))),
                },
                pending_check_secs: int("domain_check_pending_seconds", 300, 1, 86_400)? as u64,
                verified_check_secs: int("domain_check_verified_seconds", 86_400, 1, 30 * 86_400)? as u64,
            },
        })
    }

    /// True when the store is PostgreSQL (several nodes may share it).
    /// Whether people reach this instance over https (`SENDMUX_PUBLIC_URL`): the
    /// console's cookies are then `Secure`.
    pub fn public_https(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.as_ref().is_some_and(|u| u.expose().starts_with("postgres"))
    }
}

/// A PostgreSQL URL on a loopback host that names no `sslmode` gets `sslmode=disable`:
/// the bytes never leave the machine, and TLS there cost reads ~40 % of their rate
/// (docs/PERFORMANCE.md). Any other URL is left as it is, so `prefer` stays the default
/// elsewhere, as in libpq, and an explicit `sslmode` always wins.
fn plain_on_loopback(raw: &str) -> String {
    let Ok(url) = url::Url::parse(raw) else { return raw.to_owned() };
    if !url.scheme().starts_with("postgres") || url.query_pairs().any(|(k, _)| k == "sslmode") {
        return raw.to_owned();
    }
    let loopback = match url.host() {
        // A `postgres:` URL is not a special scheme: its IPv4 host reads as a name.
        Some(url::Host::Domain(d)) => {
            d == "localhost" || d.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !loopback {
        return raw.to_owned();
    }
    let separator = if url.query().is_some() { '&' } else { '?' };
    format!("{raw}{separator}sslmode=disable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_on_loopback_skips_tls_unless_asked() {
        assert_eq!(
            plain_on_loopback("postgres://u@127.0.0.1:5432/db"),
            "postgres://u@127.0.0.1:5432/db?sslmode=disable"
        );
        assert_eq!(
            plain_on_loopback("postgres://u@localhost/db?application_name=x"),
            "postgres://u@localhost/db?application_name=x&sslmode=disable"
        );
        assert_eq!(plain_on_loopback("postgres://u@[::1]/db"), "postgres://u@[::1]/db?sslmode=disable");
        for kept in [
            "postgres://u@localhost/db?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgres://u@db.internal:5432/db",
            "sqlite://data/sendmux.db?mode=rwc",
        ] {
            assert_eq!(plain_on_loopback(kept), kept);
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_run_with_nothing_configured() {
        let s = Settings::from_sources(None, &[]).unwrap();
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.smtp_addr.to_string(), "127.0.0.1:2525");
        assert_eq!(s.inbound_domains, vec!["localhost"]);
        assert_eq!(s.signup, Signup::Closed);
        assert!(s.admin_token.is_none() && s.database_url.is_none());
        assert_eq!(s.limits.active_keys, 100);
        assert_eq!(s.limits.sending_rate_per_minute, 1800);
        assert_eq!(s.roles, Roles::ALL);
    }

    #[test]
    fn bodies_go_to_a_bucket_named_by_url() {
        let s = Settings::from_sources(
            None,
            &env(&[
                ("SENDMUX_BLOB_URL", "s3://mail-bodies/prod/eu"),
                ("SENDMUX_S3_ENDPOINT", "http://127.0.0.1:9000"),
                ("SENDMUX_S3_ACCESS_KEY_ID", "id"),
                ("SENDMUX_S3_SECRET_ACCESS_KEY", "secret"),
            ]),
        )
        .unwrap();
        let BlobLocation::S3(at) = s.blobs else { panic!("not S3: {:?}", s.blobs) };
        assert_eq!(
            (at.bucket.as_str(), at.prefix.as_str(), at.region.as_str()),
            ("mail-bodies", "prod/eu", "us-east-1")
        );
        assert_eq!(at.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            at.credentials.map(|(id, secret)| (id, secret.expose().to_owned())),
            Some(("id".into(), "secret".into()))
        );
        let half = env(&[("SENDMUX_BLOB_URL", "s3://b"), ("SENDMUX_S3_ACCESS_KEY_ID", "id")]);
        assert_eq!(Settings::from_sources(None, &half).unwrap_err().variable, "SENDMUX_S3_SECRET_ACCESS_KEY");
        assert!(matches!(Settings::from_sources(None, &[]).unwrap().blobs, BlobLocation::Folder));
    }

    #[test]
    fn roles_are_named_in_any_order() {
        let s = Settings::from_sources(None, &env(&[("SENDMUX_ROLES", "worker, api")])).unwrap();
        assert_eq!(s.roles, Roles { api: true, smtp: false, worker: true });
        assert_eq!(s.roles.names(), ["api", "worker"]);
    }

    #[test]
    fn outbound_defaults_and_overrides() {
        let s = Settings::from_sources(None, &[]).unwrap();
        assert_eq!(s.outbound.max_email_bytes, 10 * 1024 * 1024);
        assert_eq!(s.outbound.retry_window_ms, 24 * 3600 * 1000);
        assert_eq!(s.outbound.retry_initial_ms, 60_000);
        assert_eq!(s.outbound.workers, 4);
        let s = Settings::from_sources(
            None,
            &env(&[("SENDMUX_OUTBOUND_RETRY_WINDOW_SECONDS", "60"), ("SENDMUX_OUTBOUND_WORKERS", "2")]),
        )
        .unwrap();
        assert_eq!(s.outbound.retry_window_ms, 60_000);
        assert_eq!(s.outbound.workers, 2);
        for (k, v) in [
            ("SENDMUX_MAX_EMAIL_BYTES", "10"),
            ("SENDMUX_OUTBOUND_WORKERS", "-1"),
            ("SENDMUX_OUTBOUND_RETRY_INITIAL_SECONDS", "soon"),
            ("SENDMUX_OUTBOUND_LEASE_SECONDS", "1"),
        ] {
            let err = Settings::from_sources(None, &env(&[(k, v)])).unwrap_err();
            assert_eq!(err.variable, k, "{err}");
        }
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (k, v) in [
            ("SENDMUX_HTTP_ADDR", "nope"),
            ("SENDMUX_SIGNUP", "maybe"),
            ("SENDMUX_DATABASE_URL", "mysql://x"),
            ("SENDMUX_WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/99"),
            ("SENDMUX_SECRET_KEY", "short"),
            ("SENDMUX_LIMIT_ACTIVE_KEYS", "0"),
            ("SENDMUX_INBOUND_DOMAINS", "exa mple.com"),
            ("SENDMUX_WEBHOOK_RETRY_SCHEDULE", "5,soon"),
            ("SENDMUX_STREAM_MAX_PER_KEY", "0"),
            ("SENDMUX_READ_CACHE_BYTES", "-1"),
            ("SENDMUX_HTTP_HEADER_TIMEOUT_SECS", "0"),
            ("SENDMUX_HTTP_REQUEST_TIMEOUT_SECS", "soon"),
            ("SENDMUX_HTTP_MAX_CONNECTIONS", "0"),
            ("SENDMUX_PRICE_INBOUND_PER_1000", "-1"),
            ("SENDMUX_PRICE_STORAGE_PER_GB_MONTH", "cheap"),
            ("SENDMUX_SMTP_MAX_MESSAGE_BYTES", "ten"),
            ("SENDMUX_SMTP_MAX_RECIPIENTS", "0"),
            ("SENDMUX_SMTP_TLS_CERT", "/tmp/cert.pem"),
            ("SENDMUX_SMTP_HOSTNAME", "mx example"),
            ("SENDMUX_DNS_SERVER", "8.8.8.8"),
            ("SENDMUX_ROLES", "api,mailer"),
            ("SENDMUX_ROLES", " , "),
            ("SENDMUX_BLOB_URL", "https://bucket/x"),
            ("SENDMUX_REQUIRE_VERIFIED_SENDER", "yes"),
            ("SENDMUX_DOMAIN_CHECK_PENDING_SECONDS", "0"),
            ("SENDMUX_PUBLIC_URL", "ftp://example.com"),
        ] {
            let err = Settings::from_sources(None, &env(&[(k, v)])).unwrap_err();
            assert_eq!(err.variable, k, "{err}");
        }
    }

    #[test]
    fn env_overrides_the_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sendmux.toml");
        std::fs::write(
            &path,
            "http_addr = \"127.0.0.1:9000\"\nsignup = \"open\"\ninbound_domains = [\"a.test\", \"b.test\"]\n",
        )
        .unwrap();
        let s = Settings::from_sources(Some(&path), &env(&[("SENDMUX_HTTP_ADDR", "127.0.0.1:9001")])).unwrap();
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:9001");
        assert_eq!(s.signup, Signup::Open);
        assert_eq!(s.inbound_domains, vec!["a.test", "b.test"]);
        std::fs::write(&path, "htp_addr = \"x\"\n").unwrap();
        let err = Settings::from_sources(Some(&path), &[]).unwrap_err();
        assert!(err.variable.contains("htp_addr"), "{err}");
    }

    #[test]
    fn smtp_and_dns_settings_parse() {
        let s = Settings::from_sources(None, &[]).unwrap();
        assert_eq!(s.smtp.max_message_bytes, 25 << 20);
        assert_eq!(s.smtp.max_recipients, 100);
        assert_eq!(s.smtp.command_timeout_secs, 300);
        assert_eq!(s.smtp.data_timeout_secs, 180);
        assert!(s.smtp.tls_cert.is_none() && s.smtp.tls_key.is_none());
        assert_eq!(s.dns_server, DnsServer::System);
        let s = Settings::from_sources(
            None,
            &env(&[
                ("SENDMUX_SMTP_MAX_MESSAGE_BYTES", "2048"),
                ("SENDMUX_SMTP_TLS_CERT", "/x/cert.pem"),
                ("SENDMUX_SMTP_TLS_KEY", "/x/key.pem"),
                ("SENDMUX_SMTP_MAX_CONNECTIONS_PER_IP", "3"),
                ("SENDMUX_SMTP_HOSTNAME", "mx.example.com"),
                ("SENDMUX_DNS_SERVER", "127.0.0.1:5353"),
            ]),
        )
        .unwrap();
        assert_eq!(s.smtp.max_message_bytes, 2048);
        assert_eq!(s.smtp.tls_key.as_deref(), Some(Path::new("/x/key.pem")));
        assert_eq!(s.smtp.max_connections_per_ip, 3);
        assert_eq!(s.smtp.hostname, "mx.example.com");
        assert_eq!(s.dns_server, DnsServer::At("127.0.0.1:5353".parse().unwrap()));
        let off = Settings::from_sources(None, &env(&[("SENDMUX_DNS_SERVER", "off")])).unwrap();
        assert_eq!(off.dns_server, DnsServer::Off);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Settings::from_sources(None, &env(&[("SENDMUX_ADMIN_TOKEN", "super-secret-admin-token")])).unwrap();
        assert!(!format!("{s:?}").contains("super-secret-admin-token"));
    }

    #[test]
    fn networks_match_their_members() {
        let n: Network = "127.0.0.0/8".parse().unwrap();
        assert!(n.contains("127.1.2.3".parse().unwrap()));
        assert!(!n.contains("128.0.0.1".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Network = "::1".parse().unwrap();
        assert!(v6.contains("::1".parse().unwrap()) && !v6.contains("::2".parse().unwrap()));
    }
}

/// Prices from settings (defaults: API.md §10).
#[derive(Clone, Debug)]
pub struct Prices {
    pub outbound_per_1000: rust_decimal::Decimal,
    pub managed_ses_per_1000: rust_decimal::Decimal,
    pub inbound_per_1000: rust_decimal::Decimal,
    pub storage_per_gb_month: rust_decimal::Decimal,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            outbound_per_1000: rust_decimal::Decimal::new(15, 2),
            managed_ses_per_1000: rust_decimal::Decimal::new(25, 2),
            inbound_per_1000: rust_decimal::Decimal::new(15, 2),
            storage_per_gb_month: rust_decimal::Decimal::new(2, 2),
        }
    }
}
