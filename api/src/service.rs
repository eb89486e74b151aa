//! The boundary between HTTP and the backends: every operation a route (of any dialect) performs,
//! in terms of tenants, canonical requests and jobs. Handlers translate HTTP to these calls and
//! the results to their JSON; nothing above this module touches the store or the queue.
use std::sync::Arc;
use std::time::Duration;

use darkroom_shared::cost;
use darkroom_shared::family::Family;
use darkroom_shared::job::{ErrorType, ImageMeta, Job, JobStatus};
use darkroom_shared::queue::Queue;
use darkroom_shared::ratelimit::{Rate, RateLimiter};
use darkroom_shared::request::GenerationRequest;
use darkroom_shared::store::{request_hash, KeyUse, ModelInfo, Store, Tenant, IDEMPOTENCY_TTL_HOURS};
use darkroom_shared::validate::{self, Limits};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cli::TenantDefaults;
use crate::error::ApiError;
use crate::limits::Effective;
use crate::wait::Listeners;

pub mod events;
mod status;
pub use events::{FollowItem, Followed};
mod webhook;
pub use status::ModelState;

/// Limits and windows the service applies.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The largest request body, and the most bytes a decoded init image may take.
    pub max_body_bytes: usize,
    /// The longest a request may wait for its job (`Prefer: wait`).
    pub max_wait: Duration,
    /// A worker is live while its heartbeat is at most this old.
    pub worker_live: Duration,
    /// The model the dialects without a model field run (Hugging Face endpoint handler).
    pub default_model: Option<String>,
    /// Names the dialects accept for catalog models (alias, model id), e.g. Hyperbolic's `SD1.5`.
    pub model_aliases: Vec<(String, String)>,
    /// The limits of tenants that have none of their own.
    pub tenant_defaults: TenantDefaults,
    /// The largest job accepted, in cost units (`darkroom_shared::cost`).
    pub max_job_cost: f64,
    /// The most requests of one tenant that may wait for their jobs at once (in this process).
    pub max_waiting: u32,
    /// The most event streams one tenant may have open at once (in this process).
    pub max_event_streams: u32,
    /// Comment lines keep an idle event stream open through proxies this often.
    pub event_keepalive: Duration,
    /// The longest a client may take to send a request body.
    pub body_read_timeout: Duration,
    /// Bounds on a tenant's stored A1111 options.
    pub max_options_keys: u32,
    pub max_options_bytes: u32,
    /// A model's cold-start estimate is the median of its newest this many recorded start-ups...
    pub load_estimate_window: u32,
    /// ...or this, when none was ever recorded.
    pub default_load: Duration,
    /// Where webhooks may point (checked at submission).
    pub webhook_guard: crate::webhooks::guard::Guard,
}

/// A job with what its views show: image metadata and, while queued, its queue position.
#[derive(Clone, Debug)]
pub struct JobDetails {
    pub job: Job,
    pub images: Vec<ImageMeta>,
    pub queue_position: Option<i64>,
}

/// A job with its images' bytes (what a finished wait answers).
#[derive(Clone, Debug)]
pub struct JobWithImages {
    pub job: Job,
    pub images: Vec<(ImageMeta, Vec<u8>)>,
}

/// What to submit: the canonical request, and the cache key that later identical requests
/// may be answered from (Hugging Face's `x-use-cache`).
#[derive(Clone, Debug)]
pub struct Submission {
    pub request: GenerationRequest,
    pub cache_key: Option<Vec<u8>>,
    /// The client's `Idempotency-Key`: a second submission with the key and the same request
    /// gets the first one's job.
    pub idempotency_key: Option<String>,
}

impl From<GenerationRequest> for Submission {
    fn from(request: GenerationRequest) -> Self {
        Submission { request, cache_key: None, idempotency_key: None }
    }
}

/// How long [`Service::submit_and_wait`] waits, and what a wait that runs out gives.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    /// `Prefer: wait=N` (capped at `--max-wait-secs`; zero: no wait): then the job as it stands.
    UpTo(Duration),
    /// A dialect that blocks until its job ends, for at most this long: then the job is
    /// canceled and the request fails.
    UntilDone(Duration),
}

