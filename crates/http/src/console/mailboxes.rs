//! Mailboxes and their messages: the list, a message (headers, authentication results,
//! spam signals, attachments) with its HTML in a sandboxed frame that runs no script and
//! loads nothing remote unless asked — through `sendmux_core::mailboxes` and
//! `sendmux_core::inbound::messages`, which show members metadata only.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{self, badge, csrf, empty, next_link, time};
use super::session::{Form, Session, done, error_page};
use crate::error::ApiError;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::MailboxId;
use sendmux_core::inbound::messages;
use sendmux_core::mailboxes::{self, NewMailbox, SettingsChange};

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    let rows = match mailboxes::list(&state, &s.p, None, 100).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let can_manage = s.can(Perm::MailboxesManage);
    let domains = state.settings.inbound_domains.join(", ");
    let body = html! {
        section.card {
            h2 { "Mailboxes" }
            @if rows.is_empty() {
                (empty("No mailboxes yet", &format!("A mailbox receives mail over SMTP at an address on {domains}. Create one, then send it a mail."), can_manage.then_some(("#new-mailbox", "Create a mailbox"))))
            } @else {
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "Address" } th scope="col" { "Name" } th scope="col" { "Spam threshold" } th scope="col" { "Keeps mail" } th scope="col" { "Created" } } }
                    tbody { @for m in &rows { tr {
                        td { a href={ "/mailboxes/" (m.id) } { (m.address) } }
                        td { (m.name.as_deref().unwrap_or("")) }
                        td { (m.spam_threshold) }
                        td { (m.retention_days) " days" }
                        td { (time(m.created_at)) }
                    } } }
                } }
            }
        }
        @if can_manage {
            section.card #new-mailbox {
                h2 { "Create a mailbox" }
                form.grid-form method="post" action="/mailboxes" {
                    (csrf(&s))
                    div { label for="mbx-address" { "Address" } input #mbx-address name="address" required placeholder={ "agent@" (state.settings.inbound_domains.first().map(String::as_str).unwrap_or("localhost")) }; }
                    div { label for="mbx-name" { "Name " span.muted { "(optional)" } } input #mbx-name name="name" maxlength="100"; }
                    div.form-actions { button.primary type="submit" { "Create mailbox" } }
                }
                p.muted.small { "Receives for: " (domains) "." }
            }
        }
    };
    layout::page(&s, "/mailboxes", "Mailboxes", body)
}

pub async fn create(State(state): State<AppState>, Form { s, f }: Form) -> Response {
    let new = NewMailbox { address: f.text("address"), name: f.opt("name"), settings: SettingsChange::default() };
    let result = mailboxes::create(&state, &s.p, new).await;
    match result {
        Ok(m) => super::session::redirect_with(
            &state,
            &format!("/mailboxes/{}", m.id),
            Some(super::session::Flash { ok: true, message: format!("Mailbox {} created.", m.address) }),
        ),
        Err(e) => done(&state, "/mailboxes", Err::<(), _>(e), |_| String::new()),
    }
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    spam: Option<String>,
    cursor: Option<String>,
}

