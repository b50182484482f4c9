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
use std::time::SystemTime;

use super::Outcome;

#[derive(Clone, Debug)]
pub struct SesTarget {
    pub region: String,
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl SesTarget {
    fn base(&self) -> String {
        match &self.endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => format!("https://email.{}.amazonaws.com", self.region),
        }
    }
}

/// A signed request to the SESv2 API.
async fn call(
    http: &reqwest::Client,
    t: &SesTarget,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<Vec<u8>>,
) -> Result<reqwest::Response, String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let url = format!("{}{path}", t.base());
    let parsed = url::Url::parse(&url).map_err(|_| format!("The SES endpoint '{}' is not a URL", t.base()))?;
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
    let mut req = http.request(method, &url);
    if has_body {
        req = req.header("content-type", content_type);
    }
    for (name, value) in instructions.headers() {
        req = req.header(name, value);
    }
    req.body(body).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("SES at {} did not answer in time", t.base())
        } else if e.is_connect() {
            format!("Cannot connect to SES at {}", t.base())
        } else {
            format!("The request to SES at {} failed", t.base())
        }
    })
}

fn xml_field(body: &str, tag: &str) -> Option<String> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].to_owned())
}

/// The error type and message of an SES error answer (JSON, or the XML of some fronts).
fn error_of(status: reqwest::StatusCode, body: &str) -> String {
    if let (Some(code), Some(msg)) = (xml_field(body, "Code"), xml_field(body, "Message")) {
        return format!("SES answered {}: {code} {msg}", status.as_u16());
    }
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let kind = v["__type"]
        .as_str()
        .or_else(|| v["Code"].as_str())
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
        .unwrap_or_default();
    let msg = v["message"].as_str().or_else(|| v["Message"].as_str()).unwrap_or("").to_owned();
    let text =
        if body.len() < 300 && kind.is_empty() && msg.is_empty() { body.trim().to_owned() } else { String::new() };
    format!("SES answered {}: {kind} {msg}{text}", status.as_u16()).trim().to_owned()
}

/// `SendEmail` with the raw MIME message; tags go in `EmailTags`.
#[tracing::instrument(name = "ses_send", skip_all, fields(region = %t.region, rcpts = rcpts.len()))]
pub async fn send(
    http: &reqwest::Client,
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
pub async fn check(http: &reqwest::Client, t: &SesTarget) -> Result<(), String> {
    let body = b"Action=GetSendQuota&Version=2010-12-01".to_vec();
    let res = call(http, t, "POST", "/", "application/x-www-form-urlencoded", Some(body)).await?;
    let status = res.status();
    if status.is_success() {
        return Ok(());
    }
    let text = res.text().await.unwrap_or_default();
    let words = error_of(status, &text);
    Err(match status.as_u16() {
        401 | 403 => format!("SES refused these credentials ({words}); check the access key id, secret and region"),
        _ => words,
    })
}
