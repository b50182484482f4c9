//! A hostile corpus over one SMTP connection: every message is stored byte-identical
//! (and parses as far as it goes) or refused with a clean reply, and the listener
//! keeps serving.

use crate::helpers::*;
use reqwest::StatusCode;

/// Dot-stuffs `body` for DATA and appends the end marker.
fn data(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut at_line_start = true;
    for &b in body {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn nested(depth: usize) -> Vec<u8> {
    let mut m = b"From: inner@x.test\r\nSubject: innermost\r\n\r\nthe bottom\r\n".to_vec();
    for level in 1..=depth {
        let mut outer = format!(
            "From: l{level}@x.test\r\nSubject: level {level}\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n"
        )
        .into_bytes();
        outer.extend_from_slice(&m);
        m = outer;
    }
    m
}

fn many_attachments(n: usize) -> Vec<u8> {
    let mut m =
        b"From: a@x.test\r\nSubject: many\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=sep\r\n\r\n"
            .to_vec();
    for i in 0..n {
        m.extend_from_slice(
            format!(
                "--sep\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=f{i}.bin\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n"
            )
            .as_bytes(),
        );
    }
    m.extend_from_slice(b"--sep--\r\n");
    m
}

fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "truncated multipart",
            b"From: a@x.test\r\nSubject: cut\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n\
--zz\r\nContent-Type: text/plain\r\n\r\npart one\r\n--zz\r\nContent-Type: application/pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJ"
                .to_vec(),
        ),
        (
            "bad transfer encodings",
            b"From: a@x.test\r\nSubject: enc\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not*base64###\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nbroken =ZZ soft=\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-martian\r\n\r\n??\r\n--b--\r\n"
                .to_vec(),
        ),
        (
            "8-bit and overlong headers",
            [
                b"From: \xe9\xe8\xff <a@x.test>\r\nSubject: caf\xe9 \xff\xfe\r\nX-Long: ".as_slice(),
                "a".repeat(100_000).as_bytes(),
                b"\r\n\r\nbody\r\n",
            ]
            .concat(),
        ),
        ("message/rfc822 nested 50 deep", nested(50)),
        ("1,000 attachments", many_attachments(1000)),
        ("a NUL byte", b"From: a@x.test\r\nSubject: nul\r\n\r\nbefore\0after\r\n".to_vec()),
        (
            "NUL bytes in the headers",
            b"From: \"a\0b\" <a@x.test>\r\nSubject: nul\0in the subject\r\nMessage-ID: <x\0y@x.test>\r\n\r\nbody\r\n"
                .to_vec(),
        ),
        ("bare LF", b"From: a@x.test\nSubject: bare lf\n\nline one\nline two\n".to_vec()),
        ("not mail at all", b"\x00\x01\x02\xff\xfe garbage without headers".to_vec()),
        ("headers only", b"Subject: no body".to_vec()),
    ]
}

#[tokio::test]
async fn a_hostile_corpus_is_stored_or_refused_cleanly_and_the_listener_keeps_serving() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@hostile.test", "Hostile").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    let (mut c, _) = RawSmtp::connect(app.smtp_addr).await;
    let mut stored = 0;
    for (name, body) in corpus() {
        let (code, text) = c.transaction("a@x.test", "box@mail.test", &data(&body)).await;
        assert!(code == 250 || (500..600).contains(&code), "{name}: {code} {text}");
        if code != 250 {
            continue;
        }
        stored += 1;
        let inbox = app.inbox(&key).await;
        assert_eq!(inbox.len(), stored, "{name}");
        let id = inbox[0]["id"].as_str().unwrap();
        // What came out of DATA (the body plus the CRLF the marker line needs).
        let mut expected = body.clone();
        if !expected.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }
        assert_eq!(app.raw_message(&key, id).await, expected, "{name}: raw bytes");
        let full = app.get(&format!("/api/v1/mailbox/messages/{id}"), &key).await;
        let full = expect_status(full, StatusCode::OK).await;
        match name {
            "1,000 attachments" => {
                assert_eq!(full["attachments"].as_array().unwrap().len(), 1000);
                assert_eq!(full["attachments"][999]["filename"], "f999.bin");
                let res = app.get(&format!("/api/v1/mailbox/messages/{id}/attachments/999"), &key).await;
                assert_eq!(res.status(), StatusCode::OK);
                assert_eq!(res.bytes().await.unwrap().as_ref(), &[0u8, 1, 2, 3, 4]);
                let res = app.get(&format!("/api/v1/mailbox/messages/{id}/attachments/1000"), &key).await;
                expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
            }
            "truncated multipart" => assert!(full["text"].as_str().unwrap().contains("part one"), "{full}"),
            "bare LF" => assert_eq!(full["subject"], "bare lf"),
            "a NUL byte" => assert_eq!(full["subject"], "nul"),
            // Kept in the raw bytes; the listing (from the row) shows a replacement.
            "NUL bytes in the headers" => {
                assert_eq!(app.inbox(&key).await[0]["subject"], "nul\u{fffd}in the subject");
            }
            "message/rfc822 nested 50 deep" => assert_eq!(full["subject"], "level 50"),
            _ => {}
        }
    }
    assert!(stored >= 8, "the corpus is mail a server should keep: {stored} stored");
    // Same connection, then a fresh one: still serving.
    assert_eq!(c.cmd("NOOP").await.0, 250);
    let (code, _) = RawSmtp::connect(app.smtp_addr)
        .await
        .0
        .transaction("a@x.test", "box@mail.test", b"Subject: after\r\n\r\nok\r\n.\r\n")
        .await;
    assert_eq!(code, 250);
}

#[tokio::test]
async fn smuggled_end_of_data_markers_do_not_split_a_message() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@smuggle.test", "Smuggle").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    let (mut c, _) = RawSmtp::connect(app.smtp_addr).await;
    // "\n.\n" and "\n.\r\n" are not the end of data (only CRLF.CRLF is), so the would-be
    // second message stays inside the first.
    let body = b"Subject: outer\r\n\r\nhello\n.\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<box@mail.test>\r\nDATA\r\n\
Subject: smuggled\r\n\r\nx\n.\r\nend\r\n.\r\n";
    let (code, _) = c.transaction("a@x.test", "box@mail.test", body).await;
    assert_eq!(code, 250);
    assert_eq!(c.cmd("NOOP").await.0, 250, "no stray replies from smuggled commands");
    let inbox = app.inbox(&key).await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["subject"], "outer");
}
