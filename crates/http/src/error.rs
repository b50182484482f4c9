//! The error of the HTTP API: a status and the error body of docs/API.md. Domain refusals
//! (`sendmux_core::Error`) become one here and nowhere else; an internal cause is logged
//! once, with its chain, when the response is rendered, and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::borrow::Cow;

tokio::task_local! {
    /// The id of the request being served, set by the request-id middleware.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| sendmux_core::ids::IncreaseRequestId::new().into_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequest,
    AuthenticationFailed,
    PermissionDenied,
    NotFound,
    Conflict,
    LimitExceeded,
    PayloadTooLarge,
    RateLimited,
    Internal,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub message: Cow<'static, str>,
    pub param: Option<String>,
    pub retry_after: Option<u64>,
    /// What went wrong inside, for the log (500s only).
    pub cause: Option<anyhow::Error>,
}

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    pub message: String,
    pub param: Option<String>,
    pub request_id: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: ErrorType, message: impl Into<Cow<'static, str>>) -> Self {
        Self { status, kind, message: message.into(), param: None, retry_after: None, cause: None }
    }
    /// 400: the request cannot be read at all (broken JSON, bad query string).
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::InvalidRequest, message)
    }
    /// 422: the request was read but a field's value is not acceptable.
    pub fn invalid(param: impl Into<String>, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorType::InvalidRequest, message).with_param(param)
    }
    pub fn unauthenticated(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorType::AuthenticationFailed, message)
    }
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorType::PermissionDenied, message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorType::NotFound, format!("No such {what}"))
    }
    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorType::Conflict, message)
    }
    pub fn limit_exceeded(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorType::LimitExceeded, message)
    }
    pub fn too_large(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorType::PayloadTooLarge, message)
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e =
            Self::new(StatusCode::TOO_MANY_REQUESTS, ErrorType::RateLimited, "Too many requests for this credential");
        e.retry_after = Some(retry_after);
        e
    }
    /// 500 whose cause is logged when the response is rendered, never returned.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::internal_error(anyhow::anyhow!("{cause}"))
    }
    /// 500 keeping the cause's chain for the log.
    pub fn internal_error(cause: anyhow::Error) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Internal,
            "Internal error; the request id identifies it in the server log",
        );
        e.cause = Some(cause);
        e
    }
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }
    /// The error for any status, used to wrap responses produced outside our handlers.
    pub fn for_status(status: StatusCode) -> Self {
        let kind = match status.as_u16() {
            401 => ErrorType::AuthenticationFailed,
            403 => ErrorType::PermissionDenied,
            404 => ErrorType::NotFound,
            409 => ErrorType::Conflict,
            413 => ErrorType::PayloadTooLarge,
            429 => ErrorType::RateLimited,
            500..=599 => ErrorType::Internal,
            _ => ErrorType::InvalidRequest,
        };
        let message = match status.as_u16() {
            404 => "No such route".to_owned(),
            405 => "Method not allowed on this route".to_owned(),
            413 => "The request body is too large".to_owned(),
            _ => status.canonical_reason().unwrap_or("Error").to_owned(),
        };
        Self::new(status, kind, message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                kind: self.kind,
                message: self.message.to_string(),
                param: self.param.clone(),
                request_id: current_request_id(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}: {}", self.status, self.kind, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            tracing::error!(request_id = %current_request_id(), error = %format!("{cause:#}"), "internal error");
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        if let Some(secs) = self.retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<sendmux_core::Error> for ApiError {
    fn from(e: sendmux_core::Error) -> Self {
        use sendmux_core::Error as E;
        match e {
            E::Malformed(m) => ApiError::bad_request(m),
            E::Invalid { param, message } => {
                let e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorType::InvalidRequest, message);
                match param {
                    Some(p) => e.with_param(p),
                    None => e,
                }
            }
            E::Unauthenticated(m) => ApiError::unauthenticated(m),
            E::Forbidden(m) => ApiError::forbidden(m),
            E::NotFound(what) => ApiError::not_found(what),
            E::Conflict(m) => ApiError::conflict(m),
            E::LimitExceeded(m) => ApiError::limit_exceeded(m),
            E::TooLarge(m) => ApiError::too_large(m),
            E::RateLimited { retry_after_secs } => ApiError::rate_limited(retry_after_secs),
            E::About { param, source } => ApiError::from(*source).with_param(param),
            E::Internal(cause) => ApiError::internal_error(cause),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        sendmux_core::Error::from(e).into()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal_error(e)
    }
}
