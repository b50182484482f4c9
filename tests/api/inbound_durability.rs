//! Durable before 250: a message acknowledged over SMTP survives `kill -9` of the
//! server right after the reply (the real binary, restarted on the same store).

use crate::helpers::*;
use reqwest::StatusCode;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `sendmux serve`, killed (SIGKILL) and reaped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sendmux serve` on `app`'s store; returns it with its HTTP and SMTP addresses.
fn serve(app: &TestApp) -> (Server, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sendmux"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SENDMUX_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("serve")
        .env("SENDMUX_DATA_DIR", app.dir.path())
        .env("SENDMUX_HTTP_ADDR", "127.0.0.1:0")
        .env("SENDMUX_SMTP_ADDR", "127.0.0.1:0")
        .env("SENDMUX_DNS_SERVER", "off")
        .env("SENDMUX_LOG_FORMAT", "json")
        .stderr(Stdio::piped());
    if let Some(db) = &app.db {
        cmd.env("SENDMUX_DATABASE_URL", &db.url);
    }
    let mut server = Server(cmd.spawn().unwrap());
    let stderr = server.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("the server logs its addresses");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        let fields = &v["fields"];
        if let (Some(http), Some(smtp)) = (fields["http"].as_str(), fields["smtp"].as_str()) {
            return (server, http.to_owned(), smtp.to_owned());
        }
    }
}

#[tokio::test]
async fn a_message_acknowledged_with_250_survives_kill_9() {
    let mut app = TestApp::spawn().await;
    let owner = app.signup("owner@crash.test", "Crash").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    app.stop().await;

    let (server, _, smtp) = serve(&app);
    let (mut c, _) = RawSmtp::connect(smtp.parse().unwrap()).await;
    let body = b"Subject: must survive\r\n\r\nDurable before acknowledged.\r\n";
    let mut data = body.to_vec();
    data.extend_from_slice(b".\r\n");
    let (code, text) = c.transaction("a@x.test", "box@mail.test", &data).await;
    drop(server); // SIGKILL, the moment the 250 is read
    assert_eq!(code, 250, "{text}");
    let id = text.trim_end().rsplit(' ').next().unwrap().to_owned();

    let (server, http, _) = serve(&app);
    let client = reqwest::Client::new();
    let res = client.get(format!("http://{http}/api/v1/mailbox/messages/{id}/raw")).bearer_auth(&key).send().await;
    let res = res.unwrap();
    let status = res.status();
    let bytes = res.bytes().await.unwrap();
    drop(server);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes.as_ref(), body.as_slice());
}

/// A crash between a body's write and its commit leaves bytes in the team's open
/// segment that no row points at. At the next start the segment is settled: what a
/// message references stays, everything else in it is erased, and it is sealed.
#[tokio::test]
async fn bodies_a_crash_left_uncommitted_are_erased_and_stored_ones_kept() {
    let mut app = TestApp::spawn().await;
    let owner = app.signup("owner@settle.test", "Settle").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    app.stop().await;

    let (server, _, smtp) = serve(&app);
    let (mut c, _) = RawSmtp::connect(smtp.parse().unwrap()).await;
    let body = b"Subject: kept\r\n\r\nStored before the crash.\r\n";
    let mut data = body.to_vec();
    data.extend_from_slice(b".\r\n");
    let (code, text) = c.transaction("a@x.test", "box@mail.test", &data).await;
    assert_eq!(code, 250, "{text}");
    let id = text.trim_end().rsplit(' ').next().unwrap().to_owned();
    drop(server); // SIGKILL: the segment stays open

    // What a writer that died before its commit leaves: a body appended after the last
    // committed one.
    let folder = app.dir.path().join("blobs").join(&owner.team_id);
    let open: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "open"))
        .collect();
    assert_eq!(open.len(), 1, "one open segment: {open:?}");
    let segment = open[0].clone();
    let orphan = b"Subject: never committed\r\n\r\nNobody was told this arrived.\r\n";
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::options().write(true).open(&segment).unwrap();
        let end = file.metadata().unwrap().len().div_ceil(4096) * 4096;
        file.write_all_at(orphan, end).unwrap();
        file.set_modified(std::time::SystemTime::now() - Duration::from_secs(120)).unwrap();
    }

    let (server, http, _) = serve(&app);
    let sealed = segment.with_extension("seg");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !sealed.exists() {
        assert!(std::time::Instant::now() < deadline, "the abandoned segment was not settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bytes = std::fs::read(&sealed).unwrap();
    assert!(!bytes.windows(orphan.len()).any(|w| w == orphan.as_slice()), "the uncommitted body is erased");
    assert!(bytes.windows(body.len()).any(|w| w == body.as_slice()), "the stored body is kept");
    let res = reqwest::Client::new()
        .get(format!("http://{http}/api/v1/mailbox/messages/{id}/raw"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().as_ref(), body.as_slice());
    drop(server);
}
