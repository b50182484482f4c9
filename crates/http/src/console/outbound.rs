//! Providers (with their live test) and delivery groups, through
//! `sendmux_core::outbound::manage`. Credentials go in and are never shown again.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::layout::{self, csrf, empty, post_button, time};
use super::session::{Flash, Form, Session, done, error_page, redirect_with, refusal};
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::{DeliveryGroupId, ProviderId};
use sendmux_core::outbound::manage::{self, GroupMember, NewGroup, NewProvider, ProviderType, Strategy};

fn config_summary(kind: &str, config: &Value) -> Markup {
    let get = |k: &str| config.get(k).map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
    html! {
        @if kind == "smtp" {
            code { (get("host").unwrap_or_default()) ":" (get("port").unwrap_or_default()) }
            " " span.muted { (get("security").unwrap_or_default()) }
            @if config.get("password_set").and_then(Value::as_bool) == Some(true) { " " span.badge.tone-neutral { "password stored" } }
        } @else {
            code { (get("region").unwrap_or_default()) }
            @if let Some(e) = get("endpoint").filter(|e| e != "null") { " " span.muted { (e) } }
        }
    }
}

pub async fn providers_page(State(state): State<AppState>, s: Session) -> Response {
    let providers = match manage::list_providers(&state, &s.p, None, 100).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let can_manage = s.can(Perm::ProvidersManage);
    let body = html! {
        section.card {
            h2 { "Providers" }
            @if providers.is_empty() {
                (empty("No providers yet", if can_manage { "Add your SMTP relay or Amazon SES account below, test it, then put it in a delivery group." } else { "Admins of the team add the providers mail is sent through." }, None))
            } @else {
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Connects to" } th scope="col" { "Added" }
                        @if can_manage { th scope="col" { span.visually-hidden { "Actions" } } } } }
                    tbody { @for p in &providers { tr {
                        td { (p.name) } td { (p.kind) } td { (config_summary(&p.kind, &p.config)) } td { (time(p.created_at)) }
                        @if can_manage { td.actions {
                            (post_button(&s, &format!("/providers/{}/test", p.id), "Test", "secondary", None))
                            (post_button(&s, &format!("/providers/{}/delete", p.id), "Delete", "danger", Some("Delete this provider?")))
                        } }
                    } } }
                } }
            }
        }
        @if can_manage {
            section.card {
                h2 { "Add a provider" }
                form.stack-form method="post" action="/providers" {
                    (csrf(&s))
                    label for="prv-name" { "Name" }
                    input #prv-name name="name" required maxlength="100" placeholder="e.g. relay";
                    fieldset {
                        legend { "Type" }
                        label.choice { input type="radio" name="type" value="smtp" checked; " SMTP relay" }
                        label.choice { input type="radio" name="type" value="ses"; " Amazon SES" }
                    }
                    fieldset.group {
                        legend { "SMTP" }
                        div.row {
                            div { label for="prv-host" { "Host" } input #prv-host name="host" placeholder="smtp.example.com"; }
                            div { label for="prv-port" { "Port" } input #prv-port name="port" inputmode="numeric" placeholder="587"; }
                            div { label for="prv-security" { "Security" }
                                select #prv-security name="security" {
                                    option value="starttls" { "STARTTLS" } option value="tls" { "TLS" } option value="none" { "none" }
                                } }
                        }
                        div.row {
                            div { label for="prv-user" { "Username" } input #prv-user name="username" autocomplete="off"; }
                            div { label for="prv-pass" { "Password" } input #prv-pass type="password" name="password" autocomplete="new-password"; }
                        }
                    }
                    fieldset.group {
                        legend { "Amazon SES" }
                        div.row {
                            div { label for="prv-region" { "Region" } input #prv-region name="region" placeholder="eu-west-1"; }
                            div { label for="prv-akid" { "Access key id" } input #prv-akid name="access_key_id" autocomplete="off"; }
                            div { label for="prv-secret" { "Secret access key" } input #prv-secret type="password" name="secret_access_key" autocomplete="new-password"; }
                        }
                        label for="prv-endpoint" { "Endpoint " span.muted { "(optional)" } }
                        input #prv-endpoint name="endpoint";
                    }
                    div.form-actions { button.primary type="submit" { "Add provider" } }
                }
            }
        }
    };
    layout::page(&s, "/providers", "Providers", body)
}

pub async fn create_provider(State(state): State<AppState>, Form { s, f }: Form) -> Response {
    let mut config = Map::new();
    let kind = match f.text("type").as_str() {
        "ses" => {
            for k in ["region", "access_key_id", "endpoint"] {
                if let Some(v) = f.opt(k) {
                    config.insert(k.into(), json!(v));
                }
            }
            if !f.raw("secret_access_key").is_empty() {
                config.insert("secret_access_key".into(), json!(f.raw("secret_access_key")));
            }
            ProviderType::Ses
        }
        _ => {
            for k in ["host", "security", "username"] {
                if let Some(v) = f.opt(k) {
                    config.insert(k.into(), json!(v));
                }
            }
            if let Some(port) = f.opt("port") {
                config.insert("port".into(), port.parse::<u64>().map(|p| json!(p)).unwrap_or(json!(port)));
            }
            if !f.raw("password").is_empty() {
                config.insert("password".into(), json!(f.raw("password")));
            }
            ProviderType::Smtp
        }
    };
    let new = NewProvider { name: f.text("name"), kind, config: Value::Object(config) };
    let result = manage::create_provider(&state, &s.p, new).await;
    done(&state, "/providers", result, |p| format!("Provider “{}” added. Test it to check its settings.", p.name))
}

pub async fn test_provider(State(state): State<AppState>, Path(id): Path<String>, Form { s, .. }: Form) -> Response {
    let result = async {
        let id = ProviderId::parse(&id).ok_or(sendmux_core::Error::NotFound("provider"))?;
        manage::test_provider(&state, &s.p, &id).await
    }
    .await;
    let flash = match result {
        Ok(check) if check.ok => {
            Flash { ok: true, message: "Test passed: the provider accepted the connection and the credentials.".into() }
        }
        Ok(check) => Flash { ok: false, message: format!("Test failed: {}", check.message.unwrap_or_default()) },
        Err(e) => Flash { ok: false, message: refusal(e) },
    };
    redirect_with(&state, "/providers", Some(flash))
}

pub async fn delete_provider(State(state): State<AppState>, Path(id): Path<String>, Form { s, .. }: Form) -> Response {
    let result = async {
        let id = ProviderId::parse(&id).ok_or(sendmux_core::Error::NotFound("provider"))?;
        manage::delete_provider(&state, &s.p, &id).await
    }
    .await;
    done(&state, "/providers", result, |_| "The provider was deleted.".into())
}

pub async fn groups_page(State(state): State<AppState>, s: Session) -> Response {
    let groups = match manage::list_groups(&state, &s.p, None, 100).await {
        Ok(g) => g,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let providers = manage::list_providers(&state, &s.p, None, 100).await.unwrap_or_default();
    let name_of = |id: &Option<String>| match id {
        None => "managed SES".to_owned(),
        Some(id) => providers.iter().find(|p| &p.id == id).map(|p| p.name.clone()).unwrap_or_else(|| id.clone()),
    };
    let can_manage = s.can(Perm::ProvidersManage);
    let managed = state.settings.managed_ses.is_some();
    let body = html! {
        section.card {
            h2 { "Delivery groups" }
            @if groups.is_empty() {
                (empty("No delivery groups yet", "A delivery group sends through its providers in order (failover) or spread by weight; a sending key sends through one group.", can_manage.then_some(("#new-group", "Create a group"))))
            } @else {
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Strategy" } th scope="col" { "Members" } th scope="col" { "Id" }
                        @if can_manage { th scope="col" { span.visually-hidden { "Actions" } } } } }
                    tbody { @for g in &groups { tr {
                        td { (g.row.name) } td { (g.row.strategy) }
                        td { ol.inline-list { @for m in &g.members { li { (name_of(&m.provider_id)) @if g.row.strategy == "weighted" { " ×" (m.weight) } } } } }
                        td { code { (g.row.id) } }
                        @if can_manage { td.actions { (post_button(&s, &format!("/delivery-groups/{}/delete", g.row.id), "Delete", "danger", Some("Delete this delivery group?"))) } }
                    } } }
                } }
            }
        }
        @if can_manage {
            section.card #new-group {
                h2 { "Create a delivery group" }
                @if providers.is_empty() && !managed {
                    (empty("Add a provider first", "A group sends through providers of the team.", Some(("/providers", "Add a provider"))))
                } @else {
                    form.stack-form method="post" action="/delivery-groups" {
                        (csrf(&s))
                        label for="grp-name" { "Name" }
                        input #grp-name name="name" required maxlength="100" placeholder="e.g. transactional";
                        fieldset {
                            legend { "Strategy" }
                            label.choice { input type="radio" name="strategy" value="failover" checked; " Failover — the first member, the next when it fails" }
                            label.choice { input type="radio" name="strategy" value="weighted"; " Weighted — spread across members" }
                        }
                        fieldset {
                            legend { "Members, in order" }
                            @for p in &providers { label.choice { input type="checkbox" name="member" value=(p.id); " " (p.name) } }
                            @if managed { label.choice { input type="checkbox" name="member" value="managed"; " managed SES" } }
                        }
                        div.form-actions { button.primary type="submit" { "Create group" } }
                    }
                }
            }
        }
    };
    layout::page(&s, "/delivery-groups", "Delivery groups", body)
}

pub async fn create_group(State(state): State<AppState>, Form { s, f }: Form) -> Response {
    let strategy = if f.text("strategy") == "weighted" { Strategy::Weighted } else { Strategy::Failover };
    let members = f
        .all("member")
        .into_iter()
        .map(|provider_id| GroupMember { provider_id, priority: None, weight: None })
        .collect();
    let result = manage::create_group(&state, &s.p, NewGroup { name: f.text("name"), strategy, members }).await;
    done(&state, "/delivery-groups", result, |g| format!("Delivery group “{}” created.", g.row.name))
}

pub async fn delete_group(State(state): State<AppState>, Path(id): Path<String>, Form { s, .. }: Form) -> Response {
    let result = async {
        let id = DeliveryGroupId::parse(&id).ok_or(sendmux_core::Error::NotFound("delivery group"))?;
        manage::delete_group(&state, &s.p, &id).await
    }
    .await;
    done(&state, "/delivery-groups", result, |_| "The delivery group was deleted.".into())
}
