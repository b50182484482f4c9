//! Conversations (SPEC §16): every message gets a `thread_id` from Message-ID,
//! In-Reply-To and References (or, without them, a reply's subject and correspondent);
//! thread list and view for mailbox keys and for people; `thread_id` in events;
//! `extracted_text` holds the new text only.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn mail(from: &str, subject: &str, id: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: box@mail.test\r\nSubject: {subject}\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\
         Message-ID: <{id}>\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
    .into_bytes()
}

async fn receive(app: &TestApp, key: &str, raw: Vec<u8>) -> Value {
    let res = app
        .req(reqwest::Method::POST, "/api/v1/mailbox/messages", key)
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::CREATED).await
}

#[tokio::test]
async fn replies_join_their_thread_and_extracted_text_is_only_the_new_text() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@thr.test", "Thr").await;
    let (mbx, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read", "email.receive"]).await;
    let mbx_id = mbx["id"].as_str().unwrap();

    // The first message arrives over real SMTP.
    let first = mail("Carol <carol@ext.test>", "Invoice 42", "c1@ext.test", "", "Where is my invoice?\r\n");
    let report = app.send_smtp("carol@ext.test", &["box@mail.test"], &first).await;
    assert_eq!(report["data"][0], 250, "{report}");
    let inbox = app.inbox(&key).await;
    let thread = inbox[0]["thread_id"].as_str().unwrap().to_owned();
    assert!(thread.starts_with("thr_"), "{thread}");
    assert_eq!(inbox[0]["direction"], "inbound");

    // A Gmail-style reply naming it joins the thread; only the new text is extracted.
    let gmail = "Any news?\r\n\r\nOn Tue, Dec 1, 2026 at 10:00 AM Box <box@mail.test> wrote:\r\n> We are on it.\r\n";
    let r2 = receive(
        &app,
        &key,
        mail(
            "Carol <carol@ext.test>",
            "Re: Invoice 42",
            "c2@ext.test",
            "In-Reply-To: <c1@ext.test>\r\nReferences: <c1@ext.test>\r\n",
            gmail,
        ),
    )
    .await;
    assert_eq!(r2["thread_id"], thread.as_str());
    assert_eq!(r2["extracted_text"], "Any news?");
    assert!(r2["text"].as_str().unwrap().contains("We are on it."), "the full text stays: {r2}");

    // Outlook quoting, References only (a client that drops In-Reply-To).
    let outlook = "Found it, thanks.\r\n\r\n-----Original Message-----\r\nFrom: Box <box@mail.test>\r\nSent: Tuesday, December 1, 2026 10:05 AM\r\nTo: Carol\r\nSubject: RE: Invoice 42\r\n\r\nAttached.\r\n";
    let r3 = receive(
        &app,
        &key,
        mail(
            "Carol <carol@ext.test>",
            "RE: Invoice 42",
            "c3@ext.test",
            "References: <c1@ext.test> <c2@ext.test>\r\n",
            outlook,
        ),
    )
    .await;
    assert_eq!(r3["thread_id"], thread.as_str());
    assert_eq!(r3["extracted_text"], "Found it, thanks.");

    // Without any header, a reply's subject from the same correspondent still joins
    // (Apple Mail quoting); the same subject from someone else does not, nor does a
    // new subject.
    let apple = "Perfect.\r\n\r\nSent from my iPhone\r\n\r\n> On 1 Dec 2026, at 10:06, Box <box@mail.test> wrote:\r\n> \r\n> Done.\r\n";
    let raw = format!("From: Carol <Carol@Ext.test>\r\nTo: box@mail.test\r\nSubject: Re: invoice  42\r\n\r\n{apple}");
    let r4 = receive(&app, &key, raw.into_bytes()).await;
    assert_eq!(r4["thread_id"], thread.as_str(), "subject fallback");
    assert_eq!(r4["extracted_text"], "Perfect.");
    let other =
        receive(&app, &key, mail("Dan <dan@ext.test>", "Re: Invoice 42", "d1@ext.test", "", "Me too\r\n")).await;
    assert_ne!(other["thread_id"], thread.as_str(), "another correspondent starts a thread");
    let fresh =
        receive(&app, &key, mail("Carol <carol@ext.test>", "Invoice 43", "c5@ext.test", "", "New one\r\n")).await;
    assert_ne!(fresh["thread_id"], thread.as_str());
    assert_ne!(fresh["thread_id"], other["thread_id"]);

    // The thread list: most recently active first, paged by cursor.
    let list = expect_status(app.get("/api/v1/mailbox/threads?limit=2", &key).await, StatusCode::OK).await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], fresh["thread_id"]);
    assert_eq!(data[1]["id"], other["thread_id"]);
    let cursor = list["next_cursor"].as_str().unwrap();
    let rest =
        expect_status(app.get(&format!("/api/v1/mailbox/threads?limit=2&cursor={cursor}"), &key).await, StatusCode::OK)
            .await;
    let rest = rest["data"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["id"], thread.as_str());
    assert_eq!(rest[0]["message_count"], 4);
    assert_eq!(rest[0]["subject"], "Invoice 42");
    assert_eq!(rest[0]["mailbox_id"], mbx_id);

    // The thread view: oldest first, with the extracted text of each message.
    let view = expect_status(app.get(&format!("/api/v1/mailbox/threads/{thread}"), &key).await, StatusCode::OK).await;
    let msgs = view["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4);
    assert_eq!(msgs[0]["message_id"], "c1@ext.test");
    assert_eq!(msgs[0]["extracted_text"], "Where is my invoice?");
    assert_eq!(msgs[1]["extracted_text"], "Any news?");
    assert_eq!(msgs[3]["extracted_text"], "Perfect.");
    assert!(msgs.iter().all(|m| m["thread_id"] == thread.as_str()));

    // People reach it under /mailboxes/{id}/threads.
    let by_owner = app.get(&format!("/api/v1/mailboxes/{mbx_id}/threads/{thread}"), &owner.token).await;
    let by_owner = expect_status(by_owner, StatusCode::OK).await;
    assert_eq!(by_owner["message_count"], 4);
    let list =
        expect_status(app.get(&format!("/api/v1/mailboxes/{mbx_id}/threads"), &owner.token).await, StatusCode::OK)
            .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3);

    // Events carry the thread.
    let events =
        expect_status(app.get("/api/v1/events?type=message.received", &owner.token).await, StatusCode::OK).await;
    let events = events["data"].as_array().unwrap();
    assert_eq!(events.len(), 6);
    assert!(events.iter().all(|e| e["data"]["thread_id"].as_str().is_some_and(|t| t.starts_with("thr_"))));
    assert_eq!(events.iter().filter(|e| e["data"]["thread_id"] == thread.as_str()).count(), 4);
}

