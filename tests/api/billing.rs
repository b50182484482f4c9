//! Usage metering and the billing API (API.md §10): exact decimal amounts from real
//! traffic, storage integrated over time, counted-once units, per-day and CSV views,
//! permissions, and the operator's monthly view (CLI and admin API).

use crate::helpers::*;
use crate::inbound::SIMPLE;
use crate::mail_servers::*;
use crate::outbound::{email, group, send, sending_key, simple, smtp_provider};
use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use sendmux::ids::TeamId;
use sendmux::outbound::worker::run_pending_jobs;
use sendmux::store::TeamScope;
use sendmux::store::usage;
use sendmux::store::writer::{Batch, BatchConn, Writer};
use serde_json::{Value, json};
use std::str::FromStr;
use std::time::Duration;

const NO_WORKERS: (&str, &str) = ("SENDMUX_OUTBOUND_WORKERS", "0");
const GB: i64 = 1_000_000_000;

fn ms(y: i32, m: u32, d: u32, h: u32) -> i64 {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap().timestamp_millis()
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// `n` emails at `price_per_1000`, as the API must print it.
fn emails(n: i64, price_per_1000: &str) -> String {
    (Decimal::from(n) * dec(price_per_1000) / Decimal::from(1000)).normalize().to_string()
}

fn item<'a>(usage: &'a Value, metric: &str) -> &'a Value {
    usage["line_items"].as_array().unwrap().iter().find(|i| i["metric"] == metric).unwrap_or_else(|| panic!("{usage}"))
}

fn qty(usage: &Value, metric: &str) -> String {
    item(usage, metric)["quantity"].as_str().unwrap().to_owned()
}

fn amount(usage: &Value, metric: &str) -> String {
    item(usage, metric)["amount"].as_str().unwrap().to_owned()
}

/// The sum of the line items' amounts must be the total.
fn assert_total_is_sum(usage: &Value) {
    let sum: Decimal = usage["line_items"].as_array().unwrap().iter().map(|i| dec(i["amount"].as_str().unwrap())).sum();
    assert_eq!(dec(usage["total"].as_str().unwrap()), sum, "{usage}");
}

async fn billing(app: &TestApp, token: &str, query: &str) -> Value {
    expect_status(app.get(&format!("/api/v1/billing/usage{query}"), token).await, StatusCode::OK).await
}

async fn inject(app: &TestApp, key: &str) {
    let res = app
        .req(reqwest::Method::POST, "/api/v1/mailbox/messages", key)
        .header("content-type", "message/rfc822")
        .body(SIMPLE)
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::CREATED).await;
}

/// A mailbox at `address` and a key that may inject into it.
async fn receiving_key(app: &TestApp, token: &str, address: &str) -> String {
    app.mailbox_with_key(token, address, &["mailbox.read", "email.receive"]).await.1
}

async fn drain(app: &TestApp) {
    run_pending_jobs(&app.state).await.expect("worker step");
}

async fn records(app: &TestApp, team: &str) -> i64 {
    app.count("SELECT COUNT(*) FROM usage_records WHERE team_id = $1", team).await
}

