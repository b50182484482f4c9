//! One SMTP server session (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
//! ENHANCEDSTATUSCODES and STARTTLS), generic over its byte stream so tests can drive it
//! over an in-memory pipe. It knows nothing of HTTP or the store: recipients are
//! checked and messages delivered through a [`Handler`].

use std::future::Future;
use std::time::Duration;

use smtp_proto::{Error as ProtoError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Command lines longer than this (with CRLF) are refused: RFC 5321 §4.5.3.1.4 allows
/// 512, and extension parameters may add to it.
pub const MAX_COMMAND_LINE: usize = 1000;
/// After this many refused commands the session ends (a confused or hostile client).
const MAX_ERRORS: usize = 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self { code, text: text.into() }
    }
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("{} {}\r\n", self.code, self.text).as_bytes());
    }
}

/// The envelope of a message whose data has arrived.
#[derive(Clone, Debug)]
pub struct Envelope<R> {
    pub helo: String,
    pub mail_from: String,
    pub recipients: Vec<R>,
    pub remote_ip: Option<std::net::IpAddr>,
    pub tls: bool,
}

/// What a session asks of the mail system behind it.
pub trait Handler: Send + Sync + 'static {
    /// What an accepted recipient resolves to (for example a mailbox).
    type Recipient: Clone + PartialEq + Send + Sync + 'static;

    /// Resolves `address`: `Ok(None)` for no such mailbox, `Err` with the reply to give
    /// when the lookup itself failed (for example `451 4.3.0`).
    fn recipient(&self, address: &str) -> impl Future<Output = Result<Option<Self::Recipient>, Reply>> + Send;

    /// Stores a complete message; the reply is what the client hears at end of DATA
    /// (`250` only once the message is durable).
    fn deliver(&self, envelope: Envelope<Self::Recipient>, raw: Vec<u8>) -> impl Future<Output = Reply> + Send;
}

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub hostname: String,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    /// Time for one whole command line, from when the session starts waiting for it:
    /// a deadline, not an idle timeout, so dripping bytes does not extend it.
    pub command_timeout: Duration,
    /// Time for one message's whole DATA, from the `354`.
    pub data_timeout: Duration,
    /// STARTTLS is offered (a TLS acceptor exists and the session is not yet in TLS).
    pub tls_available: bool,
}

/// How a run of the session ended.
pub enum End<S> {
    /// The client quit, went away, timed out or was told to go.
    Closed,
    /// The client asked for STARTTLS and was told `220`: the caller performs the TLS
    /// handshake on the returned stream and runs the session again over TLS.
    StartTls(S),
}

#[derive(Default)]
struct Transaction<R> {
    mail_from: Option<String>,
    recipients: Vec<R>,
}

pub struct Session<H: Handler> {
    handler: std::sync::Arc<H>,
    config: SessionConfig,
    remote_ip: Option<std::net::IpAddr>,
    shutdown: CancellationToken,
    helo: Option<String>,
    tls: bool,
    greeted: bool,
    errors: usize,
    tx: Transaction<H::Recipient>,
    /// Bytes read but not yet consumed (pipelined commands, the start of DATA).
    input: Vec<u8>,
    /// Replies waiting to be written; flushed before the session waits for input, so
    /// a pipelined group of commands gets its replies in one write.
    output: Vec<u8>,
}

enum Step {
    Continue,
    Close,
    StartTls,
}

