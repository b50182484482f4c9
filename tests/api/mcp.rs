//! The MCP server (SPEC §16) with the official clients — the Python SDK (`mcp`, the
//! current revision through `server/discover`) and the TypeScript SDK
//! (`@modelcontextprotocol/sdk`, the initialize handshake): tools follow the
//! credential's kind and permissions and a tool not listed is refused, `wait_for_message`
//! returns mail sent over SMTP during the call, `reply_to_message` reaches a real SMTP
//! server with the thread's headers, a `send_policy` refusal and another team's message
//! are tool results with `isError`, a bad credential is the API's 401.

use crate::helpers::*;
use crate::mail_servers::SmtpServer;
use crate::outbound::{group, sending_key, smtp_provider};
use mail_parser::MessageParser;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

#[derive(Clone, Copy, Debug)]
enum Sdk {
    Python,
    TypeScript,
}

const SDKS: [Sdk; 2] = [Sdk::Python, Sdk::TypeScript];

/// One official MCP client in a child process, driven a JSON line at a time.
struct Mcp {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Mcp {
    fn start(sdk: Sdk, app: &TestApp, key: &str) -> Mcp {
        let url = app.url("/mcp");
        let mut cmd = match sdk {
            Sdk::Python => {
                let mut c = tokio::process::Command::new("python3");
                c.arg(support("mcp_client.py"));
                c
            }
            Sdk::TypeScript => {
                let mut c = tokio::process::Command::new("node");
                c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/mcp.mjs"));
                c
            }
        };
        let mut child = cmd
            .args([url.as_str(), key])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with mcp (pip install mcp) and node with tests/js installed");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Mcp { _child: child, stdin, lines }
    }

