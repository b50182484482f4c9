//! Members and invitations: invite (the link shown once), change a role, remove, revoke
//! an invitation — through `sendmux_core::teams`.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{self, badge, copyable, csrf, empty, post_button, time};
use super::session::{Form, Session, done, error_page};
use crate::state::AppState;
use sendmux_core::auth::perms::{Perm, Role};
use sendmux_core::ids::{InvitationId, UserId};
use sendmux_core::teams;

const ROLES: [Role; 3] = [Role::Admin, Role::Developer, Role::Member];

fn role_select(id: &str, selected: Option<&str>) -> Markup {
    html! {
        select #(id) name="role" {
            @for r in ROLES { option value=(r.as_str()) selected[Some(r.as_str()) == selected] { (r.as_str()) } }
        }
    }
}

async fn render(state: &AppState, s: &Session, invited: Option<(String, String)>) -> Response {
    let members = match teams::members(state, &s.p, None, 100).await {
        Ok(m) => m,
        Err(e) => return error_page(Some(s), e.into()),
    };
    let invitations = teams::invitations(state, &s.p, None, 50).await.unwrap_or_default();
    let now = sendmux_core::store::now_ms();
    let manage = s.can(Perm::MembersManage);
    let me = s.p.user_id().unwrap_or_default();
    let body = html! {
        @if let Some((email, link)) = &invited {
            section.card.reveal role="status" {
                h2 { "Invitation for " (email) }
                p { "Send this link to " (email) ". It is shown only this once; whoever opens it joins the team." }
                (copyable("invitation-link", link))
            }
        }
        section.card {
            h2 { "Members" }
            div.table-wrap tabindex="0" { table {
                thead { tr { th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Joined" }
                    @if manage { th scope="col" { span.visually-hidden { "Actions" } } } } }
                tbody { @for m in &members { tr {
                    td { (m.email) @if m.user_id == me { " " span.muted { "(you)" } } }
                    td { (badge(&m.role)) }
                    td { (time(m.created_at)) }
                    @if manage { td.actions {
                        @if m.role != "owner" && m.user_id != me {
                            form.inline method="post" action={ "/members/" (m.user_id) "/role" } {
                                (csrf(s))
                                label.visually-hidden for={ "role-" (m.user_id) } { "Role of " (m.email) }
                                (role_select(&format!("role-{}", m.user_id), Some(&m.role)))
                                button.secondary type="submit" { "Change role" }
                            }
                            (post_button(s, &format!("/members/{}/remove", m.user_id), "Remove", "danger", Some("Remove this member from the team?")))
                        }
                    } }
                } } }
            } }
        }
        @if manage {
            section.card {
                h2 { "Invite a person" }
                form.grid-form method="post" action="/members/invite" {
                    (csrf(s))
                    div { label for="invite-email" { "Email" } input #invite-email type="email" name="email" required; }
                    div { label for="invite-role" { "Role" } (role_select("invite-role", Some("developer"))) }
                    div.form-actions { button.primary type="submit" { "Create invitation" } }
                }
                p.muted.small { "Admins set up providers, mailboxes and people; developers manage keys and webhooks; members see metadata only, never a secret or message content." }
            }
        }
        section.card {
            h2 { "Invitations" }
            @if invitations.is_empty() {
                (empty("No invitations", if manage { "Invite a person above; they get a link to join with a password." } else { "Admins of the team invite people." }, None))
            } @else {
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Status" } th scope="col" { "Expires" }
                        @if manage { th scope="col" { span.visually-hidden { "Actions" } } } } }
                    tbody { @for i in &invitations {
                        @let status = if i.accepted_at.is_some() { "accepted" } else if i.revoked_at.is_some() { "revoked" } else if i.expires_at <= now { "expired" } else { "pending" };
                        tr {
                            td { (i.email) } td { (i.role) } td { (badge(status)) } td { (time(i.expires_at)) }
                            @if manage { td.actions { @if status == "pending" {
                                (post_button(s, &format!("/members/invitations/{}/revoke", i.id), "Revoke", "danger", Some("Revoke this invitation?")))
                            } } }
                        }
                    } }
                } }
            }
        }
    };
    layout::page(s, "/members", "Members", body)
}

pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    render(&state, &s, None).await
}

/// The origin people reach this instance at: `SENDMUX_PUBLIC_URL`, else the request's.
pub fn origin(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.settings.public_url {
        return url.clone();
    }
    let host = headers.get(axum::http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

pub async fn invite(State(state): State<AppState>, headers: HeaderMap, Form { s, f }: Form) -> Response {
    let role = Role::parse(&f.text("role"));
    let result = match role {
        Some(role) => teams::invite(&state, &s.p, &f.text("email"), role).await,
        None => Err(sendmux_core::Error::invalid("role", "Choose admin, developer or member")),
    };
    match result {
        Ok(created) => {
            let link = format!("{}/invitations/{}", origin(&state, &headers), created.token);
            render(&state, &s, Some((created.invitation.email, link))).await
        }
        Err(e) => done(&state, "/members", Err::<(), _>(e), |_| String::new()),
    }
}

pub async fn change_role(State(state): State<AppState>, Path(user_id): Path<String>, Form { s, f }: Form) -> Response {
    let result = async {
        let id = UserId::parse(&user_id).ok_or(sendmux_core::Error::NotFound("member"))?;
        let role = Role::parse(&f.text("role")).ok_or_else(|| sendmux_core::Error::invalid("role", "Choose a role"))?;
        teams::update_member(&state, &s.p, &id, role).await
    }
    .await;
    done(&state, "/members", result, |m| format!("{} is now {}.", m.email, m.role))
}

pub async fn remove(State(state): State<AppState>, Path(user_id): Path<String>, Form { s, .. }: Form) -> Response {
    let result = async {
        let id = UserId::parse(&user_id).ok_or(sendmux_core::Error::NotFound("member"))?;
        teams::remove_member(&state, &s.p, &id).await
    }
    .await;
    done(&state, "/members", result, |_| "The member was removed.".into())
}

pub async fn revoke_invitation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { s, .. }: Form,
) -> Response {
    let result = async {
        let id = InvitationId::parse(&id).ok_or(sendmux_core::Error::NotFound("invitation"))?;
        teams::revoke_invitation(&state, &s.p, &id).await
    }
    .await;
    done(&state, "/members", result, |_| "The invitation was revoked.".into())
}