impl<H: Handler> Session<H> {
    pub fn new(
        handler: std::sync::Arc<H>,
        config: SessionConfig,
        remote_ip: Option<std::net::IpAddr>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            handler,
            config,
            remote_ip,
            shutdown,
            helo: None,
            tls: false,
            greeted: false,
            errors: 0,
            tx: Transaction { mail_from: None, recipients: Vec::new() },
            input: Vec::new(),
            output: Vec::new(),
        }
    }

    fn reply(&mut self, code: u16, text: &str) {
        Reply::new(code, text).write_to(&mut self.output);
    }

    fn reset_transaction(&mut self) {
        self.tx = Transaction { mail_from: None, recipients: Vec::new() };
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> std::io::Result<()> {
        if !self.output.is_empty() {
            stream.write_all(&self.output).await?;
            stream.flush().await?;
            self.output.clear();
        }
        Ok(())
    }

    /// Reads more input, waiting at most until `deadline`. Returns false when the session
    /// must end (EOF, deadline, shutdown), having queued the reply for a deadline or
    /// shutdown.
    async fn fill<S: AsyncRead + Unpin>(&mut self, stream: &mut S, deadline: Instant) -> std::io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, stream.read(&mut chunk)) => r,
            _ = self.shutdown.cancelled() => {
                self.reply(421, "4.3.2 Service shutting down, try again later");
                return Ok(false);
            }
        };
        match read {
            Err(_) => {
                self.reply(421, "4.4.2 Timeout waiting for input, closing connection");
                Ok(false)
            }
            Ok(Ok(0)) => Ok(false),
            Ok(Ok(n)) => {
                self.input.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Ok(Err(e)) => Err(e),
        }
    }

    /// Serves the session over `stream` until it ends or asks for TLS.
    pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, mut stream: S) -> std::io::Result<End<S>> {
        if !self.greeted {
            self.greeted = true;
            let greeting = format!("{} ESMTP Sendmux", self.config.hostname);
            self.reply(220, &greeting);
        }
        let result = self.serve(&mut stream).await;
        let _ = self.flush(&mut stream).await;
        match result? {
            Step::StartTls => Ok(End::StartTls(stream)),
            _ => {
                let _ = stream.shutdown().await;
                Ok(End::Closed)
            }
        }
    }

    /// Marks the session as running over TLS: RFC 3207 §4.2 forgets everything said
    /// before the handshake.
    pub fn started_tls(&mut self) {
        self.tls = true;
        self.config.tls_available = false;
        self.helo = None;
        self.reset_transaction();
        self.input.clear();
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: &mut S) -> std::io::Result<Step> {
        let mut skipping_long_line = false;
        // When the line being waited for must be complete; set when the wait starts.
        let mut line_deadline = None;
        loop {
            let Some(nl) = self.input.iter().position(|&b| b == b'\n') else {
                if self.input.len() > MAX_COMMAND_LINE {
                    // Drop what we have of the long line; answer once its end arrives.
                    self.input.clear();
                    skipping_long_line = true;
                }
                self.flush(stream).await?;
                let deadline = *line_deadline.get_or_insert_with(|| Instant::now() + self.config.command_timeout);
                if !self.fill(stream, deadline).await? {
                    return Ok(Step::Close);
                }
                continue;
            };
            line_deadline = None;
            let line: Vec<u8> = self.input.drain(..=nl).collect();
            if skipping_long_line || line.len() > MAX_COMMAND_LINE {
                skipping_long_line = false;
                self.reply(500, "5.5.2 Line too long");
                if self.error_limit_reached() {
                    return Ok(Step::Close);
                }
                continue;
            }
            match self.command(&line, stream).await? {
                Step::Continue => {}
                Step::Close => return Ok(Step::Close),
                Step::StartTls => {
                    self.flush(stream).await?;
                    return Ok(Step::StartTls);
                }
            }
        }
    }

    fn error_limit_reached(&mut self) -> bool {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.reply(421, "4.7.0 Too many errors, closing connection");
            true
        } else {
            false
        }
    }

    fn refuse(&mut self, code: u16, text: &str) -> Step {
        self.reply(code, text);
        if self.error_limit_reached() { Step::Close } else { Step::Continue }
    }

    async fn command<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        line: &[u8],
        stream: &mut S,
    ) -> std::io::Result<Step> {
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r,
            Err(e) => {
                let (code, text) = match e {
                    ProtoError::UnknownCommand => (500, "5.5.1 Unknown command"),
                    ProtoError::InvalidSenderAddress => (501, "5.1.7 Bad sender address syntax"),
                    ProtoError::InvalidRecipientAddress => (501, "5.1.3 Bad recipient address syntax"),
                    ProtoError::UnsupportedParameter { .. } => (555, "5.5.4 Unsupported parameter"),
                    ProtoError::ResponseTooLong => (500, "5.5.2 Line too long"),
                    _ => (501, "5.5.4 Syntax error in parameters or arguments"),
                };
                return Ok(self.refuse(code, text));
            }
        };
        match request {
            Request::Ehlo { host } => {
                self.helo = Some(host.into_owned());
                self.reset_transaction();
                let mut lines = vec![
                    format!("{} Hello", self.config.hostname),
                    format!("SIZE {}", self.config.max_message_bytes),
                    "8BITMIME".to_owned(),
                    "PIPELINING".to_owned(),
                    "SMTPUTF8".to_owned(),
                    "ENHANCEDSTATUSCODES".to_owned(),
                ];
                if self.config.tls_available {
                    lines.push("STARTTLS".to_owned());
                }
                let last = lines.len() - 1;
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    self.output.extend_from_slice(format!("250{sep}{l}\r\n").as_bytes());
                }
            }
            Request::Helo { host } => {
                self.helo = Some(host.into_owned());
                self.reset_transaction();
                let text = format!("{} Hello", self.config.hostname);
                self.reply(250, &text);
            }
            Request::Lhlo { .. } => return Ok(self.refuse(500, "5.5.1 This is an SMTP server, not LMTP")),
            Request::StartTls => {
                if !self.config.tls_available {
                    return Ok(self.refuse(
                        if self.tls { 503 } else { 454 },
                        if self.tls { "5.5.1 Already in TLS" } else { "4.7.0 TLS not available" },
                    ));
                }
                self.reply(220, "2.0.0 Ready to start TLS");
                return Ok(Step::StartTls);
            }
            Request::Mail { from } => {
                if self.helo.is_none() {
                    return Ok(self.refuse(503, "5.5.1 Say EHLO or HELO first"));
                }
                if self.tx.mail_from.is_some() {
                    return Ok(self.refuse(503, "5.5.1 Sender already given; RSET to start over"));
                }
                if from.size > self.config.max_message_bytes {
                    let text = format!("5.3.4 Message too big; the limit is {} bytes", self.config.max_message_bytes);
                    return Ok(self.refuse(552, &text));
                }
                self.tx.mail_from = Some(from.address.into_owned());
                self.reply(250, "2.1.0 Sender OK");
            }
            Request::Rcpt { to } => {
                if self.tx.mail_from.is_none() {
                    return Ok(self.refuse(503, "5.5.1 Need MAIL before RCPT"));
                }
                if self.tx.recipients.len() >= self.config.max_recipients {
                    self.reply(452, "4.5.3 Too many recipients");
                    return Ok(Step::Continue);
                }
                match self.handler.recipient(&to.address).await {
                    Ok(Some(r)) => {
                        if !self.tx.recipients.contains(&r) {
                            self.tx.recipients.push(r);
                        }
                        self.reply(250, "2.1.5 Recipient OK");
                    }
                    Ok(None) => return Ok(self.refuse(550, "5.1.1 No such mailbox here")),
                    Err(reply) => reply.write_to(&mut self.output),
                }
            }
            Request::Data => {
                if self.tx.mail_from.is_none() {
                    return Ok(self.refuse(503, "5.5.1 Need MAIL before DATA"));
                }
                if self.tx.recipients.is_empty() {
                    return Ok(self.refuse(554, "5.5.1 No valid recipients"));
                }
                self.reply(354, "Start mail input; end with <CRLF>.<CRLF>");
                return self.data(stream).await;
            }
            Request::Bdat { .. } => return Ok(self.refuse(502, "5.5.1 CHUNKING is not offered")),
            Request::Auth { .. } => return Ok(self.refuse(502, "5.5.1 Authentication is not offered here")),
            Request::Rset => {
                self.reset_transaction();
                self.reply(250, "2.0.0 OK");
            }
            Request::Noop { .. } => self.reply(250, "2.0.0 OK"),
            Request::Vrfy { .. } => self.reply(252, "2.5.0 Cannot verify, but will accept and attempt delivery"),
            Request::Help { .. } => self.reply(214, "2.0.0 See RFC 5321"),
            Request::Quit => {
                self.reply(221, "2.0.0 Bye");
                return Ok(Step::Close);
            }
            _ => return Ok(self.refuse(502, "5.5.1 Command not implemented")),
        }
        Ok(Step::Continue)
    }

    /// Receives the message after `354` (dot-unstuffed by smtp-proto), then delivers it.
    async fn data<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: &mut S) -> std::io::Result<Step> {
        self.flush(stream).await?;
        let deadline = Instant::now() + self.config.data_timeout;
        let max = self.config.max_message_bytes;
        let mut receiver = smtp_proto::request::receiver::DataReceiver::new();
        let mut message = Vec::with_capacity(16 * 1024);
        // Once over the limit the rest is read and thrown away, so the client can be
        // told 552 at the end instead of being cut off mid-message.
        let mut too_big = false;
        loop {
            let pending = std::mem::take(&mut self.input);
            let mut iter = pending.iter();
            let done = if too_big {
                let mut scratch = Vec::new();
                receiver.ingest(&mut iter, &mut scratch)
            } else {
                receiver.ingest(&mut iter, &mut message)
            };
            self.input = iter.as_slice().to_vec();
            if !too_big && message.len() > max {
                too_big = true;
                message = Vec::new();
            }
            if done {
                break;
            }
            if !self.fill(stream, deadline).await? {
                return Ok(Step::Close);
            }
        }
        if too_big {
            self.reset_transaction();
            let text = format!("5.3.4 Message too big; the limit is {max} bytes");
            self.reply(552, &text);
            return Ok(Step::Continue);
        }
        let envelope = Envelope {
            helo: self.helo.clone().unwrap_or_default(),
            mail_from: self.tx.mail_from.take().unwrap_or_default(),
            recipients: std::mem::take(&mut self.tx.recipients),
            remote_ip: self.remote_ip,
            tls: self.tls,
        };
        self.reset_transaction();
        let reply = self.handler.deliver(envelope, message).await;
        reply.write_to(&mut self.output);
        Ok(Step::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, BufReader};

    /// Accepts `*@here.test` and keeps what it is given.
    #[derive(Default)]
    struct Memory {
        delivered: Mutex<Vec<(Vec<String>, Vec<u8>)>>,
    }

    impl Handler for Memory {
        type Recipient = String;
        async fn recipient(&self, address: &str) -> Result<Option<String>, Reply> {
            Ok(address.ends_with("@here.test").then(|| address.to_owned()))
        }
        async fn deliver(&self, envelope: Envelope<String>, raw: Vec<u8>) -> Reply {
            self.delivered.lock().unwrap().push((envelope.recipients, raw));
            Reply::new(250, "2.0.0 Stored")
        }
    }

    fn config() -> SessionConfig {
        SessionConfig {
            hostname: "mx.here.test".into(),
            max_message_bytes: 1000,
            max_recipients: 2,
            command_timeout: Duration::from_secs(5),
            data_timeout: Duration::from_secs(5),
            tls_available: false,
        }
    }

    /// Runs a session over an in-memory pipe; the client writes `input` at once
    /// (everything pipelined) and reads replies until the server closes.
    async fn converse(input: &[u8]) -> (Vec<String>, Arc<Memory>) {
        let handler = Arc::new(Memory::default());
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut session = Session::new(handler.clone(), config(), None, CancellationToken::new());
        let task = tokio::spawn(async move { session.run(server).await.map(|_| ()) });
        let (read, mut write) = tokio::io::split(client);
        write.write_all(input).await.unwrap();
        let mut lines = Vec::new();
        let mut reader = BufReader::new(read);
        let mut line = String::new();
        while reader.read_line(&mut line).await.unwrap() > 0 {
            lines.push(line.trim_end().to_owned());
            line.clear();
        }
        task.await.unwrap().unwrap();
        (lines, handler)
    }

    fn codes(lines: &[String]) -> Vec<&str> {
        lines.iter().filter(|l| l.as_bytes().get(3) == Some(&b' ')).map(|l| &l[..3]).collect()
    }

    #[tokio::test]
    async fn a_pipelined_transaction_is_answered_in_order_and_unstuffed() {
        let (lines, handler) = converse(
            b"EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<nobody@else.test>\r\nRCPT TO:<box@here.test>\r\n\
              DATA\r\nSubject: hi\r\n\r\n..dot\r\nbare\nlf\r\n.\r\nQUIT\r\n",
        )
        .await;
        assert_eq!(codes(&lines), ["220", "250", "250", "550", "250", "354", "250", "221"], "{lines:?}");
        assert!(lines.iter().any(|l| l == "250-SIZE 1000"));
        let delivered = handler.delivered.lock().unwrap();
        assert_eq!(delivered[0].0, ["box@here.test"]);
        assert_eq!(delivered[0].1, b"Subject: hi\r\n\r\n.dot\r\nbare\nlf\r\n");
    }

    #[tokio::test]
    async fn limits_have_their_reply_codes() {
        let big = "x".repeat(1200);
        let input = format!(
            "HELO c\r\nMAIL FROM:<a@x.test> SIZE=5000\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<1@here.test>\r\n\
             RCPT TO:<2@here.test>\r\nRCPT TO:<3@here.test>\r\nNOOP {big}\r\nDATA\r\n{big}\r\n.\r\nRSET\r\nQUIT\r\n"
        );
        let (lines, handler) = converse(input.as_bytes()).await;
        assert_eq!(codes(&lines), ["220", "250", "552", "250", "250", "250", "452", "500", "354", "552", "250", "221"]);
        assert!(handler.delivered.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_stalled_data_transfer_times_out_with_421_and_stores_nothing() {
        let handler = Arc::new(Memory::default());
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut cfg = config();
        cfg.data_timeout = Duration::from_millis(200);
        let mut session = Session::new(handler.clone(), cfg, None, CancellationToken::new());
        let task = tokio::spawn(async move { session.run(server).await.map(|_| ()) });
        let (read, mut write) = tokio::io::split(client);
        write
            .write_all(b"HELO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@here.test>\r\nDATA\r\nSubject: half")
            .await
            .unwrap();
        let mut reader = BufReader::new(read);
        let mut lines = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line).await.unwrap() > 0 {
            lines.push(line.trim_end().to_owned());
            line.clear();
        }
        task.await.unwrap().unwrap();
        assert_eq!(codes(&lines), ["220", "250", "250", "250", "354", "421"], "{lines:?}");
        assert!(lines.last().unwrap().contains("4.4.2"));
        assert!(handler.delivered.lock().unwrap().is_empty());
        drop(write);
    }

    /// Drips `prefix` at once, then `drip` one byte every 25 ms, and reads every reply
    /// until the server closes. Returns the replies and how many dripped bytes the
    /// server took before it hung up.
    async fn drip(cfg: SessionConfig, prefix: &[u8], drip: Vec<u8>) -> (Vec<String>, usize, Arc<Memory>) {
        let handler = Arc::new(Memory::default());
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut session = Session::new(handler.clone(), cfg, None, CancellationToken::new());
        let task = tokio::spawn(async move { session.run(server).await.map(|_| ()) });
        let (read, mut write) = tokio::io::split(client);
        write.write_all(prefix).await.unwrap();
        let writer = tokio::spawn(async move {
            for (sent, byte) in drip.iter().enumerate() {
                if write.write_all(&[*byte]).await.is_err() {
                    return sent;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            // Everything went in: keep the connection open, as a slow client would.
            std::future::pending::<usize>().await
        });
        let mut reader = BufReader::new(read);
        let mut lines = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line).await.unwrap() > 0 {
            lines.push(line.trim_end().to_owned());
            line.clear();
        }
        task.await.unwrap().unwrap();
        // The server is gone: the next dripped byte fails, unless all were sent.
        let sent = tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("the server hung up only after the whole drip had gone in")
            .unwrap();
        (lines, sent, handler)
    }

    #[tokio::test]
    async fn a_command_dripped_byte_by_byte_is_cut_off_at_its_deadline() {
        let mut cfg = config();
        // Every byte comes well within this, but the whole line takes 5 s.
        cfg.command_timeout = Duration::from_millis(300);
        let line = format!("NOOP {}\r\n", "x".repeat(200)).into_bytes();
        let len = line.len();
        let (lines, sent, _) = drip(cfg, b"", line).await;
        assert_eq!(codes(&lines), ["220", "421"], "{lines:?}");
        assert!(lines.last().unwrap().contains("4.4.2"), "{lines:?}");
        assert!(sent < len, "the server waited for the whole dripped line");
    }

    #[tokio::test]
    async fn a_message_dripped_byte_by_byte_is_cut_off_at_its_deadline() {
        let mut cfg = config();
        cfg.data_timeout = Duration::from_millis(300);
        let body = format!("Subject: slow\r\n\r\n{}\r\n.\r\n", "y".repeat(200)).into_bytes();
        let len = body.len();
        let (lines, sent, handler) =
            drip(cfg, b"HELO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@here.test>\r\nDATA\r\n", body).await;
        assert_eq!(codes(&lines), ["220", "250", "250", "250", "354", "421"], "{lines:?}");
        assert!(sent < len, "the server waited for the whole dripped message");
        assert!(handler.delivered.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn commands_out_of_order_are_refused() {
        let (lines, _) = converse(
            b"MAIL FROM:<a@x.test>\r\nHELO c\r\nRCPT TO:<b@here.test>\r\nDATA\r\nSTARTTLS\r\nBOGUS\r\nQUIT\r\n",
        )
        .await;
        assert_eq!(codes(&lines), ["220", "503", "250", "503", "503", "454", "500", "221"]);
    }
}
