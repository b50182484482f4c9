//! Bodies in S3-compatible object storage (API.md §12), on moto's S3 server on loopback.
//! Two nodes share one database and one bucket, each with a
//! data folder of its own — so whatever one node reads of what the other wrote came
//! from the bucket, never from a local folder.

use crate::helpers::*;
use crate::mail_servers::{S3Server, SmtpServer};
use crate::outbound::{email, send, smtp_sender};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// Node settings: bodies in `s3`; on SQLite the database file outside both data folders.
fn shared_settings(s3: &S3Server, shared: &tempfile::TempDir) -> Vec<(String, String)> {
    let mut env = s3.settings("test/bodies");
    // Nodes share the key that seals provider credentials (each data folder would
    // otherwise make its own).
    env.push(("SENDMUX_SECRET_KEY".into(), "5e".repeat(32)));
    if !on_postgres() {
        env.push(("SENDMUX_DATABASE_URL".into(), format!("sqlite://{}/shared.db?mode=rwc", shared.path().display())));
    }
    env
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn no_local_bodies(app: &TestApp) -> bool {
    std::fs::read_dir(app.dir.path().join("blobs")).map_or(true, |mut d| d.next().is_none())
}

#[tokio::test]
async fn bodies_in_a_bucket_are_read_sent_and_erased_by_any_node() {
    let s3 = S3Server::start().await;
    let relay = SmtpServer::start(None).await;
    let shared = tempfile::tempdir().unwrap();
    let env = shared_settings(&s3, &shared);
    // Node A receives and accepts but sends nothing; node B sends.
    let mut a_env = pairs(&env);
    a_env.push(("SENDMUX_OUTBOUND_WORKERS", "0"));
    let a = TestApp::spawn_with(&a_env).await;
    let b = a.spawn_node(&[("SENDMUX_OUTBOUND_WORKERS", "2")]).await;

    // Inbound over SMTP on A, read raw and parsed on B.
    let owner = a.signup("o@s3.test", "Bucket").await;
    let mbx = a.create_mailbox(&owner.token, "in@localhost").await;
    let mbx_id = mbx["id"].as_str().unwrap();
    let raw = b"From: Sender <s@example.org>\r\nTo: in@localhost\r\nSubject: Stored in S3\r\nMessage-ID: <s3-1@example.org>\r\n\r\nThe body travels through the bucket.\r\n";
    a.send_smtp("s@example.org", &["in@localhost"], raw).await;
    let messages = format!("/api/v1/mailboxes/{mbx_id}/messages");
    let listed = expect_status(b.get(&messages, &owner.token).await, StatusCode::OK).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let id = listed["data"][0]["id"].as_str().unwrap().to_owned();
    let read = b.get(&format!("{messages}/{id}/raw"), &owner.token).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.bytes().await.unwrap().to_vec(), raw.to_vec());
    let parsed = expect_status(b.get(&format!("{messages}/{id}"), &owner.token).await, StatusCode::OK).await;
    assert_eq!(parsed["subject"], "Stored in S3");
    let key = a.body_key(&id).await;
    assert!(b.state.blobs.get(&key).await.is_ok());

    // A large send (its request kept as a body) accepted on A, delivered by B's worker.
    let (_sender, _group, skey) = smtp_sender(&a, "s@s3.test", relay.port).await;
    use base64::Engine;
    let attachment: Vec<u8> = (0..=255u8).cycle().take(200 * 1024).collect();
    let content = base64::engine::general_purpose::STANDARD.encode(&attachment);
    let large = send(
        &a,
        &skey,
        json!({"from": "a@example.com", "to": ["big@example.org"], "subject": "Large", "text": "attached",
            "attachments": [{"filename": "big.bin", "content": content}]}),
    )
    .await;
    eventually("node B delivers the large mail node A accepted", Duration::from_secs(20), || async {
        email(&a, &skey, &large).await["status"] == "delivered"
    })
    .await;
    let got = relay.received();
    let parsed = mail_parser::MessageParser::default().parse(&got[0].data).expect("MIME parses");
    assert_eq!(mail_parser::MimeHeaders::attachment_name(parsed.attachment(0).unwrap()), Some("big.bin"));
    assert_eq!(parsed.attachment(0).unwrap().contents(), attachment.as_slice());

    // Neither node kept a body in its own folder.
    assert!(no_local_bodies(&a) && no_local_bodies(&b));

    // Deleting the mailbox on B erases its bodies; A cannot read them any more.
    expect_status(b.delete(&format!("/api/v1/mailboxes/{mbx_id}"), &owner.token).await, StatusCode::NO_CONTENT).await;
    eventually("the deleted mailbox's object is gone", Duration::from_secs(10), || async {
        a.state.blobs.get(&key).await.is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    })
    .await;

    // A message in a second mailbox, then the team is deleted: its objects go with it.
    let (_mbx, mkey) = a.mailbox_with_key(&owner.token, "again@localhost", &["mailbox.read"]).await;
    a.send_smtp("s@example.org", &["again@localhost"], raw).await;
    let second = a.inbox(&mkey).await[0]["id"].as_str().unwrap().to_owned();
    let second_key = a.body_key(&second).await;
    assert!(a.state.blobs.get(&second_key).await.is_ok());
    expect_status(b.delete("/api/v1/team", &owner.token).await, StatusCode::NO_CONTENT).await;
    eventually("the deleted team's objects are gone", Duration::from_secs(10), || async {
        a.state.blobs.get(&second_key).await.is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    })
    .await;
}

