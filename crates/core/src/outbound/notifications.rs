//! SES bounce, complaint and delivery notifications, posted by SNS (HTTPS subscription)
//! to a provider's notification path, or bare. The path carries a token derived from the
//! instance key, so only its holders can make one; a wrong token is a provider that does
//! not exist.
//!
//! The rules: a permanent bounce suppresses each bounced address and marks the message
//! `bounced` (event `message.bounced`); a complaint suppresses each complaining address;
//! a delivery marks a `sent` message `delivered` (event `message.delivered`). Transient
//! bounces and other notification types change nothing. SNS subscription and
//! unsubscription confirmations are logged for the operator to act on. A body that is
//! not an SNS message or an SES notification is refused.
//!
//! The list changed is the provider's team's, or, for the managed route (whose provider
//! belongs to no team), the team of the message the notification names.

use serde_json::{Map, Value, json};

use crate::Core;
use crate::crypto::secure_eq;
use crate::error::{Error, Result};
use crate::ids::{ProviderId, TeamId};
use crate::outbound::providers::MANAGED;
use crate::outbound::worker::event_data;
use crate::store::events::{self, Subject};
use crate::store::outbound::{self as q, MessageRow};
use crate::store::{TeamScope, now_ms, providers};

/// The longest address taken from a notification; anything longer is not an address.
const MAX_ADDRESS: usize = 254;

/// What a notification body says.
#[derive(Debug, PartialEq)]
pub enum Notification {
    /// SNS asks the operator to confirm the subscription (or says it ended) at this URL.
    Subscription { kind: String, url: Option<String> },
    /// An SES notification about the message SES knows as `ses_message_id`.
    Ses { ses_message_id: Option<String>, event: SesEvent },
}

/// The part of an SES notification that changes something.
#[derive(Debug, PartialEq)]
pub enum SesEvent {
    /// A permanent bounce of these recipients (lower-case).
    PermanentBounce(Vec<String>),
    /// These recipients (lower-case) complained.
    Complaint(Vec<String>),
    /// Delivered to these recipients (lower-case).
    Delivery(Vec<String>),
    /// A transient bounce, or a type Sendmux does not act on.
    Ignored,
}

/// What receiving a notification did.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A subscription message, logged.
    Subscription,
    /// An SES notification; `matched` says whether it named a message Sendmux sent.
    Ses { matched: bool },
}

/// The token of a provider's notification path.
pub fn token(core: &Core, provider_id: &str) -> String {
    core.secrets.derive_token(&format!("ses-notifications:{provider_id}"))
}

/// The path SES (through an SNS HTTPS subscription) posts a provider's notifications to.
pub fn path(core: &Core, provider_id: &str) -> String {
    format!("/api/v1/providers/{provider_id}/notifications?token={}", token(core, provider_id))
}

/// Reads a notification body: an SNS envelope (its `Message` the SES notification as a
/// JSON string) or a bare SES notification. Never panics; what is not JSON objects is
/// refused.
pub fn parse(body: &[u8]) -> Result<Notification> {
    let envelope: Value = serde_json::from_slice(body).map_err(|_| Error::malformed("The notification is not JSON"))?;
    let Value::Object(envelope) = envelope else {
        return Err(Error::malformed("The notification is not a JSON object"));
    };
    if let Some(kind @ ("SubscriptionConfirmation" | "UnsubscribeConfirmation")) =
        envelope.get("Type").and_then(Value::as_str)
    {
        let url = envelope.get("SubscribeURL").and_then(Value::as_str).map(str::to_owned);
        return Ok(Notification::Subscription { kind: kind.to_owned(), url });
    }
    let note = match envelope.get("Message") {
        None => envelope,
        Some(Value::String(m)) => match serde_json::from_str(m) {
            Ok(Value::Object(note)) => note,
            Ok(_) => return Err(Error::malformed("Message is not a JSON object")),
            Err(_) => return Err(Error::malformed("Message is not JSON")),
        },
        Some(_) => return Err(Error::malformed("Message is not a JSON string")),
    };
    Ok(Notification::Ses { ses_message_id: ses_message_id(&note), event: ses_event(&note) })
}