pub async fn messages_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
    s: Session,
) -> Response {
    let Some(mbx_id) = MailboxId::parse(&id) else { return error_page(Some(&s), ApiError::not_found("mailbox")) };
    let mailbox = match mailboxes::get(&state, &s.p, &mbx_id).await {
        Ok(m) => m,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let spam = match q.spam.as_deref() {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let cursor = q.cursor.as_deref().filter(|c| sendmux_core::ids::MessageId::parse(c).is_some());
    let rows = match messages::list(&state, &s.p, Some(&mailbox.id), spam, cursor, 51).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let (rows, next) = sendmux_core::store::page(rows, 50, |r| r.id.clone());
    let filter = |label: &str, value: Option<&str>| {
        let href = match value {
            Some(v) => format!("/mailboxes/{}?spam={v}", mailbox.id),
            None => format!("/mailboxes/{}", mailbox.id),
        };
        let current = value == q.spam.as_deref().filter(|v| *v == "true" || *v == "false");
        html! { a.tab href=(href) aria-current=[current.then_some("page")] { (label) } }
    };
    let body = html! {
        p.lead { code { (mailbox.address) } @if let Some(n) = &mailbox.name { " — " (n) } }
        @if s.can(Perm::MailboxesManage) {
            details.card {
                summary { "Settings" }
                form.grid-form method="post" action={ "/mailboxes/" (mailbox.id) "/settings" } {
                    (csrf(&s))
                    div { label for="set-threshold" { "Spam threshold" }
                          input #set-threshold type="number" name="spam_threshold" min="0" max="100" step="0.1" value=(mailbox.spam_threshold); }
                    div { label for="set-retention" { "Keep mail (days)" }
                          input #set-retention type="number" name="retention_days" min="1" max="3650" value=(mailbox.retention_days); }
                    div { label.choice { input type="checkbox" name="accept_spam" value="true" checked[mailbox.accept_spam != 0]; " Accept spam (stored and marked)" } }
                    div.form-actions { button.primary type="submit" { "Save settings" } }
                }
                (layout::post_button(&s, &format!("/mailboxes/{}/delete", mailbox.id), "Delete this mailbox", "danger", Some("Delete this mailbox and its messages?")))
            }
        }
        nav.tabs aria-label="Filter" { (filter("All", None)) (filter("Inbox", Some("false"))) (filter("Spam", Some("true"))) }
        section.card {
            @if rows.is_empty() {
                (empty("No messages here yet", &format!("Mail sent to {} over SMTP (port {}) appears here as soon as it is stored.", mailbox.address, state.settings.smtp_addr.port()), None))
            } @else {
                div.table-wrap tabindex="0" { table.messages {
                    thead { tr { th scope="col" { "From" } th scope="col" { "Subject" } th scope="col" { "Spam" } th scope="col" { "Received" } } }
                    tbody { @for m in &rows { tr {
                        td { (m.from_address.as_deref().unwrap_or(&m.mail_from)) }
                        td { a href={ "/mailboxes/" (mailbox.id) "/messages/" (m.id) } { (m.subject.as_deref().filter(|s| !s.is_empty()).unwrap_or("(no subject)")) }
                             @if m.attachment_count > 0 { " " span.muted { "📎 " (m.attachment_count) } } }
                        td { (badge(if m.is_spam != 0 { "spam" } else { "ham" })) " " span.muted { (format!("{:.1}", m.spam_score)) } }
                        td { (time(m.received_at)) }
                    } } }
                } }
                (next_link(&format!("/mailboxes/{}", mailbox.id), &[("spam", q.spam.as_deref().unwrap_or(""))], next.as_deref()))
            }
        }
    };
    layout::page(&s, "/mailboxes", "Messages", body)
}

#[derive(Deserialize, Default)]
pub struct ViewQuery {
    images: Option<String>,
}

fn addresses(v: &Value) -> String {
    let one = |a: &Value| match (a.get("name").and_then(Value::as_str), a.get("address").and_then(Value::as_str)) {
        (Some(n), Some(addr)) if !n.is_empty() => format!("{n} <{addr}>"),
        (_, Some(addr)) => addr.to_owned(),
        _ => String::new(),
    };
    match v {
        Value::Array(items) => items.iter().map(one).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(", "),
        Value::Object(_) => one(v),
        _ => String::new(),
    }
}

/// A JSON value as one readable line.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

fn authentication(v: &Value) -> Markup {
    html! {
        @if let Value::Object(map) = v {
            div.table-wrap tabindex="0" { table.kv {
                tbody { @for (k, val) in map { tr {
                    th scope="row" { (k.to_uppercase()) }
                    td {
                        (badge(&result_of(val)))
                        @if let Value::Object(detail) = val { @for (dk, dv) in detail.iter().filter(|(k, _)| k.as_str() != "result") {
                            @if !plain(dv).is_empty() { " " span.muted { (dk) ": " (plain(dv)) } }
                        } }
                    }
                } } }
            } }
        } @else {
            p.muted { "No authentication results." }
        }
    }
}

/// A spam signal: its name and points when it has them.
fn signal(v: &Value) -> String {
    match (v.get("name").and_then(Value::as_str), v.get("points")) {
        (Some(name), Some(points)) => format!("{} (+{points})", name.replace('_', " ")),
        _ => plain(v),
    }
}

/// An authentication result: `result` of an object, of each item of a list.
fn result_of(v: &Value) -> String {
    match v {
        Value::Array(items) if items.is_empty() => "none".into(),
        Value::Array(items) => items.iter().map(result_of).collect::<Vec<_>>().join(", "),
        Value::Object(_) => v.get("result").map(plain).unwrap_or_else(|| plain(v)),
        other => plain(other),
    }
}

fn signals(v: &Value) -> Markup {
    html! {
        @match v {
            Value::Array(items) if !items.is_empty() => ul.signals { @for i in items { li { (signal(i)) } } },
            Value::Object(map) if !map.is_empty() => ul.signals { @for (k, val) in map { li { code { (k) } " " (plain(val)) } } },
            _ => p.muted { "No spam signals." },
        }
    }
}

pub async fn message_page(
    State(state): State<AppState>,
    Path((mbx, msg)): Path<(String, String)>,
    Query(q): Query<ViewQuery>,
    s: Session,
) -> Response {
    let m = match messages::get(&state, &s.p, Some(&mbx), &msg).await {
        Ok(m) => m,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let content = s.can(Perm::MessageContentRead);
    let images = q.images.as_deref() == Some("1");
    let base = format!("/mailboxes/{mbx}/messages/{msg}");
    let subject = m["subject"].as_str().filter(|s| !s.is_empty()).unwrap_or("(no subject)").to_owned();
    let has_html = m["html"].as_str().is_some();
    let body = html! {
        p { a href={ "/mailboxes/" (mbx) } { "← Messages" } }
        section.card {
            h2.subject { (subject) }
            dl.meta {
                dt { "From" } dd { (addresses(&m["from"])) }
                dt { "To" } dd { (addresses(&m["to"])) }
                @if m["cc"].as_array().is_some_and(|a| !a.is_empty()) { dt { "Cc" } dd { (addresses(&m["cc"])) } }
                dt { "Date" } dd { (m["date"].as_str().unwrap_or("—")) }
                dt { "Received" } dd { (m["received_at"].as_str().unwrap_or("")) }
                dt { "Size" } dd { (m["size"]) " bytes" }
                dt { "Envelope" } dd { code { (plain(&m["envelope"]["mail_from"])) } " → " code { (plain(&m["envelope"]["rcpt_to"])) }
                    @if let Some(ip) = m["envelope"]["remote_ip"].as_str() { " from " code { (ip) } } }
                dt { "Spam" } dd { (badge(m["spam"]["verdict"].as_str().unwrap_or(""))) " score " (plain(&m["spam"]["score"])) }
            }
        }
        div.columns {
            section.card { h2 { "Authentication" } (authentication(&m["authentication"])) }
            section.card { h2 { "Spam signals" } (signals(&m["spam"]["signals"])) }
        }
        @if !content {
            section.card.notice-card role="note" {
                h2 { "Content hidden" }
                p { "Your role (" (s.role()) ") sees a message's metadata only: no body, headers or attachments. A developer or admin of the team can read it." }
            }
        } @else {
            @if has_html {
                section.card {
                    div.card-head {
                        h2 { "HTML" }
                        @if images { a.button.secondary href=(base) { "Block remote images" } }
                        @else { a.button.secondary href={ (base) "?images=1" } { "Load remote images" } }
                    }
                    p.muted.small { "Shown in a sandbox: scripts never run, and remote content loads only when you ask." }
                    iframe.mail-frame sandbox="" referrerpolicy="no-referrer" title="Message HTML" src={ (base) "/html" @if images { "?images=1" } } {}
                }
            }
            @if let Some(text) = m["text"].as_str() {
                section.card { h2 { "Text" } pre.mail-text { (text) } }
            }
            section.card {
                h2 { "Attachments" }
                @match m["attachments"].as_array() {
                    Some(list) if !list.is_empty() => ul.attachments { @for a in list {
                        li { a href={ (base) "/attachments/" (plain(&a["index"])) } { (a["filename"].as_str().unwrap_or("attachment")) }
                             " " span.muted { (plain(&a["content_type"])) ", " (plain(&a["size"])) " bytes" } }
                    } },
                    _ => p.muted { "No attachments." },
                }
            }
            details.card {
                summary { "Headers" }
                div.table-wrap tabindex="0" { table.kv { tbody { @for h in m["headers"].as_array().into_iter().flatten() {
                    tr { th scope="row" { (plain(&h["name"])) } td { (plain(&h["value"])) } }
                } } } }
            }
            p { a.button.secondary href={ (base) "/raw" } { "Download the raw message (.eml)" } }
        }
    };
    layout::page(&s, "/mailboxes", "Message", body)
}

/// The policy of a message's HTML: nothing runs (the `sandbox` directive as well as the
/// frame's attribute), nothing remote loads unless the person asked for images.
fn mail_csp(images: bool) -> HeaderValue {
    let img = if images { "img-src data: cid: https: http:" } else { "img-src data: cid:" };
    HeaderValue::from_str(&format!(
        "sandbox; default-src 'none'; style-src 'unsafe-inline'; font-src data:; {img}; frame-ancestors 'self'"
    ))
    .unwrap_or(HeaderValue::from_static("sandbox; default-src 'none'"))
}

pub async fn message_html(
    State(state): State<AppState>,
    Path((mbx, msg)): Path<(String, String)>,
    Query(q): Query<ViewQuery>,
    s: Session,
) -> Response {
    let m = match messages::get(&state, &s.p, Some(&mbx), &msg).await {
        Ok(m) => m,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    // The service leaves the body out for a role without content access.
    let Some(html) = m["html"].as_str() else {
        return error_page(Some(&s), ApiError::not_found("HTML body"));
    };
    let mut res = (StatusCode::OK, html.to_owned()).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, mail_csp(q.images.as_deref() == Some("1")));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    res
}

pub async fn message_raw(
    State(state): State<AppState>,
    Path((mbx, msg)): Path<(String, String)>,
    s: Session,
) -> Response {
    match messages::raw(&state, &s.p, Some(&mbx), &msg).await {
        Ok(bytes) => {
            let mut res = (StatusCode::OK, bytes).into_response();
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("message/rfc822"));
            let name = format!(
                "attachment; filename=\"{}.eml\"",
                msg.chars().filter(char::is_ascii_alphanumeric).collect::<String>()
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&name).unwrap_or(HeaderValue::from_static("attachment")),
            );
            h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
            res
        }
        Err(e) => error_page(Some(&s), e.into()),
    }
}

pub async fn attachment(
    State(state): State<AppState>,
    Path((mbx, msg, index)): Path<(String, String, String)>,
    s: Session,
) -> Response {
    match messages::attachment(&state, &s.p, Some(&mbx), &msg, &index).await {
        Ok(found) => {
            // Always a download, never rendered on this origin.
            let mut res = (StatusCode::OK, found.bytes).into_response();
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            let safe: String = found
                .filename
                .unwrap_or_else(|| format!("attachment-{index}"))
                .chars()
                .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
                .collect();
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{safe}\""))
                    .unwrap_or(HeaderValue::from_static("attachment")),
            );
            h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
            res
        }
        Err(e) => error_page(Some(&s), e.into()),
    }
}

