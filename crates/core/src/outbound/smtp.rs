//! SMTP relays through `mail-send`: connections (plain, STARTTLS or implicit TLS, with
//! AUTH) kept in a per-provider pool of idle sessions, the envelope sent command by
//! command so every reply is classified (recipient's fault or provider's), and the
//! connection check behind `POST /providers/{id}/test`.

use mail_send::{SmtpClient, SmtpClientBuilder};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::client::TlsStream;

use super::Outcome;
use crate::guard::{Guard, REFUSED, Refusal};

/// Where and how to reach one SMTP relay.
#[derive(Clone, Debug)]
pub struct SmtpTarget {
    /// Pool key: the provider id plus a digest of its settings, so an updated provider
    /// never reuses a session opened with old credentials.
    pub pool_key: String,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<String>,
}

enum Session {
    Plain(SmtpClient<TcpStream>),
    Tls(Box<SmtpClient<TlsStream<TcpStream>>>),
}

type Reply = mail_send::Result<smtp_proto::Response<String>>;

impl Session {
    async fn cmd(&mut self, line: &str) -> Reply {
        match self {
            Session::Plain(c) => c.cmd(line.as_bytes()).await,
            Session::Tls(c) => c.cmd(line.as_bytes()).await,
        }
    }

    /// Sends `DATA`, the dot-stuffed message and its terminator in one write, and
    /// returns the final reply.
    async fn data(&mut self, message: &[u8]) -> Reply {
        use tokio::io::AsyncWriteExt;
        let r = self.cmd("DATA\r\n").await?;
        if r.code != 354 {
            return Ok(r);
        }
        let wire = dot_stuff(message);
        match self {
            Session::Plain(c) => {
                c.stream.write_all(&wire).await.map_err(mail_send::Error::Io)?;
                c.stream.flush().await.map_err(mail_send::Error::Io)?;
                tokio::time::timeout(TIMEOUT, c.read()).await.map_err(|_| mail_send::Error::Timeout)?
            }
            Session::Tls(c) => {
                c.stream.write_all(&wire).await.map_err(mail_send::Error::Io)?;
                c.stream.flush().await.map_err(mail_send::Error::Io)?;
                tokio::time::timeout(TIMEOUT, c.read()).await.map_err(|_| mail_send::Error::Timeout)?
            }
        }
    }

    /// Commands and replies are small and strictly alternate: without `TCP_NODELAY`,
    /// Nagle's algorithm and delayed ACKs hold each exchange for tens of milliseconds.
    fn no_delay(&self) {
        let _ = match self {
            Session::Plain(c) => c.stream.set_nodelay(true),
            Session::Tls(c) => c.stream.get_ref().0.set_nodelay(true),
        };
    }
}

/// The message as sent after `DATA`: CRLF line ends, a dot doubled at the start of a
/// line (RFC 5321 §4.5.2), and the terminating `.` line.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Idle sessions per provider, at most `max_idle` each; sessions idle for more than
/// 30 s are dropped (relays close them around then).
/// At most `max_idle` sessions are also the most open at once per provider: a relay
/// sees a bounded number of connections from each node however many workers run.
/// A provider's entry is forgotten once unused for [`FORGET_AFTER`], and at most
/// [`MAX_TARGETS`] entries are kept (the least recently used idle ones go first), so
/// providers that were deleted, edited or stopped sending leave nothing behind.
pub struct SmtpPool {
    targets: Mutex<Targets>,
    max_idle: usize,
    guard: Arc<Guard>,
}

struct Targets {
    map: HashMap<String, Pooled>,
    pruned: Instant,
}

struct Pooled {
    idle: Vec<(Instant, Session)>,
    permits: Arc<Semaphore>,
    last_used: Instant,
}

const IDLE_FOR: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a provider check may take in all (connect, greeting, TLS, AUTH).
pub const CHECK_FOR: Duration = Duration::from_secs(10);
/// An entry nobody used for this long is removed.
pub const FORGET_AFTER: Duration = Duration::from_secs(300);
/// The most providers a node keeps entries for.
pub const MAX_TARGETS: usize = 1024;
/// How often entries are swept on access.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// A reply line for people: `550 5.1.1 no such user` — the first line only, bounded,
/// so a peer cannot have its own text shown at length.
fn show(r: &smtp_proto::Response<String>) -> String {
    let first = r.message.lines().next().unwrap_or("");
    let msg: String = first.chars().filter(|c| !c.is_control()).take(200).collect();
    if r.esc[0] > 0 {
        format!("{} {}.{}.{} {}", r.code, r.esc[0], r.esc[1], r.esc[2], msg.trim())
    } else {
        format!("{} {}", r.code, msg.trim())
    }
}

