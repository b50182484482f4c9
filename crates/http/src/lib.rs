//! The HTTP API: one module per resource, each with its own `router()`, assembled here
//! with the middleware every request passes through (request id, error body, metrics,
//! authentication and rate limits) and the generated OpenAPI description.

pub mod admin;
pub mod auth;
pub mod billing;
pub mod console;
pub mod domains;
pub mod emails;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod keys;
pub mod limits;
pub mod llms;
pub mod logs;
pub mod mailbox_send;
pub mod mailboxes;
pub mod mcp;
pub mod messages;
pub mod pagination;
pub mod providers;
pub mod schema;
pub mod serve;
pub mod state;
pub mod stream;
pub mod suppressions;
pub mod team;
pub mod threads;

pub mod webhooks;
pub mod ws;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::time::Instant;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiError, REQUEST_ID};
use crate::state::AppState;
use sendmux_core::ids::RequestId;

#[derive(OpenApi)]
#[openapi(
    info(title = "Sendmux API", description = "Multi-tenant email API: scoped keys, signed webhooks, live mailbox streams."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    // The provider configs are named by `schema::provider_config`, not by a field's type.
    components(schemas(crate::error::ErrorBody, crate::providers::SmtpConfig, crate::providers::SesConfig))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(
                "An API key (smx_inf_, smx_snd_, smx_mbx_), a session token (smx_ses_), or the admin token for /api/v1/admin",
            )).build()),
        );
    }
}

/// What every operation may answer besides its own results (API.md §1), added to the
/// document once here rather than to each `#[utoipa::path]`: the error statuses its
/// place in the router makes possible (with the `ErrorBody` schema), the `X-Request-Id`
/// every answer carries, the `RateLimit-*` headers of answers to a credential and the
/// `Retry-After` of a 429; and the pagination parameters' limits (`limit` 1..100, a
/// `cursor` that is an id of the listed kind).
struct StandardAnswers;

/// The id prefix of each list's cursor, by path (API.md §1: a cursor is the last id).
const CURSORS: &[(&str, &str)] = &[
    ("/api/v1/admin/increase-requests", "req"),
    ("/api/v1/delivery-groups", "dgr"),
    ("/api/v1/domains", "dom"),
    ("/api/v1/events", "evt"),
    ("/api/v1/keys", "key"),
    ("/api/v1/limits/increase-requests", "req"),
    // `kind=audit` pages by audit ids, `kind=delivery` by attempt ids.
    ("/api/v1/logs", "(aud|att)"),
    ("/api/v1/mailbox/messages", "msg"),
    // Threads page by the last message of the last thread shown.
    ("/api/v1/mailbox/threads", "msg"),
    ("/api/v1/mailboxes", "mbx"),
    ("/api/v1/mailboxes/{mailbox_id}/messages", "msg"),
    ("/api/v1/mailboxes/{mailbox_id}/threads", "msg"),
    ("/api/v1/providers", "prv"),
    ("/api/v1/team/invitations", "inv"),
    ("/api/v1/team/members", "usr"),
    ("/api/v1/webhooks", "whk"),
    ("/api/v1/webhooks/{id}/deliveries", "dlv"),
];

/// The ULID of an id, as `sendmux_core::ids` parses it (Crockford base32, any case).
const ULID_PATTERN: &str = "[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}";

