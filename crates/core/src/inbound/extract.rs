//! `extracted_text` (SPEC §16): the new text of a reply, without the quoted history
//! mail clients append and without the signature. No maintained Rust crate does this,
//! so it is a small line parser that knows the shapes Gmail, Outlook (desktop and web)
//! and Apple Mail write: an attribution line ("On … wrote:", wrapped or not, and a few
//! translations), Outlook's "-----Original Message-----" or underscore rule followed by
//! a `From:` header block, a forwarded-message banner, `>` quotes, the `-- ` signature
//! delimiter and mobile "Sent from my …" footers.

/// Most characters kept.
const MAX_CHARS: usize = 64 * 1024;
/// Most bytes of the body read: the new text is at the top, and every step below is
/// linear in what is read, so a 25 MB body costs no more than a 256 KiB one.
const MAX_INPUT_BYTES: usize = 256 * 1024;
/// How far past an underscore rule the header block that makes it Outlook's may start.
const RULE_LOOKAHEAD: usize = 3;

/// The new text of `text` (a message's plain-text body).
pub fn new_text(text: &str) -> String {
    let text = &text[..text.floor_char_boundary(MAX_INPUT_BYTES.min(text.len()))];
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for i in 0..lines.len() {
        if starts_history(&lines, i) {
            end = i;
            break;
        }
    }
    let mut kept: Vec<&str> = Vec::with_capacity(end);
    for line in &lines[..end] {
        let t = line.trim_end();
        // The signature delimiter ("-- ", RFC 3676) ends the new text.
        if t == "--" || t == "-- " || *line == "-- " {
            break;
        }
        // Inline quotes of an interleaved reply are not new text.
        if t.trim_start().starts_with('>') {
            continue;
        }
        kept.push(t);
    }
    // Mobile footers at the end.
    while let Some(last) = kept.last() {
        let l = last.trim().to_ascii_lowercase();
        if l.is_empty()
            || l.starts_with("sent from my ")
            || l.starts_with("get outlook for ")
            || l == "sent from mail for windows"
        {
            kept.pop();
        } else {
            break;
        }
    }
    let start = kept.iter().position(|l| !l.trim().is_empty()).unwrap_or(kept.len());
    let out = kept[start..].join("\n");
    if out.chars().count() > MAX_CHARS { out.chars().take(MAX_CHARS).collect() } else { out }
}

/// Whether line `i` starts the quoted history.
fn starts_history(lines: &[&str], i: usize) -> bool {
    let line = lines[i].trim();
    let lower = line.to_lowercase();
    // Outlook desktop and Exchange.
    if lower.starts_with("-----original message-----") || lower.starts_with("----- original message -----") {
        return true;
    }
    // Forwards (Gmail "---------- Forwarded message ---------", Apple "Begin forwarded message:").
    if (lower.starts_with("---") && lower.contains("forwarded message")) || lower.starts_with("begin forwarded message")
    {
        return true;
    }
    // Outlook web / new Outlook: a rule of underscores, then a header block.
    if line.len() >= 20 && line.chars().all(|c| c == '_') {
        return next_nonblank(lines, i + 1).is_some_and(is_header_line);
    }
    // Outlook desktop without a rule: "From: …" then "Sent:"/"Date:" then "To:"/"Subject:".
    if is_from_header(line) {
        let next = lines.get(i + 1).map(|l| l.trim().to_lowercase()).unwrap_or_default();
        return next.starts_with("sent:") || next.starts_with("date:");
    }
    // Attribution lines: Gmail "On Tue, 1 Dec 2026 at 10:00, Bob <bob@x> wrote:", Apple
    // Mail "On 1 Dec 2026, at 10:00, Bob <bob@x> wrote:", possibly wrapped onto the next line.
    if is_attribution(&lower) {
        return true;
    }
    // Wrapped: the attribution ends on the next line.
    starts_attribution(&lower)
        && lines.get(i + 1).is_some_and(|next| is_attribution(&format!("{lower} {}", next.trim().to_lowercase())))
}

const ATTRIBUTION_STARTS: &[&str] = &["on ", "am ", "le ", "el ", "il ", "op ", "em "];
const ATTRIBUTION_ENDS: &[&str] =
    &["wrote:", "schrieb:", "a écrit :", "a écrit:", "escribió:", "ha scritto:", "schreef:", "escreveu:"];

fn starts_attribution(lower: &str) -> bool {
    ATTRIBUTION_STARTS.iter().any(|s| lower.starts_with(s)) && lower.len() < 300
}

fn is_attribution(lower: &str) -> bool {
    starts_attribution(lower) && ATTRIBUTION_ENDS.iter().any(|e| lower.ends_with(e))
}

