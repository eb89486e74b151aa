//! The worker service: pull jobs for the loaded models from the queue, claim them in Postgres,
//! run them one at a time on this device, report progress every step, honour cancellation,
//! keep the lease alive, enforce each job's deadline (`deadline.rs`), and store the images and
//! final status — fenced by the lease, so a worker that lost its job writes nothing.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use darkroom_shared::infotext::Infotext;
use darkroom_shared::job::{Claim, ErrorType, JobStatus, LeaseState, NewImage};
use darkroom_shared::queue::{Delivery, Queue, QueueError};
use darkroom_shared::request::GenerationRequest;
use darkroom_shared::store::{ModelEntry, ModelLoad, Store, StoreError, WorkerStart};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::deadline::{self, DeadlinePolicy};
use crate::output;
use crate::pipeline::{GeneratedImage, Latents, Observer, Pipeline, PipelineError, RgbImage};
use crate::preview;
use crate::request::resolve_validated;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the pipeline thread panicked: {0}")]
    Panicked(String),
    /// The pipeline call of `job` was still running `waited` after the job's start, past its
    /// deadline and the grace: the worker must exit (see `deadline.rs`).
    #[error("job {job}: the pipeline call has not returned {:.1} s after the job started, past its deadline; it is hung", waited.as_secs_f64())]
    Hung { job: Uuid, waited: Duration },
}

/// How the service behaves (the CLI fills this in).
#[derive(Clone, Debug)]
pub struct Settings {
    pub worker_id: Uuid,
    /// A claimed job is handed to another worker if its lease is not renewed within this.
    pub lease: Duration,
    /// A delivery taken from Redis but not claimed within this is handed out again.
    pub redeliver_after: Duration,
    pub heartbeat: Duration,
    pub max_attempts: i32,
    pub recovery_every: Duration,
    /// On shutdown, how long the job in hand may still run before it is handed back.
    pub shutdown_grace: Duration,
    /// When a job ends, how long its last preview may still take to be recorded.
    pub preview_flush: Duration,
    /// How long one job may run, and how long a hung pipeline call is waited for.
    pub deadline: DeadlinePolicy,
    /// TEST ONLY ([`deadline::TEST_HANG_ENV`]): block the pipeline thread forever after this step.
    pub test_hang_at_step: Option<usize>,
    /// When `darkroom-worker run` started: the worker records how long it took from here to
    /// being ready, for the API's load estimates.
    pub started: Instant,
    /// The execution provider the models run on (`cpu`, `cuda`), recorded with the load times.
    pub provider: Option<String>,
}

/// A loaded model, shared with the blocking thread that runs it.
pub struct Served {
    pub name: String,
    pub pipeline: Arc<Mutex<Pipeline>>,
    /// How long loading it took (its ONNX sessions created).
    pub load_time: Duration,
    /// The model directory, as the catalog shows it.
    pub path: Option<String>,
    /// The sha256 of its UNet (`fingerprint.rs`).
    pub sha256: Option<String>,
}

impl Served {
    pub fn new(name: String, pipeline: Pipeline, load_time: Duration) -> Served {
        Served { name, pipeline: Arc::new(Mutex::new(pipeline)), load_time, path: None, sha256: None }
    }

    /// With the directory it was loaded from and its UNet's sha256, for the catalog.
    pub fn with_identity(self, path: String, sha256: String) -> Served {
        Served { path: Some(path), sha256: Some(sha256), ..self }
    }

    fn entry(&self) -> ModelEntry {
        let p = self.pipeline.lock().unwrap_or_else(|e| e.into_inner());
        let m = p.model();
        ModelEntry {
            id: self.name.clone(),
            family: m.family,
            native_size: m.native_size as i32,
            size_multiple: m.size_multiple as i32,
            img2img: p.supports_img2img(),
            sha256: self.sha256.clone(),
            path: self.path.clone(),
        }
    }
}

