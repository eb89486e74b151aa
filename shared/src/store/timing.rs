//! Worker-side timing of a job, recorded next to its result.
use std::time::Duration;

use uuid::Uuid;

use super::{Store, StoreError};

impl Store {
    /// Record how long the worker computed on the job (while it still holds the lease).
    pub async fn record_compute_time(&self, job: Uuid, lease: Uuid, compute: Duration) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET compute_ms = $3 WHERE id = $1 AND lease = $2 AND status = 'running'")
            .bind(job)
            .bind(lease)
            .bind(compute.as_secs_f64() * 1e3)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The worker's compute time of a finished job, in milliseconds.
    pub async fn compute_time_ms(&self, job: Uuid) -> Result<Option<f64>, StoreError> {
        Ok(sqlx::query_as::<_, (Option<f64>,)>("SELECT compute_ms FROM jobs WHERE id = $1").bind(job).fetch_optional(self.pool()).await?.and_then(|(ms,)| ms))
    }
}
