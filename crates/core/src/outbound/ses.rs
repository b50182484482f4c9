//! Amazon SES through the SESv2 HTTP API (`SendEmail` with raw content), each request
//! signed with SigV4 by `aws-sigv4`.
//!
//! Why `aws-sigv4` and not the AWS SDK: we make two calls (send, and an authenticated
//! read for the provider check) with per-team credentials and endpoints that change per
//! request. The signer is one small crate used with our own `reqwest` client and rustls
//! setup; the SDK would add its own HTTP stack, credential chain and ~100 crates, and
//! would need a client per team credential.

use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Outcome;
use crate::guard::{Guard, GuardedResolver, REFUSED, literal_refusal};

#[derive(Clone, Debug)]
pub struct SesTarget {
    pub region: String,
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// A team's provider: its endpoint passes the provider address guard. False only
    /// for the operator's managed route.
    pub guarded: bool,
}

impl SesTarget {
    fn base(&self) -> Result<String, String> {
        match &self.endpoint {
            Some(e) if self.guarded => endpoint_url(e)
                .map(|u| u.origin().ascii_serialization())
                .map_err(|why| format!("The SES endpoint is not usable: {why}")),
            Some(e) => Ok(e.trim_end_matches('/').to_owned()),
            None => Ok(format!("https://email.{}.amazonaws.com", self.region)),
        }
    }
}

/// A team's SES `endpoint`: an http(s) origin and nothing else (no user info, path,
/// query or fragment), so the team chooses where requests go but not what they ask.
pub fn endpoint_url(endpoint: &str) -> Result<url::Url, &'static str> {
    let u = url::Url::parse(endpoint).map_err(|_| "endpoint must be an http(s) URL")?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err("endpoint must be an http(s) URL");
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("endpoint may not carry a user name or password");
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("endpoint may not have a query or a fragment");
    }
    if !matches!(u.path(), "" | "/") {
        return Err("endpoint must be an origin such as https://email.us-east-1.amazonaws.com, without a path");
    }
    Ok(u)
}

/// The HTTP clients SES requests go through. Neither follows redirects or uses a proxy
/// from the environment; the one for teams' providers connects only to addresses the
/// provider guard permits (resolved once, by [`GuardedResolver`]).
pub struct SesHttp {
    team: reqwest::Client,
    managed: reqwest::Client,
    guard: Arc<Guard>,
}

/// How long a provider check may take in all (connect, TLS, answer).
pub const CHECK_FOR: Duration = Duration::from_secs(10);

impl SesHttp {
    pub fn new(guard: Arc<Guard>, max_idle_per_host: usize) -> anyhow::Result<Self> {
        let builder = || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .connect_timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(max_idle_per_host)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
        };
        Ok(Self {
            team: builder().dns_resolver(Arc::new(GuardedResolver(guard.clone()))).build()?,
            managed: builder().build()?,
            guard,
        })
    }
}

/// True when the guard's refusal is somewhere in the error's causes.
fn refused(e: &reqwest::Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if c.to_string().contains(REFUSED) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A signed request to the SESv2 API.
async fn call(
    http: &SesHttp,
    t: &SesTarget,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
) -> Result<reqwest::Response, String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let base = t.base()?;
    let url = format!("{base}{path}");
    let parsed = url::Url::parse(&url).map_err(|_| format!("The SES endpoint '{base}' is not a URL"))?;
    // Names are checked by the client's resolver; literal addresses here.
    let client = if t.guarded {
        if literal_refusal(&http.guard, &parsed).is_some() {
            return Err(format!("SES endpoint {REFUSED}"));
        }
        &http.team
    } else {
        &http.managed
    };
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => return Err("The SES endpoint has no host".into()),
    };
    let body = body.unwrap_or_default();
    let identity = aws_credential_types::Credentials::new(
        t.access_key_id.clone(),
        t.secret_access_key.clone(),
        None,
        None,
        "sendmux-provider",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&t.region)
        .name("ses")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("Cannot sign the SES request: {e}"))?
        .into();
    let has_body = !body.is_empty();
    let mut headers = vec![("host", host.as_str())];
    if has_body {
        headers.push(("content-type", content_type));
    }
    let signable = SignableRequest::new(method, url.clone(), headers.into_iter(), SignableBody::Bytes(&body))
        .map_err(|e| format!("Cannot sign the SES request: {e}"))?;
    let (instructions, _) =
        sign(signable, &params).map_err(|e| format!("Cannot sign the SES request: {e}"))?.into_parts();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut req = client.request(method, &url);
    if let Some(t) = timeout {
        req = req.timeout(t);
    }
    if has_body {
        req = req.header("content-type", content_type);
    }
    for (name, value) in instructions.headers() {
        req = req.header(name, value);
    }
    req.body(body).send().await.map_err(|e| {
        if refused(&e) {
            format!("SES endpoint {REFUSED}")
        } else if e.is_timeout() {
            format!("SES at {base} did not answer in time")
        } else if e.is_connect() {
            format!("Cannot connect to SES at {base}")
        } else {
            format!("The request to SES at {base} failed")
        }
    })
}

