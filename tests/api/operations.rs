//! Operations surface: OpenAPI generated from the code, docs, health, readiness, metrics.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn openapi_describes_every_route() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    let doc = expect_status(res, StatusCode::OK).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/auth/signup", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/invitations/{token}/accept", "post"),
        ("/api/v1/team", "get"),
        ("/api/v1/team", "patch"),
        ("/api/v1/team", "delete"),
        ("/api/v1/team/transfer", "post"),
        ("/api/v1/team/members", "get"),
        ("/api/v1/team/members/{user_id}", "patch"),
        ("/api/v1/team/members/{user_id}", "delete"),
        ("/api/v1/team/invitations", "post"),
        ("/api/v1/keys", "post"),
        ("/api/v1/keys", "get"),
        ("/api/v1/keys/{id}", "get"),
        ("/api/v1/keys/{id}", "delete"),
        ("/api/v1/keys/{id}/rotate", "post"),
        ("/api/v1/providers", "post"),
        ("/api/v1/providers/{id}", "patch"),
        ("/api/v1/delivery-groups", "post"),
        ("/api/v1/delivery-groups/{id}", "delete"),
        ("/api/v1/mailboxes", "post"),
        ("/api/v1/mailboxes/{id}/settings", "patch"),
        ("/api/v1/mailbox", "get"),
        ("/api/v1/mailbox/settings", "patch"),
        ("/api/v1/limits", "get"),
        ("/api/v1/limits/{name}/increase-requests", "post"),
        ("/api/v1/logs", "get"),
        ("/api/v1/admin/teams", "post"),
        ("/api/v1/admin/increase-requests", "get"),
        ("/api/v1/admin/increase-requests/{id}/approve", "post"),
        ("/api/v1/admin/increase-requests/{id}/deny", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing from OpenAPI");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let html = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(html.status(), StatusCode::OK);
    assert!(html.text().await.unwrap().to_lowercase().contains("swagger"));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), StatusCode::OK);
    let owner = app.signup("o@ops.test", "Ops").await;
    expect_status(app.get("/api/v1/keys", &owner.token).await, StatusCode::OK).await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("sendmux_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/api/v1/keys\""), "{text}");
}

#[tokio::test]
async fn a_stopped_server_drains_and_closes_its_listener() {
    let mut app = TestApp::spawn().await;
    let owner = app.signup("o@stop.test", "Stop").await;
    expect_status(app.get("/api/v1/team", &owner.token).await, StatusCode::OK).await;
    app.stop().await;
    assert!(reqwest::get(app.url("/healthz")).await.is_err(), "nothing listens after the stop");
}

async fn readiness(app: &TestApp) -> (StatusCode, Value) {
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    (res.status(), res.json().await.unwrap())
}

/// `SENDMUX_ROLES` (API.md §12): an `api` node accepts mail and sends none; a `worker`
/// node on the same store sends it, answers no API route and listens for no SMTP; both
/// say what they run on `/readyz`.
#[tokio::test]
async fn node_roles_split_the_api_from_the_workers() {
    use crate::mail_servers::SmtpServer;
    use crate::outbound::{email, send, simple, smtp_sender};
    let relay = SmtpServer::start(None).await;
    let store = if on_postgres() { "postgres" } else { "sqlite" };

    let api = TestApp::spawn_with(&[("SENDMUX_ROLES", "api")]).await;
    assert_eq!(readiness(&api).await, (StatusCode::OK, json!({"status": "ready", "roles": ["api"], "store": store})));
    assert_eq!(api.smtp_addr.port(), 0, "an api node has no SMTP listener");
    let (owner, _group, key) = smtp_sender(&api, "o@roles.test", relay.port).await;
    let id = send(&api, &key, simple("to@example.com")).await;
    // A worker would have sent it within milliseconds of the wake-up; this node has none.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(email(&api, &owner.token, &id).await["status"], "queued");
    assert!(relay.received().is_empty());

    let worker = api.restart_with(&[("SENDMUX_ROLES", "worker")]).await;
    assert_eq!(
        readiness(&worker).await,
        (StatusCode::OK, json!({"status": "ready", "roles": ["worker"], "store": store}))
    );
    expect_error(worker.get("/api/v1/team", &owner.token).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(worker.smtp_addr.port(), 0, "a worker node has no SMTP listener");
    wait_for_value("the worker node sends the queued mail", Duration::from_secs(10), || async {
        relay.received().into_iter().next()
    })
    .await;

    let both = worker.restart_with(&[("SENDMUX_ROLES", "api,smtp")]).await;
    assert_ne!(both.smtp_addr.port(), 0);
    assert_eq!(email(&both, &owner.token, &id).await["status"], "delivered");
}
