//! Webhooks: endpoints (the signing secret shown once), their deliveries with every
//! attempt's status and answer, replay and test — through `sendmux_core::webhooks::manage`.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::layout::{self, badge, copyable, csrf, empty, next_link, post_button, time, time_opt};
use super::session::{Form, Session, api_message, done, error_page};
use crate::error::ApiError;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::events::EVENT_TYPES;
use sendmux_core::ids::{DeliveryId, WebhookId};
use sendmux_core::webhooks::manage::{self, NewWebhook, WithSecret};

async fn render(state: &AppState, s: &Session, created: Option<WithSecret>, error: Option<String>) -> Response {
    let rows = match manage::list(state, &s.p, None, 100).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(s), e.into()),
    };
    let can_manage = s.can(Perm::WebhooksManage);
    let body = html! {
        @if let Some(c) = &created {
            section.card.reveal role="status" {
                h2 { "Webhook created" }
                p { strong { "Copy the signing secret now." } " It is shown only this once. Verify "
                    code { "X-Sendmux-Signature" } " (HMAC-SHA256 of the raw body) with it." }
                (copyable("new-secret", &c.secret))
            }
        }
        @if let Some(e) = &error { p.notice.notice-error role="alert" { (e) } }
        section.card {
            h2 { "Endpoints" }
            @if rows.is_empty() {
                (empty("No webhooks yet", if can_manage { "Add an endpoint and Sendmux POSTs each event to it, signed, retrying for 24 hours." } else { "Developers of the team add webhook endpoints." }, None))
            } @else {
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "URL" } th scope="col" { "Events" } th scope="col" { "Status" } th scope="col" { "Last success" } } }
                    tbody { @for w in &rows { tr {
                        td { a href={ "/webhooks/" (w.id) } { (w.url) } @if let Some(d) = &w.description { br; span.muted { (d) } } }
                        td.perms { @for t in w.event_types.split(',') { code { (t) } " " } }
                        td { (badge(if w.enabled != 0 { "enabled" } else { "disabled" })) }
                        td { (time_opt(w.last_success_at)) }
                    } } }
                } }
            }
        }
        @if can_manage {
            section.card {
                h2 { "Add an endpoint" }
                form.stack-form method="post" action="/webhooks" {
                    (csrf(s))
                    label for="whk-url" { "URL" }
                    input #whk-url type="url" name="url" required placeholder="https://example.com/hooks/sendmux";
                    label for="whk-desc" { "Description " span.muted { "(optional)" } }
                    input #whk-desc name="description" maxlength="500";
                    fieldset {
                        legend { "Events" }
                        div.checks { @for t in EVENT_TYPES {
                            label.choice { input type="checkbox" name="event_type" value=(t) checked[t == "message.received"]; " " code { (t) } }
                        } }
                    }
                    div.form-actions { button.primary type="submit" { "Add endpoint" } }
                }
            }
        }
    };
    let mut res = layout::page(s, "/webhooks", "Webhooks", body);
    if created.is_some() {
        res.headers_mut()
            .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store, private"));
    }
    res
}

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    render(&state, &s, None, None).await
}

pub async fn create(State(state): State<AppState>, Form { s, f }: Form) -> Response {
    let new = NewWebhook {
        url: f.text("url"),
        event_types: f.all("event_type"),
        mailbox_ids: None,
        description: f.opt("description"),
        enabled: None,
    };
    match manage::create(&state, &s.p, new).await {
        Ok(created) => render(&state, &s, Some(created), None).await,
        Err(e) => {
            let api = ApiError::from(e);
            let mut res = render(&state, &s, None, Some(api_message(&api))).await;
            *res.status_mut() = api.status;
            res
        }
    }
}

#[derive(Deserialize, Default)]
pub struct DeliveryQuery {
    status: Option<String>,
    cursor: Option<String>,
}

pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DeliveryQuery>,
    s: Session,
) -> Response {
    render_detail(&state, &id, q, &s, None).await
}

