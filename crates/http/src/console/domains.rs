//! Domains: the team's sending and receiving domains, each with the DNS records to
//! publish (a copy button on each name and value), verify now, rotate the DKIM key and
//! delete — through `sendmux_core::domains`, as the API's `/api/v1/domains`.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{self, badge, csrf, empty, post_button, time, time_opt};
use super::session::{Flash, Form, Session, done, error_page, redirect_with};
use crate::error::ApiError;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::domains::{self, NewDomain};
use sendmux_core::ids::DomainId;

const ALGORITHMS: [(&str, &str); 2] =
    [("rsa", "RSA 2048 — read by every receiver"), ("ed25519", "Ed25519 — short keys (RFC 8463)")];

/// A record's name or value with a copy button (with script; selectable without).
fn copy_cell(id: &str, value: &str, label: &str) -> Markup {
    html! {
        div.copy-cell {
            code.record #(id) { (value) }
            button.secondary.small-button type="button" data-copy=(id) aria-label=(label) hidden { "Copy" }
        }
    }
}

/// A refusal by the service: a person whose role lacks the permission, or a domain that is
/// not the team's, gets the 403 or 404 page; anything else (a conflict, a bad field) comes
/// back as a notice on `to`.
fn refused(state: &AppState, s: &Session, to: &str, e: sendmux_core::Error) -> Response {
    match e {
        e @ (sendmux_core::Error::Forbidden(_) | sendmux_core::Error::NotFound(_)) => error_page(Some(s), e.into()),
        e => done(state, to, Err::<(), _>(e), |_| String::new()),
    }
}

fn parse_id(raw: &str) -> Result<DomainId, sendmux_core::Error> {
    DomainId::parse(raw).ok_or(sendmux_core::Error::NotFound("domain"))
}

fn algorithm_choice(id: &str, selected: &str) -> Markup {
    html! {
        @for (value, text) in ALGORITHMS {
            label.choice { input type="radio" name="dkim_algorithm" id={ (id) "-" (value) } value=(value) checked[value == selected]; " " (text) }
        }
    }
}

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    let rows = match domains::list(&state, &s.p, None, 100).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let can_manage = s.can(Perm::DomainsManage);
    let body = html! {
        section.card {
            h2 { "Domains" }
            @if rows.is_empty() {
                (empty(
                    "No domains yet",
                    if can_manage {
                        "Add the domain you send from: Sendmux shows the DNS records to publish (ownership, DKIM, SPF, DMARC, MX), then verifies them. Mail from a verified domain is signed with its DKIM key."
                    } else {
                        "An admin of the team adds the domains it sends from and publishes their DNS records."
                    },
                    can_manage.then_some(("#new-domain", "Add a domain")),
                ))
            } @else {
                div.table-wrap tabindex="0" { table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Unicode name" } th scope="col" { "Status" }
                        th scope="col" { "Receiving" } th scope="col" { "Last checked" }
                    } }
                    tbody { @for d in &rows {
                        @let unicode = domains::name::unicode(&d.name);
                        tr {
                            td { a href={ "/domains/" (d.id) } { (d.name) } }
                            td { @if unicode != d.name { (unicode) } @else { span.muted { "—" } } }
                            td { (badge(&d.status)) }
                            td { @if d.receiving != 0 { "yes" } @else { span.muted { "no" } } }
                            td { (time_opt(d.checked_at)) }
                        }
                    } }
                } }
            }
        }
        @if can_manage {
            section.card #new-domain {
                h2 { "Add a domain" }
                form.stack-form method="post" action="/domains" {
                    (csrf(&s))
                    label for="domain-name" { "Domain name" }
                    input #domain-name name="name" required maxlength="253" placeholder="e.g. mail.example.com" autocomplete="off";
                    fieldset {
                        legend { "DKIM key" }
                        (algorithm_choice("new-alg", "rsa"))
                    }
                    div.form-actions { button.primary type="submit" { "Add domain" } }
                }
            }
        }
    };
    layout::page(&s, "/domains", "Domains", body)
}

pub async fn create(State(state): State<AppState>, Form { s, f }: Form) -> Response {
    let new = NewDomain { name: f.text("name"), dkim_algorithm: f.opt("dkim_algorithm") };
    match domains::create(&state, &s.p, new).await {
        Ok(d) => redirect_with(
            &state,
            &format!("/domains/{}", d.id),
            Some(Flash { ok: true, message: format!("{} added. Publish its DNS records, then verify.", d.name) }),
        ),
        Err(e) => refused(&state, &s, "/domains", e),
    }
}

