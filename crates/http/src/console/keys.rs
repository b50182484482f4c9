//! API keys: the list (prefix and last four only), create with the secret shown once and
//! a copy button, revoke — through `sendmux_core::keys`.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;

use super::layout::{self, badge, copyable, csrf, empty, post_button, time, time_opt};
use super::session::{Form, Session, api_message, done, error_page};
use crate::state::AppState;
use sendmux_core::auth::parse_permissions;
use sendmux_core::auth::perms::{KeyKind, Perm};
use sendmux_core::ids::KeyId;
use sendmux_core::keys::{self, NewKey, WithSecret};
use sendmux_core::outbound::manage;

const KINDS: [(KeyKind, &str); 3] = [
    (KeyKind::Sending, "Sending — sends mail through one delivery group"),
    (KeyKind::Mailbox, "Mailbox — reads one mailbox"),
    (KeyKind::Infrastructure, "Infrastructure — manages the team's setup"),
];

async fn render(state: &AppState, s: &Session, created: Option<WithSecret>, error: Option<String>) -> Response {
    let rows = match keys::list(state, &s.p, None, 100).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(s), e.into()),
    };
    let manage_keys = s.can(Perm::KeysManage);
    let groups =
        if manage_keys { manage::list_groups(state, &s.p, None, 100).await.unwrap_or_default() } else { vec![] };
    let mailboxes = if manage_keys {
        sendmux_core::mailboxes::list(state, &s.p, None, 100).await.unwrap_or_default()
    } else {
        vec![]
    };
    let now = sendmux_core::store::now_ms();
    let body = html! {
        @if let Some(c) = &created {
            section.card.reveal role="status" {
                h2 { "The secret of key “" (c.key.name) "”" }
                p { strong { "Copy the secret now." } " It is shown only this once; Sendmux keeps only its hash." }
                (copyable("new-secret", &c.secret))
            }
        }
        @if let Some(e) = &error { p.notice.notice-error role="alert" { (e) } }
        @if manage_keys {
            details.card.create open[rows.is_empty() || error.is_some()] {
                summary { "Create a key" }
                form.stack-form method="post" action="/keys" {
                    (csrf(s))
                    label for="key-name" { "Name" }
                    input #key-name name="name" required maxlength="100" placeholder="e.g. billing-service";
                    fieldset {
                        legend { "Kind" }
                        @for (i, (kind, text)) in KINDS.iter().enumerate() {
                            label.choice { input type="radio" name="kind" value=(kind.as_str()) checked[i == 0]; " " (text) }
                        }
                    }
                    label for="key-group" { "Delivery group " span.muted { "(sending keys)" } }
                    select #key-group name="delivery_group_id" {
                        option value="" { "—" }
                        @for g in &groups { option value=(g.row.id) { (g.row.name) } }
                    }
                    label for="key-mailbox" { "Mailbox " span.muted { "(mailbox keys)" } }
                    select #key-mailbox name="mailbox_id" {
                        option value="" { "—" }
                        @for m in &mailboxes { option value=(m.id) { (m.address) } }
                    }
                    fieldset {
                        legend { "Permissions " span.muted { "(none ticked: the kind's defaults)" } }
                        @for kind in [KeyKind::Infrastructure, KeyKind::Mailbox] {
                            p.small.muted { (kind.as_str()) }
                            div.checks { @for perm in kind.allowed() {
                                label.choice { input type="checkbox" name={ "perm_" (kind.as_str()) } value=(perm.name()); " " code { (perm.name()) } }
                            } }
                        }
                    }
                    label for="key-expires" { "Expires on " span.muted { "(optional)" } }
                    input #key-expires type="date" name="expires_on";
                    div.form-actions { button.primary type="submit" { "Create key" } }
                }
            }
        }
        section.card {
            h2 { "Keys" }
            @if rows.is_empty() {
                (empty("No keys yet", if manage_keys { "Create a key for your code: a sending key to send mail, a mailbox key for an agent reading a mailbox." } else { "Developers of the team create keys for its code." }, None))
            } @else {
                div.table-wrap tabindex="0" { table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Key" } th scope="col" { "Permissions" }
                        th scope="col" { "Status" } th scope="col" { "Created" } th scope="col" { "Last used" }
                        @if manage_keys { th scope="col" { span.visually-hidden { "Actions" } } }
                    } }
                    tbody { @for k in &rows {
                        @let status = if k.revoked_at.is_some() { "revoked" } else if !k.is_active(now) { "expired" } else { "active" };
                        tr {
                            td { (k.name) } td { (k.kind) } td { code { (k.prefix) "…" (k.last4) } }
                            td.perms { @for p in parse_permissions(&k.permissions).key_permission_names() { code { (p) } " " } }
                            td { (badge(status)) } td { (time(k.created_at)) } td { (time_opt(k.last_used_at)) }
                            @if manage_keys { td.actions { @if status == "active" {
                                form.inline method="post" action={ "/keys/" (k.id) "/rotate" } {
                                    (csrf(s))
                                    label.visually-hidden for={ "grace-" (k.id) } { "When the old secret of " (k.name) " stops" }
                                    select id={ "grace-" (k.id) } name="grace_seconds" {
                                        option value="0" { "old stops now" }
                                        option value="3600" selected { "old: 1 h more" }
                                        option value="86400" { "old: 24 h more" }
                                    }
                                    button.secondary type="submit" { "Rotate" }
                                }
                                (post_button(s, &format!("/keys/{}/revoke", k.id), "Revoke", "danger", Some("Revoke this key? Code using it stops working at once.")))
                            } } }
                        }
                    } }
                } }
            }
        }
    };
    let mut res = layout::page(s, "/keys", "API keys", body);
    if created.is_some() {
        // The secret exists in this answer only: no cache may keep it.
        res.headers_mut()
            .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store, private"));
    }
    res
}

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    render(&state, &s, None, None).await
}

