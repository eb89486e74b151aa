//! `darkroom-worker run`: load the served models, connect to Postgres (migrating it) and Redis,
//! then serve jobs from the queue until SIGTERM/SIGINT; then pull no more, and let the job in
//! hand finish or, after `--shutdown-grace-secs`, hand it back. A worker whose pipeline call
//! hung past a job's deadline exits at once with status [`EXIT_HUNG`] (see `deadline.rs`).
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use darkroom_shared::queue::Queue;
use darkroom_shared::shutdown;
use darkroom_shared::store::Store;
use darkroom_worker::deadline::{self, DeadlinePolicy, EXIT_HUNG};
use darkroom_worker::fingerprint;
use darkroom_worker::pipeline::Pipeline;
use darkroom_worker::runtime::Runtime;
use darkroom_worker::service::{self, Served, ServiceError, Settings};
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let runtime = Runtime::new(args.ep, args.threads)?;
    let served = load_models(&runtime, &args.models)?;
    let settings = Settings {
        worker_id: uuid::Uuid::now_v7(),
        lease: secs(args.lease_secs),
        redeliver_after: secs(args.redeliver_secs),
        heartbeat: secs(args.heartbeat_secs),
        max_attempts: args.delivery.max_attempts,
        recovery_every: args.delivery.recovery_every(),
        shutdown_grace: secs(args.shutdown_grace_secs),
        preview_flush: secs(args.preview_flush_secs),
        deadline: DeadlinePolicy::from_secs(args.job_deadline_secs, args.job_deadline_secs_per_cost, args.job_hang_grace_secs),
        test_hang_at_step: deadline::test_hang_at_step(),
        started,
        provider: runtime.provider().map(|p| p.kind().to_string()),
    };
    if let Some(step) = settings.test_hang_at_step {
        tracing::warn!("TEST ONLY: {} is set: every job's pipeline will hang after step {step}", deadline::TEST_HANG_ENV);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    let result: anyhow::Result<()> = rt.block_on(async move {
        if let Some(addr) = args.metrics_listen {
            darkroom_worker::metrics::install(addr).with_context(|| format!("serving metrics on {addr}"))?;
            tracing::info!("serving metrics on http://{addr}/metrics");
        }
        let backends = &args.backends;
        let store = Store::connect_relaxed(&backends.database_url, backends.pool()).await.context("connecting to Postgres")?;
        store.migrate().await.context("migrating the database")?;
        let queue = Queue::connect(&backends.redis_url, &backends.redis_prefix).await.context("connecting to Redis")?;
        let shutdown = CancellationToken::new();
        tokio::spawn(shutdown::on_signal(shutdown.clone()));
        let requested = shutdown.clone();
        tokio::spawn(async move {
            requested.cancelled().await;
            tracing::info!("shutdown requested: no new jobs");
        });
        service::run(store, queue, served, settings, shutdown).await?;
        Ok(())
    });
    if let Err(e) = &result {
        if let Some(ServiceError::Hung { .. }) = e.downcast_ref::<ServiceError>() {
            // The hung call's thread cannot be joined, and dropping the runtime would wait for
            // it; the library's exit-time destructors might wait on it too. End the process now
            // (stderr is unbuffered: the log is complete).
            eprintln!("error: {e}; exiting with status {EXIT_HUNG} so that the supervisor restarts the worker");
            // SAFETY: _exit only ends the process; nothing runs after it.
            unsafe { libc::_exit(EXIT_HUNG) }
        }
    }
    result
}

/// Load every `NAME=DIR` model, logging how long each took, and hash its UNet
/// (`fingerprint.rs`) on a thread of its own meanwhile (no cache: every start hashes again,
/// which costs about what reading the weights once costs).
fn load_models(runtime: &Runtime, models: &[(String, PathBuf)]) -> anyhow::Result<Vec<Served>> {
    let mut served = Vec::new();
    for (name, dir) in models {
        let t = Instant::now();
        let (pipeline, hash) = std::thread::scope(|scope| {
            let hashing = scope.spawn(|| fingerprint::unet_sha256(dir));
            let pipeline = Pipeline::load(runtime, dir).with_context(|| format!("loading model {name:?} from {}", dir.display()));
            let hash = hashing.join().map_err(|_| anyhow::anyhow!("hashing model {name:?}: the thread panicked"));
            (pipeline, hash)
        });
        let pipeline = pipeline?;
        let hash = hash?.with_context(|| format!("hashing the UNet of model {name:?}"))?;
        let load_time = t.elapsed();
        tracing::info!(model = %name, dir = %dir.display(), family = pipeline.model().family.name(), "loaded in {:.1} s", load_time.as_secs_f64());
        tracing::info!(
            model = %name,
            sha256 = %hash.sha256,
            files = hash.files.len(),
            "UNet hashed: {:.1} MB in {:.1} s",
            hash.bytes as f64 / 1e6,
            hash.took.as_secs_f64()
        );
        // The directory as the catalog shows it (A1111's `filename`): absolute, links kept.
        let path = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        served.push(Served::new(name.clone(), pipeline, load_time).with_identity(path.display().to_string(), hash.sha256));
    }
    Ok(served)
}

/// A duration flag in seconds, at least 10 ms.
fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.01))
}
