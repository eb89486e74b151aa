//! Each job's event log (`job_events`), the source of `GET /v1/jobs/{id}/events`.
//!
//! State changes and progress are written by a trigger on `jobs` (migration `…0010`); the worker
//! adds previews ([`Store::record_preview`]). Every insert is announced on [`EVENT_CHANNEL`]
//! (payload: the job id), so any API replica can follow any job.
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::job::JobStatus;

/// The channel on which each new job event is announced (payload: the job id).
pub const EVENT_CHANNEL: &str = "darkroom_job_events";

/// Events read per query when a stream catches up.
pub const EVENT_BATCH: i64 = 100;

/// One recorded event of a job.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct JobEvent {
    /// Increasing within a job: the stream's event id.
    pub id: i64,
    /// `queued`, `started`, `progress`, `preview`, `succeeded`, `failed` or `canceled`.
    pub kind: String,
    /// `started`: `{attempt}`; `progress`: `{step, total, eta}`; `preview`: [`Preview`]; the
    /// others: `{}`.
    #[sqlx(json)]
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// A preview of a running job: a small image made from its latents by the worker.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preview {
    /// The step after which it was made, of `total`.
    pub step: i32,
    pub total: i32,
    pub width: u32,
    pub height: u32,
    /// The image's bytes (PNG), base64-encoded.
    pub image: String,
}

impl JobEvent {
    /// The job status this event ends in, for the terminal kinds.
    pub fn terminal_status(&self) -> Option<JobStatus> {
        match self.kind.as_str() {
            "succeeded" => Some(JobStatus::Succeeded),
            "failed" => Some(JobStatus::Failed),
            "canceled" => Some(JobStatus::Canceled),
            _ => None,
        }
    }
}

impl Store {
    /// A job's events with an id above `after`, oldest first, at most `limit`.
    pub async fn events_after(&self, job: Uuid, after: i64, limit: i64) -> Result<Vec<JobEvent>, StoreError> {
        Ok(sqlx::query_as("SELECT id, kind, data, created_at FROM job_events WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(job)
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// The id of a job's newest event (0: none).
    pub async fn last_event_id(&self, job: Uuid) -> Result<i64, StoreError> {
        let (id,): (Option<i64>,) = sqlx::query_as("SELECT max(id) FROM job_events WHERE job_id = $1").bind(job).fetch_one(self.pool()).await?;
        Ok(id.unwrap_or(0))
    }

    /// Record a preview of a running job, only if `lease` still holds it (false otherwise).
    pub async fn record_preview(&self, job: Uuid, lease: Uuid, preview: &Preview) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO job_events (job_id, kind, data)
             SELECT id, 'preview', $3 FROM jobs WHERE id = $1 AND lease = $2 AND status = $4",
        )
        .bind(job)
        .bind(lease)
        .bind(Json(preview))
        .bind(JobStatus::Running)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            sqlx::query("SELECT pg_notify($1, $2)").bind(EVENT_CHANNEL).bind(job.to_string()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// A job's newest preview, if it has one.
    pub async fn latest_preview(&self, job: Uuid) -> Result<Option<Preview>, StoreError> {
        let row: Option<(Json<Preview>,)> = sqlx::query_as("SELECT data FROM job_events WHERE job_id = $1 AND kind = 'preview' ORDER BY id DESC LIMIT 1")
            .bind(job)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|(Json(p),)| p))
    }
}