/// A job after [`Service::submit_and_wait`].
#[derive(Debug)]
pub enum Outcome {
    /// Finished (succeeded, failed or canceled), with its images' bytes.
    Done(JobWithImages),
    /// Still queued or running when the wait ended.
    Pending(JobDetails),
    /// The job an earlier submission with the same `Idempotency-Key` and request made, as it
    /// stands.
    Replayed(JobDetails),
}

impl JobWithImages {
    /// The job if it succeeded; a failed or canceled one as [`JobWithImages::failure`].
    pub fn succeeded(self) -> Result<JobWithImages, ApiError> {
        match self.job.status {
            JobStatus::Succeeded => Ok(self),
            _ => Err(self.failure()),
        }
    }

    /// Why the job ended without images. A request only the worker could refuse (a prompt
    /// longer than the model's UNet takes, say) failed `invalid_request` with the field it names
    /// recorded (`error_field`): that is the client's error, a 422 naming the field; anything
    /// else is [`ApiError::JobFailed`].
    pub fn failure(&self) -> ApiError {
        let message = self.job.error.clone().unwrap_or_else(|| "no detail".into());
        let invalid = self.job.status == JobStatus::Failed && self.job.error_type.as_deref() == Some(ErrorType::InvalidRequest.as_str());
        match &self.job.error_field {
            Some(field) if invalid => {
                // The worker's message starts with the field it names ("prompt: ..."); the
                // dialects' error shapes carry the field apart.
                let detail = message.strip_prefix(&format!("{field}: ")).unwrap_or(&message).to_string();
                ApiError::Parameter { field: field.clone().into(), message: detail }
            }
            _ => ApiError::JobFailed { status: self.job.status, message },
        }
    }

    /// Seconds from the job's start to its end (0 when unknown).
    pub fn elapsed_secs(&self) -> f64 {
        match (self.job.started_at, self.job.finished_at) {
            (Some(s), Some(f)) => (f - s).num_milliseconds().max(0) as f64 / 1000.0,
            _ => 0.0,
        }
    }
}

/// One page of a tenant's jobs, and the cursor of the next page.
#[derive(Clone, Debug)]
pub struct JobPage {
    pub jobs: Vec<JobDetails>,
    pub next: Option<Uuid>,
}

/// Whether each backend answers.
#[derive(Clone, Debug)]
pub struct Readiness {
    pub postgres: Result<(), String>,
    pub redis: Result<(), String>,
}

/// The job service as the HTTP layer sees it.
pub struct Service {
    store: Store,
    queue: Queue,
    rate_limiter: RateLimiter,
    waiters: Listeners,
    waiting: WaitingRequests,
    /// Event streams open per tenant (`--max-event-streams`).
    streams: WaitingRequests,
    settings: Settings,
    shutdown: CancellationToken,
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no job {id}"))
}

