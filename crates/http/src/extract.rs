//! Request extractors that turn every malformed input into the error body (API.md §1):
//! JSON bodies (with the failing field as `param`), query strings, path ids and the
//! authenticated principal.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use sendmux_core::auth::Principal;
pub use sendmux_core::validate::field_param;

/// A JSON body. Unreadable JSON is 400; a value of the wrong type, a missing field or
/// an unknown field is 422 naming the field. An empty body reads as `{}`.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| {
            let mime = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        });
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("The request body is larger than this endpoint accepts")
            } else {
                ApiError::bad_request("The request body could not be read")
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        if bytes != b"{}" && json_type == Some(false) {
            return Err(ApiError::bad_request("Content-Type must be application/json"));
        }
        parse_json(bytes).map(Json)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let not_json = || ApiError::bad_request("The request body is not valid JSON");
    // serde reads a struct from an array of its fields in order too (`[null, null]` was a
    // valid provider change); the API documents objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') && reads_object::<T>() {
        if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
            return Err(not_json());
        }
        let mut err = ApiError::invalid("", "invalid type: sequence, expected an object");
        err.param = None;
        return Err(err);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            // A broken document is 400 whatever its first value's type: the syntax is
            // checked (only) when a field is refused, so valid bodies are parsed once.
            serde_json::error::Category::Data if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() => {
                not_json()
            }
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
                let param = field_param(&path, &msg);
                let param = if param == "." { String::new() } else { param };
                let mut err = ApiError::invalid(param.clone(), msg);
                if param.is_empty() {
                    err.param = None;
                }
                err
            }
            _ => not_json(),
        }
    })?;
    de.end().map_err(|_| ApiError::bad_request("The request body has trailing characters after the JSON value"))?;
    Ok(value)
}

/// Whether `T` reads a JSON object (a struct or a map) rather than an array or a scalar:
/// asks `T` which kind of value it would read, from a deserializer that holds none.
fn reads_object<T: DeserializeOwned>() -> bool {
    use serde::de::{Deserializer, Visitor};

    #[derive(Debug)]
    struct Asked(bool);
    impl std::fmt::Display for Asked {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "asked for an object: {}", self.0)
        }
    }
    impl std::error::Error for Asked {}
    impl serde::de::Error for Asked {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Asked(false)
        }
    }
    struct Probe;
    impl<'de> Deserializer<'de> for Probe {
        type Error = Asked;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Asked> {
            Err(Asked(false))
        }
        fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Asked> {
            Err(Asked(true))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Asked> {
            Err(Asked(true))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct enum identifier ignored_any
        }
    }
    matches!(T::deserialize(Probe), Err(Asked(true)))
}

/// A query string; a bad one is 400 naming the parameter where serde says which.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(Query).map_err(|e| {
            let param = e.path().to_string();
            let message = format!("Bad query parameter: {}", e.into_inner());
            let err = ApiError::bad_request(message);
            if param == "." { err } else { err.with_param(param) }
        })
    }
}

/// The authenticated caller, put on the request by the authentication middleware.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::unauthenticated("Authentication required"))
    }
}

/// Parses a path id; a malformed one names no resource, so it is 404 like a missing one.
pub fn path_id<T>(raw: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T, ApiError> {
    parse(raw).ok_or_else(|| ApiError::not_found(what))
}

/// A permission a route requires, named as a type so the check runs as an extractor:
/// before the body is read, so a caller without the permission gets 403 whatever it
/// sent.
pub trait Requirement {
    const PERM: sendmux_core::auth::perms::Perm;
}

/// The principal, admitted only when it holds `R`'s permission.
pub struct Need<R: Requirement>(pub Principal, pub std::marker::PhantomData<R>);

impl<S: Send + Sync, R: Requirement> FromRequestParts<S> for Need<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Caller(p) = Caller::from_request_parts(parts, state).await?;
        p.require(R::PERM)?;
        Ok(Need(p, std::marker::PhantomData))
    }
}

/// Marker types for [`Need`], one per permission.
pub mod can {
    macro_rules! requirements {
        ($($name:ident),* $(,)?) => {$(
            pub struct $name;
            impl super::Requirement for $name {
                const PERM: sendmux_core::auth::perms::Perm = sendmux_core::auth::perms::Perm::$name;
            }
        )*};
    }
    requirements!(
        ProvidersManage,
        MailboxesManage,
        KeysManage,
        MailboxSettingsUpdate,
        TeamUpdate,
        TeamTransfer,
        MembersManage,
        LimitsRequest,
        WebhooksManage,
        EmailReceive,
        EmailSend,
        DomainsManage,
        MailboxSend,
    );
}
