//! Bounded fuzzing of inbound MIME parsing on stable Rust: the nasty seeds in
//! fuzz/seeds/inbound_mime, mutations of them, and generated multipart trees (deep
//! nesting, broken base64 and quoted-printable, encoded words, invalid UTF-8 and NULs in
//! headers) all go through the parse entry points, which must not panic and must keep
//! no NUL for the store. The coverage-guided twin is fuzz/fuzz_targets/inbound_mime.rs.

#[path = "../../../fuzz/common/mutate.rs"]
mod mutate;

#[path = "../../../fuzz/common/inbound.rs"]
mod inbound;

use mutate::Rng;

const DICT: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: multipart/alternative; boundary=\"b\"\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/html; charset=iso-2022-jp\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC\r\n",
    b"=?utf-8?B?",
    b"=?utf-8?Q?",
    b"?=",
    b"=\r\n",
    b"=FF",
    b"From: ",
    b"To: ",
    b"Subject: ",
    b"<a@x.test>",
    b"\"",
    b"(",
    b")",
    b";",
    b":",
    b",",
    b"\0",
    b"\xff",
    b"\xc3",
    b" \t",
];

/// A random MIME tree with odd encodings and headers.
fn message(rng: &mut Rng, depth: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(5) {
        let header: &[u8] = rng.choose(&[
            &b"From: =?utf-8?B?w6k=?= <a@x.test>\r\n"[..],
            b"To: a@x.test, \"b, c\" <b@x.test>, grp:;\r\n",
            b"Subject: =?utf-8?Q?=FF=00?=\r\n",
            b"Subject: \xff\xfe\0\r\n",
            b"Message-ID: <\0@x>\r\n",
            b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n",
            b"X-Folded: a\r\n b\r\n\tc\r\n",
            b"Content-Disposition: attachment; filename=\"a\0.pdf\"\r\n",
        ]);
        out.extend_from_slice(header);
    }
    let multipart = depth < 40 && rng.below(3) > 0;
    if multipart {
        let boundary = format!("b{depth}{}", if rng.one_in(5) { "" } else { "x" });
        let subtype = rng.pick(&["mixed", "alternative", "related", "digest", "report"]);
        out.extend_from_slice(format!("Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n\r\n").as_bytes());
        // Wide near the top, deep below: the tree stays small enough to parse quickly.
        let children = if depth < 4 { 1 + rng.below(3) } else { 1 };
        for _ in 0..children {
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let step = 1 + rng.below(8);
            let inner = message(rng, depth + step);
            out.extend_from_slice(&inner);
            out.extend_from_slice(b"\r\n");
        }
        if !rng.one_in(4) {
            out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        }
        return out;
    }
    let (cte, body): (&[u8], Vec<u8>) = match rng.below(5) {
        0 => (b"base64", b"SGVsbG8=\r\n=QU=JD\xff\r\n".to_vec()),
        1 => (b"quoted-printable", b"caf=C3=A9 =\r\nsoft=ZZ =".to_vec()),
        2 => {
            let n = rng.below(64);
            (b"8bit", rng.bytes(n))
        }
        3 => (b"x-uuencode", b"begin 644 a\r\n#86)C\r\n`\r\nend\r\n".to_vec()),
        _ => (b"7bit", b"plain text\r\n".to_vec()),
    };
    let ctype = *rng.pick(&[
        &b"text/plain; charset=utf-8"[..],
        b"text/html; charset=windows-1252",
        b"text/plain; charset=x-nonsense",
        b"application/pdf; name=a.pdf",
        b"message/rfc822",
        b"image/png",
    ]);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(ctype);
    out.extend_from_slice(b"\r\nContent-Transfer-Encoding: ");
    out.extend_from_slice(cte);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&body);
    out
}

/// `check`, with the known upstream debug assertion (see `inbound::KNOWN_UPSTREAM_ASSERTION`)
/// not counted as a failure in debug builds.
fn check(raw: &[u8]) {
    match std::panic::catch_unwind(|| inbound::check(raw)) {
        Ok(()) => {}
        Err(p) if cfg!(debug_assertions) && inbound::is_known(&*p) => {}
        Err(p) => std::panic::resume_unwind(p),
    }
}

#[test]
fn inbound_mime_parsing_survives_hostile_messages() {
    mutate::run_bytes("inbound_mime", 1500, DICT, 256 * 1024, |rng| message(rng, 0), check);
}

/// The minimised input the harness found. When this starts failing in a debug build,
/// mail-parser has fixed its assertion: drop `inbound::KNOWN_UPSTREAM_ASSERTION`.
#[test]
fn a_digest_with_a_blank_rfc822_part_trips_only_the_known_debug_assertion() {
    let raw = b"Content-Type:multipart/digest;boundary=b37\n\n--b37\n\nContent-Type:message/rfc822\n\n\n--b37--";
    let outcome = std::panic::catch_unwind(|| inbound::check(raw));
    if cfg!(debug_assertions) {
        let panic = outcome.expect_err("mail-parser no longer asserts here: drop KNOWN_UPSTREAM_ASSERTION");
        assert!(inbound::is_known(&*panic), "{}", mutate::panic_text(&panic));
    } else {
        outcome.expect("release builds parse it");
    }
}
