//! `darkroom-worker run`: load the served models, connect to Postgres (migrating it) and Redis,
//! then serve jobs from the queue until SIGTERM/SIGINT; then pull no more, and let the job in
//! hand finish or, after `--shutdown-grace-secs`, hand it back.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use darkroom_shared::queue::Queue;
use darkroom_shared::shutdown;
use darkroom_shared::store::Store;
use darkroom_worker::pipeline::Pipeline;
use darkroom_worker::runtime::Runtime;
use darkroom_worker::service::{self, Served, Settings};
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;

pub fn run(args: RunArgs) -> anyhow::Result<()> {
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
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    rt.block_on(async move {
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
    })
}

/// Load every `NAME=DIR` model, logging how long each took.
fn load_models(runtime: &Runtime, models: &[(String, PathBuf)]) -> anyhow::Result<Vec<Served>> {
    let mut served = Vec::new();
    for (name, dir) in models {
        let t = Instant::now();
        let pipeline = Pipeline::load(runtime, dir).with_context(|| format!("loading model {name:?} from {}", dir.display()))?;
        tracing::info!(model = %name, dir = %dir.display(), family = pipeline.model().family.name(), "loaded in {:.1} s", t.elapsed().as_secs_f64());
        served.push(Served::new(name.clone(), pipeline));
    }
    Ok(served)
}

/// A duration flag in seconds, at least 10 ms.
fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.01))
}
