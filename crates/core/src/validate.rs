//! Field parsers shared by handlers: each returns the clean value or a 422 naming the
//! field.

use std::str::FromStr;

use crate::error::Error;

/// An email address (RFC 5322 addr-spec), lower-cased for comparison and storage.
pub fn email(param: &str, raw: &str) -> Result<String, Error> {
    let raw = raw.trim();
    if raw.len() > 254 {
        return Err(Error::invalid(param, "The email address is longer than 254 characters"));
    }
    let parsed = email_address::EmailAddress::from_str(raw)
        .map_err(|_| Error::invalid(param, format!("`{}` is not a valid email address", truncate(raw, 80))))?;
    // Display names, comments and address literals are not accepted here.
    let domain = parsed.domain();
    let ok = parsed.email() == raw
        && !domain.starts_with('[')
        && (domain.contains('.') || domain.eq_ignore_ascii_case("localhost"));
    if !ok {
        return Err(Error::invalid(param, format!("`{}` is not a valid email address", truncate(raw, 80))));
    }
    Ok(raw.to_ascii_lowercase())
}

/// A display name: trimmed, 1..=max characters, no control characters.
pub fn name(param: &str, raw: &str, max: usize) -> Result<String, Error> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.chars().count() > max {
        return Err(Error::invalid(param, format!("{param} must be 1 to {max} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Error::invalid(param, format!("{param} must not contain control characters")));
    }
    Ok(trimmed.to_owned())
}

pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// An RFC 3339 timestamp as Unix milliseconds.
pub fn timestamp(param: &str, raw: &str) -> Result<i64, Error> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.timestamp_millis())
        .map_err(|_| Error::invalid(param, "Expected an RFC 3339 timestamp such as 2026-11-24T23:55:00Z"))
}

/// The `param` of a refused field: serde_path_to_error's path, which already ends in an
/// unknown field's name; for a missing field, the path of the object it is missing from
/// and serde's "missing field `x`" name.
pub fn field_param(path: &str, msg: &str) -> String {
    let named = |prefix: &str| msg.strip_prefix(prefix).and_then(|r| r.split('`').next());
    match (named("unknown field `"), named("missing field `")) {
        (Some(field), _) if path == "." => field.to_owned(),
        (_, Some(field)) if path == "." => field.to_owned(),
        (_, Some(field)) => format!("{path}.{field}"),
        _ => path.to_owned(),
    }
}

/// A JSON value read as `T`; a refusal names the field under `prefix` (`config.port`).
pub fn json_at<T: serde::de::DeserializeOwned>(prefix: &str, value: serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        let param = match field_param(&path, &msg) {
            p if p == "." => prefix.to_owned(),
            p => format!("{prefix}.{p}"),
        };
        Error::invalid(param, msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_parsed_not_guessed() {
        assert_eq!(email("e", " Alice@Example.COM ").unwrap(), "alice@example.com");
        assert_eq!(email("e", "bot@localhost").unwrap(), "bot@localhost");
        for bad in ["", "nope", "a@", "@b.com", "Alice <a@b.com>", "a b@c.com", "a@@b.com"] {
            let e = email("email", bad).unwrap_err();
            assert_eq!(e.param(), Some("email"), "{bad}");
        }
    }
}
