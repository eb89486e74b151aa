//! `/v1/jobs`: submit (optionally waiting with `Prefer: wait`), read, list, cancel, images.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use darkroom_shared::request::GenerationRequest;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::view::{content_type, job_url, JobList, JobView};
use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::openapi::tags;
use crate::service::{Outcome, Service, Submission, Wait};

/// Page sizes of `GET /v1/jobs`.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(show)).routes(routes!(cancel)).routes(routes!(image))
}

/// Submit a job.
///
/// 202 with the queued job; with `Prefer: wait[=N]`, 200 with the finished job (images inline)
/// or 202 with the job as it stands when the wait ends. With an `Idempotency-Key` already used
/// for the same request: 200 with that job as it stands.
#[utoipa::path(post, path = "/v1/jobs", operation_id = "createJob", tag = tags::NATIVE,
    request_body = GenerationRequest,
    params(
        ("Prefer" = Option<String>, Header, description = "`wait` (up to `--max-wait-secs`) or `wait=N` seconds: answer when the job is done (RFC 7240)", example = "wait=60"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: a second submission with the key and the same request gets the first one's job (24 hours)", max_length = 255, min_length = 1),
    ),
    responses(
        (status = 200, description = "The finished job, images inline (`Prefer: wait`); or the job of an earlier submission with the same `Idempotency-Key`", body = JobView),
        (status = 202, description = "The job, queued or running", body = JobView,
            headers(("Location" = String, description = "The job's URL"))),
        (status = 409, description = "The `Idempotency-Key` was used for a different request"),
        (status = 429, description = "The tenant's rate limit, queued-jobs quota or waiting-requests limit is reached"),
    ))]
async fn create(
    State(service): State<Arc<Service>>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(request, _): JsonBody<GenerationRequest>,
) -> Result<Response, ApiError> {
    let wait = preferred_wait(&headers).unwrap_or(Duration::ZERO);
    let idempotency_key = idempotency_key(&headers)?;
    let catalog = service.catalog().await?;
    let submission = Submission { request, cache_key: None, idempotency_key };
    let details = match service.submit_and_wait(&caller.tenant, submission, &catalog, Wait::UpTo(wait)).await? {
        Outcome::Done(done) => return Ok(Json(JobView::from(done)).into_response()),
        Outcome::Replayed(details) => return Ok(Json(JobView::from(details)).into_response()),
        Outcome::Pending(details) => details,
    };
    let id = details.job.id;
    let mut response = (StatusCode::ACCEPTED, Json(JobView::from(details))).into_response();
    if let Ok(location) = HeaderValue::from_str(&job_url(id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A job: status, progress, queue position, timings, error, image links.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "getJob", tag = tags::NATIVE,
    params(("id" = String, Path, description = "The job's id (another tenant's job is not found)", example = "0190e0a4-0000-7000-8000-000000000000")),
    responses((status = 200, description = "The job", body = JobView), (status = 404, description = "No such job for this tenant")))]
async fn show(State(service): State<Arc<Service>>, caller: Caller, job: JobRef) -> Result<Json<JobView>, ApiError> {
    Ok(Json(service.job(caller.tenant.id, job.id).await?.into()))
}

/// Cancel a job.
///
/// The job after the request (queued: canceled at once; running: `cancel_requested`, it stops
/// at its next step; finished: unchanged).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", operation_id = "cancelJob", tag = tags::NATIVE,
    params(("id" = String, Path, description = "The job's id", example = "0190e0a4-0000-7000-8000-000000000000")),
    responses((status = 200, description = "The job after the request", body = JobView), (status = 404, description = "No such job for this tenant")))]
async fn cancel(State(service): State<Arc<Service>>, caller: Caller, job: JobRef) -> Result<Json<JobView>, ApiError> {
    Ok(Json(service.cancel(caller.tenant.id, job.id).await?.into()))
}

/// An image of a job: its bytes, with their Content-Type.
#[utoipa::path(get, path = "/v1/jobs/{id}/images/{index}", operation_id = "getJobImage", tag = tags::NATIVE,
    params(
        ("id" = String, Path, description = "The job's id", example = "0190e0a4-0000-7000-8000-000000000000"),
        ("index" = String, Path, description = "The image's index, from 0", example = "0"),
    ),
    responses(
        (status = 200, description = "The image", content(
            ("image/png"), ("image/jpeg"), ("image/webp"),
        ), headers(("Cache-Control" = String))),
        (status = 404, description = "No such job for this tenant, or no such image"),
        (status = 410, description = "Retention deleted the job's images"),
    ))]