/// A connection-level error in words a user can act on.
pub fn explain(e: &mail_send::Error, target: &SmtpTarget) -> String {
    use mail_send::Error as E;
    let at = format!("{}:{}", target.host, target.port);
    match e {
        E::Io(io) if is_refusal(io) => format!("{at}: {REFUSED}"),
        E::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("Connection refused by {at}: nothing listens there, or a firewall refuses it")
        }
        E::Io(io) => format!("Could not talk to {at}: {io}"),
        E::Timeout => format!("{at} did not answer in time"),
        E::Tls(t) => format!("TLS with {at} failed: {t} (check the security setting and the certificate)"),
        E::InvalidTLSName => format!("'{}' cannot be used as a TLS server name", target.host),
        E::MissingStartTls => format!("{at} does not offer STARTTLS; use security `tls` or `none`"),
        E::AuthenticationFailed(r) => format!("{at} refused the username or password: {}", show(r)),
        E::UnsupportedAuthMechanism => {
            format!("{at} offers no authentication method we support (PLAIN, LOGIN, CRAM-MD5) on this connection")
        }
        E::MissingCredentials => "The relay requires a username and password".into(),
        E::Auth(a) => format!("Authentication with {at} failed: {a}"),
        E::UnexpectedReply(r) => format!("{at} answered {}", show(r)),
        other => format!("{at}: {other}"),
    }
}

/// The guard's refusal, carried as an I/O error so it travels like any connect error.
fn refusal_error(r: Refusal) -> mail_send::Error {
    match r {
        Refusal::NotPublic => mail_send::Error::Io(std::io::Error::new(std::io::ErrorKind::PermissionDenied, REFUSED)),
        Refusal::Unresolved => mail_send::Error::Io(std::io::Error::new(std::io::ErrorKind::NotFound, r.to_string())),
    }
}

fn is_refusal(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::PermissionDenied && io.to_string() == REFUSED
}

impl SmtpPool {
    pub fn new(max_idle: usize, guard: Arc<Guard>) -> Self {
        let targets = Targets { map: HashMap::new(), pruned: Instant::now() };
        Self { targets: Mutex::new(targets), max_idle, guard }
    }

    fn semaphore(&self, key: &str) -> Arc<Semaphore> {
        let now = Instant::now();
        let mut targets = self.targets.lock();
        if now.duration_since(targets.pruned) >= PRUNE_EVERY || targets.map.len() >= MAX_TARGETS {
            self.prune_locked(&mut targets, now);
        }
        let max_idle = self.max_idle;
        let entry = targets.map.entry(key.to_owned()).or_insert_with(|| Pooled {
            idle: Vec::new(),
            permits: Arc::new(Semaphore::new(max_idle)),
            last_used: now,
        });
        entry.last_used = now;
        entry.permits.clone()
    }

    /// Drops stale idle sessions and forgets entries unused for [`FORGET_AFTER`]; over
    /// [`MAX_TARGETS`], forgets the least recently used entries nobody is sending
    /// through. `now` is a parameter so tests can look ahead.
    pub fn prune(&self, now: Instant) {
        let mut targets = self.targets.lock();
        self.prune_locked(&mut targets, now);
    }

    fn prune_locked(&self, targets: &mut Targets, now: Instant) {
        targets.pruned = now;
        let max_idle = self.max_idle;
        let in_use = |p: &Pooled| p.permits.available_permits() < max_idle;
        targets.map.retain(|_, p| {
            p.idle.retain(|(since, _)| now.saturating_duration_since(*since) < IDLE_FOR);
            in_use(p) || !p.idle.is_empty() || now.saturating_duration_since(p.last_used) < FORGET_AFTER
        });
        if targets.map.len() >= MAX_TARGETS {
            let mut unused: Vec<(Instant, String)> =
                targets.map.iter().filter(|(_, p)| !in_use(p)).map(|(k, p)| (p.last_used, k.clone())).collect();
            unused.sort();
            let excess = targets.map.len() + 1 - MAX_TARGETS;
            for (_, key) in unused.into_iter().take(excess) {
                targets.map.remove(&key);
            }
        }
    }

