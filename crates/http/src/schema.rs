//! What request fields the OpenAPI document states beyond their Rust type (issue #13):
//! schema-only types a field names with `#[schema(value_type = …)]`, each saying exactly
//! what the server's check accepts, and the integer reader request structs use.
//!
//! A schema here must match its check both ways: schemathesis sends what the schema
//! allows and expects it accepted, and sends what it forbids (one past a bound, a value
//! outside a pattern) and expects it refused.

use serde::Deserialize;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// Characters Rust's `str::trim` removes (Unicode `White_Space`), as a regex class body.
const TRIMMED: &str = r"\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// Control characters (`char::is_control`, Unicode `Cc`).
const CONTROL: &str = r"\x00-\x1F\x7F-\x9F";

/// The pattern of [`sendmux_core::validate::name`] with `max`: after trimming, 1..=max
/// characters, none of them a control character. Whitespace around the text is allowed
/// (it is trimmed off); the text starts and ends with a character that is neither
/// whitespace nor a control character.
pub fn trimmed_text_pattern(max: usize) -> String {
    assert!(max >= 2);
    // Neither trimmed nor a control character: the first and last characters of the text.
    let edge = r"[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";
    format!("^[{TRIMMED}]*{edge}(?:[^{CONTROL}]{{0,{}}}{edge})?[{TRIMMED}]*$", max - 2)
}

fn trimmed_text(max: usize, what: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(trimmed_text_pattern(max)))
        .description(Some(format!(
            "{what}: 1 to {max} characters after trimming surrounding whitespace, without control characters."
        )))
        .into()
}

pub mod send;

macro_rules! doc_type {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        pub struct $name;
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }
        impl ToSchema for $name {}
    };
}

doc_type!(
    /// A display name (teams, keys, providers, delivery groups, mailboxes).
    Name => trimmed_text(100, "A name")
);
doc_type!(
    /// Why a team asks for a higher limit.
    Reason => trimmed_text(1000, "The reason")
);
doc_type!(
    /// A webhook endpoint's description.
    Description => trimmed_text(sendmux_core::webhooks::manage::MAX_DESCRIPTION, "A description")
);
doc_type!(
    /// A plain email address ([`sendmux_core::validate::email`]).
    Email => ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
        .max_length(Some(254))
        .description(Some(
            "A plain address (`addr@example.com`: no display name, no address literal), at most 254 characters."
        ))
        .into()
);
doc_type!(
    /// A domain name a team adds ([`sendmux_core::domains::name::check`]): letters,
    /// digits and hyphens in dot-separated labels, or the same in Unicode.
    DomainName => ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(253))
        .description(Some(
            "A domain name such as `example.com` or `bücher.example` (kept as punycode): not a public suffix, not one of the instance's inbound domains."
        ))
        .into()
);
doc_type!(
    /// A new password ([`sendmux_core::auth::password::validate`]).
    Password => ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(10))
        .max_length(Some(256))
        .description(Some("10 to 256 characters."))
        .into()
);

doc_type!(
    /// A permission an API key may carry (which ones depend on the key's `kind`).
    KeyPermission => ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(sendmux_core::auth::perms::Perm::KEY_PERMISSIONS.map(|p| p.name())))
        .into()
);
doc_type!(
    /// An event type (API.md §7).
    EventType => ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(sendmux_core::events::EVENT_TYPES))
        .into()
);
doc_type!(
    /// A webhook endpoint ([`sendmux_core::webhooks::manage::check_url`]).
    WebhookUrl => ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(sendmux_core::webhooks::manage::MAX_URL_LEN))
        .pattern(Some(concat!(
            r"^https?://(?:[A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*",
            r"(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
            r"(?:[/?#][!-~]*)?$"
        )))
        .description(Some("An absolute http or https URL without credentials."))
        .into()
);

/// A provider's `config`: [`SmtpConfig`](crate::providers::SmtpConfig) when `type` is
/// `smtp`, [`SesConfig`](crate::providers::SesConfig) when it is `ses`.
pub fn provider_config() -> RefOr<Schema> {
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(utoipa::openapi::Ref::from_schema_name("SmtpConfig"))
        .item(utoipa::openapi::Ref::from_schema_name("SesConfig"))
        .description(Some("SmtpConfig when `type` is smtp, SesConfig when it is ses."))
        .into()
}

