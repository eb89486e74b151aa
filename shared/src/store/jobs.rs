//! Jobs: submission and reads (scoped to a tenant), the worker's fenced lifecycle (claim,
//! renew, progress, complete, fail, hand back), and recovery (expired leases, queued jobs).
//! Every change to a terminal state is announced on [`JOB_CHANNEL`](super::JOB_CHANNEL).
use std::collections::HashMap;
use std::time::Duration;

use sqlx::types::Json;
use uuid::Uuid;

use super::{Store, StoreError, JOB_CHANNEL};
use crate::job::{Claim, ErrorType, ImageMeta, Job, JobStatus, LeaseState, NewImage, Requeued};
use crate::metrics::{Ended, ENDED_COLUMNS};
use crate::request::GenerationRequest;

/// The columns of a [`Job`]: every query that reads jobs selects (or returns) these.
pub(super) const JOB_COLUMNS: &str =
    "id, tenant_id, model, request, status, cost, attempts, progress_step, progress_total, cancel_requested, error, error_type, error_field, created_at, started_at, finished_at, purged_at, request_id";

use JobStatus::{Canceled, Failed, Queued, Running, Succeeded};

/// The largest queue position reported (the count stops there).
pub const MAX_QUEUE_POSITION: i64 = 1000;

/// Expired leases handled per transaction by recovery.
pub const EXPIRE_BATCH: i64 = 100;

/// A job just claimed, with its lease.
#[derive(sqlx::FromRow)]
struct Claimed {
    #[sqlx(flatten)]
    job: Job,
    lease: Uuid,
    init_image: Option<String>,
}

/// [`Store::cancel`]'s row: the job after the statement, and its status before.
#[derive(sqlx::FromRow)]
struct CancelRow {
    #[sqlx(flatten)]
    job: Job,
    prior_status: JobStatus,
}