async fn image(State(service): State<Arc<Service>>, caller: Caller, job: JobRef) -> Result<Response, ApiError> {
    let index = job.index.ok_or_else(|| ApiError::NotFound(format!("job {} has no such image", job.id)))?;
    let (format, bytes) = service.image(caller.tenant.id, job.id, index).await?;
    let headers = [(header::CONTENT_TYPE, content_type(&format)), (header::CACHE_CONTROL, "private, max-age=86400, immutable")];
    Ok((headers, bytes).into_response())
}

/// `GET /v1/jobs`'s query (read as text, so that a bad value is our 422 naming it).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Jobs per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `next` of the previous page: jobs older than this one.
    #[param(value_type = Option<Uuid>)]
    before: Option<String>,
}

/// The caller's jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", operation_id = "listJobs", tag = tags::NATIVE, params(ListParams),
    responses(
        (status = 200, description = "A page of jobs; `next` is the `before` of the following page", body = JobList),
        (status = 400, description = "The query string cannot be read"),
        (status = 422, description = "`limit` or `before` is refused"),
    ))]
async fn list(State(service): State<Arc<Service>>, caller: Caller, params: Result<Query<ListParams>, QueryRejection>) -> Result<Json<JobList>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::Malformed { field: None, message: format!("the query string cannot be read: {}", e.body_text()) })?;
    let limit = match params.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::Parameter { field: "limit".into(), message: format!("limit must be an integer from 1 to {MAX_LIMIT}; got {raw:?}") })?,
    };
    let before = match params.before.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<Uuid>().map_err(|_| ApiError::Parameter {
            field: "before".into(),
            message: format!("before must be a job id (the `next` of the previous page); got {raw:?}"),
        })?),
    };
    let page = service.list(caller.tenant.id, before, limit).await?;
    Ok(Json(JobList { data: page.jobs.into_iter().map(JobView::from).collect(), next: page.next }))
}

/// The job (and image index) a path names; a malformed id is simply not found.
pub(super) struct JobRef {
    pub(super) id: Uuid,
    index: Option<i32>,
}

impl<S: Send + Sync> FromRequestParts<S> for JobRef {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state).await.map_err(|_| ApiError::NotFound("no such job".into()))?;
        let raw = params.get("id").map(String::as_str).unwrap_or("");
        let id = raw.parse().map_err(|_| ApiError::NotFound(format!("no job {raw}")))?;
        let index = match params.get("index") {
            None => None,
            Some(raw) => Some(raw.parse().map_err(|_| ApiError::NotFound(format!("job {id} has no image {raw}")))?),
        };
        Ok(JobRef { id, index })
    }
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().ok().map(str::trim).filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
    match key {
        Some(k) => Ok(Some(k.to_string())),
        None => Err(ApiError::Parameter { field: "Idempotency-Key".into(), message: "Idempotency-Key must be 1 to 255 visible ASCII characters".into() }),
    }
}

/// The wait a request asks for with `Prefer: wait` (the longest allowed, `Duration::MAX` here;
/// the service caps it at `--max-wait-secs`) or `Prefer: wait=N` (seconds), as in RFC 7240.
/// Absent, zero or unreadable: no wait.
fn preferred_wait(headers: &HeaderMap) -> Option<Duration> {
    let prefs = headers.get_all("prefer").into_iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    for pref in prefs {
        let pref = pref.split(';').next().unwrap_or("").trim();
        let (name, value) = match pref.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (pref, None),
        };
        if !name.eq_ignore_ascii_case("wait") {
            continue;
        }
        return match value {
            None => Some(Duration::MAX),
            Some(v) => v.parse::<u64>().ok().filter(|&n| n > 0).map(Duration::from_secs),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(values: &[&str]) -> Option<u64> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("prefer", HeaderValue::from_str(v).unwrap());
        }
        preferred_wait(&h).map(|d| d.min(Duration::from_secs(300)).as_secs())
    }

    #[test]
    fn prefer_wait() {
        assert_eq!(wait(&[]), None);
        assert_eq!(wait(&["wait"]), Some(300));
        assert_eq!(wait(&["Wait=5"]), Some(5));
        assert_eq!(wait(&["respond-async, wait=10"]), Some(10));
        assert_eq!(wait(&["return=minimal", "wait = \"7\""]), Some(7));
        assert_eq!(wait(&["wait=100000"]), Some(300));
        assert_eq!(wait(&["wait=0"]), None);
        assert_eq!(wait(&["wait=soon"]), None);
        assert_eq!(wait(&["waiting=3"]), None);
    }
}
