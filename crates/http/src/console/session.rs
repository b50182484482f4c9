//! Who is using the console: the session cookie resolved through `core.auth` to a
//! [`Principal`] (and the account's teams for the switcher), the CSRF token every form
//! carries, one-shot notices after a redirect, and the pages that open and close a
//! session (sign in, sign out, switch team, accept an invitation).

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use std::net::SocketAddr;

use super::layout;
use crate::error::ApiError;
use crate::state::AppState;
use sendmux_core::auth::{Principal, SESSION_PREFIX};
use sendmux_core::crypto::{secure_eq, token_hash};
use sendmux_core::people::{self, Account};

pub const SESSION_COOKIE: &str = "sendmux_session";
const TEAM_COOKIE: &str = "sendmux_team";
const FLASH_COOKIE: &str = "sendmux_flash";
/// Binds the sign-in and invitation forms to the browser that loaded them (no session
/// exists yet to bind them to).
const PRE_COOKIE: &str = "sendmux_pre";
/// The live event feed: a stream, exempt from the request time limit.
pub const LIVE_FEED_PATH: &str = "/events/stream";
/// Largest form the console reads.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A notice shown once on the next page after a redirect.
pub struct Flash {
    pub ok: bool,
    pub message: String,
}

/// A signed-in person acting in one team.
pub struct Session {
    pub p: Principal,
    pub account: Account,
    token: String,
    /// The CSRF token of this session: an HMAC, keyed with the instance key, of the
    /// session token's hash. Every form carries it.
    pub csrf: String,
    pub flash: Option<Flash>,
}

impl Session {
    pub fn can(&self, perm: sendmux_core::auth::perms::Perm) -> bool {
        self.p.perms.has(perm)
    }
    pub fn team_name(&self) -> &str {
        self.account.teams.iter().find(|t| t.id == self.p.team_id.as_str()).map(|t| t.name.as_str()).unwrap_or("")
    }
    pub fn role(&self) -> &'static str {
        self.p.role().map(|r| r.as_str()).unwrap_or("")
    }
    /// The session token, for checks that must see the session still live.
    pub fn token(&self) -> &str {
        &self.token
    }
}

fn cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('=').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
        .collect()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    cookies(headers).into_iter().find(|(k, _)| k == name).map(|(_, v)| v).filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, and `Secure` behind https.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let secure = if state.settings.public_https() { "; Secure" } else { "" };
    let age = max_age.map(|a| format!("; Max-Age={a}")).unwrap_or_default();
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}{age}"))
        .unwrap_or(HeaderValue::from_static("sendmux_invalid=; Path=/; Max-Age=0"))
}

