//! The SMTP session's view of the mail system: recipients are mailboxes, delivery is
//! the inbound pipeline, and the pipeline's outcome becomes the end-of-DATA reply.

use crate::Core;
use crate::store::mailboxes::MailboxRow;
use sendmux_smtp::session::{Envelope, Handler, Reply};

use super::{Incoming, Outcome, Recipient, Source};

pub struct SmtpHandler {
    pub state: std::sync::Arc<Core>,
}

impl Handler for SmtpHandler {
    type Recipient = Recipient;

    async fn recipient(&self, address: &str) -> Result<Option<Recipient>, Reply> {
        let address = address.trim().to_lowercase();
        // On one node (SQLite) a known mailbox is answered from memory; any change to
        // its team, or to any team while it loads, sends the next lookup to the store.
        let key = format!("rcpt:{address}");
        let now = crate::store::now_ms();
        let cache = &self.state.cache;
        if let Some(mailbox) = cache.get_shared::<MailboxRow>(&key, now) {
            return Ok(Some(mailbox.into()));
        }
        let epoch = cache.epoch();
        let found = async {
            let mut conn = self.state.store.pool().acquire().await?;
            crate::store::inbound::mailbox_by_address(&mut conn, &address).await
        }
        .await;
        match found {
            Ok(m) => {
                if let Some(mailbox) = &m {
                    cache.put_shared(&key, &mailbox.team_id, epoch, now, mailbox.clone());
                }
                Ok(m.map(Recipient::from))
            }
            Err(e) => {
                tracing::error!(error = %e, "recipient lookup failed");
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
