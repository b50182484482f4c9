//! Drives one SMTP `Session` over an in-memory pipe as a hostile client would, and checks
//! what it said and stored. Shared by the bounded stable test
//! (crates/smtp/tests/fuzz_session.rs) and the cargo-fuzz target
//! (fuzz/fuzz_targets/smtp_session.rs), which include it with `#[path]`.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sendmux_smtp::session::{End, Envelope, Handler, Reply, Session, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub const MAX_MESSAGE: usize = 2000;
pub const MAX_RECIPIENTS: usize = 3;

/// Accepts `*@here.test` except `fail*@`, whose lookup fails with 451; stores every
/// message, or refuses one that contains `REFUSE`.
#[derive(Default)]
pub struct Sink {
    delivered: Mutex<Vec<(Envelope<String>, Vec<u8>)>>,
}

impl Handler for Sink {
    type Recipient = String;
    async fn recipient(&self, address: &str) -> Result<Option<String>, Reply> {
        if address.starts_with("fail") {
            return Err(Reply::new(451, "4.3.0 Lookup failed"));
        }
        Ok(address.to_ascii_lowercase().ends_with("@here.test").then(|| address.to_owned()))
    }
    async fn deliver(&self, envelope: Envelope<String>, raw: Vec<u8>) -> Reply {
        if raw.windows(6).any(|w| w == b"REFUSE") {
            return Reply::new(554, "5.7.1 Refused");
        }
        self.delivered.lock().unwrap().push((envelope, raw));
        Reply::new(250, "2.0.0 Stored")
    }
}

/// How the client side of one session behaves.
pub struct Client {
    pub input: Vec<u8>,
    /// The pipe's buffer size: small ones split every read and write.
    pub pipe: usize,
    /// The client writes in pieces of at most this many bytes.
    pub chunk: usize,
    /// After writing everything the client keeps the connection open (a stalled client)
    /// instead of closing it: only the session's deadlines can end it.
    pub stall: bool,
    pub tls: bool,
}

/// Runs one session to its end and checks what the client heard and what was stored.
pub async fn converse(client: Client) -> Result<(), String> {
    let sink = Arc::new(Sink::default());
    let config = SessionConfig {
        hostname: "mx.here.test".into(),
        max_message_bytes: MAX_MESSAGE,
        max_recipients: MAX_RECIPIENTS,
        command_timeout: if client.stall { Duration::from_millis(40) } else { Duration::from_secs(10) },
        data_timeout: if client.stall { Duration::from_millis(40) } else { Duration::from_secs(10) },
        tls_available: client.tls,
    };
    let (near, far) = tokio::io::duplex(client.pipe);
    let (mut read, mut write) = tokio::io::split(near);
    let (input, chunk, stall) = (client.input, client.chunk, client.stall);
    let writer = tokio::spawn(async move {
        for piece in input.chunks(chunk.max(1)) {
            if write.write_all(piece).await.is_err() {
                return; // the server hung up
            }
        }
        if stall {
            std::future::pending::<()>().await;
        }
        let _ = write.shutdown().await;
    });
    let reader = tokio::spawn(async move {
        let mut heard = Vec::new();
        let _ = read.read_to_end(&mut heard).await;
        heard
    });
    let server_sink = sink.clone();
    let server = tokio::spawn(async move {
        let mut session = Session::new(server_sink, config, None, CancellationToken::new());
        let mut stream = far;
        let mut upgrades = 0;
        loop {
            match session.run(stream).await {
                Ok(End::Closed) => return Ok(upgrades),
                // Pretend the handshake happened: the same pipe goes on as "TLS".
                Ok(End::StartTls(s)) => {
                    upgrades += 1;
                    session.started_tls();
                    stream = s;
                }
                Err(e) => return Err(e),
            }
        }
    });
    let ended = tokio::time::timeout(Duration::from_secs(30), server).await;
    writer.abort();
    let upgrades = match ended {
        Err(_) => return Err("the session did not end within 30 s".into()),
        Ok(Err(join)) if join.is_panic() => {
            return Err(format!("the session panicked: {}", panic_text(join.into_panic())));
        }
        Ok(Err(join)) => return Err(format!("the session task failed: {join}")),
        Ok(Ok(Err(io))) => return Err(format!("the session failed on an in-memory pipe: {io}")),
        Ok(Ok(Ok(upgrades))) => upgrades,
    };
    let heard = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .map_err(|_| "the server closed its session but not the connection".to_string())?
        .map_err(|e| e.to_string())?;
    check_replies(&heard, upgrades)?;
    for (envelope, raw) in sink.delivered.lock().unwrap().iter() {
        if raw.len() > MAX_MESSAGE {
            return Err(format!("stored a message of {} bytes over the {MAX_MESSAGE} limit", raw.len()));
        }
        if envelope.recipients.is_empty() || envelope.recipients.len() > MAX_RECIPIENTS {
            return Err(format!("stored a message for {} recipients", envelope.recipients.len()));
        }
        if envelope.tls && upgrades == 0 {
            return Err("a message was marked TLS without STARTTLS".into());
        }
    }
    Ok(())
}

