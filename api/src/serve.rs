//! `darkroom-api serve`: connect to Postgres (migrating it) and Redis, recover once, start the
//! background tasks (job listener, waiter sweep, recovery, enqueue retries, webhook deliveries), then serve HTTP
//! until SIGTERM/SIGINT, finishing the requests in flight.
use std::future::Future;
use std::time::Duration;

use darkroom_shared::config::Backends;
use darkroom_shared::queue::{Queue, QueueError};
use darkroom_shared::recovery;
use darkroom_shared::store::{Store, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::limits;
use crate::service::{Service, Settings};
use crate::wait::{self, Listeners};
use crate::{app, http, metrics, webhooks};

/// How long start-up keeps retrying a backend that does not answer yet.
const STARTUP_PATIENCE: Duration = Duration::from_secs(30);
/// How often the waiter sweep checks for finished jobs whose notification was lost.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("Postgres (DATABASE_URL): {0}")]
    Store(#[from] StoreError),
    #[error("Redis (REDIS_URL): {0}")]
    Queue(#[from] QueueError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("interrupted during start-up")]
    Interrupted,
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    #[error(transparent)]
    WebhookClient(#[from] crate::webhooks::deliver::ClientError),
    #[error("{0}")]
    Config(String),
}

pub async fn run(backends: Backends, args: ServeArgs) -> Result<(), ServeError> {
    let shutdown = CancellationToken::new();
    tokio::spawn(darkroom_shared::shutdown::on_signal(shutdown.clone()));

    let store = patiently("Postgres", &shutdown, || async {
        let store = Store::connect(&backends.database_url, backends.pool()).await?;
        store.migrate().await?;
        Ok::<_, StoreError>(store)
    })
    .await?;
    let queue = patiently("Redis", &shutdown, || Queue::connect(&backends.redis_url, &backends.redis_prefix)).await?;
    let delivery = args.delivery;
    match recovery::recover(&store, &queue, delivery.max_attempts).await {
        Ok(report) => tracing::info!(?report, "start-up recovery"),
        Err(e) => tracing::warn!("start-up recovery failed (the background pass retries): {e}"),
    }

    if args.webhooks.lease() <= args.webhooks.timeout() {
        return Err(ServeError::Config("--webhook-lease-secs must be longer than --webhook-timeout-secs (a delivery's lease covers its attempt)".into()));
    }
    let deliverer = webhooks::deliver::deliverer(store.clone(), &args.webhooks)?;
    let metrics = metrics::install(store.clone(), delivery.worker_live(), Duration::from_secs_f64(args.metrics_refresh_secs), shutdown.clone())?;
    let waiters = Listeners::default();
    let settings = Settings {
        max_body_bytes: args.max_body_bytes,
        max_wait: Duration::from_secs(args.max_wait_secs),
        worker_live: delivery.worker_live(),
        default_model: args.default_model.clone(),
        model_aliases: args.model_aliases.clone(),
        tenant_defaults: args.tenant_defaults,
        max_job_cost: args.max_job_cost,
        body_read_timeout: Duration::from_secs_f64(args.body_read_timeout_secs),
        max_waiting: args.max_waiting,
        max_event_streams: args.max_event_streams,
        event_keepalive: Duration::from_secs_f64(args.event_keepalive_secs),
        max_options_keys: args.max_options_keys,
        max_options_bytes: args.max_options_bytes,
        load_estimate_window: args.load_estimate.load_estimate_window,
        default_load: Duration::from_secs_f64(args.load_estimate.default_load_secs),
        webhook_guard: args.webhooks.guard(),
    };
    let service = Service::new(store.clone(), queue.clone(), waiters.clone(), settings, shutdown.clone());

    let mut tasks = JoinSet::new();
    tasks.spawn(wait::listen(store.clone(), waiters.clone(), shutdown.clone()));
    tasks.spawn(wait::sweep(store.clone(), waiters.finished, SWEEP_EVERY, shutdown.clone()));
    let retention = Retention { images: args.retention, jobs: args.job_retention, workers: args.worker_retention };
    tasks.spawn(purge(store.clone(), retention, Duration::from_secs_f64(args.purge_every_secs), shutdown.clone()));
    tasks.spawn(limits::sync(store.clone(), queue.clone(), args.tenant_defaults, delivery.recovery_every(), shutdown.clone()));
    tasks.spawn(webhooks::deliver::run(deliverer, args.webhooks, shutdown.clone()));
    tasks.spawn(recovery::run(store, queue, delivery.max_attempts, delivery.recovery_every(), shutdown.clone().cancelled_owned()));

    let listener = tokio::net::TcpListener::bind(&args.listen).await.map_err(|source| ServeError::Bind { addr: args.listen.clone(), source })?;
    match listener.local_addr() {
        Ok(addr) => tracing::info!("listening on http://{addr}"),
        Err(_) => tracing::info!("listening on {}", args.listen),
    }
    let header_read_timeout = Duration::from_secs_f64(args.header_read_timeout_secs);
    if let Some(addr) = &args.metrics_listen {
        let metrics_listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr: addr.clone(), source })?;
        match metrics_listener.local_addr() {
            Ok(a) => tracing::info!("serving metrics on http://{a}/metrics"),
            Err(_) => tracing::info!("serving metrics on {addr}"),
        }
        tasks.spawn(http::serve(metrics_listener, metrics::router(metrics.clone()), header_read_timeout, shutdown.clone()));
    }
    let router = app::router(service).merge(metrics::router(metrics));
    http::serve(listener, router, header_read_timeout, shutdown.clone()).await;

    shutdown.cancel();
    let drained = tokio::time::timeout(Duration::from_secs(5), async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("background tasks did not stop within 5 s");
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long what finished jobs leave behind is kept (zero: forever).
#[derive(Clone, Copy, Debug)]
struct Retention {
    images: Duration,
    jobs: Duration,
    workers: Duration,
}

/// Every `every`, delete what retention no longer keeps: images and init images, job rows,
/// rows of stopped workers, expired idempotency keys. Batches skip locked rows, so replicas purge side by side.
async fn purge(store: Store, retention: Retention, every: Duration, shutdown: CancellationToken) {
    darkroom_shared::shutdown::every(every, &shutdown, || async {
        let pass = async {
            let mut purged = darkroom_shared::store::Purged::default();
            if !retention.images.is_zero() {
                purged.images_of = store.purge_images(retention.images).await?;
            }
            if !retention.jobs.is_zero() {
                purged.jobs = store.purge_jobs(retention.jobs).await?;
            }
            if !retention.workers.is_zero() {
                purged.workers = store.prune_workers(retention.workers).await?;
            }
            purged.idempotency_keys = store.purge_idempotency_keys().await?;
            Ok::<_, StoreError>(purged)
        };
        match pass.await {
            Ok(p) if p == darkroom_shared::store::Purged::default() => {}
            Ok(p) => tracing::info!(images_of = p.images_of, jobs = p.jobs, workers = p.workers, idempotency_keys = p.idempotency_keys, "purged"),
            Err(e) => tracing::warn!("purge failed: {e}"),
        }
    })
    .await
}

/// Try `connect` until it succeeds, [`STARTUP_PATIENCE`] passes (then its last error) or a
/// shutdown is asked for.
async fn patiently<T, E, F, Fut>(what: &str, shutdown: &CancellationToken, mut connect: F) -> Result<T, ServeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display + Into<ServeError>,
{
    let give_up = tokio::time::Instant::now() + STARTUP_PATIENCE;
    loop {
        match connect().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= give_up => return Err(e.into()),
            Err(e) => tracing::warn!("{what} is not answering yet ({e}); retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err(ServeError::Interrupted),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