/// Warn when another live worker serves one of our model ids with other weights (a different
/// UNet sha256): jobs for that id would then depend on the worker they land on. Registering
/// goes on (the catalog keeps the latest registration's hash); "live" here is seen within
/// three of our heartbeat intervals. A failed check is only logged.
async fn warn_hash_conflicts(store: &Store, settings: &Settings, entries: &[ModelEntry]) {
    match store.hash_conflicts(settings.worker_id, entries, settings.heartbeat * 3).await {
        Ok(conflicts) => {
            for c in conflicts {
                let ours = entries.iter().find(|e| e.id == c.model).and_then(|e| e.sha256.as_deref()).unwrap_or_default();
                tracing::warn!(
                    model = %c.model,
                    "model {:?}: this worker's UNet sha256 is {ours} but live worker {} ({}) serves it with sha256 {}; \
                     the same id stands for different weights (the catalog now shows {ours})",
                    c.model,
                    c.worker,
                    c.hostname,
                    c.sha256
                );
            }
        }
        Err(e) => tracing::warn!("checking other workers' model hashes failed: {e}"),
    }
}

/// Bridges the pipeline's per-step callbacks (on a blocking thread) to the async side, and
/// stops the pipeline between steps once the job is past its deadline.
struct JobObserver {
    progress: mpsc::UnboundedSender<(usize, usize)>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    reasons: Arc<StopReasons>,
    /// TEST ONLY: hang forever once this step is done.
    hang_at_step: Option<usize>,
    /// The request's `preview_every` (0: off).
    preview_every: usize,
    /// The newest preview image, for the recorder ([`record_previews`]): a watch channel holds
    /// one value, so a preview not yet taken is replaced by the next (dropped, never queued),
    /// and sending never waits.
    previews: watch::Sender<Option<RawPreview>>,
}

/// A preview as the pipeline thread makes it: the RGB approximation, not yet encoded.
#[derive(Clone)]
struct RawPreview {
    step: usize,
    total: usize,
    image: RgbImage,
}

impl Observer for JobObserver {
    fn preview_every(&self) -> usize {
        self.preview_every
    }
    fn on_latents(&mut self, step: usize, total: usize, l: &Latents<'_>) {
        // Only the matrix step here; the recorder encodes and stores.
        if l.channels != preview::LATENT_CHANNELS {
            return;
        }
        if let Some(image) = preview::approximate(l.family, l.data, l.height, l.width) {
            self.previews.send_replace(Some(RawPreview { step, total, image }));
        }
    }
    fn on_step(&mut self, step: usize, total: usize) {
        let _ = self.progress.send((step, total));
        if self.hang_at_step == Some(step) {
            tracing::warn!("TEST ONLY ({}): the pipeline thread hangs after step {step}", deadline::TEST_HANG_ENV);
            deadline::hang_forever();
        }
    }
    fn is_canceled(&self) -> bool {
        if Instant::now() >= self.deadline {
            self.reasons.deadline.store(true, Ordering::SeqCst);
            return true;
        }
        self.stop.load(Ordering::Relaxed)
    }
}

/// Why a running job is being stopped.
#[derive(Default)]
struct StopReasons {
    canceled: AtomicBool,
    lease_lost: AtomicBool,
    handing_back: AtomicBool,
    /// The job ran past its deadline.
    deadline: AtomicBool,
}

