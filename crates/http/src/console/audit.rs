//! The audit log: who (a person, a key, the operator) changed what, when and from where,
//! filtered by action, actor or target — through `sendmux_core::logs`.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::layout::{self, empty, next_link, time};
use super::session::{Session, error_page};
use crate::state::AppState;
use sendmux_core::logs::{self, AuditFilter};

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    cursor: Option<String>,
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

pub async fn page(State(state): State<AppState>, Query(q): Query<AuditQuery>, s: Session) -> Response {
    let filter = AuditFilter { action: given(&q.action), actor_id: given(&q.actor), target_id: given(&q.target) };
    let cursor = q.cursor.as_deref().filter(|c| sendmux_core::ids::AuditId::parse(c).is_some());
    let rows = match logs::audit_filtered(&state, &s.p, &filter, cursor, 51).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let (rows, next) = sendmux_core::store::page(rows, 50, |r| r.id.clone());
    // People by email where the team knows them.
    let members = sendmux_core::teams::members(&state, &s.p, None, 100).await.unwrap_or_default();
    let who = |kind: &str, id: &str| -> String {
        match members.iter().find(|m| m.user_id == id) {
            Some(m) if kind == "user" => m.email.clone(),
            _ => format!("{kind} {id}"),
        }
    };
    let (action, actor, target) = (
        filter.action.clone().unwrap_or_default(),
        filter.actor_id.clone().unwrap_or_default(),
        filter.target_id.clone().unwrap_or_default(),
    );
    let body = html! {
        section.card {
            form.grid-form.filters method="get" action="/audit" {
                div { label for="f-action" { "Action" } input #f-action name="action" value=(action) placeholder="e.g. key. or member.invited"; }
                div { label for="f-actor" { "Actor id" } input #f-actor name="actor" value=(actor) placeholder="usr_… or key_…"; }
                div { label for="f-target" { "Target id" } input #f-target name="target" value=(target) placeholder="key_…, whk_…"; }
                div.form-actions { button.primary type="submit" { "Filter" } " " a href="/audit" { "Clear" } }
            }
        }
        section.card {
            @if rows.is_empty() {
                (empty("Nothing recorded", "Every change to the team — keys, members, webhooks, providers — is recorded here with who made it and from where.", None))
            } @else {
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Actor" } th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "From" } } }
                    tbody { @for r in &rows { tr {
                        td { (time(r.created_at)) }
                        td { a href={ "/audit?actor=" (r.actor_id) } { (who(&r.actor_type, &r.actor_id)) } }
                        td { a href={ "/audit?action=" (r.action) } { code { (r.action) } } }
                        td { a href={ "/audit?target=" (r.target_id) } { (r.target_type) " " code { (r.target_id) } } }
                        td { (r.ip.as_deref().unwrap_or("—")) }
                    } } }
                } }
                (next_link("/audit", &[("action", &action), ("actor", &actor), ("target", &target)], next.as_deref()))
            }
        }
    };
    layout::page(&s, "/audit", "Audit log", body)
}
