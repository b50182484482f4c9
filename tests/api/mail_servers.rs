//! Real mail servers on loopback for the outbound tests, started as child processes and
//! killed when dropped: an SMTP server (aiosmtpd, `tests/support/smtp_server.py`) and
//! Amazon SES (moto in server mode with SigV4 checking, `tests/support/ses_server.py`).

use base64::Engine;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn support(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support").join(script)
}

async fn start(script: &str, args: &[String]) -> (Child, Vec<String>) {
    let mut child = Command::new("python3")
        .arg(support(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("python3 {script}: {e} (install aiosmtpd and moto[server], see .ci/run)"));
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    let read = reader.read_line(&mut line);
    tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("{script} did not start within 60 s"))
        .unwrap();
    let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    assert_eq!(words.first().map(String::as_str), Some("READY"), "{script} said {line:?}");
    (child, words[1..].to_vec())
}

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub data: Vec<u8>,
}

pub struct SmtpServer {
    pub port: u16,
    out: tempfile::NamedTempFile,
    _child: Child,
}

impl SmtpServer {
    /// `auth`: `Some(("user", "password"))` makes AUTH required.
    pub async fn start(auth: Option<(&str, &str)>) -> SmtpServer {
        Self::start_with(auth, &[]).await
    }

    pub async fn start_with(auth: Option<(&str, &str)>, extra: &[&str]) -> SmtpServer {
        let out = tempfile::NamedTempFile::new().unwrap();
        let mut args = vec![out.path().display().to_string()];
        if let Some((u, p)) = auth {
            args.push("--auth".into());
            args.push(format!("{u}:{p}"));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let (child, words) = start("smtp_server.py", &args).await;
        SmtpServer { port: words[0].parse().unwrap(), out, _child: child }
    }

    pub fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(self.out.path()).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                Received {
                    mail_from: v["mail_from"].as_str().unwrap().to_owned(),
                    rcpt_tos: v["rcpt_tos"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_str().unwrap().to_owned())
                        .collect(),
                    data: base64::engine::general_purpose::STANDARD.decode(v["data"].as_str().unwrap()).unwrap(),
                }
            })
            .collect()
    }
}

pub struct SesServer {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    sent: tempfile::NamedTempFile,
    _child: Child,
}

impl SesServer {
    /// Moto with request signing enforced; `verified` are the sender identities.
    pub async fn start(verified: &[&str]) -> SesServer {
        let sent = tempfile::NamedTempFile::new().unwrap();
        let mut args: Vec<String> = verified.iter().map(|s| s.to_string()).collect();
        args.push(format!("--sent={}", sent.path().display()));
        let (child, words) = start("ses_server.py", &args).await;
        SesServer {
            endpoint: format!("http://127.0.0.1:{}", words[0]),
            access_key_id: words[1].clone(),
            secret_access_key: words[2].clone(),
            sent,
            _child: child,
        }
    }

    /// The raw messages SES was given (`SendEmail` with `Content.Raw`), once there are at
    /// least `n` of them; panics after 30 s.
    pub async fn raw_messages(&self, n: usize) -> Vec<Vec<u8>> {
        for _ in 0..600 {
            let text = std::fs::read_to_string(self.sent.path()).unwrap_or_default();
            if let Ok(Value::Array(sent)) = serde_json::from_str::<Value>(&text)
                && sent.len() >= n
            {
                return sent.iter().map(|m| m["raw"].as_str().unwrap().as_bytes().to_vec()).collect();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("SES was not given {n} raw messages within 30 s");
    }
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// S3 on loopback (moto, SigV4 checked) with an empty bucket for bodies.
pub struct S3Server {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub bucket: String,
    _child: Child,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let (child, words) = start("s3_server.py", &[]).await;
        S3Server {
            endpoint: format!("http://127.0.0.1:{}", words[0]),
            access_key_id: words[1].clone(),
            secret_access_key: words[2].clone(),
            bucket: words[3].clone(),
            _child: child,
        }
    }

    /// The settings that put a node's bodies under `prefix` in this bucket.
    pub fn settings(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            ("SENDMUX_BLOB_URL".into(), format!("s3://{}/{prefix}", self.bucket)),
            ("SENDMUX_S3_ENDPOINT".into(), self.endpoint.clone()),
            ("SENDMUX_S3_ACCESS_KEY_ID".into(), self.access_key_id.clone()),
            ("SENDMUX_S3_SECRET_ACCESS_KEY".into(), self.secret_access_key.clone()),
        ]
    }
}
