//! `queue-bench`: the job service's own overhead, measured through the whole path.
//!
//! Starts a real `darkroom-api` and N real `darkroom-worker`s (the tiny SD 1.5 model, 64×64,
//! 1 step: almost no compute) on a fresh database and Redis prefix, then for each concurrency
//! level runs clients that submit with `Prefer: wait` and time each job end to end. The
//! overhead of a job is its end-to-end time minus the worker's compute time (pipeline and
//! encoding, recorded by the worker); with more clients than workers it includes waiting in line.
//! It splits into the queue wait (submitted to claimed), the worker's own time around the
//! compute (claimed to finished, minus compute) and the API's (the rest: HTTP, validation, the
//! insert, the wake-up of the waiting request, the answer).
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

use common::{percentile, Deployment};

mod common;

#[derive(Parser, Debug)]
#[command(about = "Measure the job service's overhead (end-to-end minus compute) and throughput")]
struct Args {
    /// Directory holding darkroom-api and darkroom-worker.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Model directory the workers serve.
    #[arg(long, default_value = "tests/fixtures/models/tiny-sd15")]
    model_dir: PathBuf,
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Concurrent clients per level.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<usize>,
    /// Jobs per level.
    #[arg(long, default_value_t = 300)]
    jobs: usize,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let deployment = Deployment::new(&args.bin_dir, &args.postgres, &args.redis_url);
    deployment.admin(&["tenant", "create", "bench"])?;
    // No rate limit or queued quota: the serve defaults (600 a minute, 1000 queued) would throttle the benchmark.
    deployment.admin(&["tenant", "set", "bench", "--rate", "0", "--max-queued", "0"])?;
    let token = deployment.admin(&["token", "issue", "bench"])?;
    let (_api, base) = deployment.serve()?;
    let workers = deployment.workers(args.workers, &args.model_dir)?;
    let store = darkroom_shared::store::Store::connect(&deployment.database_url, 4).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let body = json!({"model": "tiny", "prompt": "a red apple", "width": 64, "height": 64, "steps": 1, "seed": 1});

    println!("queue-bench: {} worker(s), tiny-sd15 64x64 1 step, {} jobs per level", args.workers, args.jobs);
    println!("| clients | jobs/s | e2e p50 ms | compute p50 ms | overhead p50 ms | overhead p99 ms | queue wait p50 ms | worker p50 ms | api p50 ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (level, &clients) in std::iter::once(&1).chain(args.clients.iter()).enumerate() {
        let jobs = if level == 0 { 20 } else { args.jobs }; // level 0 warms up
        let started = Instant::now();
        let per_client = jobs.div_ceil(clients);
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (http, base, token, body) = (http.clone(), base.clone(), token.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..per_client {
                    let t = Instant::now();
                    let r = http.post(format!("{base}/v1/jobs")).bearer_auth(&token).header("Prefer", "wait=120").json(&body).send().await?;
                    let status = r.status();
                    let job: Value = r.json().await?;
                    let e2e = t.elapsed();
                    if status != 200 || job["status"] != "succeeded" {
                        bail!("job not finished: {status} {job}");
                    }
                    out.push((job["id"].as_str().unwrap_or_default().to_string(), e2e));
                }
                Ok::<_, anyhow::Error>(out)
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.extend(t.await??);
        }
        let elapsed = started.elapsed();
        if level == 0 {
            continue;
        }
        let (mut e2e, mut compute, mut overhead, mut waits) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut worker_side, mut api_side) = (Vec::new(), Vec::new());
        for (job, t) in &results {
            let id: uuid::Uuid = job.parse()?;
            let c = store.compute_time_ms(id).await?.context("compute time recorded")?;
            let (wait, held): (f64, f64) = sqlx::query_as(
                "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000, extract(epoch FROM finished_at - started_at)::float8 * 1000 FROM jobs WHERE id = $1",
            )
            .bind(id)
            .fetch_one(store.pool())
            .await?;
            let t = t.as_secs_f64() * 1e3;
            worker_side.push(held - c);
            api_side.push(t - wait - held);
            e2e.push(t);
            compute.push(c);
            overhead.push(t - c);
            waits.push(wait);
        }
        for v in [&mut e2e, &mut compute, &mut overhead, &mut waits, &mut worker_side, &mut api_side] {
            v.sort_by(|a, b| a.total_cmp(b));
        }
        println!(
            "| {clients} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            results.len() as f64 / elapsed.as_secs_f64(),
            percentile(&e2e, 50.0),
            percentile(&compute, 50.0),
            percentile(&overhead, 50.0),
            percentile(&overhead, 99.0),
            percentile(&waits, 50.0),
            percentile(&worker_side, 50.0),
            percentile(&api_side, 50.0)
        );
    }
    drop(workers);
    deployment.drop_database().await?;
    Ok(())
}
