//! Limits with their use, and the increase request offered from 80 % — through
//! `sendmux_core::limits`.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;

use super::layout::{self, badge, csrf, time};
use super::session::{Form, Session, done, error_page};
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::limits::{self, IncreaseRequest, LimitName};

fn label(name: LimitName) -> &'static str {
    match name {
        LimitName::ActiveKeys => "Active keys",
        LimitName::Webhooks => "Webhooks",
        LimitName::SendingRatePerMinute => "Sending rate (requests per minute, busiest key)",
        LimitName::Mailboxes => "Mailboxes",
        LimitName::Providers => "Providers",
    }
}

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    let usage = match limits::list(&state, &s.p).await {
        Ok(u) => u,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let requests = limits::increase_requests(&state, &s.p, None, 20).await.unwrap_or_default();
    let can_request = s.can(Perm::LimitsRequest);
    let body = html! {
        section.card {
            h2 { "This team's limits" }
            p.muted { "An increase can be requested from 80 % of a limit; the operator decides." }
            ul.limits { @for u in &usage {
                li.limit {
                    div.limit-head {
                        span.limit-name { (label(u.name)) }
                        span.limit-figures { (u.used) " of " (u.limit) " · " (u.percent) " %" }
                    }
                    meter min="0" max=(u.limit) low=(u.limit * 8 / 10) high=(u.limit * 95 / 100) optimum="0" value=(u.used.min(u.limit))
                        aria-label={ (label(u.name)) ": " (u.used) " of " (u.limit) } {}
                    @if u.increase_requestable && can_request {
                        details.increase {
                            summary { "Request an increase" }
                            form.grid-form method="post" action={ "/limits/" (u.name.as_str()) "/increase" } {
                                (csrf(&s))
                                div { label for={ "req-" (u.name.as_str()) } { "New limit" }
                                      input id={ "req-" (u.name.as_str()) } type="number" name="requested" min=(u.limit + 1) value=(u.limit * 2) required; }
                                div { label for={ "why-" (u.name.as_str()) } { "Reason" }
                                      input id={ "why-" (u.name.as_str()) } name="reason" required maxlength="1000" placeholder="What the team needs it for"; }
                                div.form-actions { button.primary type="submit" { "Send request" } }
                            }
                        }
                    } @else if u.increase_requestable {
                        p.small.muted { "Near the limit: an admin of the team can request an increase." }
                    }
                }
            } }
        }
        @if !requests.is_empty() {
            section.card {
                h2 { "Increase requests" }
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "Limit" } th scope="col" { "From" } th scope="col" { "Asked" } th scope="col" { "Status" } th scope="col" { "When" } } }
                    tbody { @for r in &requests { tr {
                        td { (r.limit_name) } td { (r.current_limit) } td { (r.requested) } td { (badge(&r.status)) } td { (time(r.created_at)) }
                    } } }
                } }
            }
        }
    };
    layout::page(&s, "/limits", "Limits", body)
}

pub async fn request_increase(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Form { s, f }: Form,
) -> Response {
    let result = async {
        let name = LimitName::parse(&name).ok_or(sendmux_core::Error::NotFound("limit"))?;
        let requested = f
            .text("requested")
            .parse::<i64>()
            .map_err(|_| sendmux_core::Error::invalid("requested", "The new limit must be a whole number"))?;
        limits::request_increase(&state, &s.p, IncreaseRequest { name, requested, reason: f.text("reason") }).await
    }
    .await;
    done(&state, "/limits", result, |r| format!("Request {} sent to the operator.", r.id))
}
