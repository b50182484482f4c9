//! Limits, increase requests decided by the operator, and per-key rate limits.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn limit<'a>(limits: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    limits["data"].as_array().unwrap().iter().find(|l| l["name"] == name).unwrap()
}

#[tokio::test]
async fn increase_requests_open_at_eighty_percent_and_the_operator_decides() {
    let app = TestApp::spawn_with(&[("SENDMUX_LIMIT_MAILBOXES", "5")]).await;
    let owner = app.signup("o@lim.test", "Lim").await;
    let limits = expect_status(app.get("/api/v1/limits", &owner.token).await, StatusCode::OK).await;
    let names: Vec<&str> = limits["data"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["active_keys", "webhooks", "sending_rate_per_minute", "mailboxes", "providers"]);
    assert_eq!(limit(&limits, "webhooks")["limit"], 10);
    assert_eq!(limit(&limits, "sending_rate_per_minute")["limit"], 1800);

    for i in 0..3 {
        app.create_mailbox(&owner.token, &format!("m{i}@localhost")).await;
    }
    let path = "/api/v1/limits/mailboxes/increase-requests";
    let ask = json!({"requested": 50, "reason": "launching in the EU"});
    expect_error(app.post(path, &owner.token, ask.clone()).await, StatusCode::CONFLICT, "conflict").await;
    app.create_mailbox(&owner.token, "m3@localhost").await;
    let limits = expect_status(app.get("/api/v1/limits", &owner.token).await, StatusCode::OK).await;
    assert_eq!(
        limit(&limits, "mailboxes"),
        &json!({"name": "mailboxes", "limit": 5, "used": 4, "percent": 80.0, "increase_requestable": true})
    );

    let res = app.post(path, &owner.token, json!({"requested": 5, "reason": "x"})).await;
    assert_eq!(expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"], "requested");
    expect_error(
        app.post("/api/v1/limits/unicorns/increase-requests", &owner.token, ask.clone()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let req = expect_status(app.post(path, &owner.token, ask.clone()).await, StatusCode::CREATED).await;
    let id = req["id"].as_str().unwrap();
    assert!(id.starts_with("req_"));
    assert_eq!(req["status"], "pending");
    expect_error(app.post(path, &owner.token, ask.clone()).await, StatusCode::CONFLICT, "conflict").await;

    // The admin API: only with the operator's token.
    let admin = |m: Method, p: &str| app.client.request(m, app.url(p)).bearer_auth(ADMIN_TOKEN);
    let res = app.get("/api/v1/admin/increase-requests", &owner.token).await;
    expect_error(res, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    let pending = admin(Method::GET, "/api/v1/admin/increase-requests?status=pending").send().await.unwrap();
    let pending = expect_status(pending, StatusCode::OK).await;
    assert_eq!(pending["data"].as_array().unwrap().len(), 1);
    assert_eq!(pending["data"][0]["id"], id);
    let res = admin(Method::POST, &format!("/api/v1/admin/increase-requests/{id}/approve"))
        .json(&json!({"limit": 20}))
        .send()
        .await
        .unwrap();
    let decided = expect_status(res, StatusCode::OK).await;
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["granted"], 20);
    let res = admin(Method::POST, &format!("/api/v1/admin/increase-requests/{id}/deny")).send().await.unwrap();
    expect_error(res, StatusCode::CONFLICT, "conflict").await;

    let limits = expect_status(app.get("/api/v1/limits", &owner.token).await, StatusCode::OK).await;
    assert_eq!(limit(&limits, "mailboxes")["limit"], 20);
    assert_eq!(limit(&limits, "mailboxes")["increase_requestable"], false);
    for i in 4..20 {
        app.create_mailbox(&owner.token, &format!("m{i}@localhost")).await;
    }
    expect_error(
        app.post("/api/v1/mailboxes", &owner.token, json!({"address": "m20@localhost"})).await,
        StatusCode::CONFLICT,
        "limit_exceeded",
    )
    .await;

    // A second request, denied: the limit stays.
    let req = expect_status(app.post(path, &owner.token, ask).await, StatusCode::CREATED).await;
    let res = admin(Method::POST, &format!("/api/v1/admin/increase-requests/{}/deny", req["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_status(res, StatusCode::OK).await["status"], "denied");
    let limits = expect_status(app.get("/api/v1/limits", &owner.token).await, StatusCode::OK).await;
    assert_eq!(limit(&limits, "mailboxes")["limit"], 20);
    let mine = expect_status(app.get("/api/v1/limits/increase-requests", &owner.token).await, StatusCode::OK).await;
    let statuses: Vec<&str> = mine["data"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["denied", "approved"]);
}

#[tokio::test]
async fn the_admin_api_is_off_without_a_token() {
    let app = TestApp::spawn_with(&[("SENDMUX_ADMIN_TOKEN", "")]).await;
    let res = app.client.get(app.url("/api/v1/admin/increase-requests")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn the_1801st_request_of_a_sending_key_within_a_minute_is_429() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@rate.test", "Rate").await;
    let provider = app.create_smtp_provider(&owner.token, "relay").await;
    let group = app.create_group(&owner.token, provider["id"].as_str().unwrap()).await;
    let key =
        app.create_key(&owner.token, json!({"name": "s", "kind": "sending", "delivery_group_id": group["id"]})).await;
    let secret = key["key"].as_str().unwrap().to_owned();

    let first = app.get("/api/v1/team", &secret).await;
    assert_eq!(first.headers()["ratelimit-limit"], "1800");
    assert_eq!(first.headers()["ratelimit-remaining"], "1799");
    let reset: u64 = first.headers()["ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&reset));

    // 1,799 more, 8 at a time: all within the limit.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url, secret) = (app.client.clone(), app.url("/api/v1/team"), secret.clone());
        tasks.spawn(async move {
            let mut limited = 0;
            for _ in 0..225 {
                let res = client.get(&url).bearer_auth(&secret).send().await.unwrap();
                if res.status() == StatusCode::TOO_MANY_REQUESTS {
                    limited += 1;
                }
            }
            limited
        });
    }
    let mut limited = 0;
    while let Some(n) = tasks.join_next().await {
        limited += n.unwrap();
    }
    assert_eq!(limited, 1, "1 + 1,800 requests: exactly the last is refused");
    let res = app.get("/api/v1/team", &secret).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["ratelimit-remaining"], "0");
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    expect_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // Another credential of the team has its own window.
    let res = app.get("/api/v1/team", &owner.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let limits = expect_status(res, StatusCode::OK).await;
    assert!(limits.is_object());
    let limits = expect_status(app.get("/api/v1/limits", &owner.token).await, StatusCode::OK).await;
    let rate = limit(&limits, "sending_rate_per_minute");
    assert!(rate["used"].as_i64().unwrap() >= 1800, "{rate}");
    assert_eq!(rate["increase_requestable"], true);
}