impl Modify for StandardAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{Operation, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder, Schema};

        let string = |pattern: Option<&str>| -> RefOr<Schema> {
            ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).pattern(pattern).into()
        };
        let integer = |min: i64, max: Option<i64>| -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Integer))
                .minimum(Some(min as f64))
                .maximum(max.map(|m| m as f64))
                .into()
        };
        let header = |schema: RefOr<Schema>, description: &str| {
            HeaderBuilder::new().schema(schema).description(Some(description)).build()
        };
        let request_id = header(string(Some("^req_[0-9A-Z]{26}$")), "The request's id, also in any error body");
        let rate_headers = [
            ("RateLimit-Limit", header(integer(0, None), "Requests the credential may make per window")),
            ("RateLimit-Remaining", header(integer(0, None), "Requests left in this window")),
            ("RateLimit-Reset", header(integer(0, None), "Seconds until the window resets")),
        ];
        let retry_after = header(integer(0, None), "Seconds to wait before trying again");
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };

        // An empty body reads as `{}` (extract::Json): a body whose fields are all
        // optional may be left out.
        let all_optional: Vec<String> = openapi
            .components
            .iter()
            .flat_map(|c| c.schemas.iter())
            .filter(|(_, s)| matches!(s, RefOr::T(Schema::Object(o)) if o.required.is_empty()))
            .map(|(name, _)| format!("#/components/schemas/{name}"))
            .collect();

        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops: [(&str, &mut Option<Operation>); 5] = [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("patch", &mut item.patch),
                ("delete", &mut item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op.as_mut() else { continue };
                let public = op.security.as_ref().is_some_and(|s| s.is_empty());
                let admin = path.starts_with("/api/v1/admin/");
                let password = path == "/api/v1/auth/signup"
                    || path == "/api/v1/auth/login"
                    || path.starts_with("/api/v1/auth/invitations/");
                let params = op.parameters.get_or_insert_with(Vec::new);
                for param in params.iter_mut().filter(|p| p.parameter_in == ParameterIn::Query) {
                    match param.name.as_str() {
                        "limit" => param.schema = Some(integer(1, Some(100))),
                        "cursor" => {
                            if let Some((_, prefix)) = CURSORS.iter().find(|(p, _)| p == path) {
                                // Empty reads as no cursor.
                                param.schema = Some(string(Some(&format!("^(|{prefix}_{ULID_PATTERN})$"))));
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(body) = op.request_body.as_mut() {
                    let optional = body
                        .content
                        .get("application/json")
                        .and_then(|c| c.schema.as_ref())
                        .is_some_and(|s| matches!(s, RefOr::Ref(r) if all_optional.contains(&r.ref_location)));
                    if optional {
                        body.required = Some(utoipa::openapi::Required::False);
                    }
                }
                // Raw mail: any non-empty bytes (an empty message cannot be read: 400).
                if let Some(raw) = op.request_body.as_mut().and_then(|b| b.content.get_mut("message/rfc822")) {
                    raw.schema = Some(
                        ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).min_length(Some(1)).into(),
                    );
                }
                let in_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
                let in_header = params.iter().any(|p| p.parameter_in == ParameterIn::Header);
                let body = op.request_body.is_some();
                let input = body || !params.is_empty();
                if params.is_empty() {
                    op.parameters = None;
                }
                let standard: [(u16, bool, &str); 10] = [
                    (
                        400,
                        input,
                        "The request cannot be read: broken JSON, a bad query string or path, a wrong Content-Type",
                    ),
                    // Accepting an invitation for an existing account checks its password.
                    (401, !public || path.starts_with("/api/v1/auth/invitations/"), "No valid credential"),
                    (403, !public && !admin, "The credential may not do this"),
                    (
                        404,
                        in_path || (!public && !admin),
                        "No such resource in the caller's team (or no such team for `X-Sendmux-Team`)",
                    ),
                    (408, path != STREAM_PATH, "The request was not answered in time"),
                    (
                        409,
                        !public && method != "get",
                        "The request contradicts the current state, or a team limit is reached",
                    ),
                    (413, body, "The body is larger than this operation accepts"),
                    (422, body || in_header, "A value is not acceptable; `param` names it"),
                    (429, !public || password, "Too many requests; `Retry-After` says when to try again"),
                    (500, true, "Internal error; the request id finds it in the server log"),
                ];
                for (status, applies, description) in standard {
                    if applies {
                        op.responses.responses.entry(status.to_string()).or_insert_with(|| error(description).into());
                    }
                }
                for (status, response) in op.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else { continue };
                    if response.description.is_empty() {
                        response.description = if status.starts_with('2') { "Success".into() } else { "Error".into() };
                    }
                    response.headers.insert("X-Request-Id".into(), request_id.clone());
                    // Answers given after the credential was resolved carry its rate.
                    if !public && !admin && status != "401" {
                        for (name, h) in &rate_headers {
                            response.headers.insert((*name).into(), h.clone());
                        }
                    }
                    if status == "429" {
                        response.headers.insert("Retry-After".into(), retry_after.clone());
                    }
                }
            }
        }
    }
}

