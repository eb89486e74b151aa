//! The dialect boundary. A dialect (the native API, AUTOMATIC1111, Hugging Face, Hyperbolic)
//! declares three things: the shape of its errors (built from the one [`ApiError`]), the names its
//! users know for the canonical request's fields, and whether its bodies must be declared JSON.
//! Everything else (authentication, reading the body, submit-and-wait, the error policy) lives
//! once, below the dialects: the extractors in `extract.rs` and the handlers' errors reject
//! in the dialect's shape through [`DialectError`].
use std::borrow::Cow;
use std::marker::PhantomData;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::{ApiError, PublicError};
use crate::openapi::{schema_of, tags, Schemas};

/// What a body's `Content-Type` must say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentTypePolicy {
    /// JSON (`application/json`, `application/*+json`) or nothing; anything else is a 415.
    Json,
    /// Whatever it says, the body is read as JSON (clients of these APIs often send none, or a
    /// wrong one).
    Any,
}

/// One wire-compatible API.
pub trait Dialect: Send + Sync + 'static {
    /// For logs.
    const NAME: &'static str;
    /// The `WWW-Authenticate` challenge of a 401.
    const CHALLENGE: &'static str = "Bearer realm=\"darkroom\"";
    const CONTENT_TYPE: ContentTypePolicy = ContentTypePolicy::Any;

    /// This dialect's name for a canonical request field (`steps` is `inference_steps` to the
    /// Hugging Face endpoint handler).
    fn field_name(canonical: &str) -> Cow<'static, str> {
        Cow::Owned(canonical.to_string())
    }

    /// The error in this dialect's shape. The status is `e.status` except that a bad input may
    /// take the code the dialect's wire protocol uses for it; the server-error statuses,
    /// `Retry-After` and the 401 challenge are set by [`DialectError`] whatever this answers.
    fn render(e: PublicError<'_>) -> Response;

    /// The OpenAPI tag of this dialect's operations (`openapi.rs` documents its errors by it).
    const TAG: &'static str;
    /// The statuses a route with a body may refuse it with, besides the route's own.
    const BODY_ERRORS: &'static [u16];
    /// The name of the schema of this dialect's error body with `status`.
    fn error_schema(status: u16) -> &'static str;
    /// The schemas [`Dialect::error_schema`] names (and those they refer to).
    fn error_schemas() -> Schemas;
}

/// An [`ApiError`] answered in dialect `D`'s shape: what every handler and extractor returns.
pub struct DialectError<D>(pub ApiError, PhantomData<D>);

impl<D> DialectError<D> {
    pub fn new(e: ApiError) -> Self {
        DialectError(e, PhantomData)
    }
}

impl<D> std::fmt::Debug for DialectError<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// `?` on anything that becomes an [`ApiError`].
macro_rules! from_errors {
    ($($t:ty),*) => {$(
        impl<D> From<$t> for DialectError<D> {
            fn from(e: $t) -> Self {
                DialectError::new(e.into())
            }
        }
    )*};
}
from_errors!(ApiError, darkroom_shared::store::StoreError, darkroom_shared::validate::ValidationError);

impl<D: Dialect> IntoResponse for DialectError<D> {
    fn into_response(self) -> Response {
        let public = self.0.public(D::NAME, D::field_name);
        let (status, retry_after, extra) = (public.status, public.retry_after, public.headers.clone());
        let bad_input = self.0.is_bad_input();
        let mut response = D::render(public);
        // Only a bad input may change its code; everything else keeps the policy's status.
        if !(bad_input && response.status().is_client_error()) {
            *response.status_mut() = status;
        }
        let headers = response.headers_mut();
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        for (name, value) in extra {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(D::CHALLENGE));
        }
        response
    }
}

/// A route that exists but not for the request's method, answered in `D`'s shape: the
/// `method_not_allowed_fallback` of every dialect's routes (`dialects::router`) and of the rest.
pub async fn method_not_allowed<D: Dialect>(method: Method) -> DialectError<D> {
    DialectError::new(ApiError::MethodNotAllowed(method.to_string()))
}

/// The native API (`/v1/...`, the probes and unknown routes): `{"error": {"type", "message",
/// "field", "allowed"}}` (`field` and `allowed` only where they apply), with the canonical names.
pub struct Native;

#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": {"type": "invalid_request", "message": "steps must be an integer from 1 to 150; got 500", "field": "steps"}}))]
pub struct NativeError<'a> {
    error: NativeDetail<'a>,
}

/// One error of the native API.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NativeDetail<'a> {
    /// A stable word: `invalid_request`, `malformed_request`, `unauthorized`, `not_found`,
    /// `gone`, `conflict`, `request_timeout`, `payload_too_large`, `unsupported_media_type`,
    /// `rate_limited`, `quota_exceeded`, `no_models`, `unavailable`, `internal`...
    #[serde(rename = "type")]
    kind: &'static str,
    /// For people; never a server-side detail.
    message: String,
    /// The request field (or query parameter, or header) at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// The valid values, where the field takes one of a known set (models, samplers).
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed: Option<&'a [String]>,
}

impl Dialect for Native {
    const NAME: &'static str = "native";
    const CONTENT_TYPE: ContentTypePolicy = ContentTypePolicy::Json;
    const TAG: &'static str = tags::NATIVE;
    const BODY_ERRORS: &'static [u16] = &[400, 408, 413, 415, 422];

    fn error_schema(_status: u16) -> &'static str {
        "NativeError"
    }

    fn error_schemas() -> Schemas {
        let mut out = Schemas::new();
        schema_of::<NativeError>(&mut out);
        out
    }

    fn render(e: PublicError<'_>) -> Response {
        let body = NativeError { error: NativeDetail { kind: e.kind, message: e.message, field: e.field, allowed: e.allowed } };
        (e.status, Json(body)).into_response()
    }
}

/// Native handlers return [`ApiError`] directly.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        DialectError::<Native>::new(self).into_response()
    }
}
