//! The event log: per-team listing, filters, cursors, and the 7-day retention.

use crate::helpers::*;
use reqwest::StatusCode;
use sendmux::ids::TeamId;
use sendmux::store::TeamScope;
use sendmux::store::events::{self, Subject};
use serde_json::json;

async fn append(app: &TestApp, team_id: &str, kind: &str, n: i64) -> String {
    let store = &app.state.store;
    let mut tx = store.begin().await.unwrap();
    let row = events::append(&mut tx, team_id, kind, Subject::default(), json!({"n": n})).await.unwrap();
    tx.commit().await.unwrap();
    row.id
}

#[tokio::test]
async fn events_list_newest_first_within_the_team() {
    let app = TestApp::spawn().await;
    let a = app.signup("a@ev.test", "A").await;
    let b = app.signup("b@ev.test", "B").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(append(&app, &a.team_id, if n % 2 == 0 { "message.received" } else { "message.sent" }, n).await);
    }
    let b_event = append(&app, &b.team_id, "message.received", 99).await;

    let all = expect_status(app.get("/api/v1/events?limit=3", &a.token).await, StatusCode::OK).await;
    let got: Vec<&str> = all["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(got, [&ids[4], &ids[3], &ids[2]]);
    assert_eq!(all["data"][0]["data"], json!({"n": 4}));
    assert_eq!(all["data"][0]["type"], "message.received");
    let next = all["next_cursor"].as_str().unwrap();
    let rest =
        expect_status(app.get(&format!("/api/v1/events?limit=3&cursor={next}"), &a.token).await, StatusCode::OK).await;
    let got: Vec<&str> = rest["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(got, [&ids[1], &ids[0]]);
    assert!(rest["next_cursor"].is_null());

    let sent = expect_status(app.get("/api/v1/events?type=message.sent", &a.token).await, StatusCode::OK).await;
    assert_eq!(sent["data"].as_array().unwrap().len(), 2);
    let err = expect_error(
        app.get("/api/v1/events?type=message.exploded", &a.token).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(err["param"], "type");
    // B's event is neither listed nor usable as a cursor by A.
    let text = expect_status(app.get("/api/v1/events?limit=100", &a.token).await, StatusCode::OK).await.to_string();
    assert!(!text.contains(&b_event));
    expect_error(
        app.get(&format!("/api/v1/events?cursor={b_event}"), &a.token).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn events_older_than_seven_days_are_removed() {
    let app = TestApp::spawn().await;
    let a = app.signup("a@old.test", "A").await;
    let old = append(&app, &a.team_id, "message.received", 1).await;
    let fresh = append(&app, &a.team_id, "message.received", 2).await;
    let eight_days_ago = sendmux::store::now_ms() - 8 * 24 * 3_600_000;
    sqlx::query("UPDATE events SET created_at = $1 WHERE id = $2")
        .bind(eight_days_ago)
        .bind(&old)
        .execute(app.state.store.pool())
        .await
        .unwrap();
    let removed = sendmux::jobs::maintenance_once(&app.state.storage()).await.unwrap();
    assert_eq!(removed, 1);
    let list = expect_status(app.get("/api/v1/events", &a.token).await, StatusCode::OK).await;
    let got: Vec<&str> = list["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(got, [fresh.as_str()]);
}

/// DESIGN: a reader resuming after an event must never skip one that commits later.
/// Writers hold their transaction open for a moment after appending, so without the
/// per-team ordering a later sequence number could commit first and be passed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resuming_reader_sees_every_event_once_in_order_while_writers_race() {
    let app = TestApp::spawn().await;
    let a = app.signup("a@race-ev.test", "A").await;
    let (writers, per_writer) = (6, 20);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let (store, team) = (app.state.store.clone(), a.team_id.clone());
        tasks.spawn(async move {
            for i in 0..per_writer {
                let mut tx = store.begin().await.unwrap();
                events::append(&mut tx, &team, "message.received", Subject::default(), json!({"w": w, "i": i}))
                    .await
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_micros(((w * 7 + i * 13) % 5) as u64 * 300)).await;
                tx.commit().await.unwrap();
            }
        });
    }
    let total = writers * per_writer;
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut cursor = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen.len() < total as usize && std::time::Instant::now() < deadline {
        let mut conn = app.state.store.pool().acquire().await.unwrap();
        for row in events::after(&mut conn.team(&TeamId::stored(a.team_id.clone())), None, cursor, 7).await.unwrap() {
            cursor = row.seq;
            seen.push((row.seq, row.id));
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(seen.len(), total as usize, "every event was read");
    let mut ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total as usize, "no event twice");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "in log order");
}