fn clear_cookie(state: &AppState, name: &str) -> HeaderValue {
    set_cookie(state, name, "", Some(0))
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn read_flash(headers: &HeaderMap) -> Option<Flash> {
    let raw = cookie(headers, FLASH_COOKIE)?;
    let decoded: String = form_urlencoded::parse(format!("f={raw}").as_bytes()).next().map(|(_, v)| v.into_owned())?;
    let (ok, message) = decoded.split_at_checked(1)?;
    Some(Flash { ok: ok == "1", message: message.chars().take(500).collect() })
}

/// A 303 to `to` that shows `flash` there once.
pub fn redirect_with(state: &AppState, to: &str, flash: Option<Flash>) -> Response {
    let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response();
    if let Some(f) = flash {
        let value = encode(&format!("{}{}", if f.ok { "1" } else { "0" }, f.message));
        res.headers_mut().append(header::SET_COOKIE, set_cookie(state, FLASH_COOKIE, &value, Some(60)));
    }
    res
}

/// What a change's refusal says to a person: the API's error message (with the field it
/// names); an internal failure is logged and shown only by its request id.
pub fn refusal(e: sendmux_core::Error) -> String {
    api_message(&ApiError::from(e))
}

/// As [`refusal`], for an error already in its HTTP form.
pub fn api_message(api: &ApiError) -> String {
    if let Some(cause) = &api.cause {
        tracing::error!(request_id = %crate::error::current_request_id(), error = %format!("{cause:#}"), "internal error");
        return format!("Something went wrong on our side (request {}).", crate::error::current_request_id());
    }
    match &api.param {
        Some(p) if !api.message.contains(p.as_str()) => format!("{} ({p})", api.message),
        _ => api.message.to_string(),
    }
}

/// Redirects to `to` with a notice: `ok` on success, the refusal otherwise.
pub fn done<T>(
    state: &AppState,
    to: &str,
    result: Result<T, sendmux_core::Error>,
    ok: impl FnOnce(T) -> String,
) -> Response {
    let flash = match result {
        Ok(v) => Flash { ok: true, message: ok(v) },
        Err(e) => Flash { ok: false, message: refusal(e) },
    };
    redirect_with(state, to, Some(flash))
}

/// An error page for a refusal outside a form (a missing message, a role without
/// access), with the API's status and message.
pub fn error_page(session: Option<&Session>, e: ApiError) -> Response {
    let status = e.status;
    let message = if let Some(cause) = &e.cause {
        tracing::error!(request_id = %crate::error::current_request_id(), error = %format!("{cause:#}"), "internal error");
        format!("Something went wrong on our side (request {}).", crate::error::current_request_id())
    } else {
        e.message.to_string()
    };
    let title = match status.as_u16() {
        403 => "Not allowed",
        404 => "Not found",
        429 => "Slow down",
        _ => "Something went wrong",
    };
    let body = html! {
        section.card.error-card role="alert" {
            h2 { (title) }
            p { (message) }
            p { a href="/" { "Back to the overview" } }
        }
    };
    let mut res = match session {
        Some(s) => layout::page(s, "", title, body),
        None => layout::bare(title, body),
    };
    *res.status_mut() = status;
    if let Some(secs) = e.retry_after {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

fn to_login(state: &AppState, parts: &Parts) -> Response {
    let next = if parts.method == Method::GET {
        parts.uri.path_and_query().map(|p| p.as_str()).filter(|p| *p != "/").map(|p| format!("?next={}", encode(p)))
    } else {
        None
    };
    let mut res = redirect_with(state, &format!("/login{}", next.unwrap_or_default()), None);
    if cookie(&parts.headers, SESSION_COOKIE).is_some() {
        res.headers_mut().append(header::SET_COOKIE, clear_cookie(state, SESSION_COOKIE));
    }
    res
}

fn client_ip(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        use sendmux_core::Error as E;
        // Only a session signs in here: an API key in the cookie is no one.
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).filter(|t| t.starts_with(SESSION_PREFIX)) else {
            return Err(to_login(state, parts));
        };
        let team = cookie(&parts.headers, TEAM_COOKIE).filter(|t| sendmux_core::ids::TeamId::parse(t).is_some());
        let resolved = match state.auth.authenticate(&token, team.as_deref()).await {
            // A team the person left: back to their first.
            Err(E::NotFound(_)) if team.is_some() => state.auth.authenticate(&token, None).await,
            other => other,
        };
        let mut p = match resolved {
            Ok(p) => p,
            Err(E::Unauthenticated(_)) => return Err(to_login(state, parts)),
            Err(e) => return Err(error_page(None, e.into())),
        };
        p.ip = client_ip(parts);
        let decision = state
            .limiter
            .hit(&p.rate_bucket, p.rate_limit, sendmux_core::store::now_ms())
            .await
            .map_err(|e| error_page(None, e.into()))?;
        if !decision.allowed {
            return Err(error_page(None, ApiError::rate_limited(decision.reset_secs)));
        }
        let account = people::account(state, &token).await.map_err(|e| match e {
            E::Unauthenticated(_) => to_login(state, parts),
            e => error_page(None, e.into()),
        })?;
        let csrf = csrf_for(state, &token);
        Ok(Session { p, account, token, csrf, flash: read_flash(&parts.headers) })
    }
}

fn csrf_for(state: &AppState, token: &str) -> String {
    state.secrets.derive_token(&format!("console-csrf:{}", token_hash(token)))
}

fn pre_csrf_for(state: &AppState, pre: &str) -> String {
    state.secrets.derive_token(&format!("console-pre:{pre}"))
}

/// A form's fields in order (a name may repeat: checkboxes).
pub struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(bytes: &[u8]) -> Self {
        Self(form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }
    /// The field's value, trimmed; "" when missing.
    pub fn text(&self, name: &str) -> String {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).unwrap_or_default()
    }
    /// The field's value exactly as sent (passwords).
    pub fn raw(&self, name: &str) -> String {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }
    /// The trimmed value, None when missing or empty.
    pub fn opt(&self, name: &str) -> Option<String> {
        Some(self.text(name)).filter(|v| !v.is_empty())
    }
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).filter(|v| !v.is_empty()).collect()
    }
}