/// Run until `shutdown` is cancelled; then finish or hand back the job in hand and return.
pub async fn run(store: Store, queue: Queue, models: Vec<Served>, settings: Settings, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let hostname = std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into());
    let entries: Vec<ModelEntry> = models.iter().map(Served::entry).collect();
    warn_hash_conflicts(&store, &settings, &entries).await;
    store.register_worker(settings.worker_id, &hostname, &entries).await?;
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    let ready = settings.started.elapsed();
    record_start(&store, &settings, &models, ready).await;
    tracing::info!(worker = %settings.worker_id, models = ?names, "worker registered, ready {:.1} s after start; waiting for jobs", ready.as_secs_f64());
    let models: HashMap<String, Served> = models.into_iter().map(|m| (m.name.clone(), m)).collect();

    let heartbeat = tokio::spawn(heartbeats(store.clone(), settings.worker_id, settings.heartbeat, shutdown.clone()));
    let recovery = tokio::spawn(darkroom_shared::recovery::run(
        store.clone(),
        queue.clone(),
        settings.max_attempts,
        settings.recovery_every,
        shutdown.clone().cancelled_owned(),
    ));

    let mut waiter = queue.blocking_connection().await?;
    while !shutdown.is_cancelled() {
        let delivery = match queue.dequeue(&names, settings.redeliver_after).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("dequeue failed: {e}; retrying");
                sleep_or_stop(Duration::from_secs(1), &shutdown).await;
                continue;
            }
        };
        let Some(delivery) = delivery else {
            tokio::select! {
                r = queue.wait(&mut waiter, &names, Duration::from_secs(1)) => {
                    if let Err(e) = r {
                        tracing::warn!("waiting for work failed: {e}");
                        sleep_or_stop(Duration::from_millis(500), &shutdown).await;
                        if let Ok(c) = queue.blocking_connection().await { waiter = c; }
                    }
                }
                _ = shutdown.cancelled() => {}
            }
            continue;
        };
        // Every line logged about the job carries its id and its submitting request's id
        // (recorded once the claim has read it).
        let span = tracing::info_span!("job", job = %delivery.job, request_id = tracing::field::Empty);
        match handle(&store, &queue, &models, &settings, &delivery, &shutdown).instrument(span.clone()).await {
            Ok(()) => {}
            // The job is given up and the worker marked stopped: the process must now exit.
            Err(e @ ServiceError::Hung { .. }) => return Err(e),
            Err(e) => span.in_scope(|| tracing::error!(job = %delivery.job, "job handling failed: {e}")),
        }
    }
    let _ = heartbeat.await;
    let _ = recovery.await;
    store.worker_stopped(settings.worker_id).await?;
    tracing::info!("worker stopped");
    Ok(())
}

/// Record how long the models took to load and the worker to be ready (the API's cold-start
/// estimates come from these). A failure only costs the estimate: it is logged.
async fn record_start(store: &Store, settings: &Settings, models: &[Served], ready: Duration) {
    let start = WorkerStart {
        worker: settings.worker_id,
        ready,
        provider: settings.provider.clone(),
        models: models.iter().map(|m| ModelLoad { model: m.name.clone(), load: m.load_time }).collect(),
    };
    if let Err(e) = store.record_worker_start(&start).await {
        tracing::warn!("could not record the models' load times: {e}");
    }
}

async fn sleep_or_stop(d: Duration, shutdown: &CancellationToken) {
    tokio::select! { _ = tokio::time::sleep(d) => {}, _ = shutdown.cancelled() => {} }
}

async fn heartbeats(store: Store, worker: Uuid, every: Duration, shutdown: CancellationToken) {
    darkroom_shared::shutdown::every(every, &shutdown, || async {
        if let Err(e) = store.heartbeat(worker).await {
            tracing::warn!("heartbeat failed: {e}");
        }
    })
    .await
}

