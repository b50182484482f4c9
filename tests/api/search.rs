//! Search (SPEC §16): `q=` over from, to, subject and text (FTS5 on SQLite, a
//! text-search vector on PostgreSQL) with `thread_id`, `since`, `until`; cursor-paged,
//! and never another mailbox's or another team's mail.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;

fn mail(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

async fn receive(app: &TestApp, key: &str, raw: Vec<u8>) -> String {
    let res = app
        .req(reqwest::Method::POST, "/api/v1/mailbox/messages", key)
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned()
}

async fn found(app: &TestApp, key: &str, query: &str) -> Vec<String> {
    let body = expect_status(app.get(&format!("/api/v1/mailbox/messages?{query}"), key).await, StatusCode::OK).await;
    body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn search_finds_exactly_the_matching_mail_of_the_mailbox() {
    let app = TestApp::spawn().await;
    let a = app.signup("owner@a.test", "A").await;
    let b = app.signup("owner@b.test", "B").await;
    let perms = ["mailbox.read", "email.receive"];
    let (mbx, key) = app.mailbox_with_key(&a.token, "box@mail.test", &perms).await;
    let (_, key_other_box) = app.mailbox_with_key(&a.token, "other@mail.test", &perms).await;
    let (_, key_b) = app.mailbox_with_key(&b.token, "b@mail.test", &perms).await;

    let invoice = receive(
        &app,
        &key,
        mail(
            "Carol Jones <carol@ext.test>",
            "box@mail.test",
            "Invoice 42 overdue",
            "A payment reminder about the kiwi order.",
        ),
    )
    .await;
    let lunch = receive(&app, &key, mail("Dan <dan@food.test>", "box@mail.test", "Lunch", "Pizza on Friday?")).await;
    let kiwi =
        receive(&app, &key, mail("Erin <erin@ext.test>", "box@mail.test", "Fruit", "Kiwi crates arrive Monday.")).await;
    // The same words in another mailbox of the team and in another team.
    receive(&app, &key_other_box, mail("Carol <carol@ext.test>", "other@mail.test", "Invoice kiwi", "kiwi payment"))
        .await;
    let theirs =
        receive(&app, &key_b, mail("Carol <carol@ext.test>", "b@mail.test", "Invoice kiwi", "kiwi payment")).await;

    assert_eq!(found(&app, &key, "q=kiwi").await, vec![kiwi.clone(), invoice.clone()]);
    assert_eq!(found(&app, &key, "q=KIWI").await, vec![kiwi.clone(), invoice.clone()], "case does not matter");
    assert_eq!(found(&app, &key, "q=kiwi%20payment").await, vec![invoice.clone()], "every word must match");
    assert_eq!(found(&app, &key, "q=invoice").await, vec![invoice.clone()], "subject");
    assert_eq!(found(&app, &key, "q=jones").await, vec![invoice.clone()], "sender name");
    assert_eq!(found(&app, &key, "q=carol%40ext.test").await, vec![invoice.clone()], "sender address");
    assert_eq!(found(&app, &key, "q=food").await, vec![lunch.clone()], "a sender's domain");
    assert_eq!(found(&app, &key, "q=box%40mail.test").await.len(), 3, "recipient");
    assert_eq!(found(&app, &key, "q=pineapple").await, Vec::<String>::new());
    // Search syntax is not passed through: operators and quotes are plain words.
    assert_eq!(found(&app, &key, "q=kiwi%20OR%20pizza").await, Vec::<String>::new());
    assert_eq!(found(&app, &key, "q=NEAR(kiwi").await, Vec::<String>::new());
    assert_eq!(found(&app, &key, "q=%22kiwi%22").await, vec![kiwi.clone(), invoice.clone()]);

    // Cursor paging over the matches.
    let first = expect_status(app.get("/api/v1/mailbox/messages?q=kiwi&limit=1", &key).await, StatusCode::OK).await;
    assert_eq!(first["data"][0]["id"], kiwi.as_str());
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = expect_status(
        app.get(&format!("/api/v1/mailbox/messages?q=kiwi&limit=1&cursor={cursor}"), &key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(second["data"][0]["id"], invoice.as_str());
    assert!(second["next_cursor"].is_null());

    // Other mailboxes and teams never match; each sees only its own.
    assert_eq!(found(&app, &key_other_box, "q=kiwi").await.len(), 1);
    assert_eq!(found(&app, &key_b, "q=kiwi").await, vec![theirs.clone()]);
    let mbx_id = mbx["id"].as_str().unwrap();
    let res = app.get(&format!("/api/v1/mailboxes/{mbx_id}/messages?q=kiwi"), &b.token).await;
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let by_owner =
        expect_status(app.get(&format!("/api/v1/mailboxes/{mbx_id}/messages?q=kiwi"), &a.token).await, StatusCode::OK)
            .await;
    assert_eq!(by_owner["data"].as_array().unwrap().len(), 2);

    // thread_id, since, until.
    let thread = expect_status(app.get(&format!("/api/v1/mailbox/messages/{kiwi}"), &key).await, StatusCode::OK).await
        ["thread_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(found(&app, &key, &format!("thread_id={thread}")).await, vec![kiwi.clone()]);
    assert_eq!(found(&app, &key, &format!("q=kiwi&thread_id={thread}")).await, vec![kiwi.clone()]);
    assert_eq!(found(&app, &key, "since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z").await.len(), 3);
    assert!(found(&app, &key, "since=2999-01-01T00:00:00Z").await.is_empty());
    assert!(found(&app, &key, "until=2000-01-01T00:00:00%2B02:00").await.is_empty());

    // Bad controls are 400 naming the parameter.
    // A query without a word matches nothing.
    assert!(found(&app, &key, "q=%22%22").await.is_empty());
    assert!(found(&app, &key, "q=*%20-").await.is_empty());
    assert!(found(&app, &key, "q=").await.is_empty());
    for (query, param) in [
        ("since=yesterday", "since"),
        ("since=", "since"),
        ("thread_id=", "thread_id"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("thread_id=msg_01J1M9C3K8ZQ4W8N5T2V7X6Y3B", "thread_id"),
    ] {
        let res = app.get(&format!("/api/v1/mailbox/messages?{query}"), &key).await;
        let err = expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert_eq!(err["param"], param, "{query}");
    }
    let long = "a".repeat(300);
    let res = app.get(&format!("/api/v1/mailbox/messages?q={long}"), &key).await;
    expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
}

async fn threads_found(app: &TestApp, path: &str, key: &str) -> Vec<String> {
    let body = expect_status(app.get(path, key).await, StatusCode::OK).await;
    body["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn thread_search_lists_the_threads_holding_a_match() {
    let app = TestApp::spawn().await;
    let a = app.signup("owner@ta.test", "TA").await;
    let b = app.signup("owner@tb.test", "TB").await;
    let perms = ["mailbox.read", "email.receive"];
    let (mbx, key) = app.mailbox_with_key(&a.token, "threads@mail.test", &perms).await;
    let (_, key_b) = app.mailbox_with_key(&b.token, "tb@mail.test", &perms).await;
    let thread_of = |id: String| {
        let app = &app;
        let key = &key;
        async move {
            let m = expect_status(app.get(&format!("/api/v1/mailbox/messages/{id}"), key).await, StatusCode::OK).await;
            m["thread_id"].as_str().unwrap().to_owned()
        }
    };
    // Two conversations; the word "mango" is only in the second message of the first.
    let first = receive(
        &app,
        &key,
        b"From: Carol <carol@ext.test>\r\nTo: threads@mail.test\r\nSubject: Order\r\nMessage-ID: <o1@ext.test>\r\n\r\nWhere is my order?\r\n".to_vec(),
    )
    .await;
    let reply = receive(
        &app,
        &key,
        b"From: Carol <carol@ext.test>\r\nTo: threads@mail.test\r\nSubject: Re: Order\r\nMessage-ID: <o2@ext.test>\r\nIn-Reply-To: <o1@ext.test>\r\n\r\nIt had the mango jam.\r\n".to_vec(),
    )
    .await;
    let other = receive(&app, &key, mail("Dan <dan@food.test>", "threads@mail.test", "Lunch", "Pizza?")).await;
    let order = thread_of(first).await;
    assert_eq!(thread_of(reply).await, order, "the reply joined the thread");
    let lunch = thread_of(other).await;
    receive(&app, &key_b, mail("Carol <carol@ext.test>", "tb@mail.test", "Re: Order", "mango mango")).await;

    let all = threads_found(&app, "/api/v1/mailbox/threads", &key).await;
    assert_eq!(all, vec![lunch.clone(), order.clone()]);
    assert_eq!(threads_found(&app, "/api/v1/mailbox/threads?q=mango", &key).await, vec![order.clone()]);
    assert_eq!(threads_found(&app, "/api/v1/mailbox/threads?q=PIZZA", &key).await, vec![lunch.clone()]);
    assert_eq!(threads_found(&app, "/api/v1/mailbox/threads?q=mango%20pizza", &key).await, Vec::<String>::new());
    assert!(threads_found(&app, "/api/v1/mailbox/threads?q=%22%22", &key).await.is_empty());
    // The matching thread keeps its whole count, not just the matching message.
    let body = expect_status(app.get("/api/v1/mailbox/threads?q=mango", &key).await, StatusCode::OK).await;
    assert_eq!(body["data"][0]["message_count"], 2, "{body}");
    // People see the same under the mailbox; another team sees only its own.
    let path = format!("/api/v1/mailboxes/{}/threads?q=mango", mbx["id"].as_str().unwrap());
    assert_eq!(threads_found(&app, &path, &a.token).await, vec![order]);
    expect_error(app.get(&path, &b.token).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(threads_found(&app, "/api/v1/mailbox/threads?q=mango", &key_b).await.len(), 1);
    let long = "a".repeat(300);
    let res = app.get(&format!("/api/v1/mailbox/threads?q={long}"), &key).await;
    assert_eq!(expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await["param"], "q");
}
