//! Prefixed ULID identifiers (`team_01J…`). An id is built only by `new` or `parse`, so
//! a value of one of these types always has the right prefix and a valid ULID.

/// ULIDs that increase within this process even inside one millisecond, so lists
/// ordered by id are in creation order.
fn next_ulid() -> ulid::Ulid {
    static GENERATOR: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
}

macro_rules! prefixed_id {
    ($($name:ident => $prefix:literal),* $(,)?) => {$(
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(format!("{}{}", $prefix, next_ulid()))
            }

            /// Accepts the canonical form; the ULID part is case-insensitive.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                if rest.len() != 26 {
                    return None;
                }
                let u = ulid::Ulid::from_string(rest).ok()?;
                Some(Self(format!("{}{}", $prefix, u)))
            }

            /// An id read back from the store, which holds only ids made by `new`.
            pub fn stored(s: String) -> Self {
                debug_assert!(s.starts_with($prefix), "stored {} id {s}", $prefix);
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!("expected an id starting with {}", $prefix))
                })
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .examples([format!("{}01J1M9C3K8ZQ4W8N5T2V7X6Y3B", $prefix)])
                    .into()
            }
        }
        impl utoipa::ToSchema for $name {}
    )*};
}

prefixed_id! {
    TeamId => "team_",
    UserId => "usr_",
    KeyId => "key_",
    ProviderId => "prv_",
    DeliveryGroupId => "dgr_",
    MailboxId => "mbx_",
    MessageId => "msg_",
    EventId => "evt_",
    WebhookId => "whk_",
    DeliveryId => "dlv_",
    IncreaseRequestId => "req_",
    // An HTTP request's id (`X-Request-Id`, `request_id` in error bodies).
    RequestId => "req_",
    AuditId => "aud_",
    AttemptId => "att_",
    InvitationId => "inv_",
    SessionId => "ses_",
    WebhookSecretId => "whs_",
    DomainId => "dom_",
    ThreadId => "thr_",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_in_one_process_increase() {
        let ids: Vec<EventId> = (0..1000).map(|_| EventId::new()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn ids_parse_only_with_their_prefix() {
        let id = TeamId::new();
        assert!(id.as_str().starts_with("team_") && id.as_str().len() == 31);
        assert_eq!(TeamId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(TeamId::parse(&id.as_str().to_lowercase()), Some(id.clone()));
        assert!(KeyId::parse(id.as_str()).is_none());
        assert!(TeamId::parse("team_").is_none());
        assert!(TeamId::parse("team_not-a-ulid-at-all-000000").is_none());
        assert!(TeamId::parse("team_01J1M9C3K8ZQ4W8N5T2V7X6Y3BX").is_none());
    }
}