pub async fn create(State(state): State<AppState>, Form { s, f }: Form) -> Response {
    let kind = KeyKind::parse(&f.text("kind"));
    let result = match kind {
        None => Err(sendmux_core::Error::invalid("kind", "Choose the kind of key")),
        Some(kind) => {
            let named = f.all(&format!("perm_{}", kind.as_str()));
            let expires_at = f.opt("expires_on").map(|d| format!("{d}T00:00:00Z"));
            let new = NewKey {
                name: f.text("name"),
                kind,
                permissions: (!named.is_empty()).then_some(named),
                delivery_group_id: f.opt("delivery_group_id").filter(|_| kind == KeyKind::Sending),
                mailbox_id: f.opt("mailbox_id").filter(|_| kind == KeyKind::Mailbox),
                expires_at,
            };
            keys::create(&state, &s.p, new).await
        }
    };
    match result {
        Ok(created) => render(&state, &s, Some(created), None).await,
        Err(e) => {
            let api = crate::error::ApiError::from(e);
            let mut res = render(&state, &s, None, Some(api_message(&api))).await;
            *res.status_mut() = api.status;
            res
        }
    }
}

pub async fn revoke(State(state): State<AppState>, Path(id): Path<String>, Form { s, .. }: Form) -> Response {
    let result = async {
        let id = KeyId::parse(&id).ok_or(sendmux_core::Error::NotFound("key"))?;
        keys::revoke(&state, &s.p, &id).await
    }
    .await;
    done(&state, "/keys", result, |k| format!("Key “{}” was revoked.", k.name))
}

pub async fn rotate(State(state): State<AppState>, Path(id): Path<String>, Form { s, f }: Form) -> Response {
    let result = async {
        let id = KeyId::parse(&id).ok_or(sendmux_core::Error::NotFound("key"))?;
        let grace = f.text("grace_seconds").parse::<i64>().map_err(|_| {
            sendmux_core::Error::invalid("grace_seconds", "Choose how long the old secret keeps working")
        })?;
        keys::rotate(&state, &s.p, &id, grace).await
    }
    .await;
    match result {
        Ok(rotated) => render(&state, &s, Some(rotated), None).await,
        Err(e) => done(&state, "/keys", Err::<(), _>(e), |_| String::new()),
    }
}