fn is_from_header(line: &str) -> bool {
    let lower = line.to_lowercase();
    lower.starts_with("from:") || lower.starts_with("*from:*") || lower.starts_with("von:") || lower.starts_with("de :")
}

fn is_header_line(line: &str) -> bool {
    is_from_header(line.trim())
}

fn next_nonblank<'a>(lines: &[&'a str], from: usize) -> Option<&'a str> {
    lines.iter().skip(from).take(RULE_LOOKAHEAD).find(|l| !l.trim().is_empty()).copied()
}

#[cfg(test)]
mod tests {
    use super::{MAX_CHARS, MAX_INPUT_BYTES, new_text};

    #[test]
    fn long_bodies_cost_linear_time() {
        // Blank lines then a word: the leading blanks go in one step, not one at a time.
        let body = format!("{}x", "\n".repeat(2_000_000));
        assert_eq!(new_text(&body), "");
        let body = format!("{}\nHello", "\n".repeat(1000));
        assert_eq!(new_text(&body), "Hello");
        // Underscore rules followed by blank lines look only a few lines ahead.
        let body = format!("Hi{}", "\n______________________________\n\n\n\n".repeat(50_000));
        assert!(new_text(&body).starts_with("Hi"));
        // A multi-byte character across the input cap does not panic.
        let body = "é".repeat(MAX_INPUT_BYTES);
        assert_eq!(new_text(&body).chars().count(), MAX_CHARS);
    }

    #[test]
    fn gmail_reply() {
        let body = "Sounds good, Thursday works.\n\nBob\n\nOn Tue, Dec 1, 2026 at 10:02 AM Agent <agent@example.com> wrote:\n> Could we meet on Thursday?\n>\n> Thanks\n";
        assert_eq!(new_text(body), "Sounds good, Thursday works.\n\nBob");
    }

    #[test]
    fn gmail_wrapped_attribution() {
        let body = "Yes please.\r\n\r\nOn Tue, Dec 1, 2026 at 10:02 AM Support Agent <\r\nagent@example.com> wrote:\r\n\r\n> Shall I refund it?\r\n";
        assert_eq!(new_text(body), "Yes please.");
    }

    #[test]
    fn outlook_desktop_reply() {
        let body = "Thanks, received.\n\nRegards,\nCarol\n\n-----Original Message-----\nFrom: Agent <agent@example.com>\nSent: Tuesday, December 1, 2026 10:02 AM\nTo: Carol <carol@example.org>\nSubject: Invoice\n\nHere is the invoice.\n";
        assert_eq!(new_text(body), "Thanks, received.\n\nRegards,\nCarol");
    }

    #[test]
    fn outlook_web_reply() {
        let body = "Please cancel it.\n\nGet Outlook for iOS\n________________________________\nFrom: Agent <agent@example.com>\nSent: Tuesday, December 1, 2026 10:02\nTo: dave@example.net\nSubject: Your order\n\nYour order shipped.\n";
        assert_eq!(new_text(body), "Please cancel it.");
    }

    #[test]
    fn outlook_header_block_without_rule() {
        let body = "Approved.\n\nFrom: Agent <agent@example.com>\nDate: Tuesday, 1 December 2026 at 10:02\nTo: Erin\nSubject: Approval\n\nMay I?\n";
        assert_eq!(new_text(body), "Approved.");
    }

    #[test]
    fn apple_mail_reply_and_signature() {
        let body = "Great, see you then.\n\n-- \nFrank Example\nACME Corp\n\n> On 1 Dec 2026, at 10:02, Agent <agent@example.com> wrote:\n> \n> See you at 3?\n";
        assert_eq!(new_text(body), "Great, see you then.");
        let body = "Works for me.\n\nSent from my iPhone\n\nOn 1 Dec 2026, at 10:02, Agent <agent@example.com> wrote:\n\n> See you at 3?\n";
        assert_eq!(new_text(body), "Works for me.");
    }

    #[test]
    fn interleaved_quotes_and_forwards() {
        let body = "> Question one?\nAnswer one.\n> Question two?\nAnswer two.\n";
        assert_eq!(new_text(body), "Answer one.\nAnswer two.");
        let body = "FYI below.\n\n---------- Forwarded message ---------\nFrom: Someone <s@example.com>\nDate: Tue\n\nOld text\n";
        assert_eq!(new_text(body), "FYI below.");
    }

    #[test]
    fn plain_message_is_kept_whole() {
        let body = "Hello,\n\nOn Monday we ship the release.\nIt has three parts.\n";
        assert_eq!(new_text(body), "Hello,\n\nOn Monday we ship the release.\nIt has three parts.");
        assert_eq!(new_text(""), "");
    }
}