    async fn next(&mut self) -> Value {
        let within = Duration::from_secs(120);
        let line = tokio::time::timeout(within, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("nothing from the MCP client within {within:?}"))
            .unwrap()
            .expect("the MCP client ended");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    /// Starts the client and waits until it is connected; answers the protocol revision.
    async fn connect(sdk: Sdk, app: &TestApp, key: &str) -> (Mcp, String) {
        let mut client = Mcp::start(sdk, app, key);
        let ready = client.next().await;
        assert_eq!(ready["ready"], true, "{sdk:?} did not connect: {ready}");
        (client, ready["protocol"].as_str().unwrap_or_default().to_owned())
    }

    async fn send(&mut self, cmd: Value) {
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn tools(&mut self) -> Vec<Value> {
        self.send(json!({"op": "list_tools"})).await;
        let out = self.next().await;
        out["tools"].as_array().unwrap_or_else(|| panic!("no tools: {out}")).clone()
    }

    async fn tool_names(&mut self) -> Vec<String> {
        self.tools().await.iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    }

    /// Calls a tool and answers `{is_error, text, structured}`.
    async fn call(&mut self, name: &str, arguments: Value) -> Value {
        self.send(json!({"op": "call", "name": name, "arguments": arguments})).await;
        self.answer().await
    }

    async fn answer(&mut self) -> Value {
        let out = self.next().await;
        assert!(out.get("is_error").is_some(), "a tool result, not a protocol failure: {out}");
        out
    }
}

/// The API's error body a tool refusal carries as its text.
fn tool_error(result: &Value) -> Value {
    assert_eq!(result["is_error"], true, "expected a refusal: {result}");
    let body: Value = serde_json::from_str(result["text"].as_str().unwrap()).expect("the error body as text");
    body["error"].clone()
}

fn ok(result: &Value) -> Value {
    assert_eq!(result["is_error"], false, "the tool failed: {result}");
    result["structured"].clone()
}

/// A team with a mailbox that sends through an SMTP server on `port`; answers the owner,
/// the mailbox id and a mailbox key with `perms`.
async fn agent(app: &TestApp, port: u16, perms: &[&str]) -> (Person, String, String, String) {
    let owner = app.signup("owner@mcp.test", "MCP").await;
    let prv = smtp_provider(app, &owner.token, "relay", port, None).await;
    let g = group(app, &owner.token, "failover", json!([{"provider_id": prv}])).await;
    let (mbx, key) = app.mailbox_with_key(&owner.token, "agent@mail.test", perms).await;
    let mbx_id = mbx["id"].as_str().unwrap().to_owned();
    let res = app
        .patch(&format!("/api/v1/mailboxes/{mbx_id}/settings"), &owner.token, json!({"send_delivery_group_id": g}))
        .await;
    expect_status(res, StatusCode::OK).await;
    (owner, mbx_id, key, g)
}

fn header(raw: &[u8], name: &str) -> Option<String> {
    MessageParser::default().parse(raw).unwrap().header_raw(name).map(|v| v.trim().to_owned())
}

#[tokio::test]
async fn tools_follow_the_credential_and_unlisted_tools_are_refused() {
    let app = TestApp::spawn().await;
    let relay = SmtpServer::start(None).await;
    let (owner, mbx_id, sender_key, g) = agent(&app, relay.port, &["mailbox.read", "mailbox.send"]).await;
    let reader_key = app.create_key(&owner.token, json!({"name": "ro", "kind": "mailbox", "mailbox_id": mbx_id})).await
        ["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let sending = sending_key(&app, &owner.token, &g).await;
    let infra = app.create_key(&owner.token, json!({"name": "inf", "kind": "infrastructure"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let reads = ["list_messages", "search_messages", "get_message", "list_threads", "get_thread", "get_attachment"];
    let sends = ["reply_to_message", "forward_message", "send_message"];
    for sdk in SDKS {
        // A mailbox key without mailbox.send: its mailbox's reads and the wait, nothing that sends.
        let (mut c, protocol) = Mcp::connect(sdk, &app, &reader_key).await;
        match sdk {
            Sdk::Python => assert_eq!(protocol, "2026-07-28", "the Python SDK speaks the current revision"),
            Sdk::TypeScript => assert!(protocol.starts_with("20"), "{protocol}"),
        }
        let names = c.tool_names().await;
        let mut expected: Vec<&str> = reads.to_vec();
        expected.push("wait_for_message");
        assert_eq!(names, expected, "{sdk:?}");
        // Not listed, and refused if called anyway.
        let refused =
            c.call("reply_to_message", json!({"message_id": "msg_01JDEADBEEF0000000000000000", "text": "x"})).await;
        let err = tool_error(&refused);
        assert_eq!(err["type"], "permission_denied", "{sdk:?}: {err}");
        assert!(err["message"].as_str().unwrap().contains("reply_to_message"), "{err}");
        let refused = c.call("send_email", json!({})).await;
        assert_eq!(tool_error(&refused)["type"], "permission_denied");

        // With mailbox.send: the sending tools too, described with the confirmation to ask for.
        let (mut c, _) = Mcp::connect(sdk, &app, &sender_key).await;
        let tools = c.tools().await;
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        for s in sends {
            assert!(names.contains(&s), "{sdk:?}: {names:?}");
        }
        assert!(!names.contains(&"send_email"), "a mailbox key sees no send_email: {names:?}");
        let reply = tools.iter().find(|t| t["name"] == "reply_to_message").unwrap();
        assert!(reply["description"].as_str().unwrap().contains("confirmation"), "{reply}");
        assert_eq!(reply["input_schema"]["required"], json!(["message_id"]));
        // A mailbox key's tools take no mailbox_id: the key names its mailbox.
        let get = tools.iter().find(|t| t["name"] == "get_message").unwrap();
        assert!(get["input_schema"]["properties"].get("mailbox_id").is_none(), "{get}");

        // A sending key: sending and its status only.
        let (mut c, _) = Mcp::connect(sdk, &app, &sending).await;
        assert_eq!(c.tool_names().await, vec!["send_email", "get_email"], "{sdk:?}");
        let refused = c.call("list_messages", json!({})).await;
        assert_eq!(tool_error(&refused)["type"], "permission_denied");
        // send_email is POST /emails: queued through the key's group, idempotent by key.
        let email = json!({"from": "App <app@ext.test>", "to": ["zoe@ext.test"], "subject": format!("Via MCP {sdk:?}"),
            "text": "Hello", "idempotency_key": format!("mcp-{sdk:?}")});
        let queued = ok(&c.call("send_email", email.clone()).await);
        assert_eq!(queued["status"], "queued");
        let again = ok(&c.call("send_email", email).await);
        assert_eq!((&again["id"], &again["idempotent_replayed"]), (&queued["id"], &json!(true)));
        let status = ok(&c.call("get_email", json!({"email_id": queued["id"]})).await);
        assert_eq!(status["subject"], format!("Via MCP {sdk:?}"));
        assert_eq!(status["to"], json!(["zoe@ext.test"]));
        let bad = c.call("send_email", json!({"from": "app@ext.test", "to": [], "subject": "x", "text": "y"})).await;
        assert_eq!(tool_error(&bad)["type"], "invalid_request");

        // An infrastructure key: the team's mailboxes by mailbox_id, no wait, no sending.
        let (mut c, _) = Mcp::connect(sdk, &app, &infra).await;
        let tools = c.tools().await;
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        let mut expected = vec!["list_mailboxes"];
        expected.extend(reads);
        expected.push("get_email");
        assert_eq!(names, expected, "{sdk:?}");
        let get = tools.iter().find(|t| t["name"] == "get_message").unwrap();
        assert_eq!(get["input_schema"]["required"], json!(["mailbox_id", "message_id"]));
        let mailboxes = ok(&c.call("list_mailboxes", json!({})).await);
        assert_eq!(mailboxes["data"][0]["id"], mbx_id.as_str());
        assert_eq!(mailboxes["data"][0]["address"], "agent@mail.test");
        // A wrong argument is the API's 422 naming it, as a tool result.
        let bad = c.call("list_messages", json!({"mailbox_id": mbx_id, "limit": 500})).await;
        let err = tool_error(&bad);
        assert_eq!((err["type"].as_str(), err["param"].as_str()), (Some("invalid_request"), Some("limit")), "{err}");
        let bad = c.call("list_messages", json!({"mailbox_id": mbx_id, "colour": "red"})).await;
        assert_eq!(tool_error(&bad)["type"], "invalid_request");
    }
    // One delivery per send_email (the repeats were replayed), through the key's group.
    eventually("both emails are delivered", Duration::from_secs(30), || async { relay.received().len() == 2 }).await;
    let mut subjects: Vec<String> =
        relay.received().iter().map(|r| header(&r.data, "Subject").unwrap_or_default()).collect();
    subjects.sort();
    assert_eq!(subjects, vec!["Via MCP Python", "Via MCP TypeScript"]);
}

/// The conversation of an agent over MCP with `sdk`: wait, read, reply, the policy, and
/// another team's message.
async fn agent_conversation(sdk: Sdk) {
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn().await;
    let (owner, mbx_id, key, _) = agent(&app, relay.port, &["mailbox.read", "mailbox.send"]).await;
    let (mut c, _) = Mcp::connect(sdk, &app, &key).await;

    // Nothing arrives: the wait ends with timed_out, not an error.
    let quiet = ok(&c.call("wait_for_message", json!({"timeout_seconds": 1})).await);
    assert_eq!(quiet["timed_out"], true);
    assert_eq!(quiet["message"], Value::Null);
    let bad = c.call("wait_for_message", json!({"timeout_seconds": 301})).await;
    assert_eq!(tool_error(&bad)["param"], "timeout_seconds");

    // The agent waits; Carol writes over SMTP while the call is held.
    c.send(json!({"op": "call", "name": "wait_for_message", "arguments": {"timeout_seconds": 120}})).await;
    eventually("the wait is open on the server", Duration::from_secs(60), || async {
        app.state.0.streams.lock().values().sum::<usize>() > 0
    })
    .await;
    let first = b"From: Carol <carol@ext.test>\r\nTo: agent@mail.test\r\nSubject: Broken widget\r\n\
Message-ID: <w1@ext.test>\r\n\r\nMy widget is broken.\r\n";
    let report = app.send_smtp("carol@ext.test", &["agent@mail.test"], first).await;
    assert_eq!(report["data"][0], 250, "{report}");
    let got = ok(&c.answer().await);
    assert_eq!(got["timed_out"], false);
    let message = &got["message"];
    assert_eq!(message["subject"], "Broken widget");
    assert_eq!(message["from"]["address"], "carol@ext.test");
    assert_eq!(message["extracted_text"], "My widget is broken.");
    assert!(got["event_id"].as_str().unwrap().starts_with("evt_"), "{got}");
    let message_id = message["id"].as_str().unwrap().to_owned();
    let thread_id = message["thread_id"].as_str().unwrap().to_owned();
    // Resuming after that event finds nothing newer.
    let next = ok(&c.call("wait_for_message", json!({"timeout_seconds": 1, "after_event_id": got["event_id"]})).await);
    assert_eq!(next["timed_out"], true);

    // Reads through the same operations as the REST routes.
    let found = ok(&c.call("search_messages", json!({"q": "widget"})).await);
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(found["data"][0]["id"], message_id.as_str());
    let none = ok(&c.call("search_messages", json!({"q": "gearbox"})).await);
    assert_eq!(none["data"], json!([]));

    // The reply goes out from the mailbox, in the thread, with In-Reply-To.
    let sent = ok(&c
        .call("reply_to_message", json!({"message_id": message_id, "text": "Sorry! A new one is on its way."}))
        .await);
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["thread_id"], thread_id.as_str());
    eventually("the reply reaches the SMTP server", Duration::from_secs(30), || async { relay.received().len() == 1 })
        .await;
    let out = &relay.received()[0];
    assert_eq!(out.mail_from, "agent@mail.test");
    assert_eq!(out.rcpt_tos, vec!["carol@ext.test"]);
    assert_eq!(header(&out.data, "In-Reply-To").as_deref(), Some("<w1@ext.test>"));
    assert_eq!(header(&out.data, "Subject").as_deref(), Some("Re: Broken widget"));
    let thread = ok(&c.call("get_thread", json!({"thread_id": thread_id})).await);
    let directions: Vec<&str> =
        thread["messages"].as_array().unwrap().iter().map(|m| m["direction"].as_str().unwrap()).collect();
    assert_eq!(directions, vec!["inbound", "outbound"]);

    // Beyond the send_policy: a tool result with isError naming the rule.
    let res = app
        .patch(
            &format!("/api/v1/mailboxes/{mbx_id}/settings"),
            &owner.token,
            json!({"send_policy": {"allowed_domains": ["partner.test"]}}),
        )
        .await;
    expect_status(res, StatusCode::OK).await;
    let refused = c.call("send_message", json!({"to": ["erin@ext.test"], "subject": "Hello", "text": "Hi"})).await;
    let err = tool_error(&refused);
    assert_eq!(err["type"], "permission_denied", "{err}");
    assert_eq!(err["param"], "send_policy.allowed_domains", "{err}");
    assert_eq!(relay.received().len(), 1, "nothing more was sent");

    // Another team's message is not found.
    let other = app.signup("o@other.test", "Other").await;
    let (_, other_key) = app.mailbox_with_key(&other.token, "theirs@mail.test", &["mailbox.read"]).await;
    let report = app
        .send_smtp("x@ext.test", &["theirs@mail.test"], b"From: x@ext.test\r\nSubject: Private\r\n\r\nSecret\r\n")
        .await;
    assert_eq!(report["data"][0], 250, "{report}");
    let theirs = app.inbox(&other_key).await[0]["id"].as_str().unwrap().to_owned();
    for (tool, args) in [
        ("get_message", json!({"message_id": theirs})),
        ("get_thread", json!({"thread_id": "thr_01JDEADBEEF0000000000000000"})),
        ("reply_to_message", json!({"message_id": theirs, "text": "hi"})),
    ] {
        let err = tool_error(&c.call(tool, args).await);
        assert_eq!(err["type"], "not_found", "{tool}: {err}");
    }
    assert_eq!(relay.received().len(), 1, "nothing more was sent");
}

#[tokio::test]
async fn an_agent_on_the_python_sdk_waits_for_mail_and_replies() {
    agent_conversation(Sdk::Python).await;
}

#[tokio::test]
async fn an_agent_on_the_typescript_sdk_waits_for_mail_and_replies() {
    agent_conversation(Sdk::TypeScript).await;
}

#[tokio::test]
async fn a_missing_or_bad_credential_is_the_apis_401_and_get_is_405() {
    let app = TestApp::spawn().await;
    let rpc = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let res = app
        .client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&rpc)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    let res = app
        .client
        .post(app.url("/mcp"))
        .bearer_auth("smx_mbx_not_a_key")
        .header("accept", "application/json, text/event-stream")
        .json(&rpc)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    // Stateless: no server-to-client stream to open with GET, whatever the credential.
    let owner = app.signup("o@auth.test", "Auth").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "agent@mail.test", &["mailbox.read"]).await;
    let res = app.get("/mcp", &key).await;
    expect_error(res, StatusCode::METHOD_NOT_ALLOWED, "invalid_request").await;
    for sdk in SDKS {
        let mut c = Mcp::start(sdk, &app, "smx_mbx_not_a_key");
        let out = c.next().await;
        assert!(out.get("ready").is_none(), "{sdk:?} connected with a bad key: {out}");
        // Python reports the HTTP status, TypeScript the API's error body.
        let error = out["error"].as_str().unwrap_or_default();
        assert!(error.contains("401") || error.contains("authentication_failed"), "{sdk:?}: {out}");
    }
}

#[tokio::test]
async fn wait_for_message_on_one_node_returns_mail_received_by_another() {
    if !on_postgres() {
        eprintln!("many nodes share a PostgreSQL database: nothing to test on SQLite");
        return;
    }
    // Nodes share the database and the bodies' bucket (SPEC §12).
    let s3 = crate::mail_servers::S3Server::start().await;
    let mut env = s3.settings("mcp/bodies");
    env.push(("SENDMUX_SECRET_KEY".into(), "7a".repeat(32)));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(&env).await;
    let node = app.spawn_node(&[]).await;
    let owner = app.signup("o@nodes.test", "Nodes").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "agent@mail.test", &["mailbox.read"]).await;
    let (mut c, _) = Mcp::connect(Sdk::Python, &node, &key).await;
    c.send(json!({"op": "call", "name": "wait_for_message", "arguments": {"timeout_seconds": 120}})).await;
    eventually("the wait is open on the second node", Duration::from_secs(60), || async {
        node.state.0.streams.lock().values().sum::<usize>() > 0
    })
    .await;
    // Received by the first node's SMTP listener.
    let raw = b"From: dora@ext.test\r\nTo: agent@mail.test\r\nSubject: Across nodes\r\n\r\nHello from node one\r\n";
    let report = app.send_smtp("dora@ext.test", &["agent@mail.test"], raw).await;
    assert_eq!(report["data"][0], 250, "{report}");
    let got = ok(&c.answer().await);
    assert_eq!(got["timed_out"], false);
    assert_eq!(got["message"]["subject"], "Across nodes");
    assert_eq!(got["message"]["extracted_text"], "Hello from node one");
}