#[tokio::test]
async fn threads_stay_inside_their_mailbox_and_team() {
    let app = TestApp::spawn().await;
    let a = app.signup("owner@a.test", "A").await;
    let b = app.signup("owner@b.test", "B").await;
    let perms = ["mailbox.read", "email.receive"];
    let (_, key_a) = app.mailbox_with_key(&a.token, "a@mail.test", &perms).await;
    let (mbx_a2, key_a2) = app.mailbox_with_key(&a.token, "a2@mail.test", &perms).await;
    let (mbx_b, key_b) = app.mailbox_with_key(&b.token, "b@mail.test", &perms).await;

    let m = receive(&app, &key_a, mail("Carol <carol@ext.test>", "Secret", "s1@ext.test", "", "a's mail\r\n")).await;
    let thread = m["thread_id"].as_str().unwrap();
    // Team B receives a reply naming team A's message: it starts its own thread.
    let reply = mail("Carol <carol@ext.test>", "Re: Secret", "s2@ext.test", "In-Reply-To: <s1@ext.test>\r\n", "hi\r\n");
    let in_b = receive(&app, &key_b, reply).await;
    assert_ne!(in_b["thread_id"], thread);

    // Another mailbox's key, another team's key and person: 404, never the thread.
    expect_error(
        app.get(&format!("/api/v1/mailbox/threads/{thread}"), &key_a2).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        app.get(&format!("/api/v1/mailbox/threads/{thread}"), &key_b).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let mbx_b_id = mbx_b["id"].as_str().unwrap();
    expect_error(
        app.get(&format!("/api/v1/mailboxes/{mbx_b_id}/threads/{thread}"), &b.token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        app.get(&format!("/api/v1/mailboxes/{mbx_b_id}/threads"), &a.token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let a2_list = expect_status(app.get("/api/v1/mailbox/threads", &key_a2).await, StatusCode::OK).await;
    assert_eq!(a2_list["data"], json!([]));
    let mbx_a2_id = mbx_a2["id"].as_str().unwrap();
    expect_error(
        app.get(&format!("/api/v1/mailboxes/{mbx_a2_id}/threads/thr_bogus"), &a.token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        app.get("/api/v1/mailbox/threads?cursor=thr_x", &key_a).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    // A mailbox key without mailbox.read is refused.
    let (_, no_read) = app.mailbox_with_key(&a.token, "a3@mail.test", &["email.receive"]).await;
    expect_error(app.get("/api/v1/mailbox/threads", &no_read).await, StatusCode::FORBIDDEN, "permission_denied").await;
}

#[tokio::test]
async fn an_email_sent_in_reply_joins_the_thread_of_the_message_it_answers() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@snd.test", "Snd").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read", "email.receive"]).await;
    let m = receive(&app, &key, mail("Carol <carol@ext.test>", "Order", "o1@ext.test", "", "Hi\r\n")).await;
    let thread = m["thread_id"].as_str().unwrap();

    let provider = app.create_smtp_provider(&owner.token, "relay").await;
    let group = app.create_group(&owner.token, provider["id"].as_str().unwrap()).await;
    let snd =
        app.create_key(&owner.token, json!({"name": "s", "kind": "sending", "delivery_group_id": group["id"]})).await;
    let snd = snd["key"].as_str().unwrap();
    let body = json!({"from": "box@mail.test", "to": ["carol@ext.test"], "subject": "Re: Order", "text": "Shipped.",
        "headers": {"In-Reply-To": "<o1@ext.test>", "References": "<o1@ext.test>"}});
    let sent = expect_status(app.post("/api/v1/emails", snd, body).await, StatusCode::ACCEPTED).await;
    let email =
        expect_status(app.get(&format!("/api/v1/emails/{}", sent["id"].as_str().unwrap()), snd).await, StatusCode::OK)
            .await;
    assert_eq!(email["thread_id"], thread);
    let unrelated = json!({"from": "box@mail.test", "to": ["carol@ext.test"], "subject": "News", "text": "x"});
    let sent2 = expect_status(app.post("/api/v1/emails", snd, unrelated).await, StatusCode::ACCEPTED).await;
    let email2 =
        expect_status(app.get(&format!("/api/v1/emails/{}", sent2["id"].as_str().unwrap()), snd).await, StatusCode::OK)
            .await;
    let other = email2["thread_id"].as_str().unwrap();
    assert!(other.starts_with("thr_") && other != thread);
    let queued = expect_status(app.get("/api/v1/events?type=message.queued", &owner.token).await, StatusCode::OK).await;
    let threads: Vec<&str> =
        queued["data"].as_array().unwrap().iter().filter_map(|e| e["data"]["thread_id"].as_str()).collect();
    assert_eq!(threads, vec![other, thread]);

    // The correspondent answers the sent email: the answer joins the same thread.
    let header = email["message_id_header"].as_str().unwrap();
    let answer =
        mail("Carol <carol@ext.test>", "Re: Order", "o2@ext.test", &format!("In-Reply-To: {header}\r\n"), "Thanks\r\n");
    let got = receive(&app, &key, answer).await;
    assert_eq!(got["thread_id"], thread);
    // An answer to the unrelated email, found by its Message-ID alone (no subject this
    // mailbox has seen from Carol), joins that email's thread; a Message-ID that only
    // looks like one of ours, with another domain, starts its own.
    let header2 = email2["message_id_header"].as_str().unwrap();
    let answer =
        mail("Carol <carol@ext.test>", "Re: News", "o3@ext.test", &format!("In-Reply-To: {header2}\r\n"), "Ok\r\n");
    assert_eq!(receive(&app, &key, answer).await["thread_id"], other);
    let forged = header2.replace("@mail.test", "@forged.test");
    assert_ne!(forged, header2);
    let answer =
        mail("Dan <dan@ext.test>", "Re: Elsewhere", "o4@ext.test", &format!("In-Reply-To: {forged}\r\n"), "?\r\n");
    let alone = receive(&app, &key, answer).await;
    assert!(alone["thread_id"] != other && alone["thread_id"] != thread, "{alone}");
}

/// `/llms.txt` (SPEC §16) is generated from the OpenAPI document: every documented
/// operation is in it, with the agents' routes, and it needs no credential.
#[tokio::test]
async fn llms_txt_lists_every_operation_of_the_openapi_document() {
    let app = TestApp::spawn().await;
    let res = reqwest::get(app.url("/llms.txt")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    let text = res.text().await.unwrap();
    let doc: Value = reqwest::get(app.url("/api/v1/openapi.json")).await.unwrap().json().await.unwrap();
    let mut n = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                let line = format!("- {} {path}", method.to_uppercase());
                assert!(text.lines().any(|l| l.starts_with(&line)), "{line} missing from /llms.txt");
                n += 1;
            }
        }
    }
    assert!(n > 50, "{n} operations");
    for needle in
        ["/api/v1/mailbox/threads", "q=", "/api/v1/mailbox/events/ws", "extracted_text", "mailbox.send", "POST /mcp"]
    {
        assert!(text.contains(needle), "{needle}");
    }
}