fn ses_message_id(note: &Map<String, Value>) -> Option<String> {
    let id = note.get("mail")?.get("messageId")?.as_str()?.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// `notificationType` (SES notifications) or `eventType` (SES event publishing).
fn ses_event(note: &Map<String, Value>) -> SesEvent {
    let field = |name: &str| note.get(name).unwrap_or(&Value::Null);
    let kind = field("notificationType").as_str().or_else(|| field("eventType").as_str()).unwrap_or("");
    match kind {
        "Bounce" if field("bounce")["bounceType"] == "Permanent" => {
            SesEvent::PermanentBounce(addresses(&field("bounce")["bouncedRecipients"]))
        }
        "Complaint" => SesEvent::Complaint(addresses(&field("complaint")["complainedRecipients"])),
        "Delivery" => SesEvent::Delivery(addresses(&field("delivery")["recipients"])),
        _ => SesEvent::Ignored,
    }
}

/// The addresses of a recipients list: objects with `emailAddress`, or strings;
/// trimmed, lower-cased, without blanks, overlong entries and repeats.
fn addresses(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(a) = r.get("emailAddress").and_then(Value::as_str).or_else(|| r.as_str()) else { continue };
        let a = a.trim().to_ascii_lowercase();
        if !a.is_empty() && a.len() <= MAX_ADDRESS && !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// Receives a notification for `provider_id` (an SES provider's id, or `managed`) under
/// `token`, and applies it in one transaction.
pub async fn receive(core: &Core, provider_id: &str, token: &str, body: &[u8]) -> Result<Received> {
    if !secure_eq(self::token(core, provider_id).as_bytes(), token.as_bytes()) {
        return Err(Error::not_found("provider"));
    }
    let provider_team = if provider_id == MANAGED {
        None
    } else {
        let pid = ProviderId::parse(provider_id).ok_or_else(|| Error::not_found("provider"))?;
        let mut conn = core.store.pool().acquire().await?;
        let team = providers::team_of(&mut conn, pid.as_str()).await?.ok_or_else(|| Error::not_found("provider"))?;
        Some(TeamId::stored(team))
    };
    let (ses_message_id, event) = match parse(body)? {
        Notification::Subscription { kind, url } => {
            tracing::warn!(provider = %provider_id, kind = %kind, subscribe_url = %url.as_deref().unwrap_or(""),
                "SNS subscription message received; open the SubscribeURL to confirm it");
            return Ok(Received::Subscription);
        }
        Notification::Ses { ses_message_id, event } => (ses_message_id, event),
    };
    let mut tx = core.store.begin().await?;
    let message = match (&provider_team, ses_message_id.as_deref()) {
        (Some(team), Some(ses_id)) => q::by_provider_message_id(&mut tx.team(team), ses_id).await?,
        (None, Some(ses_id)) => q::managed_by_provider_message_id(&mut tx, ses_id).await?,
        (_, None) => None,
    };
    let Some(team) = provider_team.or_else(|| message.as_ref().map(|m| TeamId::stored(m.team_id.clone()))) else {
        return Ok(Received::Ses { matched: false });
    };
    apply(&mut tx, &team, message.as_ref(), &event).await?;
    core.commit(tx, team.as_str()).await?;
    Ok(Received::Ses { matched: message.is_some() })
}

/// The rules of the module header, inside the caller's transaction.
async fn apply(tx: &mut crate::store::Tx, team: &TeamId, message: Option<&MessageRow>, event: &SesEvent) -> Result<()> {
    let now = now_ms();
    let mid = message.map(|m| m.id.as_str());
    match event {
        SesEvent::PermanentBounce(addrs) => {
            for a in addrs {
                q::suppress(&mut tx.team(team), a, "hard_bounce", mid, "SES permanent bounce", now).await?;
            }
            if let Some(m) = message {
                q::set_status(&mut tx.team(team), &m.id, "bounced", now).await?;
                let bounced: Vec<Value> =
                    addrs.iter().map(|a| json!({"address": a, "response": "SES permanent bounce"})).collect();
                let data = event_data(m, json!({"bounced": bounced, "provider_id": m.provider_id}));
                events::append(&mut *tx, team.as_str(), "message.bounced", subject(m), data).await?;
            }
        }
        SesEvent::Complaint(addrs) => {
            for a in addrs {
                q::suppress(&mut tx.team(team), a, "complaint", mid, "SES complaint", now).await?;
            }
        }
        SesEvent::Delivery(recipients) => {
            if let Some(m) = message
                && m.status == "sent"
            {
                q::set_status(&mut tx.team(team), &m.id, "delivered", now).await?;
                let data = event_data(m, json!({"provider_id": m.provider_id, "recipients": recipients}));
                events::append(&mut *tx, team.as_str(), "message.delivered", subject(m), data).await?;
            }
        }
        SesEvent::Ignored => {}
    }
    Ok(())
}

fn subject(m: &MessageRow) -> Subject<'_> {
    Subject { delivery_group_id: Some(&m.delivery_group_id), message_id: Some(&m.id), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SNS envelope around `message`, as SNS posts it.
    fn sns(message: &Value) -> Vec<u8> {
        json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-notifications",
            "Message": message.to_string(),
            "Timestamp": "2026-01-01T00:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-example.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
        })
        .to_string()
        .into_bytes()
    }

    fn bounce(bounce_type: &str) -> Value {
        json!({
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": bounce_type,
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {"emailAddress": " Gone@Example.org ", "action": "failed", "status": "5.1.1",
                     "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
                    {"emailAddress": "gone@example.org"},
                    {"emailAddress": ""},
                    {"status": "5.1.1"}
                ],
                "timestamp": "2026-01-01T00:00:00.000Z",
                "feedbackId": "0100017c-example"
            },
            "mail": {
                "timestamp": "2026-01-01T00:00:00.000Z",
                "source": "a@example.com",
                "messageId": "0100017c-ses-id",
                "destination": ["gone@example.org", "kept@example.org"]
            }
        })
    }

    #[test]
    fn a_permanent_bounce_in_an_sns_envelope_names_its_recipients_once() {
        let got = parse(&sns(&bounce("Permanent"))).unwrap();
        assert_eq!(
            got,
            Notification::Ses {
                ses_message_id: Some("0100017c-ses-id".into()),
                event: SesEvent::PermanentBounce(vec!["gone@example.org".into()]),
            }
        );
        // A transient bounce changes nothing, but still names its message.
        let got = parse(&sns(&bounce("Transient"))).unwrap();
        assert_eq!(got, Notification::Ses { ses_message_id: Some("0100017c-ses-id".into()), event: SesEvent::Ignored });
    }

    #[test]
    fn complaints_and_deliveries_are_read_bare_or_enveloped() {
        let complaint = json!({
            "notificationType": "Complaint",
            "complaint": {"complainedRecipients": [{"emailAddress": "Angry@Example.org"}],
                "complaintFeedbackType": "abuse", "feedbackId": "x"},
            "mail": {"messageId": "ses-2"}
        });
        let want = Notification::Ses {
            ses_message_id: Some("ses-2".into()),
            event: SesEvent::Complaint(vec!["angry@example.org".into()]),
        };
        assert_eq!(parse(&sns(&complaint)).unwrap(), want);
        assert_eq!(parse(complaint.to_string().as_bytes()).unwrap(), want);
        // SES event publishing names the type `eventType`; delivery recipients are strings.
        let delivery = json!({"eventType": "Delivery", "mail": {"messageId": "ses-3"},
            "delivery": {"recipients": ["Reader@Example.org"], "smtpResponse": "250 ok"}});
        assert_eq!(
            parse(&sns(&delivery)).unwrap(),
            Notification::Ses {
                ses_message_id: Some("ses-3".into()),
                event: SesEvent::Delivery(vec!["reader@example.org".into()])
            }
        );
    }

    #[test]
    fn subscription_confirmations_are_for_the_operator() {
        let body = json!({
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37f",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-notifications",
            "Message": "You have chosen to subscribe to the topic arn:aws:sns:us-east-1:123456789012:ses-notifications.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
            "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37f",
            "Timestamp": "2026-01-01T00:00:00.000Z"
        });
        assert_eq!(
            parse(body.to_string().as_bytes()).unwrap(),
            Notification::Subscription {
                kind: "SubscriptionConfirmation".into(),
                url: Some("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37f".into()),
            }
        );
        // Its Message is prose, and so is an unsubscription's: neither is refused.
        let body = json!({"Type": "UnsubscribeConfirmation", "Message": "You have unsubscribed."});
        assert!(matches!(parse(body.to_string().as_bytes()).unwrap(), Notification::Subscription { url: None, .. }));
    }

    #[test]
    fn malformed_bodies_are_refused_without_panicking() {
        for body in [
            &b""[..],
            b"not json",
            b"{\"Type\": \"Notification\", \"Message\": ",
            b"[]",
            b"\"a string\"",
            b"42",
            b"null",
            b"{\"Type\": \"Notification\", \"Message\": \"not json\"}",
            b"{\"Type\": \"Notification\", \"Message\": \"[1, 2]\"}",
            b"{\"Type\": \"Notification\", \"Message\": {\"notificationType\": \"Bounce\"}}",
            b"\xff\xfe{}",
        ] {
            let err = parse(body).unwrap_err();
            assert!(matches!(err, Error::Malformed(_)), "{:?}: {err:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn odd_shapes_inside_a_notification_change_nothing() {
        for note in [
            json!({}),
            json!({"notificationType": 7, "mail": "x"}),
            json!({"notificationType": "Bounce", "bounce": "Permanent"}),
            json!({"notificationType": "Bounce", "bounce": {"bounceType": "Permanent", "bouncedRecipients": "a@b.c"}}),
            json!({"notificationType": "Teleport", "mail": {"messageId": ""}}),
        ] {
            match parse(&sns(&note)).unwrap() {
                Notification::Ses { ses_message_id: None, event: SesEvent::Ignored | SesEvent::PermanentBounce(_) } => {
                }
                other => panic!("{note}: {other:?}"),
            }
        }
        // Recipients that are neither strings nor objects with an address are skipped,
        // and an overlong one is not an address.
        let note = json!({"notificationType": "Complaint", "mail": {"messageId": "m"},
            "complaint": {"complainedRecipients": [1, null, [], {"emailAddress": 5}, "x".repeat(300), "ok@example.org"]}});
        assert_eq!(
            parse(&sns(&note)).unwrap(),
            Notification::Ses {
                ses_message_id: Some("m".into()),
                event: SesEvent::Complaint(vec!["ok@example.org".into()])
            }
        );
        // A deep nesting is refused by the JSON reader, not by a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
