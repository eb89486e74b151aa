//! The JSON shapes of the native API's jobs and images.
use base64::Engine as _;
use chrono::{DateTime, Utc};
use darkroom_shared::job::{ImageMeta, Job, JobStatus};
use darkroom_shared::request::{GenerationRequest, OutputFormat};
use serde::Serialize;
use uuid::Uuid;

use crate::service::{JobDetails, JobWithImages};

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: Uuid,
    pub status: JobStatus,
    pub model: String,
    /// The canonical request as stored (defaults filled, seed resolved), without the init image.
    pub request: GenerationRequest,
    pub progress: Progress,
    /// While queued: how many of the caller's own queued jobs for the same model are older (0: the
    /// caller's next; counted up to 1000). Other tenants' queues are not revealed.
    pub queue_position: Option<i64>,
    /// Deliveries that reached a worker.
    pub attempts: i32,
    pub cancel_requested: bool,
    pub error: Option<String>,
    /// Why a failed job failed, as a stable word (`deadline_exceeded`, ...); null unless failed.
    pub error_type: Option<String>,
    /// The request field the error is about, when the worker refused the request as invalid
    /// (`error_type` `invalid_request`); null otherwise.
    pub error_field: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When retention deleted the job's images (they are then `[]`; their URLs answer 410).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_purged_at: Option<DateTime<Utc>>,
    pub images: Vec<ImageView>,
    pub links: Links,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub step: i32,
    pub total: i32,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ImageView {
    pub index: i32,
    pub seed: i64,
    /// `image/png`, `image/jpeg` or `image/webp`.
    pub content_type: &'static str,
    pub width: i32,
    pub height: i32,
    pub url: String,
    /// The image's bytes, base64, only in answers to `Prefer: wait`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Links {
    #[serde(rename = "self")]
    pub this: String,
    pub cancel: String,
    /// The job's event stream (Server-Sent Events).
    pub events: String,
}

/// A page of `GET /v1/jobs`: `next` is the `before` cursor of the following page.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobList {
    pub data: Vec<JobView>,
    pub next: Option<Uuid>,
}

pub fn job_url(id: Uuid) -> String {
    format!("/v1/jobs/{id}")
}

/// The MIME type of a stored image's format name.
pub fn content_type(format: &str) -> &'static str {
    OutputFormat::parse(format).map(OutputFormat::content_type).unwrap_or("application/octet-stream")
}

fn image_view(job: Uuid, meta: &ImageMeta, bytes: Option<&[u8]>) -> ImageView {
    ImageView {
        index: meta.idx,
        seed: meta.seed,
        content_type: content_type(&meta.format),
        width: meta.width,
        height: meta.height,
        url: format!("/v1/jobs/{job}/images/{}", meta.idx),
        b64_json: bytes.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

fn job_view(job: Job, queue_position: Option<i64>, images: Vec<ImageView>) -> JobView {
    JobView {
        id: job.id,
        status: job.status,
        model: job.model,
        request: job.request,
        progress: Progress { step: job.progress_step, total: job.progress_total },
        queue_position,
        attempts: job.attempts,
        cancel_requested: job.cancel_requested,
        error: job.error,
        error_type: job.error_type,
        error_field: job.error_field,
        created_at: job.created_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
        images_purged_at: job.purged_at,
        images,
        links: Links { this: job_url(job.id), cancel: format!("/v1/jobs/{}/cancel", job.id), events: format!("/v1/jobs/{}/events", job.id) },
    }
}

impl From<JobDetails> for JobView {
    fn from(d: JobDetails) -> Self {
        let images = d.images.iter().map(|m| image_view(d.job.id, m, None)).collect();
        job_view(d.job, d.queue_position, images)
    }
}

impl From<JobWithImages> for JobView {
    fn from(d: JobWithImages) -> Self {
        let images = d.images.iter().map(|(m, bytes)| image_view(d.job.id, m, Some(bytes))).collect();
        job_view(d.job, None, images)
    }
}
