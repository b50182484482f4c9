//! The people's console (SPEC §15): the human workspace at `/`, server-rendered HTML on
//! the same team boundary and roles as the API. Like the API's handlers, each page
//! parses, calls a `sendmux_core` service with the `Principal` of the session cookie, and
//! renders; the controls a role cannot use are hidden by asking the principal's
//! permissions, and the service refuses them anyway.

mod assets;
mod audit;
mod domains;
mod feed;
mod keys;
mod layout;
mod limits;
mod mailboxes;
mod members;
mod outbound;
mod overview;
mod session;
mod usage;
mod webhooks;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::state::AppState;

pub use session::{LIVE_FEED_PATH, Session};

/// The console's routes, with its security headers.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/switch-team", post(session::switch_team))
        .route("/invitations/{token}", get(session::invitation_page).post(session::accept_invitation))
        .route("/assets/console.css", get(assets::css))
        .route("/assets/console.js", get(assets::js))
        .route("/members", get(members::page))
        .route("/members/invite", post(members::invite))
        .route("/members/{user_id}/role", post(members::change_role))
        .route("/members/{user_id}/remove", post(members::remove))
        .route("/members/invitations/{id}/revoke", post(members::revoke_invitation))
        .route("/keys", get(keys::page).post(keys::create))
        .route("/keys/{id}/rotate", post(keys::rotate))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .route("/providers", get(outbound::providers_page).post(outbound::create_provider))
        .route("/providers/{id}/test", post(outbound::test_provider))
        .route("/providers/{id}/delete", post(outbound::delete_provider))
        .route("/delivery-groups", get(outbound::groups_page).post(outbound::create_group))
        .route("/delivery-groups/{id}/delete", post(outbound::delete_group))
        .route("/domains", get(domains::page).post(domains::create))
        .route("/domains/{id}", get(domains::detail))
        .route("/domains/{id}/verify", post(domains::verify))
        .route("/domains/{id}/rotate", post(domains::rotate))
        .route("/domains/{id}/delete", post(domains::delete))
        .route("/mailboxes", get(mailboxes::page).post(mailboxes::create))
        .route("/mailboxes/{id}", get(mailboxes::messages_page))
        .route("/mailboxes/{id}/settings", post(mailboxes::update_settings))
        .route("/mailboxes/{id}/delete", post(mailboxes::delete))
        .route("/mailboxes/{id}/messages/{msg}", get(mailboxes::message_page))
        .route("/mailboxes/{id}/messages/{msg}/html", get(mailboxes::message_html))
        .route("/mailboxes/{id}/messages/{msg}/raw", get(mailboxes::message_raw))
        .route("/mailboxes/{id}/messages/{msg}/attachments/{index}", get(mailboxes::attachment))
        .route("/webhooks", get(webhooks::page).post(webhooks::create))
        .route("/webhooks/{id}", get(webhooks::detail))
        .route("/webhooks/{id}/test", post(webhooks::send_test))
        .route("/webhooks/{id}/enable", post(webhooks::enable))
        .route("/webhooks/{id}/disable", post(webhooks::disable))
        .route("/webhooks/{id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/webhooks/{id}/delete", post(webhooks::delete))
        .route("/webhooks/{id}/deliveries/{dlv}/replay", post(webhooks::replay))
        .route("/events", get(feed::page))
        .route(LIVE_FEED_PATH, get(feed::stream))
        .route("/usage", get(usage::page))
        .route("/limits", get(limits::page))
        .route("/limits/{name}/increase", post(limits::request_increase))
        .route("/audit", get(audit::page))
        .layer(middleware::from_fn(security_headers))
}

/// The Content-Security-Policy of every console page: scripts, styles and images from
/// Sendmux only, no inline script, frames only of Sendmux's own (sandboxed) message view,
/// and no framing of the console by anyone.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Headers every console answer carries; a handler that set its own policy (the
/// sandboxed message view) keeps it.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Invitation links carry their token in the path: never send it anywhere.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
