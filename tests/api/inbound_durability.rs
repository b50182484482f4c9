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

/// A crash between a body's write and its commit leaves a file no row points at; the
/// sweep at start removes such files once they are an hour old, and only those.
#[tokio::test]
async fn bodies_no_message_references_are_swept_and_stored_ones_kept() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@sweep.test", "Sweep").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    let report = app.send_smtp("a@sender.test", &["box@mail.test"], b"Subject: kept\r\n\r\nbody\r\n").await;
    assert_eq!(report["data"][0], 250, "{report}");
    let id = app.inbox(&key).await[0]["id"].as_str().unwrap().to_owned();

    let orphan = format!("{}/msg_01ORPHANEDBYACRASH000000", owner.team_id);
    let fresh_orphan = format!("{}/msg_01WRITTENJUSTNOW000000000", owner.team_id);
    app.state.blobs.put(&orphan, b"never committed").await.unwrap();
    app.state.blobs.put(&fresh_orphan, b"still on its way to a commit").await.unwrap();
    let blobs = app.state.settings.data_dir.join("blobs");
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for k in [orphan.clone(), format!("{}/{id}", owner.team_id)] {
        let file = std::fs::File::options().write(true).open(blobs.join(format!("{k}.eml"))).unwrap();
        file.set_modified(two_hours_ago).unwrap();
    }

    assert_eq!(sendmux::inbound::sweep_orphaned_bodies(&app.state).await.unwrap(), 1);
    assert!(app.state.blobs.get(&orphan).await.is_err(), "the old unreferenced body is gone");
    assert!(app.state.blobs.get(&fresh_orphan).await.is_ok(), "a recent one may still be committed: kept");
    assert_eq!(app.raw_message(&key, &id).await, b"Subject: kept\r\n\r\nbody\r\n", "a stored message keeps its body");
    assert_eq!(sendmux::inbound::sweep_orphaned_bodies(&app.state).await.unwrap(), 0);
}