fn xml_field(body: &str, tag: &str) -> Option<String> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].to_owned())
}

/// The SES error code of an error answer (JSON `__type`/`Code`, or the XML `<Code>` of
/// some fronts), and nothing else of the body: a remote body is never shown to the team.
fn error_code(body: &str) -> Option<String> {
    let code = match xml_field(body, "Code") {
        Some(c) => c,
        None => {
            let v: Value = serde_json::from_str(body).ok()?;
            v["__type"].as_str().or_else(|| v["Code"].as_str()).or_else(|| v["code"].as_str())?.to_owned()
        }
    };
    // `com.amazon…#MessageRejected`, `MessageRejected:http://…` → `MessageRejected`.
    let code = code.rsplit('#').next().unwrap_or(&code);
    let code = code.split(':').next().unwrap_or(code).trim();
    let ok = !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| code.to_owned())
}

/// An SES error answer in words: the status and the error code only.
fn error_of(status: reqwest::StatusCode, body: &str) -> String {
    match error_code(body) {
        Some(code) => format!("SES answered {}: {code}", status.as_u16()),
        None => format!("SES answered {}", status.as_u16()),
    }
}

/// `SendEmail` with the raw MIME message; tags go in `EmailTags`.
#[tracing::instrument(name = "ses_send", skip_all, fields(region = %t.region, rcpts = rcpts.len()))]
pub async fn send(
    http: &SesHttp,
    t: &SesTarget,
    from: &str,
    rcpts: &[String],
    raw: &[u8],
    tags: &BTreeMap<String, String>,
) -> Outcome {
    let mut body = json!({
        "FromEmailAddress": from,
        "Destination": {"ToAddresses": rcpts},
        "Content": {"Raw": {"Data": base64::engine::general_purpose::STANDARD.encode(raw)}},
    });
    if !tags.is_empty() {
        body["EmailTags"] = tags.iter().map(|(k, v)| json!({"Name": k, "Value": v})).collect();
    }
    let res = match call(
        http,
        t,
        "POST",
        "/v2/email/outbound-emails",
        "application/json",
        Some(body.to_string().into_bytes()),
        None,
    )
    .await
    {
        Ok(r) => r,
        Err(words) => return Outcome::Transient(words),
    };
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    if status.is_success() {
        let id = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["MessageId"].as_str().map(str::to_owned));
        return Outcome::Sent {
            response: format!("SES accepted the message (MessageId {})", id.as_deref().unwrap_or("?")),
            provider_message_id: id,
            rejected: Vec::new(),
        };
    }
    let words = error_of(status, &text);
    // Throttling and server trouble pass; anything else (bad credentials, unverified
    // sender, paused account, rejected content) needs someone to act.
    if status.as_u16() == 429
        || status.is_server_error()
        || words.contains("Throttl")
        || words.contains("TooManyRequests")
    {
        Outcome::Transient(words)
    } else {
        Outcome::Permanent(words)
    }
}

/// An authenticated read without side effects to prove the endpoint and credentials
/// work: `GetSendQuota` of the SES query API, served on the same endpoint and signed
/// for the same service. (A POST: some SES-compatible services, moto among them, do not
/// verify signatures of SESv2 GET requests correctly.)
pub async fn check(http: &SesHttp, t: &SesTarget) -> Result<(), String> {
    let body = b"Action=GetSendQuota&Version=2010-12-01".to_vec();
    let res = call(http, t, "POST", "/", "application/x-www-form-urlencoded", Some(body), Some(CHECK_FOR)).await?;
    let status = res.status();
    if status.is_success() {
        return Ok(());
    }
    let text = tokio::time::timeout(CHECK_FOR, res.text()).await.ok().and_then(Result::ok).unwrap_or_default();
    let words = error_of(status, &text);
    Err(match status.as_u16() {
        401 | 403 => format!("SES refused these credentials ({words}); check the access key id, secret and region"),
        _ => words,
    })
}