    /// How many providers have an entry.
    pub fn targets(&self) -> usize {
        self.targets.lock().map.len()
    }

    fn take(&self, key: &str) -> Option<Session> {
        let mut targets = self.targets.lock();
        let list = &mut targets.map.get_mut(key)?.idle;
        while let Some((since, s)) = list.pop() {
            if since.elapsed() < IDLE_FOR {
                return Some(s);
            }
        }
        None
    }

    fn give_back(&self, key: &str, s: Session) {
        let mut targets = self.targets.lock();
        // An entry forgotten meanwhile is not brought back for one session.
        if let Some(p) = targets.map.get_mut(key)
            && p.idle.len() < self.max_idle
        {
            p.idle.push((Instant::now(), s));
        }
    }

    /// Resolves the relay once through the guard and connects to the checked address
    /// (never to the name again), then greets, upgrades and authenticates.
    async fn connect(&self, target: &SmtpTarget, timeout: Duration) -> mail_send::Result<Session> {
        let addrs = self.guard.resolve(&target.host, target.port).await.map_err(refusal_error)?;
        let mut b = SmtpClientBuilder::new(target.host.clone(), target.port)
            .map_err(|_| mail_send::Error::InvalidTLSName)?
            .timeout(timeout)
            .helo_host("sendmux.localhost")
            .implicit_tls(target.security == Security::Tls);
        if let (Some(u), Some(p)) = (&target.username, &target.password) {
            b = b.credentials((u.clone(), p.clone()));
        }
        let mut last = None;
        for addr in addrs {
            // A socket address, so the client connects to it without a lookup.
            b.addr = addr.to_string();
            let session = match target.security {
                Security::None => b.connect_plain().await.map(Session::Plain),
                Security::Starttls | Security::Tls => b.connect().await.map(|c| Session::Tls(Box::new(c))),
            };
            match session {
                Ok(session) => {
                    session.no_delay();
                    return Ok(session);
                }
                // Another address of the same name may answer.
                Err(mail_send::Error::Io(e)) => last = Some(mail_send::Error::Io(e)),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(mail_send::Error::Timeout))
    }

    /// Opens a session (greeting, EHLO, STARTTLS, AUTH) and closes it: the provider
    /// check, over in [`CHECK_FOR`] at most.
    pub async fn check(&self, target: &SmtpTarget) -> Result<(), String> {
        let connected = tokio::time::timeout(CHECK_FOR, self.connect(target, CHECK_FOR))
            .await
            .unwrap_or(Err(mail_send::Error::Timeout));
        match connected {
            Ok(mut s) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), s.cmd("QUIT\r\n")).await;
                Ok(())
            }
            Err(e) => Err(explain(&e, target)),
        }
    }

    /// Sends `message` from `from` to `rcpts` through `target`.
    #[tracing::instrument(name = "smtp_send", skip_all, fields(provider = %target.pool_key, rcpts = rcpts.len()))]
    pub async fn send(&self, target: &SmtpTarget, from: &str, rcpts: &[String], message: &[u8]) -> Outcome {
        let Ok(_permit) = self.semaphore(&target.pool_key).acquire_owned().await else {
            return Outcome::Transient("shutting down".into());
        };
        // A pooled session may have been closed by the relay; one fresh try follows.
        if let Some(s) = self.take(&target.pool_key) {
            match self.transaction(target, s, from, rcpts, message).await {
                Ok(outcome) => return outcome,
                Err(_stale) => {}
            }
        }
        let s = match self.connect(target, TIMEOUT).await {
            Ok(s) => s,
            Err(e) => {
                let words = explain(&e, target);
                return match e {
                    mail_send::Error::Io(io) if is_refusal(&io) => Outcome::Permanent(words),
                    mail_send::Error::AuthenticationFailed(_)
                    | mail_send::Error::UnsupportedAuthMechanism
                    | mail_send::Error::MissingStartTls
                    | mail_send::Error::InvalidTLSName => Outcome::Permanent(words),
                    mail_send::Error::UnexpectedReply(r) if r.code >= 500 => Outcome::Permanent(words),
                    _ => Outcome::Transient(words),
                };
            }
        };
        match self.transaction(target, s, from, rcpts, message).await {
            Ok(o) => o,
            Err(e) => Outcome::Transient(explain(&e, target)),
        }
    }

    /// One mail transaction on an open session. `Err` means the session broke (I/O);
    /// any SMTP reply is an `Ok` outcome. The session goes back to the pool when it is
    /// still in a clean state.
    async fn transaction(
        &self,
        target: &SmtpTarget,
        mut s: Session,
        from: &str,
        rcpts: &[String],
        message: &[u8],
    ) -> mail_send::Result<Outcome> {
        let r = s.cmd(&format!("MAIL FROM:<{from}>\r\n")).await?;
        if r.code / 100 != 2 {
            let words = format!("MAIL FROM refused: {}", show(&r));
            self.reset(target, s).await;
            return Ok(if r.code >= 500 { Outcome::Permanent(words) } else { Outcome::Transient(words) });
        }
        let mut accepted = 0usize;
        let mut rejected = Vec::new();
        let mut transient = None;
        for rcpt in rcpts {
            let r = s.cmd(&format!("RCPT TO:<{rcpt}>\r\n")).await?;
            match r.code / 100 {
                2 => accepted += 1,
                5 => rejected.push((rcpt.clone(), show(&r))),
                _ => transient = Some(format!("RCPT TO <{rcpt}>: {}", show(&r))),
            }
        }
        if let Some(t) = transient {
            self.reset(target, s).await;
            return Ok(Outcome::Transient(t));
        }
        if accepted == 0 {
            let response = rejected.iter().map(|(a, r)| format!("<{a}>: {r}")).collect::<Vec<_>>().join("; ");
            self.reset(target, s).await;
            return Ok(Outcome::Bounced { response, rejected });
        }
        let r = s.data(message).await?;
        let outcome = match r.code / 100 {
            2 => Outcome::Sent { response: show(&r), provider_message_id: None, rejected },
            4 => Outcome::Transient(format!("after DATA: {}", show(&r))),
            _ => Outcome::Permanent(format!("after DATA: {}", show(&r))),
        };
        if r.code == 421 {
            return Ok(outcome);
        }
        self.give_back(&target.pool_key, s);
        Ok(outcome)
    }

    async fn reset(&self, target: &SmtpTarget, mut s: Session) {
        if let Ok(r) = s.cmd("RSET\r\n").await
            && r.code / 100 == 2
        {
            self.give_back(&target.pool_key, s);
        }
    }
}

