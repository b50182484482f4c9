//! The overview: what the team has (from its limits' use), what to do next when it is
//! new, and its latest events.

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::layout::{self, badge, empty, time};
use super::session::Session;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::limits::{self, LimitName};

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    let usage = match limits::list(&state, &s.p).await {
        Ok(u) => u,
        Err(e) => return super::session::error_page(Some(&s), e.into()),
    };
    let used = |name: LimitName| usage.iter().find(|u| u.name == name).map(|u| u.used).unwrap_or(0);
    let (keys, mailboxes, providers, webhooks) = (
        used(LimitName::ActiveKeys),
        used(LimitName::Mailboxes),
        used(LimitName::Providers),
        used(LimitName::Webhooks),
    );
    let events = if sendmux_core::events::may_list(&s.p, None).is_ok() {
        sendmux_core::events::list(&state, &s.p, None, None, 5).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let new_team = keys == 0 && mailboxes == 0 && providers == 0;
    let body = html! {
        p.lead { "You are " strong { (s.role()) } " in " strong { (s.team_name()) } "." }
        @if new_team {
            section.card.getting-started {
                h2 { "Get started" }
                ol.steps {
                    li {
                        strong { "Set up sending. " }
                        "Add a provider (your SMTP relay or Amazon SES) and a delivery group over it."
                        @if s.can(Perm::ProvidersManage) { " " a href="/providers" { "Add a provider" } }
                        @else { " An admin of the team does this." }
                    }
                    li {
                        strong { "Add your domain. " }
                        "Publish the DNS records Sendmux shows (ownership, DKIM, SPF, DMARC, MX) so mail from it is signed and can be received."
                        @if s.can(Perm::DomainsManage) { " " a href="/domains" { "Add a domain" } }
                        @else { " An admin of the team does this." }
                    }
                    li {
                        strong { "Create a key. " }
                        "Your code uses keys: a sending key sends through one delivery group, a mailbox key reads one mailbox."
                        @if s.can(Perm::KeysManage) { " " a href="/keys" { "Create a key" } }
                        @else { " A developer of the team does this." }
                    }
                    li {
                        strong { "Send or receive a mail. " }
                        "POST /api/v1/emails with the sending key, or create a mailbox and send mail to it over SMTP."
                        @if s.can(Perm::MailboxesManage) { " " a href="/mailboxes" { "Create a mailbox" } }
                    }
                }
            }
        }
        section.stats {
            a.stat href="/keys" { span.stat-value { (keys) } span.stat-label { "active keys" } }
            a.stat href="/mailboxes" { span.stat-value { (mailboxes) } span.stat-label { "mailboxes" } }
            a.stat href="/providers" { span.stat-value { (providers) } span.stat-label { "providers" } }
            a.stat href="/webhooks" { span.stat-value { (webhooks) } span.stat-label { "webhooks" } }
        }
        @if sendmux_core::events::may_list(&s.p, None).is_ok() {
            section.card {
                h2 { "Latest events" }
                @if events.is_empty() {
                    (empty("No events yet", "Events appear here when mail is received or sent.", None))
                } @else {
                    div.table-wrap tabindex="0" { table {
                        thead { tr { th scope="col" { "Type" } th scope="col" { "Event" } th scope="col" { "When" } } }
                        tbody { @for e in &events { tr {
                            td { (badge(&e.kind)) } td { code { (e.id) } } td { (time(e.created_at)) }
                        } } }
                    } }
                    p { a href="/events" { "All events and the live feed →" } }
                }
            }
        }
    };
    layout::page(&s, "/", "Overview", body)
}