#[tokio::test]
async fn quantities_and_amounts_are_exact_and_another_teams_traffic_never_appears() {
    let relay = SmtpServer::start(None).await;
    let ses = SesServer::start(&["example.com"]).await;
    let dns = DnsServer::start(&[]).await;
    let app = crate::domains::app_with_dns(
        &dns,
        &[
            NO_WORKERS,
            ("SENDMUX_MANAGED_SES_REGION", "us-east-1"),
            ("SENDMUX_MANAGED_SES_ENDPOINT", &ses.endpoint),
            ("SENDMUX_MANAGED_SES_ACCESS_KEY_ID", &ses.access_key_id),
            ("SENDMUX_MANAGED_SES_SECRET_ACCESS_KEY", &ses.secret_access_key),
        ],
    )
    .await;
    let owner = app.signup("o@bill.test", "Billed").await;
    // The managed route sends only from a domain the team verified (API.md §5).
    crate::domains::verified_domain(&app, &dns, &owner.token, json!({"name": "example.com"})).await;
    app.add_member(&owner, "m@bill.test", "member").await;
    app.add_member(&owner, "d@bill.test", "developer").await;
    // 3 messages injected over the API and 2 over SMTP.
    let inbox = receiving_key(&app, &owner.token, "box@mail.test").await;
    for _ in 0..3 {
        inject(&app, &inbox).await;
    }
    for _ in 0..2 {
        let report = app.send_smtp("ann@sender.test", &["box@mail.test"], SIMPLE).await;
        assert_eq!(report["data"][0], 250, "{report}");
    }
    // 4 sends through the team's own SMTP provider, 3 through the managed SES route.
    let own = smtp_provider(&app, &owner.token, "relay", relay.port, None).await;
    let own_key =
        sending_key(&app, &owner.token, &group(&app, &owner.token, "failover", json!([{"provider_id": own}])).await)
            .await;
    let managed_key = sending_key(
        &app,
        &owner.token,
        &group(&app, &owner.token, "failover", json!([{"provider_id": "managed"}])).await,
    )
    .await;
    for i in 0..4 {
        send(&app, &own_key, simple(&format!("own{i}@example.org"))).await;
    }
    for i in 0..3 {
        send(&app, &managed_key, simple(&format!("ses{i}@example.org"))).await;
    }

    // Another team's traffic: 7 inbound, 5 own sends.
    let other = app.signup("o@other.test", "Other").await;
    let other_inbox = receiving_key(&app, &other.token, "other@mail.test").await;
    for _ in 0..7 {
        inject(&app, &other_inbox).await;
    }
    let other_prv = smtp_provider(&app, &other.token, "relay", relay.port, None).await;
    let other_key = sending_key(
        &app,
        &other.token,
        &group(&app, &other.token, "failover", json!([{"provider_id": other_prv}])).await,
    )
    .await;
    for i in 0..5 {
        send(&app, &other_key, simple(&format!("x{i}@example.org"))).await;
    }
    drain(&app).await;
    assert_eq!(relay.received().len(), 9);

    let u = billing(&app, &owner.token, "").await;
    assert_eq!(u["team_id"], owner.team_id.as_str());
    assert_eq!(u["currency"], "USD");
    let month = Utc::now().format("%Y-%m").to_string();
    assert!(u["from"].as_str().unwrap().starts_with(&format!("{month}-01T00:00:00")), "{u}");
    assert_eq!((qty(&u, "inbound_emails"), amount(&u, "inbound_emails")), ("5".into(), emails(5, "0.15")));
    assert_eq!(amount(&u, "inbound_emails"), "0.00075");
    assert_eq!((qty(&u, "outbound_emails"), amount(&u, "outbound_emails")), ("4".into(), emails(4, "0.15")));
    assert_eq!(amount(&u, "outbound_emails"), "0.0006");
    assert_eq!((qty(&u, "managed_ses_emails"), amount(&u, "managed_ses_emails")), ("3".into(), emails(3, "0.25")));
    assert_eq!(amount(&u, "managed_ses_emails"), "0.00075");
    for (metric, price) in [("inbound_emails", "0.15"), ("outbound_emails", "0.15"), ("managed_ses_emails", "0.25")] {
        assert_eq!(dec(item(&u, metric)["unit_price"].as_str().unwrap()), dec(price));
        assert_eq!(item(&u, metric)["unit"], "1000_emails");
    }
    // The stored messages are on the storage meter; a few KB for seconds rounds to 0 at
    // 9 decimal places of a GB-month (the integration itself is tested below).
    let stored = "SELECT CAST(SUM(delta_bytes) AS BIGINT) FROM storage_changes WHERE team_id = $1";
    assert_eq!(app.count(stored, &owner.team_id).await, 5 * SIMPLE.len() as i64);
    assert_eq!(app.count(stored, &other.team_id).await, 7 * SIMPLE.len() as i64);
    assert_eq!((qty(&u, "mailbox_storage"), amount(&u, "mailbox_storage")), ("0".into(), "0".into()));
    assert_eq!(u["total"], (dec("0.00075") + dec("0.0006") + dec("0.00075")).normalize().to_string());
    assert_eq!(u["seats"], json!({"count": 3, "amount": "0.00"}));
    assert_total_is_sum(&u);

    let o = billing(&app, &other.token, "").await;
    assert_eq!(o["team_id"], other.team_id.as_str());
    assert_eq!(qty(&o, "inbound_emails"), "7");
    assert_eq!(qty(&o, "outbound_emails"), "5");
    assert_eq!(qty(&o, "managed_ses_emails"), "0");
    assert_eq!(amount(&o, "managed_ses_emails"), "0");
    assert_eq!(o["seats"]["count"], 1);
    assert_total_is_sum(&o);
}