#[tokio::test]
async fn a_wrong_bucket_setting_stops_the_start_naming_it() {
    let s3 = S3Server::start().await;
    let mut env = s3.settings("x");
    env.retain(|(k, _)| k != "SENDMUX_BLOB_URL");
    env.push(("SENDMUX_BLOB_URL".into(), "s3://no-such-bucket/x".into()));
    let dir = tempfile::tempdir().unwrap();
    env.push(("SENDMUX_DATA_DIR".into(), dir.path().display().to_string()));
    env.push(("SENDMUX_HTTP_ADDR".into(), "127.0.0.1:0".into()));
    env.push(("SENDMUX_SMTP_ADDR".into(), "127.0.0.1:0".into()));
    let settings = sendmux::config::Settings::from_sources(None, &env).unwrap();
    let err = match sendmux::app::App::build(settings).await {
        Ok(_) => panic!("started with a wrong S3 secret"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.starts_with("SENDMUX_BLOB_URL: cannot reach bucket no-such-bucket"), "{err}");
}

/// A body whose node died between the put and the commit is an object no row points
/// to: the sweep deletes it and keeps every referenced one. (The sweep waits two hours
/// before calling an object a leftover; this store is made with no wait.)
#[tokio::test]
async fn the_sweep_deletes_objects_no_row_references_and_keeps_the_rest() {
    let s3 = S3Server::start().await;
    let shared = tempfile::tempdir().unwrap();
    let env = shared_settings(&s3, &shared);
    let app = TestApp::spawn_with(&pairs(&env)).await;
    let owner = app.signup("o@sweep.test", "Sweep").await;
    let (_mbx, mkey) = app.mailbox_with_key(&owner.token, "keep@localhost", &["mailbox.read"]).await;
    app.send_smtp("s@example.org", &["keep@localhost"], b"Subject: kept\r\n\r\nkept\r\n").await;
    let id = app.inbox(&mkey).await[0]["id"].as_str().unwrap().to_owned();
    let kept = app.body_key(&id).await;

    let sendmux::config::BlobLocation::S3(at) = &app.state.settings.blobs else { panic!("bodies not in S3") };
    let swept = sendmux::blob::s3::S3BlobStore::connect(at).await.unwrap().with_leftover_age(Duration::ZERO);
    use sendmux::blob::BlobStore;
    let orphan = swept.put(&owner.team_id, std::sync::Arc::new(b"never committed".to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let storage = sendmux::Storage { store: app.state.store.clone(), blobs: std::sync::Arc::new(swept) };
    let erased = sendmux::jobs::settle_abandoned_bodies(&storage).await.unwrap();
    assert_eq!(erased, 1);
    assert_eq!(storage.blobs.get(&orphan).await.unwrap_err().kind(), std::io::ErrorKind::NotFound);
    assert_eq!(app.raw_message(&mkey, &id).await, b"Subject: kept\r\n\r\nkept\r\n".to_vec());
    assert!(storage.blobs.get(&kept).await.is_ok());
    // The horizon moved: the next pass lists nothing it already settled.
    assert_eq!(sendmux::jobs::settle_abandoned_bodies(&storage).await.unwrap(), 0);
}
