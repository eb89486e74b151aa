//! Jobs as the store keeps them and every binary sees them.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::request::GenerationRequest;

/// A job's lifecycle: queued → running → succeeded | failed | canceled (running may go back to
/// queued when its worker dies or hands it back).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[sqlx(type_name = "job_status", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl JobStatus {
    /// Succeeded, failed or canceled: nothing will change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }
}

/// Why a job ended `failed`: a stable word for programs, beside the `error` text for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// The pipeline failed (an ONNX Runtime error, an encoding error), on every allowed delivery.
    GenerationFailed,
    /// The request cannot be run on the model (checked by the worker against the loaded model).
    InvalidRequest,
    /// No worker that took the job serves its model.
    ModelUnavailable,
    /// The job ran past the worker's deadline for a job of its size (not retried).
    DeadlineExceeded,
    /// Its workers stopped responding (their leases expired) on every allowed delivery.
    LeaseExpired,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::GenerationFailed => "generation_failed",
            ErrorType::InvalidRequest => "invalid_request",
            ErrorType::ModelUnavailable => "model_unavailable",
            ErrorType::DeadlineExceeded => "deadline_exceeded",
            ErrorType::LeaseExpired => "lease_expired",
        }
    }
}

/// A job row (also read from its JSON, `to_jsonb(jobs)`, as the webhook outbox keeps it).
#[derive(Clone, Debug, sqlx::FromRow, Deserialize)]
pub struct Job {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub model: String,
    #[sqlx(json)]
    pub request: GenerationRequest,
    pub status: JobStatus,
    /// The estimated GPU cost (`darkroom_shared::cost`).
    pub cost: f64,
    pub attempts: i32,
    pub progress_step: i32,
    pub progress_total: i32,
    pub cancel_requested: bool,
    pub error: Option<String>,
    /// Why a failed job failed ([`ErrorType`], as its word); `None` unless `status` is failed.
    pub error_type: Option<String>,
    /// The request field an `invalid_request` failure is about (`None` for other failures).
    pub error_field: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When retention deleted the job's images (and init image).
    pub purged_at: Option<DateTime<Utc>>,
    /// The id (`x-request-id`) of the request that submitted the job.
    pub request_id: Option<String>,
}

/// An image's metadata (its bytes are fetched separately).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct ImageMeta {
    pub idx: i32,
    pub seed: i64,
    pub format: String,
    pub width: i32,
    pub height: i32,
}

/// An image a worker stores with a finished job.
#[derive(Clone, Debug)]
pub struct NewImage {
    pub idx: i32,
    pub seed: u64,
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// A job a worker has claimed, with the fencing token that lets it report on it.
#[derive(Clone, Debug)]
pub struct Claim {
    pub job_id: Uuid,
    pub tenant_id: Uuid,
    pub model: String,
    pub lease: Uuid,
    pub attempts: i32,
    pub request: GenerationRequest,
    /// The estimated GPU cost, to queue the job again with.
    pub cost: f64,
    /// The id (`x-request-id`) of the request that submitted the job, for the job's log lines.
    pub request_id: Option<String>,
}

/// What a worker learns when it renews its lease or reports progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Still ours; `cancel` says whether the client asked to stop.
    Held { cancel: bool },
    /// Expired and taken over, or the job ended: stop and report nothing.
    Lost,
}

/// A job that recovery put back in the queue (or failed), for re-delivery.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Requeued {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub model: String,
    pub status: JobStatus,
    /// The estimated GPU cost (`darkroom_shared::cost`), which fair queuing needs.
    pub cost: f64,
}
