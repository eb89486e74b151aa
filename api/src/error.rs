//! The one error policy of the API. Every failure of every route, native or dialect, is an
//! [`ApiError`], and only this file decides what it means on the wire: its status, its error
//! type, the message a client may see, the field at fault, the `Retry-After` it carries and how
//! it is logged (a server-side detail is logged once, here, and never sent). Dialects only
//! reshape the [`PublicError`] this produces into their own JSON (see `dialect.rs`).
use std::borrow::Cow;
use std::time::Duration;

use axum::http::StatusCode;
use darkroom_shared::job::JobStatus;
use darkroom_shared::ratelimit::Rate;
use darkroom_shared::store::StoreError;
use darkroom_shared::validate::ValidationError;
use uuid::Uuid;

/// How long a client is asked to wait before retrying after a 503.
pub const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_secs(5);
/// How long a tenant at its quota is asked to wait: until some of its jobs have finished.
pub const RETRY_AFTER_QUOTA: Duration = Duration::from_secs(5);

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The canonical request is well-formed but a value is not allowed (422). Its field is the
    /// canonical one; dialects name it their way.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The body is not JSON (400).
    #[error("{message}")]
    Malformed { field: Option<String>, message: String },
    /// The JSON does not fit the request's shape: a wrong type, a missing or an unknown field (422).
    /// The field is named as the body names it.
    #[error("{message}")]
    Shape { field: Option<String>, message: String },
    /// A query parameter, a header or a dialect's own field with a value we refuse (422), named
    /// as the client sent it.
    #[error("{message}")]
    Parameter { field: Cow<'static, str>, message: String },
    /// No usable credentials (401, with the dialect's `WWW-Authenticate` challenge).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// No such resource for this caller (404); another tenant's job is not found either.
    #[error("{0}")]
    NotFound(String),
    /// It was there, and retention deleted it (410).
    #[error("{0}")]
    Gone(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The body did not arrive within `--body-read-timeout-secs` (408).
    #[error("the request body did not arrive within {secs} seconds")]
    RequestTimeout { secs: u64 },
    /// The body is larger than `--max-body-bytes` (413).
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The body is not declared as JSON where JSON is required (415).
    #[error("the request body must be JSON (Content-Type: application/json); got {0:?}")]
    UnsupportedMediaType(String),
    /// None of the response formats the client accepts can be produced (406).
    #[error("{0}")]
    NotAcceptable(String),
    /// The route exists but not for this method (405).
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// The tenant's rate limit is spent (429, retry after `retry_after`).
    #[error("the rate limit of {} jobs a minute (burst {}) is reached; retry in {} s", rate.per_minute, rate.burst, whole_secs(*retry_after))]
    RateLimited { retry_after: Duration, rate: Rate },
    /// The tenant is at one of its quotas: `limit` names it, `value` is its value (429).
    #[error("{}", quota_message(limit, *value))]
    QuotaExceeded { limit: &'static str, value: i64 },
    /// No live worker serves the model yet (503, retry after about `estimated`).
    #[error("Model {model} is currently loading")]
    ModelLoading { model: String, estimated: Duration },
    /// The catalog is empty: no worker has registered a model yet (503).
    #[error("No checkpoints found: no worker has registered a model yet")]
    NoModels,
    /// A blocking request's job ended without images (500 in the dialects that block).
    #[error("generation {}: {message}", status.as_str())]
    JobFailed { status: JobStatus, message: String },
    /// A blocking request's job did not finish within its longest wait; it was canceled (504).
    #[error("the job did not finish within {secs} seconds; it was canceled")]
    WaitExpired { secs: u64 },
    /// The server is shutting down while a blocking request waits; the job goes on (503).
    #[error("the server is shutting down; job {0} goes on: see /v1/jobs/{0}")]
    ShuttingDown(Uuid),
    /// A backend does not answer (503); the detail is logged, not sent.
    #[error("the service is temporarily unavailable: {0}")]
    Unavailable(String),
    /// A fault of ours (500); the detail is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            return ApiError::Unavailable(format!("database: {e}"));
        }
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::TooLarge(m) => ApiError::Parameter { field: "options".into(), message: m },
            StoreError::QuotaExceeded { max_queued } => ApiError::QuotaExceeded { limit: "max_queued", value: max_queued },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// An error as a client may see it, before a dialect gives it its shape.
#[derive(Debug)]
pub struct PublicError<'a> {
    /// The error itself, for dialects whose shape depends on what went wrong.
    pub error: &'a ApiError,
    pub status: StatusCode,
    /// The native API's error `type`.
    pub kind: &'static str,
    /// Safe to send: no server-side detail; a canonical field is named as the dialect names it.
    pub message: String,
    /// The field at fault, as the dialect names it.
    pub field: Option<String>,
    /// The valid values, where the field takes one of a known set.
    pub allowed: Option<&'a [String]>,
    /// Whole seconds after which a retry may succeed (503s and 429s).
    pub retry_after: Option<u64>,
    /// Further response headers (the rate limit's).
    pub headers: Vec<(&'static str, String)>,
}

fn quota_message(limit: &str, value: i64) -> String {
    match limit {
        "max_waiting" => format!("the tenant has {value} requests waiting for their jobs, its limit ({limit}); poll instead, or retry shortly"),
        _ => format!("the tenant has {value} queued or running jobs, its limit ({limit}); submit again when some have finished"),
    }
}

/// Seconds, rounded up.
fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl ApiError {
    /// The status and the native error `type`.
    pub fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid(_) | ApiError::Shape { .. } | ApiError::Parameter { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            ApiError::Malformed { .. } => (StatusCode::BAD_REQUEST, "malformed_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Gone(_) => (StatusCode::GONE, "gone"),
            ApiError::RequestTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "not_acceptable"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::QuotaExceeded { .. } => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
            ApiError::ModelLoading { .. } => (StatusCode::SERVICE_UNAVAILABLE, "model_loading"),
            ApiError::NoModels => (StatusCode::SERVICE_UNAVAILABLE, "no_models"),
            ApiError::JobFailed { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "job_failed"),
            ApiError::WaitExpired { .. } => (StatusCode::GATEWAY_TIMEOUT, "wait_expired"),
            ApiError::ShuttingDown(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// Whether the client's input is at fault (a dialect may give these its own 4xx code).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ApiError::Invalid(_) | ApiError::Shape { .. } | ApiError::Parameter { .. } | ApiError::Malformed { .. })
    }

    /// The field at fault and whether its name is the canonical request's (which a dialect
    /// renames) rather than the client's own.
    fn field(&self) -> Option<(&str, bool)> {
        match self {
            ApiError::Invalid(e) => Some((e.field(), true)),
            ApiError::Malformed { field, .. } | ApiError::Shape { field, .. } => field.as_deref().map(|f| (f, false)),
            ApiError::Parameter { field, .. } => Some((field, false)),
            _ => None,
        }
    }

    /// When a retry may succeed.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::ModelLoading { estimated, .. } => Some(*estimated),
            ApiError::RateLimited { retry_after, .. } => Some((*retry_after).max(Duration::from_secs(1))),
            ApiError::QuotaExceeded { .. } => Some(RETRY_AFTER_QUOTA),
            ApiError::NoModels | ApiError::ShuttingDown(_) | ApiError::Unavailable(_) => Some(RETRY_AFTER_UNAVAILABLE),
            _ => None,
        }
    }

    /// Log what the client will not see: backend and internal details, once per response.
    fn log(&self, dialect: &str) {
        match self {
            ApiError::Unavailable(detail) => tracing::warn!(dialect, "answering 503: {detail}"),
            ApiError::Internal(detail) => tracing::error!(dialect, "answering 500: {detail}"),
            ApiError::JobFailed { message, .. } => tracing::info!(dialect, "the job ended without images: {message}"),
            _ => {}
        }
    }

    /// The message a client may see.
    fn public_message(&self) -> String {
        match self {
            ApiError::Unavailable(_) => "the service is temporarily unavailable; try again shortly".to_string(),
            ApiError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        }
    }

    /// Log the error (once) and say what a client of `dialect` may see of it; `rename` gives
    /// the dialect's name of a canonical field.
    pub fn public<'a>(&'a self, dialect: &str, rename: impl Fn(&str) -> Cow<'static, str>) -> PublicError<'a> {
        self.log(dialect);
        let (status, kind) = self.status_and_kind();
        let mut message = self.public_message();
        let field = self.field().map(|(name, canonical)| {
            if !canonical {
                return name.to_string();
            }
            let renamed = rename(name);
            // Validation messages start with the canonical name ("steps must be ..."): use the dialect's.
            if renamed != name {
                if let Some(rest) = message.strip_prefix(name).filter(|rest| rest.starts_with([' ', ':'])) {
                    message = format!("{renamed}{rest}");
                }
            }
            renamed.into_owned()
        });
        let allowed = match self {
            ApiError::Invalid(e) => e.allowed(),
            _ => None,
        };
        let retry_after = self.retry_after().map(whole_secs);
        let mut headers = Vec::new();
        if let ApiError::RateLimited { rate, retry_after: wait } = self {
            // The IETF RateLimit headers (draft-ietf-httpapi-ratelimit-headers): the policy is
            // the sustained rate over a minute (with its burst); nothing is left until `t`.
            headers.push(("ratelimit-policy", format!("\"jobs\";q={};w=60;burst={}", rate.per_minute.round() as u64, rate.burst)));
            headers.push(("ratelimit", format!("\"jobs\";r=0;t={}", whole_secs(*wait))));
        }
        PublicError { error: self, status, kind, message, field, allowed, retry_after, headers }
    }
}

/// Answers a panic in a handler with our 500 in the native shape (the panic itself is logged).
pub fn panic_message(panic: Box<dyn std::any::Any + Send + 'static>) -> ApiError {
    let what = panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("(no message)");
    ApiError::Internal(format!("a handler panicked: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_fields_take_the_dialects_name_in_field_and_message() {
        let e = ApiError::Invalid(ValidationError::OutOfRange { field: "steps", allowed: "from 1 to 150".into(), got: "0".into() });
        let p = e.public("test", |f| if f == "steps" { "inference_steps".into() } else { f.to_string().into() });
        assert_eq!((p.status, p.field.as_deref()), (StatusCode::UNPROCESSABLE_ENTITY, Some("inference_steps")));
        assert_eq!(p.message, "inference_steps must be from 1 to 150; got 0");
        // A field the client named is left as it is.
        let e = ApiError::Parameter { field: "steps".into(), message: "steps: no".into() };
        assert_eq!(e.public("test", |_| "renamed".into()).field.as_deref(), Some("steps"));
    }

    #[test]
    fn server_side_details_are_never_public() {
        let e = ApiError::Internal("secret stack trace".into());
        let p = e.public("test", |f| f.to_string().into());
        assert_eq!((p.status, p.message.as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "internal error"));
        let e = ApiError::Unavailable("db at 10.0.0.1 refused".into());
        let p = e.public("test", |f| f.to_string().into());
        assert!(!p.message.contains("10.0.0.1"));
        assert_eq!((p.status, p.retry_after), (StatusCode::SERVICE_UNAVAILABLE, Some(5)));
        let p = ApiError::ModelLoading { model: "m".into(), estimated: Duration::from_millis(19_500) };
        assert_eq!(p.public("test", |f| f.to_string().into()).retry_after, Some(20));
    }
}