/// The whole HTTP application for `state`.
pub fn router(state: AppState) -> Router {
    if !state.settings.roles.api {
        // A node without the `api` role answers health checks and metrics only (API.md §12).
        let (ops, _) = OpenApiRouter::new().merge(health::router()).split_for_parts();
        return finish(ops.route_layer(middleware::from_fn(record_metrics)), state);
    }
    let (public, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(auth::logout_router())
        .merge(suppressions::public_router())
        .split_for_parts();
    let (passwords, passwords_doc) = auth::password_router().split_for_parts();
    doc.merge(passwords_doc);
    let passwords = passwords.route_layer(middleware::from_fn_with_state(state.clone(), limit_by_address));
    let (authed, authed_doc) = OpenApiRouter::new()
        .merge(team::router())
        .merge(keys::router())
        .merge(providers::router())
        .merge(mailboxes::router())
        .merge(domains::router())
        .merge(messages::router())
        .merge(threads::router())
        .merge(
            mailbox_send::router()
                .layer(DefaultBodyLimit::max(emails::body_limit(state.settings.outbound.max_email_bytes))),
        )
        .merge(limits::router())
        .merge(logs::router())
        .merge(events::router())
        .merge(webhooks::router())
        .merge(stream::router())
        .merge(billing::router())
        .merge(
            emails::router().layer(DefaultBodyLimit::max(emails::body_limit(state.settings.outbound.max_email_bytes))),
        )
        .merge(suppressions::router())
        .split_for_parts();
    let (admin, admin_doc) = OpenApiRouter::new().merge(admin::router()).split_for_parts();
    doc.merge(authed_doc);
    doc.merge(admin_doc);
    // After the merge: the modifiers of `#[openapi]` run before any route is added.
    StandardAnswers.modify(&mut doc);

    // The WebSocket stream and the MCP server are outside the OpenAPI document (a schema
    // describes neither an upgrade nor JSON-RPC); API.md §16 is their contract.
    let authed = authed
        .merge(ws::router())
        .merge(mcp::router(&state))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let admin = admin.route_layer(middleware::from_fn_with_state(state.clone(), admin::require_admin));
    let llms_txt = llms::render(&doc);
    let docs = utoipa_swagger_ui::SwaggerUi::new("/docs").url("/api/v1/openapi.json", doc);
    let llms_route = axum::routing::get(move || {
        let body = llms_txt.clone();
        async move { ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body) }
    });

    let app = Router::new()
        .merge(public)
        .merge(passwords)
        .merge(authed)
        .merge(admin)
        .merge(console::router())
        .route_layer(middleware::from_fn(record_metrics))
        .merge(docs)
        .route("/llms.txt", llms_route);
    finish(app, state)
}

/// The layers every route shares: the error body for unknown paths, body and time
/// limits, the request id, and a 500 instead of a dropped connection on a panic.
fn finish(app: Router<AppState>, state: AppState) -> Router {
    app.fallback(|| async { ApiError::for_status(StatusCode::NOT_FOUND) })
        .layer(DefaultBodyLimit::max(state.settings.max_json_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), limit_request_time))
        .layer(middleware::from_fn(request_context))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::internal("a handler panicked").into_response()
        }))
        .with_state(state)
}

/// Gives the request its `req_` id (in `X-Request-Id` and in every error body) and
/// wraps any error response not made by our handlers in the error body (API.md §1).
async fn request_context(req: Request, next: Next) -> Response {
    let id = RequestId::new().into_string();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %loggable_path(req.uri().path()));
    // `instrument`, not `span.enter()`: a guard held across an await leaves the span
    // off whatever the request runs on after its first suspension.
    let mut res = REQUEST_ID
        .scope(
            id.clone(),
            tracing::Instrument::instrument(
                async move {
                    let res = next.run(req).await;
                    let status = res.status();
                    let is_json_or_page = res
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
                    // The console's pages answer errors as pages.
                    if (status.is_client_error() || status.is_server_error()) && !is_json_or_page {
                        let mut wrapped = ApiError::for_status(status).into_response();
                        for name in [header::ALLOW, header::RETRY_AFTER] {
                            if let Some(v) = res.headers().get(&name) {
                                wrapped.headers_mut().insert(name, v.clone());
                            }
                        }
                        wrapped
                    } else {
                        res
                    }
                },
                span,
            ),
        )
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HeaderName::from_static("x-request-id"), v);
    }
    res
}

