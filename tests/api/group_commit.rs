//! Group commit on PostgreSQL: several committers per kind whose transactions overlap,
//! so one slow group does not hold up the next, and concurrent groups sharing
//! idempotency keys neither deadlock nor queue a key twice.

use crate::helpers::*;
use crate::mail_servers::closed_port;
use crate::outbound::{simple, smtp_sender};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

const NO_WORKERS: (&str, &str) = ("SENDMUX_OUTBOUND_WORKERS", "0");

/// Advisory locks of this test's database that someone is waiting for.
async fn waiting_for_log_locks(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(app.state.store.pool())
    .await
    .unwrap()
}

/// Team A's event log is held (by the test, as a slow commit of A's would hold it):
/// A's accepted send and A's inbound message wait, and team B's — committed by the
/// other committers — go through meanwhile. With one committer per kind, B's would
/// wait behind A's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_held_team_log_does_not_hold_up_another_teams_mail() {
    if !on_postgres() {
        return; // One SQLite writer: there is nothing to overlap.
    }
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let (a, _, key_a) = smtp_sender(&app, "a@overlap.test", closed_port()).await;
    let (b, _, key_b) = smtp_sender(&app, "b@overlap.test", closed_port()).await;
    let (_, box_a) = app.mailbox_with_key(&a.token, "a@mail.test", &["mailbox.read"]).await;
    let (_, box_b) = app.mailbox_with_key(&b.token, "b@mail.test", &["mailbox.read"]).await;

    let mut holder = app.state.store.pool().acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 7))")
        .bind(&a.team_id)
        .execute(&mut *holder)
        .await
        .unwrap();

    let send_a = {
        let (app_url, client, key) = (app.url("/api/v1/emails"), app.client.clone(), key_a.clone());
        tokio::spawn(async move { client.post(app_url).bearer_auth(key).json(&simple("x@example.org")).send().await })
    };
    let smtp_a = {
        let addr = app.smtp_addr;
        tokio::spawn(async move {
            let (mut smtp, _) = RawSmtp::connect(addr).await;
            smtp.transaction("ann@sender.test", "a@mail.test", b"Subject: to A\r\n\r\nHello A\r\n.\r\n").await
        })
    };
    // Both of A's commits are waiting for the log.
    eventually("A's two commits waiting for the log", Duration::from_secs(30), || async {
        waiting_for_log_locks(&app).await == 2
    })
    .await;

    let (b_send, b_smtp) = tokio::time::timeout(Duration::from_secs(30), async {
        let sent = app.post("/api/v1/emails", &key_b, simple("y@example.org")).await;
        let received = app.send_smtp("ann@sender.test", &["b@mail.test"], b"Subject: to B\r\n\r\nHello B\r\n").await;
        (sent, received)
    })
    .await
    .expect("team B's mail went through while A's log was held");
    expect_status(b_send, StatusCode::ACCEPTED).await;
    assert_eq!(b_smtp["data"][0], 250, "{b_smtp}");
    assert_eq!(app.inbox(&box_b).await.len(), 1);
    assert!(!send_a.is_finished() && !smtp_a.is_finished(), "A's mail waits for its log");
    assert_eq!(app.inbox(&box_a).await.len(), 0, "nothing of A's is visible before its commit");

    sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 7))")
        .bind(&a.team_id)
        .execute(&mut *holder)
        .await
        .unwrap();
    expect_status(send_a.await.unwrap().unwrap(), StatusCode::ACCEPTED).await;
    assert_eq!(smtp_a.await.unwrap().0, 250);
    assert_eq!(app.inbox(&box_a).await.len(), 1);
    for team in [&a.team_id, &b.team_id] {
        assert_eq!(app.count("SELECT COUNT(*) FROM outbound_messages WHERE team_id = $1", team).await, 1);
        let queued = "SELECT COUNT(*) FROM events WHERE team_id = $1 AND type = 'message.queued'";
        assert_eq!(app.count(queued, team).await, 1);
    }
}

/// Many requests at once, reusing a few idempotency keys in opposite orders, spread over
/// concurrent groups: each key queues one message, every request gets 202 with its
/// key's first answer, and no group fails (two groups taking the same keys in
/// opposite orders would deadlock, and PostgreSQL would abort one with every request
/// in it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_groups_sharing_idempotency_keys_queue_each_key_once() {
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let (owner, _, key) = smtp_sender(&app, "o@idem-groups.test", closed_port()).await;
    let keys = ["k-1", "k-2", "k-3", "k-4", "k-5", "k-6"];
    let answers = futures::future::join_all((0..96).map(|n| {
        // Waves of six walk the keys forwards, then backwards: wherever the groups are
        // cut, neighbouring groups hold keys in opposite orders.
        let (wave, i) = (n / keys.len(), n % keys.len());
        let idem = keys[if wave % 2 == 0 { i } else { keys.len() - 1 - i }];
        let (app, key) = (&app, &key);
        async move {
            let res = app
                .req(reqwest::Method::POST, "/api/v1/emails", key)
                .header("Idempotency-Key", idem)
                .json(&simple(&format!("{idem}@example.org")))
                .send()
                .await
                .unwrap();
            (idem, expect_status(res, StatusCode::ACCEPTED).await)
        }
    }))
    .await;
    for idem in keys {
        let of_key: Vec<&Value> = answers.iter().filter(|(k, _)| *k == idem).map(|(_, a)| a).collect();
        assert_eq!(of_key.len(), 16, "{idem}");
        assert!(of_key.iter().all(|a| *a == of_key[0]), "{idem}: {of_key:?}");
    }
    let stored = app.count("SELECT COUNT(*) FROM outbound_messages WHERE team_id = $1", &owner.team_id).await;
    assert_eq!(stored, keys.len() as i64);
}
