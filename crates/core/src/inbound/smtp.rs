//! The SMTP session's view of the mail system: recipients are mailboxes, delivery is
//! the inbound pipeline, and the pipeline's outcome becomes the end-of-DATA reply.

use crate::Core;
use sendmux_smtp::session::{Envelope, Handler, Reply};

use super::{Incoming, Outcome, Recipient, Source};

pub struct SmtpHandler {
    pub state: std::sync::Arc<Core>,
}

impl Handler for SmtpHandler {
    type Recipient = Recipient;

    async fn recipient(&self, address: &str) -> Result<Option<Recipient>, Reply> {
        let address = address.trim().to_lowercase();
        // On one node (SQLite) a known recipient is answered from memory; any change to
        // its team (a mailbox, a domain's status), or to any team while it loads, sends
        // the next lookup to the store.
        let key = format!("rcpt:{address}");
        let now = crate::store::now_ms();
        let cache = &self.state.cache;
        if let Some(recipient) = cache.get_shared::<Recipient>(&key, now) {
            return Ok(Some(recipient));
        }
        let epoch = cache.epoch();
        match super::route::resolve(&self.state, &address).await {
            Ok(found) => {
                if let Some(recipient) = &found {
                    cache.put_shared(&key, &recipient.team_id, epoch, now, recipient.clone());
                }
                Ok(found)
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "recipient lookup failed");
                Err(Reply::new(451, "4.3.0 Temporary failure looking up the recipient, try again later"))
            }
        }
    }

    async fn deliver(&self, envelope: Envelope<Recipient>, raw: Vec<u8>) -> Reply {
        let started = std::time::Instant::now();
        let incoming = Incoming {
            raw,
            source: Source::Smtp,
            remote_ip: envelope.remote_ip,
            helo: envelope.helo,
            mail_from: envelope.mail_from,
            recipients: envelope.recipients,
        };
        let reply = match super::receive(&self.state, incoming).await {
            Ok(Outcome::Stored(rows)) => {
                let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
                Reply::new(250, format!("2.0.0 Stored as {}", ids.join(",")))
            }
            Ok(Outcome::RefusedAsSpam { score }) => {
                Reply::new(550, format!("5.7.1 Message refused as spam (score {score})"))
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "storing an inbound message failed");
                Reply::new(451, "4.3.0 Temporary failure storing the message, try again later")
            }
        };
        metrics::histogram!("sendmux_smtp_data_to_reply_seconds").record(started.elapsed().as_secs_f64());
        reply
    }
}
