//! What the dialect translators share: authenticating from the headers (so each dialect can
//! answer auth failures in its own shape), reading a JSON body, resolving model aliases, running
//! a job to the end, and turning an [`ApiError`] into a status and a public message that names
//! the dialect's own field.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use darkroom_shared::job::JobStatus;
use darkroom_shared::request::GenerationRequest;
use darkroom_shared::store::Tenant;
use serde::de::DeserializeOwned;

use crate::auth::presented_token;
use crate::error::ApiError;
use crate::service::{JobWithImages, Service};

/// Why a dialect request did not produce images.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The job was still queued or running when the service's longest wait ended.
    #[error("the job did not finish within {0} seconds; it was canceled")]
    TimedOut(u64),
    /// The job ended failed or canceled.
    #[error("generation {status}: {message}")]
    Failed { status: &'static str, message: String },
}

/// An error as a dialect shows it: its status, a message safe to send, and the field at fault.
pub struct Problem {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
}

/// The tenant of the token in the request's headers (Bearer, or Basic with the token as password).
pub async fn authenticate(service: &Service, headers: &HeaderMap) -> Result<Tenant, ApiError> {
    let token = presented_token(headers)?;
    service.tenant_for_token(&token).await?.ok_or(ApiError::Unauthorized("the API token is unknown or revoked"))
}

/// The body as `T`, with the same field-naming errors as the native API; any Content-Type.
pub fn read_json<T: DeserializeOwned>(service: &Service, body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: service.settings().max_body_bytes }
        } else {
            ApiError::Malformed { field: None, message: format!("the request body could not be read: {}", rejection.body_text()) }
        }
    })?;
    crate::json::parse(&bytes)
}

/// The catalog id a dialect's model name stands for: a configured alias, or the name itself.
pub fn resolve_alias(service: &Service, name: &str) -> String {
    service.settings().model_aliases.iter().find(|(alias, _)| alias == name).map(|(_, id)| id.clone()).unwrap_or_else(|| name.to_string())
}

/// Submit `request` for `tenant` and wait (up to the service's longest wait) for it to finish;
/// a job still unfinished then is canceled.
pub async fn run(service: &Arc<Service>, tenant: uuid::Uuid, request: GenerationRequest) -> Result<JobWithImages, RunError> {
    run_keyed(service, tenant, request, None).await
}

/// [`run`], recording `cache_key` on the job when given.
pub async fn run_keyed(service: &Arc<Service>, tenant: uuid::Uuid, request: GenerationRequest, cache_key: Option<&[u8]>) -> Result<JobWithImages, RunError> {
    let job = service.submit(tenant, request).await?;
    if let Some(key) = cache_key {
        service.set_cache_key(job.id, key).await?;
    }
    let max = service.settings().max_wait;
    let job = service.wait_for(tenant, job.id, max).await?;
    match job.status {
        JobStatus::Succeeded => Ok(service.with_images(job).await?),
        JobStatus::Failed | JobStatus::Canceled => {
            Err(RunError::Failed { status: job.status.as_str(), message: job.error.clone().unwrap_or_else(|| "no detail".into()) })
        }
        JobStatus::Queued | JobStatus::Running => {
            if let Err(e) = service.cancel(tenant, job.id).await {
                tracing::warn!(job = %job.id, "could not cancel a job that outlived its wait: {e}");
            }
            Err(RunError::TimedOut(max.as_secs()))
        }
    }
}

/// Seconds from a job's start to its end (0 when unknown).
pub fn elapsed_secs(job: &darkroom_shared::job::Job) -> f64 {
    match (job.started_at, job.finished_at) {
        (Some(s), Some(f)) => (f - s).num_milliseconds().max(0) as f64 / 1000.0,
        _ => 0.0,
    }
}

impl Problem {
    /// `e` as a dialect shows it; `rename` maps a canonical field name to the dialect's. Bad
    /// input is a 400 (the dialects we speak have no 422); backend and internal faults keep their
    /// status and a generic message (the detail is logged).
    pub fn from_api(e: ApiError, rename: impl Fn(&str) -> String) -> Problem {
        let field = match &e {
            ApiError::Invalid(v) => Some(v.field().to_string()),
            ApiError::Malformed { field, .. } | ApiError::Shape { field, .. } => field.clone(),
            ApiError::Parameter { field, .. } => Some(field.to_string()),
            _ => None,
        };
        let status = match &e {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut message = match &e {
            ApiError::Unavailable(detail) => {
                tracing::warn!("dialect answering 503: {detail}");
                "the service is temporarily unavailable; try again shortly".to_string()
            }
            ApiError::Internal(detail) => {
                tracing::error!("dialect answering 500: {detail}");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let field = field.map(|f| {
            let renamed = rename(&f);
            // Messages start with the canonical field name ("steps must be ..."): use the dialect's.
            if let Some(rest) = message.strip_prefix(&format!("{f} ")) {
                message = format!("{renamed} {rest}");
            }
            renamed
        });
        Problem { status, message, field }
    }

    pub fn from_run(e: RunError, rename: impl Fn(&str) -> String) -> Problem {
        match e {
            RunError::Api(e) => Problem::from_api(e, rename),
            RunError::TimedOut(_) => Problem { status: StatusCode::GATEWAY_TIMEOUT, message: e.to_string(), field: None },
            RunError::Failed { .. } => Problem { status: StatusCode::INTERNAL_SERVER_ERROR, message: e.to_string(), field: None },
        }
    }

    pub fn bad_request(field: &str, message: impl Into<String>) -> Problem {
        Problem { status: StatusCode::BAD_REQUEST, message: message.into(), field: Some(field.to_string()) }
    }
}
