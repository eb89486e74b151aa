//! Retention: what finished jobs leave behind is deleted after a while, in small batches that
//! skip rows other transactions hold, so any number of API replicas can run the purge at once
//! without long locks or table rewrites.
use std::time::Duration;

use super::{Store, StoreError, IDEMPOTENCY_TTL_HOURS};

/// Rows handled per statement.
pub const PURGE_BATCH: i64 = 500;

/// What one purge pass deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Jobs whose images (and init image) were deleted.
    pub images_of: u64,
    /// Job rows deleted.
    pub jobs: u64,
    /// Rows of workers stopped (or silent) long ago.
    pub workers: u64,
    /// Idempotency keys past their [`IDEMPOTENCY_TTL_HOURS`].
    pub idempotency_keys: u64,
}

impl Store {
    /// Delete the images and init images of jobs finished more than `after` ago, and their
    /// events but the terminal one (progress, the last preview), a batch at a time; the jobs
    /// stay, marked purged.
    pub async fn purge_images(&self, after: Duration) -> Result<u64, StoreError> {
        self.in_batches(
            after,
            "WITH victims AS (
                 SELECT id FROM jobs WHERE finished_at < now() - make_interval(secs => $1) AND purged_at IS NULL
                 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED),
             images AS (DELETE FROM images WHERE job_id IN (SELECT id FROM victims)),
             init AS (DELETE FROM init_images WHERE job_id IN (SELECT id FROM victims)),
             events AS (DELETE FROM job_events WHERE job_id IN (SELECT id FROM victims)
                        AND kind NOT IN ('succeeded', 'failed', 'canceled'))
             UPDATE jobs SET purged_at = now() WHERE id IN (SELECT id FROM victims)",
        )
        .await
    }

    /// Delete jobs finished more than `after` ago (their images and idempotency keys go with
    /// them), a batch at a time.
    pub async fn purge_jobs(&self, after: Duration) -> Result<u64, StoreError> {
        self.in_batches(
            after,
            "DELETE FROM jobs WHERE id IN (
                 SELECT id FROM jobs WHERE finished_at < now() - make_interval(secs => $1)
                 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .await
    }

    /// Delete idempotency keys older than [`IDEMPOTENCY_TTL_HOURS`] (they are ignored from
    /// then on), a batch at a time; their jobs stay.
    pub async fn purge_idempotency_keys(&self) -> Result<u64, StoreError> {
        self.in_batches(
            Duration::from_secs(3600 * IDEMPOTENCY_TTL_HOURS as u64),
            "DELETE FROM idempotency_keys WHERE (tenant_id, key) IN (
                 SELECT tenant_id, key FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)
                 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .await
    }

    /// Run `sql` (binding `after` in seconds as $1 and [`PURGE_BATCH`] as $2) until a run
    /// touches fewer rows than a batch; the rows touched in all.
    async fn in_batches(&self, after: Duration, sql: &str) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = sqlx::query(sql).bind(after.as_secs_f64()).bind(PURGE_BATCH).execute(self.pool()).await?.rows_affected();
            total += n;
            if n < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Delete the rows of workers stopped, or not heard from, more than `after` ago.
    pub async fn prune_workers(&self, after: Duration) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM workers WHERE coalesce(stopped_at, last_seen) < now() - make_interval(secs => $1)")
            .bind(after.as_secs_f64())
            .execute(self.pool())
            .await?
            .rows_affected())
    }
}