/// How an SMTP provider's connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    None,
    #[default]
    Starttls,
    Tls,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_at_line_starts_are_doubled_and_the_message_terminated() {
        assert_eq!(super::dot_stuff(b".a\r\nb.\r\n..c"), b"..a\r\nb.\r\n...c\r\n.\r\n".to_vec());
    }

    #[tokio::test]
    async fn unused_pools_are_forgotten_and_their_number_is_capped() {
        let pool = SmtpPool::new(2, Arc::new(Guard::default()));
        // A parked session over a real loopback connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        drop(pool.semaphore("prv_gone:1"));
        pool.give_back("prv_gone:1", Session::Plain(SmtpClient { stream, timeout: TIMEOUT }));
        let busy = pool.semaphore("prv_busy:1").acquire_owned().await.unwrap();
        assert_eq!(pool.targets(), 2);
        pool.prune(Instant::now());
        assert_eq!(pool.targets(), 2, "recently used entries stay");
        let later = Instant::now() + FORGET_AFTER + Duration::from_secs(1);
        pool.prune(later);
        assert_eq!(pool.targets(), 1, "the unused entry and its idle session are gone; the one in use stays");
        drop(busy);
        pool.prune(later);
        assert_eq!(pool.targets(), 0);
        for i in 0..MAX_TARGETS + 50 {
            drop(pool.semaphore(&format!("prv_{i}:1")));
        }
        assert!(pool.targets() <= MAX_TARGETS, "{} entries", pool.targets());
    }

    #[test]
    fn a_reply_is_shown_by_its_first_line_only() {
        let r = smtp_proto::Response {
            code: 550,
            esc: [5, 1, 1],
            message: format!("no such user\nsecret second line\n{}", "x".repeat(500)),
        };
        assert_eq!(show(&r), "550 5.1.1 no such user");
    }
}