/// A job whose lease expired, as recovery moved it (back to the queue, or to its end).
#[derive(sqlx::FromRow)]
struct Expired {
    id: Uuid,
    tenant_id: Uuid,
    model: String,
    status: JobStatus,
    cost: f64,
    created_at: chrono::DateTime<chrono::Utc>,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Store {
    /// Record a new queued job (of cost 1, with no quota: for tests and tools).
    pub async fn insert_job(&self, tenant: Uuid, request: &GenerationRequest) -> Result<Job, StoreError> {
        self.admit_job(tenant, request.clone(), 1.0, None, None).await
    }

    /// Record a new queued job of estimated `cost`, unless the tenant already has `max_queued`
    /// queued or running jobs ([`StoreError::QuotaExceeded`]). Submissions of one tenant are
    /// serialized by a transaction-scoped advisory lock, so concurrent ones cannot overshoot;
    /// the count stops at the quota, so its cost does not grow with the tenant's backlog.
    ///
    /// An init image is stored apart (`init_images`), and the job's request is kept without it:
    /// only [`Store::claim`] reads it back. The request is taken by value so that the image is
    /// moved into the insert, never copied. `request_id` is the submitting request's id, kept
    /// for the worker's logs.
    pub async fn admit_job(
        &self,
        tenant: Uuid,
        mut request: GenerationRequest,
        cost: f64,
        max_queued: Option<i64>,
        request_id: Option<&str>,
    ) -> Result<Job, StoreError> {
        let init_image = request.init_image.take();
        let mut tx = self.pool().begin().await?;
        if let Some(max) = max_queued {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))").bind(tenant).execute(&mut *tx).await?;
            let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM (SELECT 1 FROM jobs WHERE tenant_id = $1 AND status IN ($2, $3) LIMIT $4) AS unfinished")
                .bind(tenant)
                .bind(Queued)
                .bind(Running)
                .bind(max)
                .fetch_one(&mut *tx)
                .await?;
            if n >= max {
                return Err(StoreError::QuotaExceeded { max_queued: max });
            }
        }
        let job: Job = sqlx::query_as(&format!(
            "INSERT INTO jobs (id, tenant_id, model, request, cost, request_id) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {JOB_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(tenant)
        .bind(&request.model)
        .bind(Json(&request))
        .bind(cost)
        .bind(request_id)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(image) = init_image {
            sqlx::query("INSERT INTO init_images (job_id, image) VALUES ($1, $2)").bind(job.id).bind(image).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(job)
    }

    /// One of the tenant's jobs; another tenant's job is not found.
    pub async fn job(&self, tenant: Uuid, id: Uuid) -> Result<Option<Job>, StoreError> {
        Ok(sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2"))
            .bind(id)
            .bind(tenant)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The tenant's jobs, newest first, older than `before` when given.
    pub async fn list_jobs(&self, tenant: Uuid, before: Option<Uuid>, limit: i64) -> Result<Vec<Job>, StoreError> {
        Ok(sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"))
            .bind(tenant)
            .bind(before)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// Where a queued job stands in its tenant's own line: how many of the tenant's queued jobs
    /// for the same model are older (0: next of this tenant's). Other tenants' queues are neither
    /// counted nor revealed (fair queuing interleaves them), and the count stops at
    /// [`MAX_QUEUE_POSITION`], so its cost does not grow with the backlog.
    pub async fn queue_position(&self, job: &Job) -> Result<i64, StoreError> {
        let (pos,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = $4 AND model = $1 AND tenant_id = $2 AND id < $3 LIMIT $5) AS ahead")
                .bind(&job.model)
                .bind(job.tenant_id)
                .bind(job.id)
                .bind(Queued)
                .bind(MAX_QUEUE_POSITION)
                .fetch_one(self.pool())
                .await?;
        Ok(pos)
    }

    pub async fn images(&self, job: Uuid) -> Result<Vec<ImageMeta>, StoreError> {
        Ok(sqlx::query_as("SELECT idx, seed, format, width, height FROM images WHERE job_id = $1 ORDER BY idx").bind(job).fetch_all(self.pool()).await?)
    }

    /// The image metadata of several jobs in one query, by job.
    pub async fn images_of(&self, jobs: &[Uuid]) -> Result<HashMap<Uuid, Vec<ImageMeta>>, StoreError> {
        let mut out: HashMap<Uuid, Vec<ImageMeta>> = HashMap::new();
        if jobs.is_empty() {
            return Ok(out);
        }
        let rows: Vec<(Uuid, i32, i64, String, i32, i32)> =
            sqlx::query_as("SELECT job_id, idx, seed, format, width, height FROM images WHERE job_id = ANY ($1) ORDER BY job_id, idx")
                .bind(jobs)
                .fetch_all(self.pool())
                .await?;
        for (job, idx, seed, format, width, height) in rows {
            out.entry(job).or_default().push(ImageMeta { idx, seed, format, width, height });
        }
        Ok(out)
    }

    /// All images of a job with their bytes.
    pub async fn images_with_bytes(&self, job: Uuid) -> Result<Vec<(ImageMeta, Vec<u8>)>, StoreError> {
        let rows: Vec<(i32, i64, String, i32, i32, Vec<u8>)> =
            sqlx::query_as("SELECT idx, seed, format, width, height, bytes FROM images WHERE job_id = $1 ORDER BY idx")
                .bind(job)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|(idx, seed, format, width, height, bytes)| (ImageMeta { idx, seed, format, width, height }, bytes)).collect())
    }

    /// One image's format and bytes, scoped to the tenant.
    pub async fn image(&self, tenant: Uuid, job: Uuid, idx: i32) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Ok(sqlx::query_as("SELECT i.format, i.bytes FROM images i JOIN jobs j ON j.id = i.job_id WHERE i.job_id = $1 AND j.tenant_id = $2 AND i.idx = $3")
            .bind(job)
            .bind(tenant)
            .bind(idx)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Cancel: a queued job ends at once; a running one is flagged and stops at its next step.
    pub async fn cancel(&self, tenant: Uuid, id: Uuid) -> Result<Option<Job>, StoreError> {
        let mut tx = self.pool().begin().await?;
        // `prior` locks the row and tells whether this statement is the one that ended the job.
        let row: Option<CancelRow> = sqlx::query_as(&format!(
            "WITH prior AS (SELECT id AS prior_id, status AS prior_status FROM jobs WHERE id = $1 AND tenant_id = $2 FOR UPDATE)
             UPDATE jobs SET
                 status = CASE WHEN status = $3 THEN $5 ELSE status END,
                 finished_at = CASE WHEN status = $3 THEN now() ELSE finished_at END,
                 cancel_requested = CASE WHEN status IN ($3, $4) THEN true ELSE cancel_requested END
             FROM prior WHERE jobs.id = prior.prior_id RETURNING {JOB_COLUMNS}, prior_status"
        ))
        .bind(id)
        .bind(tenant)
        .bind(Queued)
        .bind(Running)
        .bind(Canceled)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = &row {
            notify(&mut tx, r.job.id).await?;
        }
        tx.commit().await?;
        Ok(row.map(|CancelRow { job, prior_status }| {
            if prior_status == Queued {
                Ended::of(&job).record();
            }
            job
        }))
    }

    /// Take a queued job: a fresh lease (fencing token) that expires unless renewed.
    pub async fn claim(&self, job: Uuid, worker: Uuid, ttl: Duration) -> Result<Option<Claim>, StoreError> {
        let row: Option<Claimed> = sqlx::query_as(&format!(
            "UPDATE jobs SET status = $6, lease = $2, lease_expires_at = now() + make_interval(secs => $4),
                 worker_id = $3, attempts = attempts + 1, started_at = now(), progress_step = 0, error = NULL
             WHERE id = $1 AND status = $5 AND NOT cancel_requested
             RETURNING {JOB_COLUMNS}, lease, (SELECT image FROM init_images WHERE job_id = jobs.id) AS init_image"
        ))
        .bind(job)
        .bind(Uuid::new_v4())
        .bind(worker)
        .bind(secs(ttl))
        .bind(Queued)
        .bind(Running)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|Claimed { job, lease, init_image }| Claim {
            job_id: job.id,
            tenant_id: job.tenant_id,
            model: job.model,
            lease,
            attempts: job.attempts,
            request: GenerationRequest { init_image, ..job.request },
            cost: job.cost,
            request_id: job.request_id,
        }))
    }

    /// Extend the lease; tells whether it is still held and whether cancel was asked.
    pub async fn renew(&self, job: Uuid, lease: Uuid, ttl: Duration) -> Result<LeaseState, StoreError> {
        let row: Option<(bool,)> = sqlx::query_as(
            "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3)
             WHERE id = $1 AND lease = $2 AND status = $4 RETURNING cancel_requested",
        )
        .bind(job)
        .bind(lease)
        .bind(secs(ttl))
        .bind(Running)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(cancel,)| LeaseState::Held { cancel }).unwrap_or(LeaseState::Lost))
    }

    /// Record progress (step of total) while holding the lease.
    pub async fn progress(&self, job: Uuid, lease: Uuid, step: i32, total: i32) -> Result<LeaseState, StoreError> {
        let row: Option<(bool,)> = sqlx::query_as(
            "UPDATE jobs SET progress_step = $3, progress_total = $4
             WHERE id = $1 AND lease = $2 AND status = $5 RETURNING cancel_requested",
        )
        .bind(job)
        .bind(lease)
        .bind(step)
        .bind(total)
        .bind(Running)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(cancel,)| LeaseState::Held { cancel }).unwrap_or(LeaseState::Lost))
    }

    /// Finish a job with its images, only if `lease` still holds it. Returns false (and writes
    /// nothing) for a worker that lost its lease: every job gets exactly one result.
    pub async fn complete(&self, job: Uuid, lease: Uuid, images: &[NewImage]) -> Result<bool, StoreError> {
        self.complete_timed(job, lease, images, None).await
    }

    /// [`Store::complete`], also recording the worker's compute time.
    pub async fn complete_timed(&self, job: Uuid, lease: Uuid, images: &[NewImage], compute: Option<Duration>) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let ended: Option<Ended> = sqlx::query_as(&format!(
            "UPDATE jobs SET status = $5, finished_at = now(), lease = NULL, lease_expires_at = NULL,
                 progress_step = progress_total, compute_ms = coalesce($3, compute_ms)
             WHERE id = $1 AND lease = $2 AND status = $4 RETURNING {ENDED_COLUMNS}"
        ))
        .bind(job)
        .bind(lease)
        .bind(compute.map(|d| d.as_secs_f64() * 1e3))
        .bind(Running)
        .bind(Succeeded)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(ended) = ended else {
            return Ok(false);
        };
        for img in images {
            sqlx::query("INSERT INTO images (job_id, idx, seed, format, width, height, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(job)
                .bind(img.idx)
                .bind(img.seed as i64)
                .bind(&img.format)
                .bind(img.width as i32)
                .bind(img.height as i32)
                .bind(&img.bytes)
                .execute(&mut *tx)
                .await?;
        }
        notify(&mut tx, job).await?;
        tx.commit().await?;
        ended.record();
        if let Some(compute) = compute {
            crate::metrics::record_compute(&ended.model, compute);
        }
        Ok(true)
    }

    /// A failed attempt: back to the queue while attempts remain (and `retry`), else `failed`
    /// with `error_type` and `error_field`, the request field the error is about (both stay NULL
    /// unless the job ends failed). Returns the new status, or `None` when the lease was already
    /// lost.
    #[allow(clippy::too_many_arguments)]
    pub async fn fail(
        &self,
        job: Uuid,
        lease: Uuid,
        error_type: ErrorType,
        error_field: Option<&str>,
        error: &str,
        retry: bool,
        max_attempts: i32,
    ) -> Result<Option<JobStatus>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let ended: Option<Ended> = sqlx::query_as(&format!(
            "UPDATE jobs SET
                 status = CASE WHEN $4 AND attempts < $5 AND NOT cancel_requested THEN $7
                               WHEN cancel_requested THEN $8 ELSE $9 END,
                 error = $3, lease = NULL, lease_expires_at = NULL, worker_id = NULL,
                 error_type = CASE WHEN ($4 AND attempts < $5) OR cancel_requested THEN NULL ELSE $10 END,
                 error_field = CASE WHEN ($4 AND attempts < $5) OR cancel_requested THEN NULL ELSE $11 END,
                 finished_at = CASE WHEN $4 AND attempts < $5 AND NOT cancel_requested THEN NULL ELSE now() END
             WHERE id = $1 AND lease = $2 AND status = $6 RETURNING {ENDED_COLUMNS}"
        ))
        .bind(job)
        .bind(lease)
        .bind(error)
        .bind(retry)
        .bind(max_attempts)
        .bind(Running)
        .bind(Queued)
        .bind(Canceled)
        .bind(Failed)
        .bind(error_type.as_str())
        .bind(error_field)
        .fetch_optional(&mut *tx)
        .await?;
        if matches!(&ended, Some(e) if e.status.is_terminal()) {
            notify(&mut tx, job).await?;
        }
        tx.commit().await?;
        Ok(ended.map(|e| {
            e.record();
            e.status
        }))
    }

    /// The client canceled a running job and the worker stopped: record it.
    pub async fn mark_canceled(&self, job: Uuid, lease: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let ended: Option<Ended> = sqlx::query_as(&format!(
            "UPDATE jobs SET status = $4, finished_at = now(), lease = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease = $2 AND status = $3 RETURNING {ENDED_COLUMNS}"
        ))
        .bind(job)
        .bind(lease)
        .bind(Running)
        .bind(Canceled)
        .fetch_optional(&mut *tx)
        .await?;
        if ended.is_some() {
            notify(&mut tx, job).await?;
        }
        tx.commit().await?;
        if let Some(e) = &ended {
            e.record();
        }
        Ok(ended.is_some())
    }

    /// A worker shutting down hands its job back: queued again, the attempt not counted; or,
    /// when the client asked to cancel it meanwhile, canceled (a canceled job is never claimed
    /// again, so queuing it would leave it queued forever). Returns the new status, or `None`
    /// when the lease was already lost.
    pub async fn release(&self, job: Uuid, lease: Uuid) -> Result<Option<JobStatus>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let ended: Option<Ended> = sqlx::query_as(&format!(
            "UPDATE jobs SET status = CASE WHEN cancel_requested THEN $5 ELSE $4 END,
                 finished_at = CASE WHEN cancel_requested THEN now() ELSE NULL END,
                 lease = NULL, lease_expires_at = NULL, worker_id = NULL,
                 attempts = greatest(attempts - 1, 0), progress_step = 0,
                 started_at = CASE WHEN cancel_requested THEN started_at ELSE NULL END
             WHERE id = $1 AND lease = $2 AND status = $3 RETURNING {ENDED_COLUMNS}"
        ))
        .bind(job)
        .bind(lease)
        .bind(Running)
        .bind(Queued)
        .bind(Canceled)
        .fetch_optional(&mut *tx)
        .await?;
        if matches!(&ended, Some(e) if e.status == Canceled) {
            notify(&mut tx, job).await?;
        }
        tx.commit().await?;
        Ok(ended.map(|e| {
            e.record();
            e.status
        }))
    }

    /// Recovery: running jobs whose lease expired go back to the queue, or fail after
    /// `max_attempts` deliveries (or end canceled if cancel was asked). Returns them all.
    ///
    /// It works in batches of [`EXPIRE_BATCH`], each its own short transaction that skips rows
    /// another transaction holds (a worker frozen inside its completion, another process's
    /// recovery): such a row waits for a later pass instead of stalling recovery everywhere.
    pub async fn expire_leases(&self, max_attempts: i32) -> Result<Vec<Requeued>, StoreError> {
        let mut all = Vec::new();
        loop {
            let batch = self.expire_lease_batch(max_attempts).await?;
            let done = batch.len() < EXPIRE_BATCH as usize;
            all.extend(batch);
            if done {
                return Ok(all);
            }
        }
    }

    async fn expire_lease_batch(&self, max_attempts: i32) -> Result<Vec<Requeued>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let rows: Vec<Expired> = sqlx::query_as(
            "UPDATE jobs SET
                 status = CASE WHEN cancel_requested THEN $3 WHEN attempts >= $1 THEN $4 ELSE $5 END,
                 error = CASE WHEN cancel_requested THEN error
                              WHEN attempts >= $1 THEN format('the worker stopped responding on all %s deliveries', attempts)
                              ELSE format('the worker stopped responding (delivery %s); retrying', attempts) END,
                 error_type = CASE WHEN NOT cancel_requested AND attempts >= $1 THEN $7 END,
                 finished_at = CASE WHEN cancel_requested OR attempts >= $1 THEN now() ELSE NULL END,
                 lease = NULL, lease_expires_at = NULL, worker_id = NULL, progress_step = 0
             WHERE id IN (SELECT id FROM jobs WHERE status = $2 AND lease_expires_at < now()
                          ORDER BY lease_expires_at LIMIT $6 FOR UPDATE SKIP LOCKED)
             RETURNING id, tenant_id, model, status, cost, created_at, started_at, finished_at",
        )
        .bind(max_attempts)
        .bind(Running)
        .bind(Canceled)
        .bind(Failed)
        .bind(Queued)
        .bind(EXPIRE_BATCH)
        .bind(ErrorType::LeaseExpired.as_str())
        .fetch_all(&mut *tx)
        .await?;
        for r in rows.iter().filter(|r| r.status.is_terminal()) {
            notify(&mut tx, r.id).await?;
        }
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                Ended { model: r.model.clone(), status: r.status, created_at: r.created_at, started_at: r.started_at, finished_at: r.finished_at }.record();
                Requeued { id: r.id, tenant_id: r.tenant_id, model: r.model, status: r.status, cost: r.cost }
            })
            .collect())
    }

    /// Every queued job, oldest first: what Redis must deliver.
    pub async fn queued_jobs(&self) -> Result<Vec<Requeued>, StoreError> {
        Ok(sqlx::query_as("SELECT id, tenant_id, model, status, cost FROM jobs WHERE status = $1 AND NOT cancel_requested ORDER BY id")
            .bind(Queued)
            .fetch_all(self.pool())
            .await?)
    }

    /// The tenant's current job (its oldest running one, else its oldest queued one) and how
    /// many unfinished jobs it has, counted up to [`MAX_QUEUE_POSITION`]: two bounded reads,
    /// however long the tenant's backlog.
    pub async fn current_job(&self, tenant: Uuid) -> Result<(Option<Job>, i64), StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND status = $2 ORDER BY id LIMIT 1");
        let oldest = |status: JobStatus| sqlx::query_as::<_, Job>(&sql).bind(tenant).bind(status).fetch_optional(self.pool());
        let current = match oldest(Running).await? {
            Some(job) => Some(job),
            None => oldest(Queued).await?,
        };
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM (SELECT 1 FROM jobs WHERE tenant_id = $1 AND status IN ($2, $3) LIMIT $4) AS unfinished")
            .bind(tenant)
            .bind(Queued)
            .bind(Running)
            .bind(MAX_QUEUE_POSITION)
            .fetch_one(self.pool())
            .await?;
        Ok((current, count))
    }

    /// Flag every running job of the tenant to stop at its next step (queued ones are left);
    /// how many were flagged. One statement: nothing is loaded.
    pub async fn interrupt_running(&self, tenant: Uuid) -> Result<u64, StoreError> {
        Ok(sqlx::query("UPDATE jobs SET cancel_requested = true WHERE tenant_id = $1 AND status = $2 AND NOT cancel_requested")
            .bind(tenant)
            .bind(Running)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// A job's init image (base64, as submitted), unless it has none or retention deleted it.
    pub async fn init_image(&self, job: Uuid) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_as::<_, (String,)>("SELECT image FROM init_images WHERE job_id = $1").bind(job).fetch_optional(self.pool()).await?.map(|(i,)| i))
    }

    /// The worker's compute time of a finished job, in milliseconds.
    pub async fn compute_time_ms(&self, job: Uuid) -> Result<Option<f64>, StoreError> {
        Ok(sqlx::query_as::<_, (Option<f64>,)>("SELECT compute_ms FROM jobs WHERE id = $1").bind(job).fetch_optional(self.pool()).await?.and_then(|(ms,)| ms))
    }

    /// The cost of a job that is still queued (`None` once it is not).
    pub async fn queued_cost(&self, id: Uuid) -> Result<Option<f64>, StoreError> {
        Ok(sqlx::query_as::<_, (f64,)>("SELECT cost FROM jobs WHERE id = $1 AND status = $2")
            .bind(id)
            .bind(Queued)
            .fetch_optional(self.pool())
            .await?
            .map(|(c,)| c))
    }

    /// Every running job, as (tenant, job).
    pub async fn running_jobs(&self) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        Ok(sqlx::query_as("SELECT tenant_id, id FROM jobs WHERE status = $1").bind(Running).fetch_all(self.pool()).await?)
    }

    pub async fn job_status(&self, id: Uuid) -> Result<Option<JobStatus>, StoreError> {
        Ok(sqlx::query_as::<_, (JobStatus,)>("SELECT status FROM jobs WHERE id = $1").bind(id).fetch_optional(self.pool()).await?.map(|(s,)| s))
    }

    /// Of `ids`, those that have reached a terminal state (one query for all waiters).
    pub async fn finished_among(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        let rows: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM jobs WHERE id = ANY ($1) AND status IN ($2, $3, $4)")
            .bind(ids)
            .bind(Succeeded)
            .bind(Failed)
            .bind(Canceled)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

async fn notify(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, job: Uuid) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(JOB_CHANNEL).bind(job.to_string()).execute(&mut **tx).await?;
    Ok(())
}