#[tokio::test]
async fn storage_gb_months_follow_what_was_stored_and_for_how_long() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@storage.test", "Storage").await;
    let team = owner.team_id.as_str();
    let mut conn = app.state.store.pool().acquire().await.unwrap();
    // 1 GB from the middle of September (30 days); deleted half way through October (31).
    usage::storage_change(&mut conn.team(&TeamId::stored(team.to_owned())), None, None, GB, ms(2026, 9, 16, 0))
        .await
        .unwrap();
    usage::storage_change(&mut conn.team(&TeamId::stored(team.to_owned())), None, None, -GB, ms(2026, 10, 16, 12))
        .await
        .unwrap();
    drop(conn);

    let sep = billing(&app, &owner.token, "?from=2026-09-01&to=2026-10-01").await;
    assert_eq!((qty(&sep, "mailbox_storage"), amount(&sep, "mailbox_storage")), ("0.5".into(), "0.01".into()));
    assert_eq!(item(&sep, "mailbox_storage")["unit"], "gb_month");
    assert_eq!(sep["total"], "0.01");
    let oct = billing(&app, &owner.token, "?from=2026-10-01&to=2026-11-01").await;
    assert_eq!(qty(&oct, "mailbox_storage"), "0.5", "the deletion half way through halves October");
    // Two months, each by its own length: half of each.
    let both = billing(&app, &owner.token, "?from=2026-09-01&to=2026-11-01").await;
    assert_eq!((qty(&both, "mailbox_storage"), amount(&both, "mailbox_storage")), ("1".into(), "0.02".into()));
    // Nothing is stored before or after.
    let aug = billing(&app, &owner.token, "?from=2026-08-01&to=2026-09-01").await;
    assert_eq!(qty(&aug, "mailbox_storage"), "0");
    let nov = billing(&app, &owner.token, "?from=2026-10-20&to=2026-10-25").await;
    assert_eq!(qty(&nov, "mailbox_storage"), "0");
}