impl Service {
    pub fn new(store: Store, queue: Queue, waiters: Listeners, settings: Settings, shutdown: CancellationToken) -> Arc<Service> {
        let rate_limiter = RateLimiter::new(queue.pool().clone(), queue.prefix());
        let (waiting, streams) = (WaitingRequests::new("max_waiting"), WaitingRequests::new("max_event_streams"));
        Arc::new(Service { store, queue, rate_limiter, waiters, waiting, streams, settings, shutdown })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The tenant an API token belongs to, if it is known and not revoked.
    pub async fn tenant_for_token(&self, token: &str) -> Result<Option<Tenant>, ApiError> {
        Ok(self.store.tenant_for_token(token).await?)
    }

    /// The model catalog with live worker counts: read once per request, and handed to
    /// [`Service::submit`] and [`Service::submit_and_wait`].
    pub async fn catalog(&self) -> Result<Vec<ModelInfo>, ApiError> {
        Ok(self.store.list_models(self.settings.worker_live).await?)
    }

    /// The catalog id a dialect's model name stands for: a configured alias, or the name itself.
    pub fn resolve_alias(&self, name: &str) -> String {
        self.settings.model_aliases.iter().find(|(alias, _)| alias == name).map(|(_, id)| id.clone()).unwrap_or_else(|| name.to_string())
    }

    /// Validate `request` against `catalog`, store it as a queued job, then enqueue it. A
    /// failed enqueue (Redis down) still leaves a queued job: recovery finds it in Postgres and
    /// enqueues it once Redis answers.
    ///
    /// Admission comes first: the tenant's rate limit (every route that creates work comes
    /// here), then, once the request is valid, its quota of queued and running jobs.
    pub async fn submit(&self, tenant: &Tenant, request: GenerationRequest, catalog: &[ModelInfo]) -> Result<Job, ApiError> {
        let effective = Effective::of(&tenant.limits, &self.settings.tenant_defaults);
        self.check_rate(tenant.id, effective.rate).await?;
        let limits = Limits { max_init_image_bytes: self.settings.max_body_bytes as u64 };
        let request = if request.init_image.is_some() {
            // Decoding an image is CPU work: keep it off the async executor.
            let catalog = catalog.to_vec();
            tokio::task::spawn_blocking(move || validate::validate(&request, &catalog, &limits))
                .await
                .map_err(|e| ApiError::Internal(format!("validation task: {e}")))??
        } else {
            validate::validate(&request, catalog, &limits)?
        };
        self.check_webhook(tenant, request.webhook.as_deref()).await?;
        let family = catalog.iter().find(|m| m.id == request.model).map(|m| m.family).unwrap_or(Family::Sd);
        let cost = cost::job_cost(&request, family);
        if cost > self.settings.max_job_cost {
            return Err(ApiError::Parameter {
                field: "max_job_cost".into(),
                message: format!(
                    "the job's estimated cost, {cost:.0} (steps × image size × images; see the README), is over this deployment's max_job_cost of {:.0}: ask for fewer steps, images or pixels",
                    self.settings.max_job_cost
                ),
            });
        }
        let quota = (effective.max_queued > 0).then_some(i64::from(effective.max_queued));
        let job = self.store.admit_job(tenant.id, request, cost, quota, crate::request_id::current().as_deref()).await?;
        let queued = async {
            self.queue.set_limits(&[(tenant.id, effective.scheduling())]).await?;
            self.queue.enqueue(&job.model, tenant.id, job.id, cost).await
        };
        if let Err(e) = queued.await {
            tracing::warn!(job = %job.id, "could not enqueue the job in Redis ({e}); it stays queued in Postgres and recovery enqueues it");
        }
        Ok(job)
    }

    /// Count a request against the tenant's rate. While Redis cannot be reached, requests are
    /// let through (logged): the quota in Postgres still bounds what a tenant can queue.
    async fn check_rate(&self, tenant: Uuid, rate: Rate) -> Result<(), ApiError> {
        match self.rate_limiter.take(tenant, rate).await {
            Ok(d) if d.allowed => Ok(()),
            Ok(d) => Err(ApiError::RateLimited { retry_after: d.retry_after, rate }),
            Err(e) => {
                tracing::warn!(%tenant, "rate limit not checked, Redis does not answer: {e}");
                Ok(())
            }
        }
    }

    /// Submit `submission` and wait for its job as `wait` says: the one submit-and-wait of
    /// `Prefer: wait` and of every dialect that blocks. A finished job comes back with its
    /// images' bytes, whatever its status. A wait that runs out gives, for [`Wait::UpTo`], the
    /// job as it stands, and for [`Wait::UntilDone`] a [`ApiError::WaitExpired`] after canceling
    /// the job. A server shutting down ends the wait: the job as it stands for `UpTo`, and
    /// [`ApiError::ShuttingDown`] for `UntilDone` (the job goes on).
    pub async fn submit_and_wait(&self, tenant: &Tenant, submission: Submission, catalog: &[ModelInfo], wait: Wait) -> Result<Outcome, ApiError> {
        // A request that will wait holds a place among the tenant's waiting requests.
        let _waiting = match wait {
            Wait::UpTo(d) if d.is_zero() => None,
            _ => Some(self.waiting.enter(tenant.id, self.settings.max_waiting)?),
        };
        let job = match &submission.idempotency_key {
            None => self.submit(tenant, submission.request, catalog).await?,
            Some(key) => match self.submit_once(tenant, key, submission.request, catalog).await? {
                (job, false) => job,
                // The same request again: its job as it stands, without a second wait.
                (job, true) => return Ok(Outcome::Replayed(self.details(job).await?)),
            },
        };
        let tenant = tenant.id;
        if let Some(key) = &submission.cache_key {
            self.store.set_cache_key(job.id, key).await?;
        }
        let limit = match wait {
            Wait::UpTo(d) if d.is_zero() => return Ok(Outcome::Pending(self.details(job).await?)),
            Wait::UpTo(d) => d.min(self.settings.max_wait),
            Wait::UntilDone(d) => d,
        };
        // A blocking request whose client goes away (its future is dropped) cancels its job:
        // nobody else can receive the answer.
        let mut orphan = CancelOnDrop { store: self.store.clone(), tenant, job: job.id, armed: matches!(wait, Wait::UntilDone(_)) };
        let job = self.wait_for(tenant, job.id, limit).await;
        orphan.armed = false;
        let job = job?;
        if job.status.is_terminal() {
            return Ok(Outcome::Done(self.with_images(job).await?));
        }
        match wait {
            Wait::UpTo(_) => Ok(Outcome::Pending(self.details(job).await?)),
            Wait::UntilDone(_) if self.shutdown.is_cancelled() => Err(ApiError::ShuttingDown(job.id)),
            Wait::UntilDone(limit) => {
                if let Err(e) = self.store.cancel(tenant, job.id).await {
                    tracing::warn!(job = %job.id, "could not cancel a job that outlived its wait: {e}");
                }
                Err(ApiError::WaitExpired { secs: limit.as_secs() })
            }
        }
    }

    /// Submit under an `Idempotency-Key`: the key's job when it was used with the same request
    /// (within [`IDEMPOTENCY_TTL_HOURS`]), a 422 naming the header when with another, else a new
    /// job bound to the key. Two racing first uses make one job: the loser's is canceled.
    /// Returns the job and whether it is the key's earlier one.
    async fn submit_once(&self, tenant: &Tenant, key: &str, request: GenerationRequest, catalog: &[ModelInfo]) -> Result<(Job, bool), ApiError> {
        let hash = request_hash(&request);
        let mismatch = || ApiError::Parameter {
            field: "Idempotency-Key".into(),
            message: format!("Idempotency-Key {key:?} was used with a different request in the last {IDEMPOTENCY_TTL_HOURS} hours; use a new key"),
        };
        let existing = |id: Uuid| async move { Ok((self.store.job(tenant.id, id).await?.ok_or_else(|| not_found(id))?, true)) };
        match self.store.idempotency_key(tenant.id, key, &hash).await? {
            KeyUse::Replay(id) => return existing(id).await,
            KeyUse::Mismatch => return Err(mismatch()),
            KeyUse::New => {}
        }
        let job = self.submit(tenant, request, catalog).await?;
        match self.store.bind_idempotency_key(tenant.id, key, &hash, job.id).await? {
            KeyUse::New => Ok((job, false)),
            lost => {
                self.store.cancel(tenant.id, job.id).await?;
                match lost {
                    KeyUse::Replay(id) => existing(id).await,
                    _ => Err(mismatch()),
                }
            }
        }
    }

    /// [`Service::submit_and_wait`] for the dialects that block until the job ends (at most
    /// `limit`): the finished job, whatever its status.
    pub async fn run_to_end(&self, tenant: &Tenant, submission: Submission, catalog: &[ModelInfo], limit: Duration) -> Result<JobWithImages, ApiError> {
        match self.submit_and_wait(tenant, submission, catalog, Wait::UntilDone(limit)).await? {
            Outcome::Done(done) => Ok(done),
            Outcome::Pending(d) | Outcome::Replayed(d) => Err(ApiError::Internal(format!("the wait for job {} ended while it was unfinished", d.job.id))),
        }
    }

    /// Wait until the job is finished, `timeout` passes or the server shuts down, then return
    /// the job as it stands. Wake-ups come from the listener and the sweep (see `wait`). While
    /// Postgres is unavailable (a restart) the wait goes on: the listener wakes every waiter
    /// once it has reconnected; only a wait that ends during the outage fails (503).
    async fn wait_for(&self, tenant: Uuid, id: Uuid, timeout: Duration) -> Result<Job, ApiError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut registration = self.waiters.finished.register(id);
            let ending = || Instant::now() >= deadline || self.shutdown.is_cancelled();
            match self.store.job(tenant, id).await {
                Ok(Some(job)) if job.status.is_terminal() || ending() => return Ok(job),
                Ok(Some(_)) => {}
                Ok(None) => return Err(not_found(id)),
                Err(e) if e.is_unavailable() && !ending() => tracing::warn!(job = %id, "a waiter could not read its job ({e}); waiting on"),
                Err(e) => return Err(e.into()),
            }
            tokio::select! {
                _ = registration.woken() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    /// One of the tenant's jobs, with its images and (while queued) its queue position.
    pub async fn job(&self, tenant: Uuid, id: Uuid) -> Result<JobDetails, ApiError> {
        let job = self.store.job(tenant, id).await?.ok_or_else(|| not_found(id))?;
        self.details(job).await
    }

    /// What the views show of `job`: its images and, while queued, its queue position.
    pub async fn details(&self, job: Job) -> Result<JobDetails, ApiError> {
        let queue_position = match job.status {
            JobStatus::Queued => Some(self.store.queue_position(&job).await?),
            _ => None,
        };
        let images = match job.status {
            JobStatus::Succeeded => self.store.images(job.id).await?,
            _ => Vec::new(),
        };
        Ok(JobDetails { job, images, queue_position })
    }

    /// A finished job with its images' bytes.
    pub async fn with_images(&self, job: Job) -> Result<JobWithImages, ApiError> {
        let images = match job.status {
            JobStatus::Succeeded => self.store.images_with_bytes(job.id).await?,
            _ => Vec::new(),
        };
        Ok(JobWithImages { job, images })
    }

    /// The tenant's jobs, newest first, `limit` at a time, older than `before` when given.
    pub async fn list(&self, tenant: Uuid, before: Option<Uuid>, limit: usize) -> Result<JobPage, ApiError> {
        let mut jobs = self.store.list_jobs(tenant, before, limit as i64 + 1).await?;
        let next = if jobs.len() > limit {
            jobs.truncate(limit);
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        let ids: Vec<Uuid> = jobs.iter().filter(|j| j.status == JobStatus::Succeeded).map(|j| j.id).collect();
        let mut images = self.store.images_of(&ids).await?;
        let jobs = jobs
            .into_iter()
            .map(|job| {
                let images = images.remove(&job.id).unwrap_or_default();
                JobDetails { job, images, queue_position: None }
            })
            .collect();
        Ok(JobPage { jobs, next })
    }

    /// Cancel: a queued job ends at once, a running one stops at its next step.
    pub async fn cancel(&self, tenant: Uuid, id: Uuid) -> Result<JobDetails, ApiError> {
        let job = self.store.cancel(tenant, id).await?.ok_or_else(|| not_found(id))?;
        self.details(job).await
    }

    /// One image of one of the tenant's jobs: its format name and bytes. An image retention
    /// deleted is [`ApiError::Gone`].
    pub async fn image(&self, tenant: Uuid, id: Uuid, index: i32) -> Result<(String, Vec<u8>), ApiError> {
        if let Some(image) = self.store.image(tenant, id, index).await? {
            return Ok(image);
        }
        match self.store.job(tenant, id).await? {
            Some(Job { purged_at: Some(at), .. }) => {
                Err(ApiError::Gone(format!("job {id}'s images were deleted on {} (retention); the job's record remains", at.format("%Y-%m-%d %H:%M:%S UTC"))))
            }
            _ => Err(ApiError::NotFound(format!("job {id} has no image {index}"))),
        }
    }

    /// The tenant's newest succeeded job made for a request with this cache key, with its images.
    pub async fn cached(&self, tenant: Uuid, key: &[u8]) -> Result<Option<JobWithImages>, ApiError> {
        match self.store.cached_job(tenant, key).await? {
            Some(job) => Ok(Some(self.with_images(job).await?)),
            None => Ok(None),
        }
    }

    /// The tenant's settings (opaque key/value pairs a dialect keeps per tenant).
    pub async fn tenant_settings(&self, tenant: Uuid) -> Result<Vec<(String, serde_json::Value)>, ApiError> {
        Ok(self.store.tenant_settings(tenant).await?)
    }

    /// Set some of the tenant's settings, all or none.
    pub async fn set_tenant_settings(&self, tenant: Uuid, settings: &[(String, serde_json::Value)]) -> Result<(), ApiError> {
        let (keys, bytes) = (self.settings.max_options_keys, self.settings.max_options_bytes);
        Ok(self.store.set_tenant_settings(tenant, settings, i64::from(keys), i64::from(bytes)).await?)
    }

    /// The tenant's current job (oldest running, else oldest queued) and its number of
    /// unfinished jobs (counted up to 1000).
    pub async fn current_job(&self, tenant: Uuid) -> Result<(Option<Job>, i64), ApiError> {
        Ok(self.store.current_job(tenant).await?)
    }

    /// A job's newest live preview, if it has one.
    pub async fn latest_preview(&self, job: Uuid) -> Result<Option<darkroom_shared::store::Preview>, ApiError> {
        Ok(self.store.latest_preview(job).await?)
    }

    /// Ask the tenant's running jobs to stop at their next step (queued ones are left).
    /// Returns how many were asked.
    pub async fn interrupt_running(&self, tenant: Uuid) -> Result<u64, ApiError> {
        Ok(self.store.interrupt_running(tenant).await?)
    }

    /// A job's init image (base64), unless it has none or retention deleted it.
    pub async fn init_image(&self, job: Uuid) -> Result<Option<String>, ApiError> {
        Ok(self.store.init_image(job).await?)
    }

    /// Ask both backends, each within `timeout`.
    pub async fn readiness(&self, timeout: Duration) -> Readiness {
        let pg = tokio::time::timeout(timeout, self.store.ping());
        let redis = tokio::time::timeout(timeout, self.queue.ping());
        let (pg, redis) = tokio::join!(pg, redis);
        let flat = |r: Result<Result<(), String>, tokio::time::error::Elapsed>| r.unwrap_or_else(|_| Err("timed out".into()));
        Readiness { postgres: flat(pg.map(|r| r.map_err(|e| e.to_string()))), redis: flat(redis.map(|r| r.map_err(|e| e.to_string()))) }
    }
}

/// How many requests (or streams) of each tenant wait for their jobs in this process.
struct WaitingRequests {
    /// The limit's name in the 429 (`max_waiting`, `max_event_streams`).
    limit: &'static str,
    by_tenant: Arc<std::sync::Mutex<std::collections::HashMap<Uuid, u32>>>,
}

/// A waiting request's place; dropping it gives the place back.
pub struct WaitingPlace {
    by_tenant: Arc<std::sync::Mutex<std::collections::HashMap<Uuid, u32>>>,
    tenant: Uuid,
}

impl WaitingRequests {
    fn new(limit: &'static str) -> WaitingRequests {
        WaitingRequests { limit, by_tenant: Arc::default() }
    }

    /// Take a place for one more waiting request of `tenant`, unless it already has `max` (0: no cap).
    fn enter(&self, tenant: Uuid, max: u32) -> Result<WaitingPlace, ApiError> {
        let mut map = self.by_tenant.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(tenant).or_insert(0);
        if max > 0 && *n >= max {
            return Err(ApiError::QuotaExceeded { limit: self.limit, value: i64::from(max) });
        }
        *n += 1;
        Ok(WaitingPlace { by_tenant: self.by_tenant.clone(), tenant })
    }
}

impl Drop for WaitingPlace {
    fn drop(&mut self) {
        let mut map = self.by_tenant.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.tenant);
            }
        }
    }
}

/// Cancels a job when dropped: held by a blocking request while it waits, so that a client
/// that disconnects does not leave its job to run for nobody.
struct CancelOnDrop {
    store: Store,
    tenant: Uuid,
    job: Uuid,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (store, tenant, job) = (self.store.clone(), self.tenant, self.job);
        tracing::info!(%job, "the client went away: canceling its job");
        tokio::spawn(async move {
            if let Err(e) = store.cancel(tenant, job).await {
                tracing::warn!(%job, "could not cancel the job of a client that went away: {e}");
            }
        });
    }
}