/// The page a refused form shows.
fn forbidden_form(session: Option<&Session>) -> Response {
    let mut e = ApiError::forbidden(
        "This form did not come from this console or has expired (its security token is missing or wrong). \
         Reload the page and try again.",
    );
    e.status = StatusCode::FORBIDDEN;
    error_page(session, e)
}

/// A browser that says the request came from another site is refused whatever it holds.
fn cross_site(headers: &HeaderMap) -> bool {
    headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|v| v == "cross-site")
}

async fn read_fields(body: axum::body::Body, session: Option<&Session>) -> Result<Fields, Response> {
    let bytes: Bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| error_page(session, ApiError::too_large("The form is larger than the console accepts")))?;
    Ok(Fields::parse(&bytes))
}

/// A submitted form of a signed-in person, admitted only with the session's CSRF token.
pub struct Form {
    pub s: Session,
    pub f: Fields,
}

impl FromRequest<AppState> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let s = Session::from_request_parts(&mut parts, state).await?;
        if cross_site(&parts.headers) {
            return Err(forbidden_form(Some(&s)));
        }
        let f = read_fields(body, Some(&s)).await?;
        if !secure_eq(f.raw("_csrf").as_bytes(), s.csrf.as_bytes()) {
            return Err(forbidden_form(Some(&s)));
        }
        Ok(Form { s, f })
    }
}

/// A form sent before any session (sign-in, accepting an invitation): bound to the
/// browser by the pre-session cookie, and rate-limited per client address like the
/// API's password routes.
struct PreForm {
    f: Fields,
    ip: Option<String>,
}

impl FromRequest<AppState> for PreForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let ip = client_ip(&parts);
        let pre = cookie(&parts.headers, PRE_COOKIE).unwrap_or_default();
        if cross_site(&parts.headers) {
            return Err(forbidden_form(None));
        }
        let f = read_fields(body, None).await?;
        if pre.is_empty() || !secure_eq(f.raw("_csrf").as_bytes(), pre_csrf_for(state, &pre).as_bytes()) {
            return Err(forbidden_form(None));
        }
        crate::check_address_rate(state, ip.as_deref().unwrap_or_default()).await.map_err(|e| {
            let mut e = e;
            e.message = "Too many attempts from this address; wait a minute and try again.".into();
            error_page(None, e)
        })?;
        Ok(PreForm { f, ip })
    }
}

/// The pre-session cookie of this browser, or a new one to set.
fn pre_cookie(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, PRE_COOKIE) {
        Some(v) if v.len() >= 20 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => (v, false),
        _ => (sendmux_core::crypto::random_token("pre_"), true),
    }
}

fn with_pre(state: &AppState, mut res: Response, pre: &str, is_new: bool) -> Response {
    if is_new {
        res.headers_mut().append(header::SET_COOKIE, set_cookie(state, PRE_COOKIE, pre, None));
    }
    res
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only a path on this site: never `//host`, `http://…`, or a path a browser would
/// turn into one (it drops tabs and newlines and reads `\\` as `/`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.len() <= 2000
                && n.chars().all(|c| c.is_ascii_graphic() && c != '\\') =>
        {
            n.to_owned()
        }
        _ => "/".into(),
    }
}

fn login_form(state: &AppState, csrf: &str, next: &str, email: &str, error: Option<&str>) -> Markup {
    let signup_open = state.settings.signup == sendmux_core::config::Signup::Open;
    html! {
        section.card.auth-card {
            h1 { "Sign in to Sendmux" }
            p.muted { "The workspace for your team's email: keys, mailboxes, webhooks and usage." }
            @if let Some(e) = error { p.notice.notice-error role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="_csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label for="email" { "Email" }
                input #email type="email" name="email" value=(email) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button.primary type="submit" { "Sign in" }
            }
            p.muted.small {
                @if signup_open { "No account yet? Sign up through the API (POST /api/v1/auth/signup), then sign in here." }
                @else { "Accounts are created by your team's admins (an invitation link) or by the operator." }
            }
        }
    }
}

pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    let (pre, is_new) = pre_cookie(&headers);
    let flash = read_flash(&headers);
    let body = html! {
        @if let Some(f) = &flash { p.notice.(if f.ok { "notice-ok" } else { "notice-error" }) role="status" { (f.message) } }
        (login_form(&state, &pre_csrf_for(&state, &pre), &next, "", None))
    };
    let mut res = with_pre(&state, layout::bare("Sign in", body), &pre, is_new);
    if flash.is_some() {
        res.headers_mut().append(header::SET_COOKIE, clear_cookie(&state, FLASH_COOKIE));
    }
    res
}