/// Claim a delivered job and, if it is ours, run it to its end.
async fn handle(
    store: &Store,
    queue: &Queue,
    models: &HashMap<String, Served>,
    s: &Settings,
    d: &Delivery,
    shutdown: &CancellationToken,
) -> Result<(), ServiceError> {
    let claim = store.claim(d.job, s.worker_id, s.lease).await;
    // A delivery that is not ours to run frees its running slot, unless the job runs elsewhere
    // (a duplicate delivery: the slot is that run's).
    let holds_slot = match &claim {
        Ok(Some(_)) => true,
        _ => matches!(store.job_status(d.job).await, Ok(Some(JobStatus::Running))),
    };
    if let Err(e) = queue.ack(d, holds_slot).await {
        tracing::warn!(job = %d.job, "acknowledging the delivery failed: {e}");
    }
    let Some(claim) = claim? else {
        tracing::debug!(job = %d.job, "delivery of a job that is no longer queued; skipped");
        return Ok(());
    };
    let span = tracing::Span::current();
    if let Some(id) = &claim.request_id {
        span.record("request_id", id.as_str());
    }
    let Some(served) = models.get(&claim.model) else {
        let message = format!("this worker does not serve model {:?}", claim.model);
        store.fail(claim.job_id, claim.lease, ErrorType::ModelUnavailable, None, &message, true, s.max_attempts).await?;
        return Ok(());
    };
    let started = Instant::now();
    let limit = s.deadline.limit(claim.cost);
    tracing::info!(job = %claim.job_id, model = %claim.model, attempt = claim.attempts, deadline = ?limit, "running job");
    let reasons = Arc::new(StopReasons::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (progress_tx, progress_rx) = mpsc::unbounded_channel();
    let keeper = tokio::spawn(keep_lease(store.clone(), claim.clone(), s.lease, progress_rx, reasons.clone(), stop.clone()).instrument(span.clone()));
    let (previews, previews_rx) = watch::channel(None);
    let recorder = tokio::spawn(record_previews(store.clone(), claim.job_id, claim.lease, previews_rx).instrument(span.clone()));

    let pipeline = served.pipeline.clone();
    let request = claim.request.clone();
    let mut observer = JobObserver {
        progress: progress_tx,
        stop: stop.clone(),
        deadline: started + limit,
        reasons: reasons.clone(),
        hang_at_step: s.test_hang_at_step,
        preview_every: claim.request.preview_every.unwrap_or(0) as usize,
        previews,
    };
    let model = claim.model.clone();
    let sha256 = served.sha256.clone();
    let mut work = tokio::task::spawn_blocking(move || {
        let _span = span.enter();
        let started = Instant::now();
        let mut p = pipeline.lock().unwrap_or_else(|e| e.into_inner());
        let (request, params) = resolve_validated(&request, p.model())?;
        let (images, timings) = p.generate(&params, &mut observer)?;
        crate::metrics::record_steps(&model, &timings.unet_steps);
        let encoded = encode(&images, &request, (params.width as u32, params.height as u32), sha256.as_deref())?;
        Ok((encoded, started.elapsed()))
    });
    // Wait for the job; on shutdown give it the grace period, then hand it back. (If the
    // shutdown came before the job was claimed, the job runs to its end.) At its deadline, stop
    // it at its next step; if the pipeline call has still not returned after the hang grace, it
    // is hung: give the job up, and have the process exit.
    let mut watching = !shutdown.is_cancelled();
    let past_deadline = tokio::time::sleep_until((started + limit).into());
    let hung = tokio::time::sleep_until((started + s.deadline.hung_after(claim.cost)).into());
    tokio::pin!(past_deadline, hung);
    let mut before_deadline = true;
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = &mut past_deadline, if before_deadline => {
                before_deadline = false;
                tracing::warn!(job = %claim.job_id, deadline = ?limit, "the job is past its deadline: stopping it at its next step");
                reasons.deadline.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
            }
            _ = &mut hung => {
                keeper.abort();
                recorder.abort();
                return Err(give_up_hung(store, queue, &claim, started, s).await);
            }
            _ = shutdown.cancelled(), if watching => {
                watching = false;
                tracing::info!(job = %claim.job_id, grace = ?s.shutdown_grace, "shutting down: finishing the job in hand");
                let (reasons, stop, grace) = (reasons.clone(), stop.clone(), s.shutdown_grace);
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    reasons.handing_back.store(true, Ordering::SeqCst);
                    stop.store(true, Ordering::SeqCst);
                });
            }
        }
    };
    keeper.abort();
    // The pipeline is done (its observer, the previews' sender, is dropped): let the last
    // preview land before the job ends, within the flush limit.
    let mut recorder = recorder;
    if tokio::time::timeout(s.preview_flush, &mut recorder).await.is_err() {
        recorder.abort();
    }
    let result = result.map_err(|e| ServiceError::Panicked(e.to_string()))?;
    finish(store, queue, &claim, result, &reasons, started, s).await
}