async fn render_detail(state: &AppState, id: &str, q: DeliveryQuery, s: &Session, rotated: Option<String>) -> Response {
    let Some(wid) = WebhookId::parse(id) else { return error_page(Some(s), ApiError::not_found("webhook")) };
    let w = match manage::get(state, &s.p, &wid).await {
        Ok(w) => w,
        Err(e) => return error_page(Some(s), e.into()),
    };
    let status = q.status.as_deref().filter(|s| !s.is_empty());
    let cursor = q.cursor.as_deref().filter(|c| DeliveryId::parse(c).is_some());
    let deliveries = match manage::deliveries(state, &s.p, &wid, status, cursor, 26).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(s), e.into()),
    };
    let (deliveries, next) = sendmux_core::store::page(deliveries, 25, |d| d.delivery.id.clone());
    let can_manage = s.can(Perm::WebhooksManage);
    let base = format!("/webhooks/{}", w.id);
    let body = html! {
        p { a href="/webhooks" { "← Webhooks" } }
        @if let Some(secret) = &rotated {
            section.card.reveal role="status" {
                h2 { "New signing secret" }
                p { strong { "Copy it now." } " It is shown only this once; the old secret keeps signing for 24 hours." }
                (copyable("new-secret", secret))
            }
        }
        section.card {
            div.card-head {
                h2 { code { (w.url) } }
                @if can_manage { div.actions {
                    (post_button(s, &format!("{base}/test"), "Send a test event", "secondary", None))
                    @if w.enabled != 0 { (post_button(s, &format!("{base}/disable"), "Disable", "secondary", None)) }
                    @else { (post_button(s, &format!("{base}/enable"), "Enable", "secondary", None)) }
                    (post_button(s, &format!("{base}/rotate-secret"), "Rotate secret", "secondary", Some("Make a new signing secret? The old one keeps signing for 24 hours.")))
                    (post_button(s, &format!("{base}/delete"), "Delete", "danger", Some("Delete this webhook endpoint?")))
                } }
            }
            dl.meta {
                dt { "Status" } dd { (badge(if w.enabled != 0 { "enabled" } else { "disabled" }))
                    @if let Some(r) = &w.disabled_reason { " " span.muted { (r) } } }
                dt { "Events" } dd { (w.event_types.replace(',', ", ")) }
                dt { "Last success" } dd { (time_opt(w.last_success_at)) }
                dt { "Id" } dd { code { (w.id) } }
            }
        }
        section.card {
            div.card-head {
                h2 { "Deliveries" }
                form.inline method="get" action=(base) {
                    label.visually-hidden for="dlv-status" { "Status" }
                    select #dlv-status name="status" {
                        option value="" { "Any status" }
                        @for st in ["pending", "succeeded", "failed"] { option value=(st) selected[Some(st) == status] { (st) } }
                    }
                    button.secondary type="submit" { "Filter" }
                }
            }
            @if deliveries.is_empty() {
                (empty("No deliveries yet", "Each event this endpoint subscribes to becomes a delivery here, with every attempt. Send a test event to see one.", None))
            } @else {
                ul.deliveries { @for (i, d) in deliveries.iter().enumerate() {
                    li.delivery {
                        div.delivery-head {
                            (badge(&d.delivery.status)) " "
                            code { (d.delivery.event_type) } " "
                            span.muted { (d.delivery.event_id) } " "
                            (time(d.delivery.created_at))
                            span.muted { " · " (d.delivery.attempts) " attempt" @if d.delivery.attempts != 1 { "s" } }
                            @if can_manage {
                                (post_button(s, &format!("{base}/deliveries/{}/replay", d.delivery.id), "Replay", "secondary replay", None))
                            }
                        }
                        @if !d.attempts.is_empty() {
                            details open[i == 0] {
                                summary { "Attempts" }
                                div.table-wrap tabindex="0" { table {
                                    thead { tr { th scope="col" { "When" } th scope="col" { "Status" } th scope="col" { "Latency" } th scope="col" { "Answer" } } }
                                    tbody { @for a in &d.attempts { tr {
                                        td { (time(a.attempted_at)) }
                                        td { @match a.status_code { Some(c) => code { (c) }, None => span.muted { "—" } } }
                                        td { (a.latency_ms) " ms" }
                                        td { @if let Some(e) = &a.error { span.error-text { (e) } " " }
                                             @if let Some(r) = &a.response { pre.answer { (r) } } }
                                    } } }
                                } }
                            }
                        }
                    }
                } }
                (next_link(&base, &[("status", status.unwrap_or(""))], next.as_deref()))
            }
        }
    };
    layout::page(s, "/webhooks", "Webhook", body)
}

