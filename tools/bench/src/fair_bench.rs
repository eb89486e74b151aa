//! `fair-bench`: how the queue shares the workers between tenants with skewed loads.
//!
//! Starts a real `darkroom-api` and N real `darkroom-worker`s (the tiny SD 1.5 model, 64×64) on a
//! fresh database and Redis prefix, with one heavy tenant and several light ones, none of them
//! rate-limited or under a quota. The heavy tenant first submits its whole backlog of large jobs
//! (8 images each) at once; then each light tenant submits 1-image jobs in bursts (by default 5
//! every 500 ms, the tenants' bursts spread over that interval), faster than its share of the
//! workers drains them, so that it has work queued until its last job. When every light job has
//! finished, the heavy tenant's remaining jobs are canceled and the shares are read from
//! Postgres' timestamps:
//!
//! - the **contended period** runs from the first job's start to the last light job's finish;
//! - a tenant's **GPU time** is the sum over its jobs of `finished_at - started_at`, each clipped
//!   to the contended period (the worker's whole hold on the job: compute, encoding, storing);
//! - **Jain's index** of `x` over the n tenants is `(Σx)² / (n Σx²)`: 1 when all are equal, 1/n
//!   when one tenant has everything. Over `x = GPU time / weight` it measures fairness only when
//!   every tenant had work (a job queued or running) the whole period; the tool prints the share
//!   of the period when all did. The **demand-adjusted** index uses `x = GPU time / fair share`,
//!   where a tenant's fair share accrues only while it has work: at every instant, the workers
//!   then running jobs are split between the tenants that have work, in proportion to their
//!   weights, integrated over the period. A tenant with no
//!   work is owed nothing (the heavy tenant alone before the light ones arrive, a light tenant
//!   after its last job); when every tenant has work all along, the fair shares are the equal
//!   (weighted) shares and both indexes are the same. Workers are not preempted, so a job that
//!   waits for a running one counts as share owed until the scheduler makes it up; a tenant
//!   whose jobs come one at a time, each waiting behind a long job, therefore looks under-served
//!   though no work-conserving scheduler could have started it sooner: with such sparse light
//!   load neither index is meaningful, and the waits are the measure.
//!   (Comparing against an ideal scheduler's *total* service would not work here: the period
//!   ends when the light tenants' demand is exhausted, so any schedule serves them all of it.)
//! - the **wait** of a job is `started_at - created_at`, over the jobs started in the period;
//!   **first start** is a tenant's first start minus its first submission.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use uuid::Uuid;

use common::{percentile, Deployment};

mod common;

