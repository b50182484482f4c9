//! What an operation of the domain can answer besides success: a rule it refused on (each
//! variant names the kind of refusal a caller can act on) or an internal failure carrying
//! its cause. It knows nothing of HTTP; `sendmux-http` maps each variant to a status and
//! the error body of docs/API.md, and logs internal causes once, at the response edge.

use std::borrow::Cow;

pub type Result<T, E = Error> = std::result::Result<T, E>;

type Message = Cow<'static, str>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input cannot be read at all (broken JSON, a bad query string).
    #[error("{0}")]
    Malformed(Message),
    /// A value is not acceptable; `param` names the field when there is one.
    #[error("{message}")]
    Invalid { param: Option<String>, message: Message },
    /// No valid credential.
    #[error("{0}")]
    Unauthenticated(Message),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(Message),
    /// The thing does not exist in the caller's team (another team's is missing too).
    #[error("No such {0}")]
    NotFound(&'static str),
    /// The request contradicts the current state.
    #[error("{0}")]
    Conflict(Message),
    /// A team limit is reached.
    #[error("{0}")]
    LimitExceeded(Message),
    #[error("{0}")]
    TooLarge(Message),
    #[error("Too many requests for this credential")]
    RateLimited { retry_after_secs: u64 },
    /// A refusal other than `Invalid` that is about one field or header (a conflicting
    /// `Idempotency-Key`, attachments that are too large).
    #[error("{source}")]
    About { param: String, source: Box<Error> },
    /// Not the caller's fault; the cause is for the log, never for the caller.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn malformed(message: impl Into<Message>) -> Self {
        Self::Malformed(message.into())
    }
    pub fn invalid(param: impl Into<String>, message: impl Into<Message>) -> Self {
        Self::Invalid { param: Some(param.into()), message: message.into() }
    }
    pub fn unauthenticated(message: impl Into<Message>) -> Self {
        Self::Unauthenticated(message.into())
    }
    pub fn forbidden(message: impl Into<Message>) -> Self {
        Self::Forbidden(message.into())
    }
    pub fn not_found(what: &'static str) -> Self {
        Self::NotFound(what)
    }
    pub fn conflict(message: impl Into<Message>) -> Self {
        Self::Conflict(message.into())
    }
    pub fn limit_exceeded(message: impl Into<Message>) -> Self {
        Self::LimitExceeded(message.into())
    }
    pub fn too_large(message: impl Into<Message>) -> Self {
        Self::TooLarge(message.into())
    }
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::RateLimited { retry_after_secs }
    }
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{cause}"))
    }

    /// Names the field the refusal is about (the CLI names its flags this way). An
    /// internal failure is about no field.
    pub fn with_param(self, param: impl Into<String>) -> Self {
        match self {
            Self::Invalid { message, .. } => Self::Invalid { param: Some(param.into()), message },
            Self::About { source, .. } => Self::About { param: param.into(), source },
            Self::Internal(e) => Self::Internal(e),
            other => Self::About { param: param.into(), source: Box::new(other) },
        }
    }

    /// The field the refusal is about.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::Invalid { param, .. } => param.as_deref(),
            Self::About { param, .. } => Some(param),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return Error::conflict("A resource with these values already exists");
            }
            if db.is_foreign_key_violation() {
                return Error::conflict("The resource is still referenced by another resource");
            }
        }
        Error::Internal(anyhow::Error::new(e).context("database"))
    }
}