pub async fn update_settings(State(state): State<AppState>, Path(id): Path<String>, Form { s, f }: Form) -> Response {
    let to = format!("/mailboxes/{id}");
    let result = async {
        let id = MailboxId::parse(&id).ok_or(sendmux_core::Error::NotFound("mailbox"))?;
        let number = |name: &'static str| -> Result<Option<f64>, sendmux_core::Error> {
            f.opt(name)
                .map(|v| {
                    v.parse::<f64>().map_err(|_| sendmux_core::Error::invalid(name, format!("{name} must be a number")))
                })
                .transpose()
        };
        let change = SettingsChange {
            spam_threshold: number("spam_threshold")?,
            retention_days: number("retention_days")?.map(|d| d as i64),
            accept_spam: Some(f.text("accept_spam") == "true"),
            send_delivery_group_id: None,
            send_policy: None,
        };
        mailboxes::update_settings(&state, &s.p, &id, change).await
    }
    .await;
    done(&state, &to, result, |m| format!("Settings of {} saved.", m.address))
}

pub async fn delete(State(state): State<AppState>, Path(id): Path<String>, Form { s, .. }: Form) -> Response {
    let result = async {
        let id = MailboxId::parse(&id).ok_or(sendmux_core::Error::NotFound("mailbox"))?;
        mailboxes::delete(&state, &s.p, &id).await
    }
    .await;
    match result {
        Ok(()) => done(&state, "/mailboxes", Ok(()), |_| "The mailbox was deleted.".into()),
        Err(e) => done(&state, &format!("/mailboxes/{}", id), Err::<(), _>(e), |_| String::new()),
    }
}