/// The pipeline call is hung past the job's deadline (the lease keeper is already stopped): fail
/// the job (fenced; not retried), free its running slot, mark this worker stopped and return
/// the error that makes the process exit. Store errors are logged: the worker exits regardless
/// (if the job could not be failed, its lease expires and recovery takes it).
async fn give_up_hung(store: &Store, queue: &Queue, claim: &Claim, started: Instant, s: &Settings) -> ServiceError {
    let id = claim.job_id;
    let waited = started.elapsed();
    tracing::error!(
        job = %id,
        "the pipeline call has not returned {:.1} s after the job started ({:.1} s past its deadline): ONNX Runtime is hung; \
         failing the job and exiting with status {} for the supervisor to restart this worker",
        waited.as_secs_f64(),
        waited.saturating_sub(s.deadline.limit(claim.cost)).as_secs_f64(),
        deadline::EXIT_HUNG,
    );
    match fail_past_deadline(store, claim, waited, s).await {
        Ok(true) => {
            if let Err(e) = queue.release(claim.tenant_id, id, &claim.model).await {
                tracing::warn!(job = %id, "freeing the running slot failed: {e}");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::error!(job = %id, "failing the hung job failed: {e}"),
    }
    if let Err(e) = store.worker_stopped(s.worker_id).await {
        tracing::error!(worker = %s.worker_id, "marking the worker stopped failed: {e}");
    }
    ServiceError::Hung { job: id, waited }
}

/// Fail a job that ran past its deadline, `deadline_exceeded`, not retried, fenced by the lease.
/// Whether this worker ended its hold on the job (false: the lease was already lost).
async fn fail_past_deadline(store: &Store, claim: &Claim, ran: Duration, s: &Settings) -> Result<bool, StoreError> {
    let message = s.deadline.exceeded_message(ran, claim.cost);
    let failed =
        retry_unavailable(s.lease, || store.fail(claim.job_id, claim.lease, ErrorType::DeadlineExceeded, None, &message, false, s.max_attempts)).await?;
    match failed {
        Some(status) => {
            tracing::warn!(job = %claim.job_id, "job {}, past its deadline: {message}", status.as_str());
            Ok(true)
        }
        None => {
            tracing::warn!(job = %claim.job_id, "past its deadline after losing the lease: {message}");
            Ok(false)
        }
    }
}

/// Encode every image in the requested format, with its infotext. `req` is the request as
/// validated, `size` the size the images were made at, `sha256` the model's UNet hash.
fn encode(images: &[GeneratedImage], req: &GenerationRequest, size: (u32, u32), sha256: Option<&str>) -> Result<Vec<NewImage>, PipelineError> {
    images
        .iter()
        .map(|img| {
            let info = Infotext::new(req, img.seed, size, &req.model).with_model_hash(sha256);
            let bytes = output::encode(&img.image, req.output_format, &info.to_string())
                .map_err(|e| PipelineError::Invalid { field: "output_format", message: e.to_string() })?;
            Ok(NewImage {
                idx: img.index as i32,
                seed: img.seed,
                format: req.output_format.extension().to_string(),
                width: img.image.width as u32,
                height: img.image.height as u32,
                bytes,
            })
        })
        .collect()
}

/// Run `write` again, with backoff, while it fails because Postgres cannot be reached (a
/// restart, a failover), for at most `window` (the lease: once it may have expired, another
/// worker may hold the job and the fenced write would be refused anyway). While Postgres is
/// down an attempt itself lasts the pool's acquire timeout, reconnecting all along, so the
/// pauses between attempts stay short: the write lands soon after Postgres is back.
async fn retry_unavailable<T, F, Fut>(window: Duration, mut write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let give_up = tokio::time::Instant::now() + window;
    let mut backoff = Duration::from_millis(100);
    loop {
        match write().await {
            Err(e) if e.is_unavailable() && tokio::time::Instant::now() + backoff < give_up => {
                tracing::warn!("Postgres unavailable ({e}); retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(400));
            }
            other => return other,
        }
    }
}

/// Record how the job ended, fenced by its lease.
async fn finish(
    store: &Store,
    queue: &Queue,
    claim: &Claim,
    result: Result<(Vec<NewImage>, Duration), PipelineError>,
    reasons: &StopReasons,
    started: Instant,
    s: &Settings,
) -> Result<(), ServiceError> {
    let id = claim.job_id;
    // Whether this worker ended its hold on the job (its running slot is then free); a worker
    // that lost its lease leaves the slot to the job's new holder.
    let ended = match result {
        Ok((images, compute)) => {
            // Postgres may be restarting: keep the images and try again while the lease can hold.
            let done = retry_unavailable(s.lease, || store.complete_timed(id, claim.lease, &images, Some(compute))).await?;
            if done {
                tracing::info!(job = %id, images = images.len(), "job succeeded");
            } else {
                tracing::warn!(job = %id, "finished after losing the lease: result discarded");
            }
            done
        }
        Err(PipelineError::Canceled) => {
            if reasons.lease_lost.load(Ordering::SeqCst) {
                tracing::warn!(job = %id, "stopped: the lease was lost to another worker");
                false
            } else if reasons.deadline.load(Ordering::SeqCst) {
                fail_past_deadline(store, claim, started.elapsed(), s).await?
            } else if reasons.handing_back.load(Ordering::SeqCst) {
                match store.release(id, claim.lease).await? {
                    Some(JobStatus::Queued) => {
                        queue.requeue_front(&claim.model, claim.tenant_id, id, claim.cost).await?;
                        tracing::info!(job = %id, "handed back to the queue");
                        false
                    }
                    Some(_) => {
                        tracing::info!(job = %id, "canceled while being handed back");
                        true
                    }
                    None => false,
                }
            } else {
                let canceled = store.mark_canceled(id, claim.lease).await?;
                if canceled {
                    tracing::info!(job = %id, "canceled");
                }
                canceled
            }
        }
        Err(e) => {
            let (error_type, field, retry) = match &e {
                PipelineError::Invalid { field, .. } => (ErrorType::InvalidRequest, Some(*field), false),
                _ => (ErrorType::GenerationFailed, None, true),
            };
            let message = e.to_string();
            match store.fail(id, claim.lease, error_type, field, &message, retry, s.max_attempts).await? {
                Some(JobStatus::Queued) => {
                    queue.release(claim.tenant_id, id, &claim.model).await?;
                    queue.enqueue(&claim.model, claim.tenant_id, id, claim.cost).await?;
                    tracing::warn!(job = %id, "attempt {} failed, retrying: {message}", claim.attempts);
                    false
                }
                Some(status) => {
                    tracing::warn!(job = %id, "job {}: {message}", status.as_str());
                    true
                }
                None => {
                    tracing::warn!(job = %id, "failed after losing the lease: {message}");
                    false
                }
            }
        }
    };
    if ended {
        queue.release(claim.tenant_id, id, &claim.model).await?;
    }
    Ok(())
}

/// While the job runs: encode and store the newest preview, one at a time (while one is being
/// stored, newer ones replace each other in the channel). Ends when the pipeline drops its
/// sender and the last preview is stored. Failures cost the preview only: they are logged.
async fn record_previews(store: Store, job: Uuid, lease: Uuid, mut previews: watch::Receiver<Option<RawPreview>>) {
    while previews.changed().await.is_ok() {
        let Some(raw) = previews.borrow_and_update().clone() else { continue };
        let preview = match preview::encode(&raw.image, raw.step, raw.total) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(job = %job, "preview of step {}: {e}", raw.step);
                continue;
            }
        };
        match store.record_preview(job, lease, &preview).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!(job = %job, "preview of step {} not recorded: the job is no longer ours or running", raw.step),
            Err(e) => tracing::warn!(job = %job, "recording the preview of step {} failed: {e}", raw.step),
        }
    }
}

/// While the job runs: forward progress (coalesced) and renew the lease; stop the pipeline
/// when the client cancels or the lease is lost.
async fn keep_lease(
    store: Store,
    claim: Claim,
    lease: Duration,
    mut progress: mpsc::UnboundedReceiver<(usize, usize)>,
    reasons: Arc<StopReasons>,
    stop: Arc<AtomicBool>,
) {
    let mut renew = tokio::time::interval(lease / 3);
    renew.tick().await; // the claim just set the lease
    loop {
        let state = tokio::select! {
            _ = renew.tick() => store.renew(claim.job_id, claim.lease, lease).await,
            got = progress.recv() => {
                let Some(mut latest) = got else { return };
                while let Ok(next) = progress.try_recv() {
                    latest = next;
                }
                store.progress(claim.job_id, claim.lease, latest.0 as i32, latest.1 as i32).await
            }
        };
        match state {
            Ok(LeaseState::Held { cancel: false }) => {}
            Ok(LeaseState::Held { cancel: true }) => {
                reasons.canceled.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
            }
            Ok(LeaseState::Lost) => {
                reasons.lease_lost.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
            }
            Err(e) => tracing::warn!(job = %claim.job_id, "lease/progress update failed: {e}"),
        }
    }
}