#[derive(Parser, Debug)]
#[command(about = "Measure how fairly the queue shares the workers between a heavy tenant and light ones")]
struct Args {
    /// Directory holding darkroom-api and darkroom-worker.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Model directory the workers serve.
    #[arg(long, default_value = "tests/fixtures/models/tiny-sd15")]
    model_dir: PathBuf,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Jobs in the heavy tenant's backlog, submitted first.
    #[arg(long, default_value_t = 40)]
    heavy_jobs: usize,
    /// Images per heavy job.
    #[arg(long, default_value_t = 8)]
    heavy_images: u32,
    /// The heavy tenant's weight (the light tenants' is 1).
    #[arg(long, default_value_t = 1.0)]
    heavy_weight: f64,
    /// Light tenants.
    #[arg(long, default_value_t = 4)]
    light_tenants: usize,
    /// Jobs of each light tenant (1 image each).
    #[arg(long, default_value_t = 30)]
    light_jobs: usize,
    /// Jobs a light tenant submits at once.
    #[arg(long, default_value_t = 5)]
    light_burst: usize,
    /// Milliseconds between a light tenant's bursts (the tenants' bursts are spread over it).
    #[arg(long, default_value_t = 500)]
    light_every_ms: u64,
    /// Steps of every job (Euler).
    #[arg(long, default_value_t = 20)]
    steps: u32,
    /// Width and height of every image.
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Also print every job's creation, start and finish (seconds from the first start) to stderr.
    #[arg(long)]
    timeline: bool,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

/// One job's timestamps, in seconds since the epoch.
#[derive(Clone, Debug)]
struct JobTimes {
    tenant: usize,
    created: f64,
    started: Option<f64>,
    finished: Option<f64>,
}

/// Each tenant's GPU time within `[t0, t1]` and its fair share of it (see the module docs), and
/// how long within it every tenant had work.
#[derive(Debug)]
struct Shares {
    gpu: Vec<f64>,
    fair: Vec<f64>,
    all_backlogged: f64,
}

fn shares(jobs: &[JobTimes], weights: &[f64], t0: f64, t1: f64) -> Shares {
    let n = weights.len();
    let end = |j: &JobTimes| j.finished.unwrap_or(f64::INFINITY);
    let mut gpu = vec![0.0; n];
    for j in jobs {
        if let Some(s) = j.started {
            gpu[j.tenant] += (end(j).min(t1) - s.max(t0)).max(0.0);
        }
    }
    let mut points: Vec<f64> = vec![t0, t1];
    for j in jobs {
        points.extend([Some(j.created), j.started, j.finished].into_iter().flatten().filter(|t| *t > t0 && *t < t1));
    }
    points.sort_by(f64::total_cmp);
    points.dedup();
    // Between two consecutive events the jobs running and the tenants with work are constant:
    // split the jobs running then between those tenants by weight.
    let (mut fair, mut all_backlogged) = (vec![0.0; n], 0.0);
    for w in points.windows(2) {
        let (len, mid) = (w[1] - w[0], (w[0] + w[1]) / 2.0);
        let mut backlogged = vec![false; n];
        let mut running = 0usize;
        for j in jobs {
            if j.created <= mid && mid < end(j) {
                backlogged[j.tenant] = true;
            }
            if j.started.is_some_and(|s| s <= mid) && mid < end(j) {
                running += 1;
            }
        }
        let total_weight: f64 = (0..n).filter(|&i| backlogged[i]).map(|i| weights[i]).sum();
        if total_weight > 0.0 {
            for i in (0..n).filter(|&i| backlogged[i]) {
                fair[i] += len * running as f64 * weights[i] / total_weight;
            }
        }
        if backlogged.iter().all(|b| *b) {
            all_backlogged += len;
        }
    }
    Shares { gpu, fair, all_backlogged }
}

/// Jain's fairness index: `(Σx)² / (n Σx²)`.
fn jain(x: &[f64]) -> f64 {
    let (sum, squares) = x.iter().fold((0.0, 0.0), |(s, q), v| (s + v, q + v * v));
    if squares == 0.0 {
        return f64::NAN;
    }
    sum * sum / (x.len() as f64 * squares)
}

/// Submit one job without waiting; returns its id.
async fn submit(http: &reqwest::Client, base: &str, token: &str, body: &Value) -> anyhow::Result<Uuid> {
    let r = http.post(format!("{base}/v1/jobs")).bearer_auth(token).json(body).send().await?;
    let status = r.status();
    let job: Value = r.json().await?;
    if status != 202 {
        bail!("submission refused: {status} {job}");
    }
    job["id"].as_str().context("job id")?.parse().context("job id")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.light_tenants == 0 || args.light_jobs == 0 || args.light_burst == 0 {
        bail!("--light-tenants, --light-jobs and --light-burst must be above 0");
    }
    let deployment = Deployment::new(&args.bin_dir, &args.postgres, &args.redis_url);
    let outcome = run(&args, &deployment).await;
    deployment.drop_database().await?;
    outcome
}

/// Set up the tenants, start the service, submit, wait, cancel, report.
async fn run(args: &Args, deployment: &Deployment) -> anyhow::Result<()> {
    let names: Vec<String> = std::iter::once("heavy".to_string()).chain((1..=args.light_tenants).map(|i| format!("light-{i}"))).collect();
    let weights: Vec<f64> = names.iter().enumerate().map(|(i, _)| if i == 0 { args.heavy_weight } else { 1.0 }).collect();
    let mut tokens = Vec::new();
    for (name, weight) in names.iter().zip(&weights) {
        deployment.admin(&["tenant", "create", name])?;
        deployment.admin(&["tenant", "set", name, "--rate", "0", "--max-queued", "0", "--weight", &weight.to_string()])?;
        tokens.push(deployment.admin(&["token", "issue", name])?);
    }
    let (_api, base) = deployment.serve()?;
    let workers = deployment.workers(args.workers, &args.model_dir)?;
    let pool = sqlx::PgPool::connect(&deployment.database_url).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let body = |images: u32, seed: usize| {
        json!({"model": "tiny", "prompt": "a red apple", "width": args.size, "height": args.size, "steps": args.steps,
               "sampler": "Euler", "num_images": images, "seed": seed})
    };

    // The heavy tenant's backlog first (all at once), then the light tenants' bursts: burst c of
    // light tenant k (from 0) at c × every + k × every / light tenants.
    let submitting = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..args.heavy_jobs {
        let (http, base, token, body) = (http.clone(), base.clone(), tokens[0].clone(), body(args.heavy_images, n * 8));
        tasks.push(tokio::spawn(async move { submit(&http, &base, &token, &body).await }));
    }
    let mut heavy = Vec::new();
    for t in tasks {
        heavy.push(t.await??);
    }
    let heavy_submitted = submitting.elapsed();
    let clock = tokio::time::Instant::now();
    let every = Duration::from_millis(args.light_every_ms);
    let mut tasks = Vec::new();
    for (k, token) in tokens[1..].iter().enumerate() {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        let bodies: Vec<Value> = (0..args.light_jobs).map(|n| body(1, 1_000_000 * (k + 1) + n)).collect();
        let (burst, offset) = (args.light_burst, every * k as u32 / args.light_tenants as u32);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for (c, chunk) in bodies.chunks(burst).enumerate() {
                tokio::time::sleep_until(clock + offset + every * c as u32).await;
                for b in chunk {
                    ids.push(submit(&http, &base, &token, b).await?);
                }
            }
            Ok::<_, anyhow::Error>(ids)
        }));
    }
    let mut light = Vec::new();
    for t in tasks {
        light.extend(t.await??);
    }

    // Every light job finished, then cancel the rest of the heavy backlog.
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let (open, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status IN ('queued', 'running')), count(*) FILTER (WHERE status IN ('failed', 'canceled')) FROM jobs WHERE id = ANY($1)",
        )
        .bind(&light)
        .fetch_one(&pool)
        .await?;
        if failed > 0 {
            bail!("{failed} light job(s) failed or were canceled");
        }
        if open == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{open} light job(s) still unfinished after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &heavy {
        let r = http.post(format!("{base}/v1/jobs/{id}/cancel")).bearer_auth(&tokens[0]).send().await?;
        if !r.status().is_success() {
            bail!("cancel {id}: {}", r.status());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (running,): (i64,) = sqlx::query_as("SELECT count(*) FROM jobs WHERE status = 'running'").fetch_one(&pool).await?;
        if running == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(workers);

    let rows: Vec<(String, f64, Option<f64>, Option<f64>)> = sqlx::query_as(
        "SELECT t.name, extract(epoch FROM j.created_at)::float8, extract(epoch FROM j.started_at)::float8, extract(epoch FROM j.finished_at)::float8
         FROM jobs j JOIN tenants t ON t.id = j.tenant_id",
    )
    .fetch_all(&pool)
    .await?;
    let mut jobs = Vec::new();
    for (name, created, started, finished) in rows {
        let tenant = names.iter().position(|n| *n == name).context("unknown tenant")?;
        jobs.push(JobTimes { tenant, created, started, finished });
    }
    let t0 = jobs.iter().filter_map(|j| j.started).min_by(f64::total_cmp).context("no job started")?;
    let t1 = jobs.iter().filter(|j| j.tenant > 0).filter_map(|j| j.finished).max_by(f64::total_cmp).context("no light job finished")?;
    if args.timeline {
        let mut by_start: Vec<&JobTimes> = jobs.iter().filter(|j| j.started.is_some()).collect();
        by_start.sort_by(|a, b| a.started.unwrap_or(0.0).total_cmp(&b.started.unwrap_or(0.0)));
        for j in by_start {
            let at = |t: Option<f64>| t.map(|t| format!("{:8.3}", t - t0)).unwrap_or_else(|| "       -".into());
            eprintln!("{:8} created {} started {} finished {}", names[j.tenant], at(Some(j.created)), at(j.started), at(j.finished));
        }
    }
    let s = shares(&jobs, &weights, t0, t1);
    let total: f64 = s.gpu.iter().sum();
    let plain: Vec<f64> = s.gpu.iter().zip(&weights).map(|(g, w)| g / w).collect();
    let adjusted: Vec<f64> = s.gpu.iter().zip(&s.fair).map(|(g, f)| g / f).collect();

    println!(
        "fair-bench: {} worker(s), tiny-sd15 {}x{} {} steps Euler; heavy: {} jobs × {} images (weight {}), submitted in {:.2} s; \
         {} light tenants: {} jobs × 1 image, {} at once every {} ms",
        args.workers,
        args.size,
        args.size,
        args.steps,
        args.heavy_jobs,
        args.heavy_images,
        args.heavy_weight,
        heavy_submitted.as_secs_f64(),
        args.light_tenants,
        args.light_jobs,
        args.light_burst,
        args.light_every_ms
    );
    println!(
        "contended period {:.2} s (first start → last light finish), all tenants with work {:.1} % of it, GPU time {:.2} s ({:.1} % of {} workers)",
        t1 - t0,
        100.0 * s.all_backlogged / (t1 - t0),
        total,
        100.0 * total / ((t1 - t0) * args.workers as f64),
        args.workers
    );
    println!("Jain's index of GPU time / weight: {:.4}; demand-adjusted: {:.4}", jain(&plain), jain(&adjusted));
    println!();
    println!("| tenant | weight | started in period | GPU time | share | fair share | GPU time / fair | first start | wait p50 | wait p95 |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, name) in names.iter().enumerate() {
        let mine: Vec<&JobTimes> = jobs.iter().filter(|j| j.tenant == i).collect();
        let first_created = mine.iter().map(|j| j.created).min_by(f64::total_cmp).unwrap_or(f64::NAN);
        let first = mine.iter().filter_map(|j| j.started).min_by(f64::total_cmp).unwrap_or(f64::NAN) - first_created;
        let mut waits: Vec<f64> = mine.iter().filter_map(|j| j.started.filter(|s| *s <= t1).map(|s| s - j.created)).collect();
        waits.sort_by(f64::total_cmp);
        println!(
            "| {name} | {} | {} of {} | {:.2} s | {:.1} % | {:.1} % | {:.3} | {:.2} s | {:.2} s | {:.2} s |",
            weights[i],
            waits.len(),
            mine.len(),
            s.gpu[i],
            100.0 * s.gpu[i] / total,
            100.0 * s.fair[i] / total,
            adjusted[i],
            first,
            percentile(&waits, 50.0),
            percentile(&waits, 95.0)
        );
    }
    pool.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(tenant: usize, created: f64, started: f64, finished: f64) -> JobTimes {
        JobTimes { tenant, created, started: Some(started), finished: Some(finished) }
    }

    fn ratios(s: &Shares) -> Vec<f64> {
        s.gpu.iter().zip(&s.fair).map(|(g, f)| g / f).collect()
    }

    #[test]
    fn jain_index() {
        assert_eq!(jain(&[1.0, 1.0, 1.0, 1.0]), 1.0);
        assert_eq!(jain(&[1.0, 0.0, 0.0, 0.0]), 0.25);
        assert!((jain(&[2.0, 1.0]) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn gpu_time_is_clipped_to_the_period() {
        // One worker, period [0, 8]. Tenant 0 runs 0–4, then 6–10 (cut at 8); tenant 1's job
        // arrives at 3 and runs 4–6. Tenant 0 alone has work on 0–3 and 6–8, both on 3–6.
        let jobs = [job(0, 0.0, 0.0, 4.0), job(0, 0.0, 6.0, 10.0), job(1, 3.0, 4.0, 6.0)];
        let s = shares(&jobs, &[1.0, 1.0], 0.0, 8.0);
        assert_eq!(s.gpu, vec![6.0, 2.0]);
        assert_eq!(s.fair, vec![6.5, 1.5]);
        assert_eq!(s.all_backlogged, 3.0);
    }

    #[test]
    fn a_tenant_served_out_of_turn() {
        // One worker, both tenants with work all along; tenant 0 gets 3 s of 4.
        let jobs = [job(0, 0.0, 0.0, 3.0), job(0, 0.0, 4.0, 7.0), job(1, 0.0, 3.0, 4.0), job(1, 0.0, 7.0, 8.0)];
        let s = shares(&jobs, &[1.0, 1.0], 0.0, 4.0);
        assert_eq!(s.gpu, vec![3.0, 1.0]);
        assert_eq!(s.fair, vec![2.0, 2.0]);
        assert_eq!(s.all_backlogged, 4.0);
        assert!((jain(&ratios(&s)) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn a_tenant_out_of_work_is_owed_nothing_more() {
        // One worker, period [0, 4]. Tenant 0 has one job (1–2) and no work after 2; tenant 1
        // runs 0–1, 2–3 and 3–4. Equal GPU time would not be fair; the shares are.
        let jobs = [job(0, 0.0, 1.0, 2.0), job(1, 0.0, 0.0, 1.0), job(1, 0.0, 2.0, 3.0), job(1, 0.0, 3.0, 4.0)];
        let s = shares(&jobs, &[1.0, 1.0], 0.0, 4.0);
        assert_eq!(s.gpu, vec![1.0, 3.0]);
        assert_eq!(s.fair, vec![1.0, 3.0]);
        assert_eq!(jain(&ratios(&s)), 1.0);
        assert!((jain(&s.gpu) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn weights_scale_the_fair_share() {
        // One worker, weights 3:1, both with work all along (tenant 0's second job is canceled
        // at 5 before it starts).
        let canceled = JobTimes { tenant: 0, created: 0.0, started: None, finished: Some(5.0) };
        let jobs = [job(0, 0.0, 0.0, 3.0), canceled, job(1, 0.0, 3.0, 4.0)];
        let s = shares(&jobs, &[3.0, 1.0], 0.0, 4.0);
        assert_eq!(s.gpu, vec![3.0, 1.0]);
        assert_eq!(s.fair, vec![3.0, 1.0]);
        assert_eq!(jain(&ratios(&s)), 1.0);
    }
}
