//! The one place where errors become HTTP responses. Every error the API answers has the body
//! `{"error": {"type": ..., "message": ..., "field": ..., "allowed": [...]}}` (`field` and
//! `allowed` only where they apply), whatever produced it: validation, a malformed body, auth,
//! a missing job, an oversized body, an unavailable backend or an internal fault.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use darkroom_shared::store::StoreError;
use darkroom_shared::validate::ValidationError;
use serde::Serialize;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is well-formed but a value is not allowed (422).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The body is not JSON, or a query parameter cannot be read (400).
    #[error("{message}")]
    Malformed { field: Option<String>, message: String },
    /// The JSON does not fit the request's shape: a wrong type, a missing or an unknown field (422).
    #[error("{message}")]
    Shape { field: Option<String>, message: String },
    /// A query parameter or header with a value out of range (422).
    #[error("{message}")]
    Parameter { field: &'static str, message: String },
    /// No usable credentials (401, with a `WWW-Authenticate` challenge).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// No such resource for this caller (404); another tenant's job is not found either.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than `--max-body-bytes` (413).
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The body is not declared as JSON (415).
    #[error("the request body must be JSON (Content-Type: application/json); got {0:?}")]
    UnsupportedMediaType(String),
    /// The route exists but not for this method (405).
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// A backend does not answer (503); the detail is logged, not sent.
    #[error("the service is temporarily unavailable: {0}")]
    Unavailable(String),
    /// A fault of ours (500); the detail is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Db(
                ref db @ (sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed),
            ) => ApiError::Unavailable(format!("database: {db}")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The JSON body of every error response.
#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed: Option<&'a [String]>,
}

impl ApiError {
    /// The status and the error's `type` in the body.
    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid(_) | ApiError::Shape { .. } | ApiError::Parameter { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            ApiError::Malformed { .. } => (StatusCode::BAD_REQUEST, "malformed_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid(e) => Some(e.field()),
            ApiError::Malformed { field, .. } | ApiError::Shape { field, .. } => field.as_deref(),
            ApiError::Parameter { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        let message = match &self {
            ApiError::Unavailable(detail) => {
                tracing::warn!("answering 503: {detail}");
                "the service is temporarily unavailable; try again shortly".to_string()
            }
            ApiError::Internal(detail) => {
                tracing::error!("answering 500: {detail}");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let body = Body {
            error: Detail {
                kind,
                message,
                field: self.field(),
                allowed: match &self {
                    ApiError::Invalid(e) => e.allowed(),
                    _ => None,
                },
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"darkroom\""));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// Answers a panic in a handler with our 500 (the panic itself is logged).
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("(no message)");
    ApiError::Internal(format!("a handler panicked: {what}")).into_response()
}