pub async fn detail(State(state): State<AppState>, Path(id): Path<String>, s: Session) -> Response {
    let Some(id) = DomainId::parse(&id) else { return error_page(Some(&s), ApiError::not_found("domain")) };
    let d = match domains::get(&state, &s.p, &id).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let records = domains::records(&state.settings, &d);
    let can_manage = s.can(Perm::DomainsManage);
    let unicode = domains::name::unicode(&d.name);
    let current_alg = if d.dkim_algorithm.starts_with("ed25519") { "ed25519" } else { "rsa" };
    let body = html! {
        p { a href="/domains" { "← Domains" } }
        section.card {
            h2 { (d.name) @if unicode != d.name { " " span.muted { "(" (unicode) ")" } } }
            dl.meta {
                dt { "Status" } dd #domain-status { (badge(&d.status)) }
                @if let Some(reason) = &d.reason { dt { "Why" } dd #domain-reason { (reason) } }
                dt { "Receiving" } dd { @if d.receiving != 0 { "yes — its MX record points here" } @else { "no" } }
                dt { "DKIM" } dd {
                    code { (d.dkim_selector) } " (" (d.dkim_algorithm) ")"
                    @if let Some(next) = &d.next_dkim_selector { "; rotating to " code { (next) } " once its record is found" }
                }
                dt { "Added" } dd { (time(d.created_at)) }
                dt { "Verified" } dd { (time_opt(d.verified_at)) }
                dt { "Last checked" } dd { (time_opt(d.checked_at)) }
            }
            @if can_manage {
                div.form-actions {
                    (post_button(&s, &format!("/domains/{}/verify", d.id), "Verify now", "primary", None))
                }
            }
        }
        section.card {
            h2 { "DNS records" }
            p.muted.small { "Publish these at your DNS provider. Ownership and DKIM are required; SPF, DMARC and MX are recommended (MX to receive mail here)." }
            div.table-wrap tabindex="0" { table.records {
                thead { tr {
                    th scope="col" { "Purpose" } th scope="col" { "Type" } th scope="col" { "Name" }
                    th scope="col" { "Value" } th scope="col" { "Status" }
                } }
                tbody { @for (i, r) in records.iter().enumerate() { tr {
                    td.record-purpose { (r.purpose) } td.record-type { (r.kind) }
                    td.record-name data-label="Name" { (copy_cell(&format!("record-{i}-name"), &r.name, &format!("Copy the name of the {} record", r.purpose))) }
                    td.record-value data-label="Value" { (copy_cell(&format!("record-{i}-value"), &r.value, &format!("Copy the value of the {} record", r.purpose))) }
                    td.record-status { (badge(&r.status)) }
                } } }
            } }
        }
        @if can_manage {
            section.card {
                h2 { "Rotate the DKIM key" }
                p.muted.small { "A new selector and key: the current key keeps signing until the new record is found. On a domain not verified yet the new key replaces the current one at once." }
                form.stack-form method="post" action={ "/domains/" (d.id) "/rotate" } {
                    (csrf(&s))
                    fieldset {
                        legend { "New key" }
                        (algorithm_choice("rotate-alg", current_alg))
                    }
                    div.form-actions { button.secondary type="submit" { "Rotate DKIM key" } }
                }
            }
            section.card {
                h2 { "Delete" }
                p.muted.small { "Only a domain no mailbox is on can be deleted." }
                (post_button(&s, &format!("/domains/{}/delete", d.id), "Delete this domain", "danger", Some("Delete this domain? Mail from it is no longer signed.")))
            }
        }
    };
    layout::page(&s, "/domains", "Domain", body)
}

pub async fn verify(State(state): State<AppState>, Path(id): Path<String>, Form { s, .. }: Form) -> Response {
    let to = format!("/domains/{id}");
    let result = async { domains::verify(&state, &s.p, &parse_id(&id)?).await }.await;
    match result {
        Ok(d) => done(&state, &to, Ok(d), |d| match d.status.as_str() {
            "verified" => format!("{} is verified.", d.name),
            other => format!("{} is {other}: {}", d.name, d.reason.unwrap_or_default()),
        }),
        Err(e) => refused(&state, &s, &to, e),
    }
}

pub async fn rotate(State(state): State<AppState>, Path(id): Path<String>, Form { s, f }: Form) -> Response {
    let to = format!("/domains/{id}");
    let algorithm = f.opt("dkim_algorithm");
    let result = async { domains::rotate_dkim(&state, &s.p, &parse_id(&id)?, algorithm.as_deref()).await }.await;
    match result {
        Ok(d) => done(&state, &to, Ok(d), |d| match &d.next_dkim_selector {
            Some(next) => format!("New DKIM key {next}: publish its record; the current key signs until it is found."),
            None => format!("New DKIM key {}: publish its record.", d.dkim_selector),
        }),
        Err(e) => refused(&state, &s, &to, e),
    }
}

pub async fn delete(State(state): State<AppState>, Path(id): Path<String>, Form { s, .. }: Form) -> Response {
    let result = async { domains::delete(&state, &s.p, &parse_id(&id)?).await }.await;
    match result {
        Ok(()) => done(&state, "/domains", Ok(()), |_| "The domain was deleted.".into()),
        Err(e) => refused(&state, &s, &format!("/domains/{id}"), e),
    }
}