pub async fn send_test(State(state): State<AppState>, Path(id): Path<String>, Form { s, .. }: Form) -> Response {
    let result = async {
        let wid = WebhookId::parse(&id).ok_or(sendmux_core::Error::NotFound("webhook"))?;
        manage::send_test(&state, &s.p, &wid).await
    }
    .await;
    done(&state, &format!("/webhooks/{id}"), result, |_| "A test event was queued for delivery.".into())
}

pub async fn delete(State(state): State<AppState>, Path(id): Path<String>, Form { s, .. }: Form) -> Response {
    let result = async {
        let wid = WebhookId::parse(&id).ok_or(sendmux_core::Error::NotFound("webhook"))?;
        manage::delete(&state, &s.p, &wid).await
    }
    .await;
    done(&state, "/webhooks", result, |_| "The webhook was deleted.".into())
}

pub async fn replay(
    State(state): State<AppState>,
    Path((id, dlv)): Path<(String, String)>,
    Form { s, .. }: Form,
) -> Response {
    let result = async {
        let wid = WebhookId::parse(&id).ok_or(sendmux_core::Error::NotFound("webhook"))?;
        let did = DeliveryId::parse(&dlv).ok_or(sendmux_core::Error::NotFound("delivery"))?;
        manage::replay(&state, &s.p, &wid, &did).await
    }
    .await;
    done(&state, &format!("/webhooks/{id}"), result, |d| {
        format!("Event {} queued again as a new delivery.", d.delivery.event_id)
    })
}

async fn set_enabled(state: &AppState, id: &str, s: &Session, enabled: bool) -> Response {
    let result = async {
        let wid = WebhookId::parse(id).ok_or(sendmux_core::Error::NotFound("webhook"))?;
        let change = manage::WebhookChange { enabled: Some(enabled), ..Default::default() };
        manage::update(state, &s.p, &wid, change).await
    }
    .await;
    done(state, &format!("/webhooks/{id}"), result, |_| {
        if enabled {
            "The webhook is enabled.".into()
        } else {
            "The webhook is disabled: events are no longer delivered to it.".into()
        }
    })
}

pub async fn enable(State(state): State<AppState>, Path(id): Path<String>, Form { s, .. }: Form) -> Response {
    set_enabled(&state, &id, &s, true).await
}

pub async fn disable(State(state): State<AppState>, Path(id): Path<String>, Form { s, .. }: Form) -> Response {
    set_enabled(&state, &id, &s, false).await
}

pub async fn rotate_secret(State(state): State<AppState>, Path(id): Path<String>, Form { s, .. }: Form) -> Response {
    let result = async {
        let wid = WebhookId::parse(&id).ok_or(sendmux_core::Error::NotFound("webhook"))?;
        manage::rotate_secret(&state, &s.p, &wid, Some(manage::MAX_GRACE_SECONDS)).await
    }
    .await;
    match result {
        Ok(rotated) => {
            let mut res = render_detail(&state, &id, DeliveryQuery::default(), &s, Some(rotated.secret)).await;
            res.headers_mut()
                .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store, private"));
            res
        }
        Err(e) => done(&state, &format!("/webhooks/{id}"), Err::<(), _>(e), |_| String::new()),
    }
}