#[tokio::test]
async fn line_items_integrate_storage_only_up_to_an_injected_now() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@clock.test", "Clock").await;
    let team = owner.team_id.as_str();
    let prices = sendmux::billing::Prices::default();
    let mut conn = app.state.store.pool().acquire().await.unwrap();
    // 2 GB from the first of August (31 days); 1 GB more on August 9.
    usage::storage_change(&mut conn.team(&TeamId::stored(team.to_owned())), None, None, 2 * GB, ms(2026, 8, 1, 0))
        .await
        .unwrap();
    usage::storage_change(&mut conn.team(&TeamId::stored(team.to_owned())), None, None, GB, ms(2026, 8, 9, 0))
        .await
        .unwrap();
    let (from, to) = (ms(2026, 8, 1, 0), ms(2026, 9, 1, 0));
    let storage = |items: &[sendmux::billing::LineItem]| {
        let i = items.iter().find(|i| i.metric == "mailbox_storage").unwrap();
        (i.quantity.to_string(), i.amount.to_string())
    };
    // At noon on August 16 (15.5 days in): 2 GB × 15.5/31 + 1 GB × 7.5/31 = 1 + 15/62.
    let now = ms(2026, 8, 16, 12);
    let items = sendmux::billing::line_items(&mut conn, &TeamId::stored(team.to_owned()), from, to, now, &prices)
        .await
        .unwrap();
    let expected = Decimal::ONE + Decimal::from(15) / Decimal::from(62);
    let expected = expected.round_dp_with_strategy(9, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    assert_eq!(storage(&items).0, expected.normalize().to_string());
    assert_eq!(storage(&items).0, "1.241935484");
    assert_eq!(storage(&items).1, "0.024839");
    assert_eq!(sendmux::billing::total(&items).to_string(), "0.024839");
    // Before August 9 only the first 2 GB count: 8 days of 31.
    let items =
        sendmux::billing::line_items(&mut conn, &TeamId::stored(team.to_owned()), from, to, ms(2026, 8, 9, 0), &prices)
            .await
            .unwrap();
    let expected = (Decimal::from(16) / Decimal::from(31))
        .round_dp_with_strategy(9, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .normalize();
    assert_eq!(storage(&items).0, expected.to_string());
    // A `now` before the period: nothing yet. After: the whole month, 2 + 23/31.
    let items =
        sendmux::billing::line_items(&mut conn, &TeamId::stored(team.to_owned()), from, to, ms(2026, 7, 1, 0), &prices)
            .await
            .unwrap();
    assert_eq!(storage(&items).0, "0");
    let items =
        sendmux::billing::line_items(&mut conn, &TeamId::stored(team.to_owned()), from, to, ms(2027, 1, 1, 0), &prices)
            .await
            .unwrap();
    let expected = (Decimal::from(2) + Decimal::from(23) / Decimal::from(31))
        .round_dp_with_strategy(9, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .normalize();
    assert_eq!(storage(&items).0, expected.to_string());
    assert_eq!(
        items.iter().filter(|i| i.metric != "mailbox_storage").map(|i| i.quantity).sum::<Decimal>(),
        Decimal::ZERO
    );
}

#[tokio::test]
async fn retries_and_replays_count_once_and_refused_mail_is_not_billed() {
    let relay = SmtpServer::start(None).await;
    let receiver = Receiver::start(vec![]).await;
    let app = TestApp::spawn_with(&[
        NO_WORKERS,
        ("SENDMUX_OUTBOUND_RETRY_INITIAL_SECONDS", "1"),
        ("SENDMUX_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"),
    ])
    .await;
    let owner = app.signup("o@once.test", "Once").await;
    let team = owner.team_id.as_str();

    // The same unit key recorded twice (a retried job, or two nodes racing) counts once.
    let mut conn = app.state.store.pool().acquire().await.unwrap();
    assert!(
        usage::record(&mut conn.team(&TeamId::stored(team.to_owned())), "outbound_emails", 1, "outbound:msg_retried")
            .await
            .unwrap()
    );
    assert!(
        !usage::record(&mut conn.team(&TeamId::stored(team.to_owned())), "outbound_emails", 1, "outbound:msg_retried")
            .await
            .unwrap()
    );
    // So in the batched form the workers use, within a statement and across statements
    // (on a team of its own, so the counts below stay this team's).
    // Through the committers' own connection (on SQLite) and through the pool.
    drop(conn);
    let other = app.signup("o@once-batched.test", "Once batched").await;
    let unit = || (other.team_id.as_str(), "outbound_emails", "outbound:msg_batched".to_owned());
    let mut committer = BatchConn::open(&app.state.store).unwrap();
    committer.write(&mut Units(vec![unit(), unit()])).await.unwrap();
    committer.write(&mut Units(vec![unit()])).await.unwrap();
    let mut tx = app.state.store.begin().await.unwrap();
    usage::record_units(&mut tx, &[unit()]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(qty(&billing(&app, &owner.token, "").await, "outbound_emails"), "1");
    assert_eq!(qty(&billing(&app, &other.token, "").await, "outbound_emails"), "1");

    // A send deferred by the relay (451) and delivered on retry is billed once.
    let prv = smtp_provider(&app, &owner.token, "relay", relay.port, None).await;
    let key =
        sending_key(&app, &owner.token, &group(&app, &owner.token, "failover", json!([{"provider_id": prv}])).await)
            .await;
    let id = send(&app, &key, simple("defer@example.org")).await;
    drain(&app).await;
    assert_eq!(email(&app, &key, &id).await["status"], "deferred");
    assert_eq!(qty(&billing(&app, &owner.token, "").await, "outbound_emails"), "1", "a deferral is not billed");
    eventually("the retry delivers", Duration::from_secs(15), || async {
        drain(&app).await;
        email(&app, &key, &id).await["status"] == "delivered"
    })
    .await;
    assert_eq!(email(&app, &key, &id).await["attempts"].as_array().unwrap().len(), 2);
    drain(&app).await;
    assert_eq!(qty(&billing(&app, &owner.token, "").await, "outbound_emails"), "2");

    // Inbound: one accepted message, its webhook delivered and replayed.
    let hook = expect_status(
        app.post("/api/v1/webhooks", &owner.token, json!({"url": receiver.url, "event_types": ["message.received"]}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let hook_id = hook["id"].as_str().unwrap();
    let inbox = receiving_key(&app, &owner.token, "box@mail.test").await;
    inject(&app, &inbox).await;
    receiver.wait_for(1).await;
    let before = records(&app, team).await;
    let list =
        expect_status(app.get(&format!("/api/v1/webhooks/{hook_id}/deliveries"), &owner.token).await, StatusCode::OK)
            .await;
    let delivery = list["data"][0]["id"].as_str().unwrap().to_owned();
    let res =
        app.post(&format!("/api/v1/webhooks/{hook_id}/deliveries/{delivery}/replay"), &owner.token, json!({})).await;
    expect_status(res, StatusCode::ACCEPTED).await;
    receiver.wait_for(2).await;
    assert_eq!(records(&app, team).await, before, "a replayed webhook adds no usage");
    assert_eq!(qty(&billing(&app, &owner.token, "").await, "inbound_emails"), "1");

    // Refused inbound: an unknown mailbox gets 550 and nobody is billed; with one known
    // and one unknown recipient only the accepted copy counts.
    let all_inbound = "SELECT COUNT(*) FROM usage_records WHERE metric = $1";
    assert_eq!(app.count(all_inbound, "inbound_emails").await, 1);
    let report = app.send_smtp("ann@sender.test", &["nobody@mail.test"], SIMPLE).await;
    assert_eq!(report["rcpt"][0][0], 550, "{report}");
    assert_eq!(app.count(all_inbound, "inbound_emails").await, 1, "a refused message is not billed");
    let report = app.send_smtp("ann@sender.test", &["nobody@mail.test", "box@mail.test"], SIMPLE).await;
    assert_eq!(report["data"][0], 250, "{report}");
    assert_eq!(app.count(all_inbound, "inbound_emails").await, 2);
    let u = billing(&app, &owner.token, "").await;
    assert_eq!((qty(&u, "inbound_emails"), amount(&u, "inbound_emails")), ("2".into(), emails(2, "0.15")));
}

#[tokio::test]
async fn per_day_items_add_up_csv_says_the_same_and_bad_ranges_are_422() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@days.test", "Days").await;
    let team = owner.team_id.as_str();
    let mut conn = app.state.store.pool().acquire().await.unwrap();
    for i in 0..6 {
        usage::record(
            &mut conn.team(&TeamId::stored(team.to_owned())),
            "outbound_emails",
            1,
            &format!("outbound:msg_{i}"),
        )
        .await
        .unwrap();
    }
    usage::record(&mut conn.team(&TeamId::stored(team.to_owned())), "managed_ses_emails", 1, "outbound:msg_m")
        .await
        .unwrap();
    usage::record(&mut conn.team(&TeamId::stored(team.to_owned())), "inbound_emails", 1, "inbound:msg_i")
        .await
        .unwrap();
    // 3 GB all of September (30 days): 0.1 GB-month a day, exactly.
    usage::storage_change(&mut conn.team(&TeamId::stored(team.to_owned())), None, None, 3 * GB, ms(2026, 8, 20, 0))
        .await
        .unwrap();
    drop(conn);

    // Units recorded today, over a three-day window around today.
    let today = Utc::now().date_naive();
    let (a, b) = (today.pred_opt().unwrap(), today.succ_opt().unwrap().succ_opt().unwrap());
    let u = billing(&app, &owner.token, &format!("?from={a}&to={b}&granularity=day")).await;
    let days = u["days"].as_array().unwrap();
    assert_eq!(
        days.iter().map(|d| d["date"].as_str().unwrap().to_owned()).collect::<Vec<_>>(),
        vec![a.to_string(), today.to_string(), today.succ_opt().unwrap().to_string()]
    );
    for metric in ["outbound_emails", "managed_ses_emails", "inbound_emails"] {
        let sum: Decimal = days.iter().map(|d| dec(&qty(d, metric))).sum();
        assert_eq!(sum, dec(&qty(&u, metric)), "{metric}");
        let sum: Decimal = days.iter().map(|d| dec(&amount(d, metric))).sum();
        assert_eq!(sum, dec(&amount(&u, metric)), "{metric}");
    }
    assert_eq!(qty(&days[1], "outbound_emails"), "6");
    assert_eq!(qty(&days[0], "outbound_emails"), "0");
    for d in days {
        assert_total_is_sum(d);
    }
    // Without granularity there is no breakdown.
    assert!(billing(&app, &owner.token, &format!("?from={a}&to={b}")).await.get("days").is_none());

    // Storage per day over September: thirty days of 0.1 adding up to 3 GB-months.
    let sep = billing(&app, &owner.token, "?from=2026-09-01&to=2026-10-01&granularity=day").await;
    let days = sep["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert!(
        days.iter().all(|d| qty(d, "mailbox_storage") == "0.1" && amount(d, "mailbox_storage") == "0.002"),
        "{sep}"
    );
    assert_eq!((qty(&sep, "mailbox_storage"), amount(&sep, "mailbox_storage")), ("3".into(), "0.06".into()));
    let sum: Decimal = days.iter().map(|d| dec(d["total"].as_str().unwrap())).sum();
    assert_eq!(sum, dec(sep["total"].as_str().unwrap()));

    // CSV: the same numbers, one row per metric, then seats and total. Storage moves
    // with the clock, so the current window is compared without it.
    csv_matches(&app, &owner.token, team, "?from=2026-09-01&to=2026-10-01", false).await;
    csv_matches(&app, &owner.token, team, &format!("?from={a}&to={b}"), true).await;

    // Bad ranges name their parameter.
    for (query, param) in [
        ("?from=2026-10-01&to=2026-10-01", "to"),
        ("?from=2026-10-02&to=2026-10-01", "to"),
        ("?from=last-week", "from"),
        ("?from=2026-10-01&to=2026-13-01", "to"),
        ("?granularity=hour", "granularity"),
    ] {
        let err = expect_error(
            app.get(&format!("/api/v1/billing/usage{query}"), &owner.token).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        )
        .await;
        assert_eq!(err["param"], param, "{query}");
    }
}

async fn csv_matches(app: &TestApp, token: &str, team: &str, query: &str, skip_storage: bool) {
    let json = billing(app, token, query).await;
    let res = app
        .req(reqwest::Method::GET, &format!("/api/v1/billing/usage{query}"), token)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = res.text().await.unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 6, "four metrics, seats, total: {text}");
    for i in json["line_items"].as_array().unwrap() {
        if skip_storage && i["metric"] == "mailbox_storage" {
            continue;
        }
        let row = rows.iter().find(|r| r[col("metric")] == i["metric"].as_str().unwrap()).expect("a row per metric");
        assert_eq!(row[col("team_id")], team);
        assert_eq!(row[col("quantity")], i["quantity"].as_str().unwrap(), "{text}");
        assert_eq!(row[col("unit_price")], i["unit_price"].as_str().unwrap(), "{text}");
        assert_eq!(row[col("amount")], i["amount"].as_str().unwrap(), "{text}");
    }
    let seats = rows.iter().find(|r| r[col("metric")] == "seats").unwrap();
    assert_eq!((seats[col("quantity")], seats[col("amount")]), ("1", "0.00"));
    if !skip_storage {
        let total = rows.iter().find(|r| r[col("metric")] == "total").unwrap();
        assert_eq!(total[col("amount")], json["total"].as_str().unwrap());
    }
}

#[tokio::test]
async fn only_billing_readers_see_the_numbers() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@perm.test", "Perm").await;
    let mut conn = app.state.store.pool().acquire().await.unwrap();
    usage::record(&mut conn.team(&TeamId::stored(owner.team_id.clone())), "inbound_emails", 1, "inbound:msg_perm")
        .await
        .unwrap();
    drop(conn);
    let admin = app.add_member(&owner, "a@perm.test", "admin").await;
    let member = app.add_member(&owner, "m@perm.test", "member").await;
    let developer = app.add_member(&owner, "d@perm.test", "developer").await;
    let reader = app
        .create_key(&owner.token, json!({"name": "b", "kind": "infrastructure", "permissions": ["billing.read"]}))
        .await;
    let logs_only = app
        .create_key(
            &owner.token,
            json!({"name": "l", "kind": "infrastructure", "permissions": ["logs.read", "providers.manage"]}),
        )
        .await;
    let (_, mailbox_key) =
        app.mailbox_with_key(&owner.token, "perm@mail.test", &["mailbox.read", "email.receive"]).await;
    let prv = app.create_smtp_provider(&owner.token, "p").await;
    let g = app.create_group(&owner.token, prv["id"].as_str().unwrap()).await;
    let sending = sending_key(&app, &owner.token, g["id"].as_str().unwrap()).await;

    for token in [owner.token.as_str(), admin.token.as_str(), reader["key"].as_str().unwrap()] {
        let u = billing(&app, token, "").await;
        assert_eq!(u["team_id"], owner.team_id.as_str());
        assert_eq!((qty(&u, "inbound_emails"), amount(&u, "inbound_emails")), ("1".into(), "0.00015".into()));
        assert_eq!(u["seats"]["count"], 4);
    }
    for token in
        [member.token.as_str(), developer.token.as_str(), logs_only["key"].as_str().unwrap(), &mailbox_key, &sending]
    {
        let res = app.get("/api/v1/billing/usage", token).await;
        expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    }
}

fn sendmux_for(app: &TestApp) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sendmux"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SENDMUX_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("SENDMUX_DATA_DIR", app.dir.path());
    if let Some(db) = &app.db {
        cmd.env("SENDMUX_DATABASE_URL", &db.url);
    }
    cmd
}

#[tokio::test]
async fn the_operator_sees_every_teams_month_in_the_cli_and_the_admin_api() {
    let app = TestApp::spawn().await;
    let a = app.signup("o@ops-a.test", "Acme Mail").await;
    let b = app.signup("o@ops-b.test", "Bravo").await;
    let mut conn = app.state.store.pool().acquire().await.unwrap();
    for i in 0..4 {
        usage::record(
            &mut conn.team(&TeamId::stored(a.team_id.clone())),
            "inbound_emails",
            1,
            &format!("inbound:msg_a{i}"),
        )
        .await
        .unwrap();
    }
    usage::record(&mut conn.team(&TeamId::stored(a.team_id.clone())), "managed_ses_emails", 1, "outbound:msg_a")
        .await
        .unwrap();
    usage::record(&mut conn.team(&TeamId::stored(b.team_id.clone())), "outbound_emails", 1, "outbound:msg_b")
        .await
        .unwrap();
    // Move the units into September 2026; store 1 GB for the second half of it.
    sqlx::query("UPDATE usage_records SET created_at = $1").bind(ms(2026, 9, 10, 0)).execute(&mut *conn).await.unwrap();
    usage::storage_change(&mut conn.team(&TeamId::stored(a.team_id.clone())), None, None, GB, ms(2026, 9, 16, 0))
        .await
        .unwrap();
    drop(conn);
    let a_total = (dec(&emails(4, "0.15")) + dec(&emails(1, "0.25")) + dec("0.01")).normalize().to_string();
    assert_eq!(a_total, "0.01085");

    let out = sendmux_for(&app).args(["admin", "usage", "--month", "2026-09"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |team: &str, metric: &str| {
        text.lines()
            .find(|l| l.starts_with(team) && l.split('\t').nth(2) == Some(metric))
            .unwrap_or_else(|| panic!("{team} {metric}: {text}"))
            .split('\t')
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line(&a.team_id, "inbound_emails")[1..],
        ["Acme Mail", "inbound_emails", "4", "1000_emails", "0.15", "0.0006"]
    );
    assert_eq!(line(&a.team_id, "managed_ses_emails")[3..], ["1", "1000_emails", "0.25", "0.00025"]);
    assert_eq!(line(&a.team_id, "mailbox_storage")[3..], ["0.5", "gb_month", "0.02", "0.01"]);
    assert_eq!(line(&a.team_id, "seats")[3], "1");
    assert_eq!(line(&a.team_id, "total")[6], a_total);
    assert_eq!(
        line(&b.team_id, "outbound_emails")[1..],
        ["Bravo", "outbound_emails", "1", "1000_emails", "0.15", "0.00015"]
    );
    assert_eq!(line(&b.team_id, "total")[6], "0.00015");
    // Another month is empty for both.
    let out = sendmux_for(&app).args(["admin", "usage", "--month", "2026-08"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().filter(|l| l.contains("\ttotal\t")).all(|l| l.ends_with("\t0")), "{text}");
    // A bad month is named.
    for bad in ["2026-13", "September", "2026-9"] {
        let out = sendmux_for(&app).args(["admin", "usage", "--month", bad]).output().unwrap();
        assert!(!out.status.success(), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--month"), "{bad}");
    }

    // The admin API: the same numbers as JSON, with each team's name.
    let list = expect_status(app.get("/api/v1/admin/usage?month=2026-09", ADMIN_TOKEN).await, StatusCode::OK).await;
    assert_eq!(list["month"], "2026-09");
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{list}");
    let ua = data.iter().find(|t| t["team_id"] == a.team_id.as_str()).unwrap();
    assert_eq!(ua["team_name"], "Acme Mail");
    assert_eq!(ua["from"], "2026-09-01T00:00:00Z");
    assert_eq!(ua["to"], "2026-10-01T00:00:00Z");
    assert_eq!((qty(ua, "inbound_emails"), amount(ua, "inbound_emails")), ("4".into(), "0.0006".into()));
    assert_eq!(qty(ua, "mailbox_storage"), "0.5");
    assert_eq!(ua["total"], a_total.as_str());
    assert_eq!(ua["seats"], json!({"count": 1, "amount": "0.00"}));
    let ub = data.iter().find(|t| t["team_id"] == b.team_id.as_str()).unwrap();
    assert_eq!((ub["team_name"].as_str(), ub["total"].as_str()), (Some("Bravo"), Some("0.00015")));
    // The team's own view agrees with the operator's.
    let own = billing(&app, &a.token, "?from=2026-09-01&to=2026-10-01").await;
    assert_eq!(own["line_items"], ua["line_items"]);
    for bad in ["2026-13", "soon", ""] {
        let res = app.get(&format!("/api/v1/admin/usage?month={bad}"), ADMIN_TOKEN).await;
        let err = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
        assert_eq!(err["param"], "month");
    }
    let err = expect_error(
        app.get("/api/v1/admin/usage", ADMIN_TOKEN).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    assert_eq!(err["param"], "month");
    let res = app.get("/api/v1/admin/usage?month=2026-09", &a.token).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Both routes are in the OpenAPI document.
    let doc =
        expect_status(app.client.get(app.url("/api/v1/openapi.json")).send().await.unwrap(), StatusCode::OK).await;
    for path in ["/api/v1/admin/usage", "/api/v1/billing/usage"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
}

/// Usage units written as a committer writes them.
struct Units<'a>(Vec<usage::Unit<'a>>);

impl Batch for Units<'_> {
    async fn write(&mut self, w: &mut impl Writer) -> anyhow::Result<()> {
        usage::record_units(w, &self.0).await
    }
}
