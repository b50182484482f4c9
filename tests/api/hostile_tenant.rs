//! Findings of the hostile-tenant review (issue #13) that show over HTTP: metric labels a
//! client cannot grow, connections that cannot be held open, private files in the data
//! folder, a range replay that queues each event once, and admin-token guessing.

use crate::helpers::*;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[tokio::test]
async fn invented_http_methods_do_not_grow_the_metrics() {
    let app = TestApp::spawn().await;
    for i in 0..300 {
        let method = Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        let res = app.client.request(method, app.url("/healthz")).send().await.unwrap();
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    for path in ["/healthz", "/metrics"] {
        assert_eq!(app.client.get(app.url(path)).send().await.unwrap().status(), StatusCode::OK);
    }
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("FOO"), "an invented method became a label");
    let allowed = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"];
    let mut methods = std::collections::BTreeSet::new();
    let mut series = 0;
    for line in text.lines().filter(|l| l.starts_with("sendmux_http_requests_total{")) {
        series += 1;
        let method = line.split("method=\"").nth(1).and_then(|r| r.split('"').next()).unwrap();
        assert!(allowed.contains(&method), "{line}");
        methods.insert(method.to_owned());
    }
    assert!(methods.contains("other") && methods.contains("GET"), "{methods:?}");
    assert!(series < 10, "{series} series for three routes: {text}");
}