/// A provider's `config` in a change: any of the fields of its type's config.
pub fn provider_config_patch() -> RefOr<Schema> {
    let partial = |schema: RefOr<Schema>| match schema {
        RefOr::T(Schema::Object(mut o)) => {
            o.required.clear();
            RefOr::T(Schema::Object(o))
        }
        other => other,
    };
    utoipa::openapi::schema::AnyOfBuilder::new()
        .item(partial(crate::providers::SmtpConfig::schema()))
        .item(partial(crate::providers::SesConfig::schema()))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some("Fields of SmtpConfig or SesConfig, by the provider's type; the rest keep their value."))
        .into()
}

/// The roles a member can be given or invited with: ownership moves only by
/// `POST /api/v1/team/transfer`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum AssignableRole {
    Member,
    Developer,
    Admin,
}

/// Reads integers as JSON Schema counts them: `5` and `5.0` alike (schemathesis and
/// some JSON encoders send the latter); `5.5` and values out of the field's range are
/// refused. Use with `#[serde(deserialize_with = …)]`, plus `default` for an `Option`.
pub mod integer {
    use super::*;

    struct Integral;

    impl Visitor<'_> for Integral {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            // 2^63 is exactly representable; every integral f64 below it fits in an i64.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
                Ok(v as i64)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }
    }

    struct Value(i64);

    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Integral).map(Value)
        }
    }

    fn convert<T: TryFrom<i64>, E: de::Error>(v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &"an integer in the field's range"))
    }

    pub fn required<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
        convert(Value::deserialize(d)?.0)
    }

    pub fn optional<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
        Option::<Value>::deserialize(d)?.map(|v| convert(v.0)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sendmux_core::validate;

    #[derive(Deserialize, Debug)]
    struct Probe {
        #[serde(default, deserialize_with = "integer::optional")]
        n: Option<i64>,
        #[serde(default, deserialize_with = "integer::optional")]
        port: Option<u16>,
    }

    fn probe(json: &str) -> Result<Probe, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn integral_floats_are_integers_and_fractions_are_not() {
        assert_eq!(probe(r#"{"n": 5}"#).unwrap().n, Some(5));
        assert_eq!(probe(r#"{"n": 5.0}"#).unwrap().n, Some(5));
        assert_eq!(probe(r#"{"n": -3e2}"#).unwrap().n, Some(-300));
        assert_eq!(probe(r#"{"n": null}"#).unwrap().n, None);
        assert_eq!(probe("{}").unwrap().n, None);
        for bad in [
            r#"{"n": 5.5}"#,
            r#"{"n": "5"}"#,
            r#"{"n": 1e19}"#,
            r#"{"n": 9223372036854775808}"#,
            r#"{"port": 65536}"#,
            r#"{"port": -1.0}"#,
        ] {
            assert!(probe(bad).is_err(), "{bad}");
        }
        assert_eq!(probe(r#"{"port": 65535.0}"#).unwrap().port, Some(65535));
    }

    /// The name pattern accepts exactly what `validate::name` accepts (checked with
    /// Rust's regex engine, whose syntax for these escapes is ECMA-262's and Python's).
    #[test]
    fn the_name_pattern_is_the_name_check() {
        let re = regex::Regex::new(&trimmed_text_pattern(5)).unwrap();
        let samples = [
            "",
            " ",
            "a",
            " a ",
            "abcde",
            "abcdef",
            " abcde\n",
            "\tab c\u{3000}",
            "a\tb",
            "a\u{0}",
            "\u{85}a\u{85}",
            "\u{a0}",
            "é€😀ab",
            "é€😀abc",
            "a\u{feff}",
            "\u{feff}",
            "a\u{200b}b",
            "a\u{7f}",
            "\u{2028}x\u{2029}",
            "x\r\n",
            "ab\u{9f}",
            "  a  b  ",
            "\u{1680}\u{1680}",
        ];
        for s in samples {
            assert_eq!(re.is_match(s), validate::name("n", s, 5).is_ok(), "{s:?}");
        }
    }
}
