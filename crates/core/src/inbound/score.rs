//! The spam score: sender-authentication results plus a few content signals, each
//! worth a fixed number of points. The mailbox's `spam_threshold` turns the score into
//! a verdict (`spam` at or above it).

use serde::Serialize;

use super::authenticate::AuthResults;
use super::parse::Summary;

#[derive(Serialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct Signal {
    pub name: &'static str,
    pub points: f64,
}

/// Scores a message; never below 0.
pub fn score(auth: &AuthResults, summary: &Summary, raw: &[u8]) -> (f64, Vec<Signal>) {
    let mut signals = Vec::new();
    let mut add = |name: &'static str, points: f64| signals.push(Signal { name, points });
    match auth.spf.result.as_str() {
        "fail" => add("spf_fail", 3.0),
        "softfail" => add("spf_softfail", 1.5),
        "permerror" => add("spf_permerror", 1.0),
        "pass" => add("spf_pass", -0.5),
        _ => {}
    }
    let dkim_failed = auth.dkim.iter().any(|d| matches!(d.result.as_str(), "fail" | "permerror" | "neutral"));
    let dkim_passed = auth.dkim.iter().any(|d| d.result == "pass");
    if dkim_passed {
        add("dkim_pass", -1.0);
    } else if dkim_failed {
        add("dkim_fail", 3.0);
    }
    match (auth.dmarc.result.as_str(), auth.dmarc.policy.as_str()) {
        ("fail", "reject") => add("dmarc_fail_reject", 4.0),
        ("fail", "quarantine") => add("dmarc_fail_quarantine", 3.0),
        ("fail", _) => add("dmarc_fail", 1.5),
        ("pass", _) => add("dmarc_pass", -1.0),
        _ => {}
    }
    if summary.from_address.is_none() {
        add("no_from", 1.5);
    }
    if summary.message_id.is_none() {
        add("no_message_id", 0.5);
    }
    if !summary.has_date {
        add("no_date", 0.5);
    }
    if summary.has_html && !summary.has_text {
        add("html_only", 0.5);
    }
    if let Some(subject) = &summary.subject {
        let letters: Vec<char> = subject.chars().filter(|c| c.is_alphabetic()).collect();
        if letters.len() >= 8 && letters.iter().all(|c| c.is_uppercase()) {
            add("subject_all_caps", 1.0);
        }
    }
    let text = summary.text_sample.to_lowercase();
    const PHRASES: [&str; 8] = [
        "viagra",
        "you have won",
        "wire transfer",
        "act now",
        "100% free",
        "click here to claim",
        "lottery",
        "bitcoin investment",
    ];
    let hits = PHRASES.iter().filter(|p| text.contains(*p)).count();
    if hits > 0 {
        add("spam_phrases", 2.0 * hits as f64);
    }
    if raw.contains(&0) {
        add("nul_byte", 1.0);
    }
    let total: f64 = signals.iter().map(|s| s.points).sum();
    ((total.max(0.0) * 10.0).round() / 10.0, signals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_authentication_and_spammy_content_add_up() {
        let mut auth = AuthResults::none();
        let summary = Summary {
            from_address: Some("a@x.test".into()),
            message_id: Some("1@x".into()),
            has_date: true,
            has_text: true,
            text_sample: "Hello".into(),
            ..Default::default()
        };
        assert_eq!(score(&auth, &summary, b"x").0, 0.0);
        auth.spf.result = "fail".into();
        auth.dmarc.result = "fail".into();
        auth.dmarc.policy = "reject".into();
        let spammy = Summary {
            subject: Some("YOU HAVE WON BIG".into()),
            text_sample: "You have won the lottery".into(),
            ..summary
        };
        let (s, signals) = score(&auth, &spammy, b"x");
        assert_eq!(s, 3.0 + 4.0 + 1.0 + 4.0);
        assert!(signals.iter().any(|x| x.name == "subject_all_caps"));
    }
}
