//! The console's chrome and the small pieces every page uses: the header with the team
//! switcher, the navigation (only what the role may open), notices, empty states,
//! buttons that post a form with the CSRF token, and times.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::session::Session;
use sendmux_core::auth::perms::Perm;

fn document(title: &str, body_class: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sendmux" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body class=(body_class) { (body) }
        }
    }
}

pub fn html_response(markup: Markup) -> Response {
    let mut res = (StatusCode::OK, markup.into_string()).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    res
}

/// A page outside a session (sign in, invitations): the logo and one card.
pub fn bare(title: &str, body: Markup) -> Response {
    html_response(document(
        title,
        "bare",
        html! {
            main #main .bare-main {
                p.brand.brand-center { (logo()) span { "Sendmux" } }
                (body)
            }
        },
    ))
}

fn logo() -> Markup {
    PreEscaped(
        r##"<svg class="logo" viewBox="0 0 32 32" width="28" height="28" aria-hidden="true" focusable="false"><rect width="32" height="32" rx="8" fill="#4338ca"/><path d="M7 11l9 6 9-6M7 10h18v12H7z" fill="none" stroke="#fff" stroke-width="2" stroke-linejoin="round"/></svg>"##
            .to_owned(),
    )
}

/// What the navigation offers, and who sees it.
fn nav_items(s: &Session) -> Vec<(&'static str, &'static str)> {
    let mut items = vec![("/", "Overview"), ("/members", "Members"), ("/keys", "API keys")];
    items.push(("/providers", "Providers"));
    items.push(("/delivery-groups", "Delivery groups"));
    items.push(("/domains", "Domains"));
    items.push(("/mailboxes", "Mailboxes"));
    items.push(("/webhooks", "Webhooks"));
    if s.can(Perm::LogsRead) || s.can(Perm::WebhooksRead) {
        items.push(("/events", "Events"));
    }
    if s.can(Perm::BillingRead) {
        items.push(("/usage", "Usage"));
    }
    items.push(("/limits", "Limits"));
    if s.can(Perm::LogsRead) {
        items.push(("/audit", "Audit log"));
    }
    items
}

/// A page of the workspace: header (team switcher, account, sign out), navigation with
/// `active` marked, the notice of the last change, and `body`.
pub fn page(s: &Session, active: &str, title: &str, body: Markup) -> Response {
    let team_id = s.p.team_id.as_str();
    let markup = document(
        title,
        "app",
        html! {
            a.skip href="#main" { "Skip to content" }
            header.topbar {
                a.brand href="/" { (logo()) span { "Sendmux" } }
                div.team {
                    @if s.account.teams.len() > 1 {
                        form.switcher method="post" action="/switch-team" {
                            (csrf(s))
                            label.visually-hidden for="team-switch" { "Team" }
                            select #team-switch name="team_id" data-autosubmit {
                                @for t in &s.account.teams {
                                    option value=(t.id) selected[t.id == team_id] { (t.name) }
                                }
                            }
                            button.small-button type="submit" data-hide-with-js { "Switch" }
                        }
                    } @else {
                        span.team-name { (s.team_name()) }
                    }
                    span.badge.role { (s.role()) }
                }
                div.account {
                    span.email { (s.account.email) }
                    form method="post" action="/logout" {
                        (csrf(s))
                        button.link-button type="submit" { "Sign out" }
                    }
                }
            }
            div.shell {
                nav.sidenav aria-label="Workspace" {
                    ul {
                        @for (href, label) in nav_items(s) {
                            li { a href=(href) aria-current=[(href == active).then_some("page")] { (label) } }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(f) = &s.flash {
                        p.notice.(if f.ok { "notice-ok" } else { "notice-error" }) role=(if f.ok { "status" } else { "alert" }) { (f.message) }
                    }
                    (body)
                }
            }
        },
    );
    let mut res = html_response(markup);
    if s.flash.is_some() {
        res.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static("sendmux_flash=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
        );
    }
    res
}

/// The hidden CSRF field of a form.
pub fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name="_csrf" value=(s.csrf); }
}

/// A one-button form that posts to `action`; `confirm` asks first (with script).
pub fn post_button(s: &Session, action: &str, label: &str, class: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf(s))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// What an empty list says, and what to do next.
pub fn empty(title: &str, text: &str, action: Option<(&str, &str)>) -> Markup {
    html! {
        div.empty {
            p.empty-title { (title) }
            p { (text) }
            @if let Some((href, label)) = action { a.button href=(href) { (label) } }
        }
    }
}

/// A time as people read it (UTC), with the exact instant for machines.
pub fn time(ms: i64) -> Markup {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    html! { time datetime=(sendmux_core::store::rfc3339(ms)) { (t.format("%Y-%m-%d %H:%M UTC")) } }
}

pub fn time_opt(ms: Option<i64>) -> Markup {
    match ms {
        Some(ms) => time(ms),
        None => html! { span.muted { "—" } },
    }
}

/// A status as a coloured badge.
pub fn badge(text: &str) -> Markup {
    let tone = match text {
        "active" | "delivered" | "succeeded" | "success" | "sent" | "pass" | "ham" | "accepted" | "approved"
        | "enabled" | "ok" | "verified" => "good",
        "revoked" | "failed" | "bounced" | "fail" | "spam" | "denied" | "disabled" | "expired" => "bad",
        "pending" | "queued" | "deferred" | "sending" | "retrying" => "warn",
        _ => "neutral",
    };
    html! { span class={ "badge tone-" (tone) } { (text) } }
}

/// A "next page" link keeping the other query parameters.
pub fn next_link(base: &str, params: &[(&str, &str)], next_cursor: Option<&str>) -> Markup {
    let Some(cursor) = next_cursor else { return html! {} };
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
        q.append_pair(k, v);
    }
    q.append_pair("cursor", cursor);
    html! { p.pager { a.button.secondary href={ (base) "?" (q.finish()) } { "Older →" } } }
}

/// A value that can be copied with one click (with script; selectable without).
pub fn copyable(id: &str, value: &str) -> Markup {
    html! {
        div.copy-row {
            code.secret #(id) { (value) }
            button.secondary type="button" data-copy=(id) hidden { "Copy" }
        }
    }
}