/// The live event stream stays open by design (`close_after` bounds it).
const STREAM_PATH: &str = "/api/v1/mailbox/events";

/// Bounds the time to answer a request, reading its body included: a client dripping a
/// body cannot hold a handler (and what it holds) open. The event stream is exempt.
async fn limit_request_time(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.uri().path() == STREAM_PATH || req.uri().path() == console::LIVE_FEED_PATH {
        return next.run(req).await;
    }
    let mut limit = std::time::Duration::from_secs(state.settings.http_request_timeout_secs);
    if req.uri().path() == mcp::PATH {
        // `wait_for_message` holds an answer for up to its timeout.
        limit += std::time::Duration::from_secs(mcp::MAX_WAIT_SECS);
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            let mut e = ApiError::for_status(StatusCode::REQUEST_TIMEOUT);
            e.message = format!("The request was not answered within {} s", limit.as_secs()).into();
            e.into_response()
        }
    }
}

/// The path with any token in it (invitation links carry one) replaced, for logs.
fn loggable_path(path: &str) -> String {
    path.split('/').map(|seg| if seg.starts_with("smx_") { "{token}" } else { seg }).collect::<Vec<_>>().join("/")
}

/// The `method` label: one of a fixed set, so a client inventing methods cannot add
/// series to `/metrics`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "other".into());
    let method = method_label(req.method());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("sendmux_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("sendmux_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    res
}

pub fn bearer(req_headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let value = req_headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthenticated("Missing Authorization: Bearer header"))?;
    let value = value.to_str().map_err(|_| ApiError::unauthenticated("Malformed Authorization header"))?;
    let (scheme, token) =
        value.split_once(' ').ok_or_else(|| ApiError::unauthenticated("Malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthenticated("The Authorization header must be `Bearer <token>`"));
    }
    Ok(token.trim())
}

/// Bounds password guessing: sign-up, login and invitation attempts per client address.
async fn limit_by_address(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
    check_address_rate(&state, &ip).await?;
    Ok(next.run(req).await)
}

/// Counts one password attempt from `ip` (the API's password routes and the console's
/// sign-in share the window) and refuses it over the limit.
pub(crate) async fn check_address_rate(state: &AppState, ip: &str) -> Result<(), ApiError> {
    let limit = state.settings.auth_rate_limit_per_minute;
    let decision = state.limiter.hit(&format!("addr:{ip}"), limit, sendmux_core::store::now_ms()).await?;
    if !decision.allowed {
        return Err(ApiError::rate_limited(decision.reset_secs));
    }
    Ok(())
}

/// Resolves the credential, applies its rate limit and hands the [`sendmux_core::auth::Principal`]
/// to the handler; every answer to a credential carries the `RateLimit-*` headers.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let token = bearer(req.headers())?.to_owned();
    let team = match req.headers().get("x-sendmux-team") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(sendmux_core::ids::TeamId::parse)
                .ok_or_else(|| ApiError::not_found("team"))?
                .into_string(),
        ),
    };
    let mut principal = state.auth.authenticate(&token, team.as_deref()).await?;
    principal.ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let decision =
        state.limiter.hit(&principal.rate_bucket, principal.rate_limit, sendmux_core::store::now_ms()).await?;
    let mut res = if decision.allowed {
        req.extensions_mut().insert(principal);
        next.run(req).await
    } else {
        ApiError::rate_limited(decision.reset_secs).into_response()
    };
    let headers = res.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(decision.reset_secs));
    Ok(res)
}

/// Serves a JSON read from the team's read cache, loading and storing it on a miss.
/// `key` must name everything the answer depends on besides the team.
pub async fn cached_json<T, F, Fut>(state: &AppState, team_id: &str, key: String, load: F) -> Result<Response, ApiError>
where
    T: serde::Serialize,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let now = sendmux_core::store::now_ms();
    let body = match state.cache.get(team_id, &key, now) {
        Some(body) => body,
        None => {
            let generation = state.cache.generation(team_id);
            let body = bytes::Bytes::from(serde_json::to_vec(&load().await?).map_err(ApiError::internal)?);
            state.cache.put(team_id, &key, generation, now, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}