/// Every reply line is `ddd-text` or `ddd text` with CRLF, the first is the 220
/// greeting, a closing 221 or 421 is the last thing said, and each STARTTLS upgrade
/// followed a `220 2.0.0`.
pub fn check_replies(heard: &[u8], upgrades: usize) -> Result<(), String> {
    let text = String::from_utf8(heard.to_vec()).map_err(|_| "a reply is not UTF-8".to_string())?;
    if !text.is_empty() && !text.ends_with("\r\n") {
        return Err(format!("the replies end mid-line: {:?}", &text[text.len().saturating_sub(80)..]));
    }
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    if !lines.first().is_some_and(|l| l.starts_with("220 ")) {
        return Err(format!("no 220 greeting first: {:?}", lines.first()));
    }
    for (i, line) in lines.iter().enumerate() {
        let b = line.as_bytes();
        let well_formed = b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && (b[3] == b' ' || b[3] == b'-');
        if !well_formed || line.contains(['\r', '\n']) {
            return Err(format!("malformed reply line {i}: {line:?}"));
        }
        let closing = line.starts_with("221 ") || line.starts_with("421 ");
        if closing && i + 1 != lines.len() {
            return Err(format!("the server spoke after closing: {:?}", &lines[i..]));
        }
    }
    let ready = lines.iter().filter(|l| l.starts_with("220 2.0.0")).count();
    if ready != upgrades {
        return Err(format!("{upgrades} STARTTLS upgrades but {ready} ready replies"));
    }
    Ok(())
}

/// Command fragments for the grammar and for mutation.
pub const DICT: &[&[u8]] = &[
    b"EHLO c.test\r\n",
    b"HELO c\r\n",
    b"LHLO c\r\n",
    b"MAIL FROM:<a@x.test>\r\n",
    b"MAIL FROM:<> SIZE=999999\r\n",
    b"MAIL FROM:<a@x.test> BODY=8BITMIME SMTPUTF8\r\n",
    b"RCPT TO:<box@here.test>\r\n",
    b"RCPT TO:<BOX@HERE.TEST>\r\n",
    b"RCPT TO:<fail@here.test>\r\n",
    b"RCPT TO:<nobody@else.test>\r\n",
    b"DATA\r\n",
    b"BDAT 10 LAST\r\n",
    b"BDAT 0\r\n",
    b"STARTTLS\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY x\r\n",
    b"HELP\r\n",
    b"AUTH PLAIN AGFAYg==\r\n",
    b"QUIT\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"..\r\n",
    b"\n.\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"\xff\xfe",
    b"REFUSE",
    b"<",
    b">",
    b":",
    b" ",
];

fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}
