//! A domain name as a team may add it: a valid DNS name (IDNs accepted in Unicode or as
//! punycode, kept as ASCII), not a public suffix, and not one the operator receives for.

use crate::error::{Error, Result};

/// The name in ASCII, lower case, without a trailing dot; refusals name `name`.
pub fn check(raw: &str, operator_domains: &[String]) -> Result<String> {
    let trimmed = raw.trim();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    let shown = crate::validate::truncate(trimmed, 80);
    let invalid = || Error::invalid("name", format!("`{shown}` is not a domain name"));
    if trimmed.is_empty() || trimmed.len() > 1024 || trimmed.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid());
    }
    // UTS 46 with the STD3 rules (letters, digits, hyphens) and DNS lengths; punycode
    // labels are decoded and checked, so `xn--` garbage is refused too.
    let ascii = idna::domain_to_ascii_strict(trimmed).map_err(|_| invalid())?;
    let labels: Vec<&str> = ascii.split('.').collect();
    let well_formed = ascii.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        // A top-level label is never all digits (that is an IPv4 address).
        && labels.last().is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return Err(invalid());
    }
    if psl::domain_str(&ascii).is_none() {
        return Err(Error::invalid(
            "name",
            format!("`{ascii}` is a public suffix (anyone can register names under it); add a domain under it"),
        ));
    }
    if let Some(op) = operator_domains.iter().find(|d| ascii == **d || ascii.ends_with(&format!(".{d}"))) {
        return Err(Error::invalid(
            "name",
            format!("`{ascii}` is under `{op}`, which this instance itself receives for"),
        ));
    }
    Ok(ascii)
}

/// The Unicode form of an ASCII name, for people (the name itself when it has no IDN label).
pub fn unicode(ascii: &str) -> String {
    let (u, ok) = idna::domain_to_unicode(ascii);
    if ok.is_ok() { u } else { ascii.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<String> {
        vec!["localhost".into(), "mail.test".into()]
    }

    #[test]
    fn names_are_ascii_lower_case_and_idns_read_both_ways() {
        assert_eq!(check(" Example.COM. ", &ops()).unwrap(), "example.com");
        assert_eq!(check("bücher.example", &ops()).unwrap(), "xn--bcher-kva.example");
        assert_eq!(check("xn--bcher-kva.example", &ops()).unwrap(), "xn--bcher-kva.example");
        assert_eq!(check("BÜCHER.example", &ops()).unwrap(), "xn--bcher-kva.example");
        assert_eq!(unicode("xn--bcher-kva.example"), "bücher.example");
        assert_eq!(check("mail.acme.co.uk", &ops()).unwrap(), "mail.acme.co.uk");
    }

    #[test]
    fn bad_names_public_suffixes_and_operator_domains_are_refused_naming_name() {
        for bad in [
            "",
            ".",
            "com",
            "co.uk",
            "github.io",
            "exa mple.com",
            "-lead.example.com",
            "trail-.example.com",
            "under_score.example.com",
            "a..b.com",
            "1.2.3.4",
            "xn--zz.example",
            "localhost",
            "mail.test",
            "in.mail.test",
            "a@b.com",
            "http://example.com",
            &format!("{}.com", "a".repeat(64)),
            &format!("{}com", "abcdefghi.".repeat(26)),
        ] {
            let err = check(bad, &ops()).unwrap_err();
            assert_eq!(err.param(), Some("name"), "{bad}: {err}");
        }
        assert!(check("github.io", &ops()).unwrap_err().to_string().contains("public suffix"));
        assert!(check("mail.test", &ops()).unwrap_err().to_string().contains("receives"));
        // A name that only ends like an operator domain is another name.
        assert_eq!(check("evilmail.test", &ops()).unwrap(), "evilmail.test");
    }
}