fn signed_in(state: &AppState, session: &people::Session, to: &str, team: Option<&str>) -> Response {
    let mut res = redirect_with(state, to, None);
    let age = (session.expires_at - sendmux_core::store::now_ms()) / 1000;
    let h = res.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(state, SESSION_COOKIE, &session.token, Some(age.max(1))));
    match team {
        Some(t) => h.append(header::SET_COOKIE, set_cookie(state, TEAM_COOKIE, t, None)),
        None => h.append(header::SET_COOKIE, clear_cookie(state, TEAM_COOKIE)),
    };
    h.append(header::SET_COOKIE, clear_cookie(state, PRE_COOKIE));
    res
}

pub async fn login(State(state): State<AppState>, headers: HeaderMap, req: Request) -> Response {
    let form = match PreForm::from_request(req, &state).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let next = safe_next(Some(&form.f.text("next")));
    let email = form.f.text("email");
    match people::login(&state, &email, form.f.raw("password")).await {
        Ok(session) => signed_in(&state, &session, &next, None),
        Err(e) => {
            let (pre, _) = pre_cookie(&headers);
            let api = ApiError::from(e);
            let (status, message) = (api.status, api_message(&api));
            let body = login_form(&state, &pre_csrf_for(&state, &pre), &next, &email, Some(&message));
            let mut res = layout::bare("Sign in", body);
            *res.status_mut() = status;
            res
        }
    }
}

pub async fn logout(State(state): State<AppState>, form: Form) -> Response {
    let _ = people::logout(&state, form.s.token()).await;
    let mut res = redirect_with(&state, "/login", Some(Flash { ok: true, message: "You are signed out.".into() }));
    let h = res.headers_mut();
    h.append(header::SET_COOKIE, clear_cookie(&state, SESSION_COOKIE));
    h.append(header::SET_COOKIE, clear_cookie(&state, TEAM_COOKIE));
    res
}

pub async fn switch_team(State(state): State<AppState>, form: Form) -> Response {
    let wanted = form.f.text("team_id");
    let Some(team) = form.s.account.teams.iter().find(|t| t.id == wanted) else {
        return error_page(Some(&form.s), ApiError::not_found("team"));
    };
    let mut res =
        redirect_with(&state, "/", Some(Flash { ok: true, message: format!("You are now working in {}.", team.name) }));
    res.headers_mut().append(header::SET_COOKIE, set_cookie(&state, TEAM_COOKIE, &team.id, None));
    res
}

fn invitation_form(csrf: &str, token: &str, error: Option<&str>) -> Markup {
    html! {
        section.card.auth-card {
            h1 { "Join your team on Sendmux" }
            p.muted { "Choose a password for your new account. If you already have a Sendmux account with the invited email, enter its password instead." }
            @if let Some(e) = error { p.notice.notice-error role="alert" { (e) } }
            form method="post" action={ "/invitations/" (token) } {
                input type="hidden" name="_csrf" value=(csrf);
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="new-password" minlength="12" required autofocus;
                p.muted.small { "At least 12 characters." }
                button.primary type="submit" { "Accept the invitation" }
            }
        }
    }
}

pub async fn invitation_page(State(state): State<AppState>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    let (pre, is_new) = pre_cookie(&headers);
    let res = layout::bare("Accept an invitation", invitation_form(&pre_csrf_for(&state, &pre), &token, None));
    with_pre(&state, res, &pre, is_new)
}

pub async fn accept_invitation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    req: Request,
) -> Response {
    let form = match PreForm::from_request(req, &state).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let acceptance = people::Acceptance { token: token.clone(), password: Some(form.f.raw("password")), ip: form.ip };
    match people::accept_invitation(&state, acceptance).await {
        Ok(session) => {
            let team = session.team_id.clone();
            let mut res = signed_in(&state, &session, "/", team.as_deref());
            res.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&state, FLASH_COOKIE, &encode("1Welcome! You joined the team."), Some(60)),
            );
            res
        }
        Err(e) => {
            let (pre, _) = pre_cookie(&headers);
            let api = ApiError::from(e);
            let (status, message) = (api.status, api_message(&api));
            let mut res = layout::bare(
                "Accept an invitation",
                invitation_form(&pre_csrf_for(&state, &pre), &token, Some(&message)),
            );
            *res.status_mut() = status;
            res
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/keys?x=1")), "/keys?x=1");
        for bad in ["//evil.example", "/\t/evil.example", "/\\evil.example", "https://evil.example", "keys", "/a b"] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
