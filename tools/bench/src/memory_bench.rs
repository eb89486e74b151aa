//! `memory-bench`: what reading jobs costs the API in memory when the jobs carry large init
//! images.
//!
//! Starts a real `darkroom-api` and one real `darkroom-worker` (the tiny SD 1.5 model) on a fresh
//! database and Redis prefix, submits `--jobs` img2img jobs whose init image is a PNG of random
//! pixels about `--image-mb` MB in base64 (incompressible, so the PNG is as large as it says),
//! waits until the worker has run them all, then reads the tenant's jobs over and over: `GET
//! /v1/jobs?limit=100` `--reads` times, then A1111's `/sdapi/v1/progress` as often. It prints the
//! API's resident memory (VmRSS, and the peak VmHWM, from `/proc`) before and after each round of
//! reads. An init image is stored apart from the job's request and read only by the worker, so
//! the reads must not grow the API's memory by more than a small, constant amount.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::Parser;
use serde_json::{json, Value};

use common::Deployment;

mod common;

#[derive(Parser, Debug)]
#[command(about = "Measure the API's memory while listing jobs that carry large init images")]
struct Args {
    /// Directory holding darkroom-api and darkroom-worker.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Model directory the worker serves (it needs a VAE encoder: img2img).
    #[arg(long, default_value = "tests/fixtures/models/tiny-sd15")]
    model_dir: PathBuf,
    /// img2img jobs to submit.
    #[arg(long, default_value_t = 100)]
    jobs: usize,
    /// Size of each init image, in MB of base64.
    #[arg(long, default_value_t = 12.0)]
    image_mb: f64,
    /// How many times each read is repeated.
    #[arg(long, default_value_t = 20)]
    reads: usize,
    /// Postgres server URL, without a database.
    #[arg(long, env = "DARKROOM_BENCH_POSTGRES", default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

/// A PNG of random RGB pixels whose base64 is about `mb` MB.
fn noise_png_b64(mb: f64) -> anyhow::Result<String> {
    // base64 is 4/3 of the bytes, and random pixels do not compress: 3 bytes a pixel.
    let pixels = mb * 1e6 * 0.75 / 3.0;
    let side = pixels.sqrt() as u32;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<u8> = (0..side as usize * side as usize * 3)
        .map(|_| {
            // xorshift64*: fast, and random enough that deflate gains nothing.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect();
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, side, side);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_compression(png::Compression::Fast);
        encoder.write_header()?.write_image_data(&data)?;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(png))
}

/// The process' resident set and its peak, in MB, from `/proc/PID/status`.
fn rss_mb(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| -> anyhow::Result<f64> {
        let line = status.lines().find(|l| l.starts_with(key)).with_context(|| format!("{key} in /proc/{pid}/status"))?;
        Ok(line.split_whitespace().nth(1).context("value")?.parse::<f64>()? / 1024.0)
    };
    Ok((kb("VmRSS:")?, kb("VmHWM:")?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let deployment = Deployment::new(&args.bin_dir, &args.postgres, &args.redis_url);
    let result = run(&args, &deployment).await;
    deployment.drop_database().await?;
    result
}

async fn run(args: &Args, deployment: &Deployment) -> anyhow::Result<()> {
    deployment.admin(&["tenant", "create", "mem"])?;
    deployment.admin(&["tenant", "set", "mem", "--rate", "0", "--max-queued", "0"])?;
    let token = deployment.admin(&["token", "issue", "mem"])?;
    let (api, base) = deployment.serve()?;
    let _workers = deployment.workers(1, &args.model_dir)?;
    let http = reqwest::Client::new();
    let pid = api.id();

    let image = noise_png_b64(args.image_mb)?;
    println!("init image: {:.1} MB of base64; {} jobs; API pid {pid}", image.len() as f64 / 1e6, args.jobs);
    let body = json!({"model": "tiny", "prompt": "memory", "width": 64, "height": 64, "steps": 2, "strength": 0.5, "init_image": image});
    let body = serde_json::to_vec(&body)?;
    drop(image);
    let (rss, _) = rss_mb(pid)?;
    println!("API after start:          RSS {rss:7.1} MB");
    let started = Instant::now();
    for i in 0..args.jobs {
        let r = http.post(format!("{base}/v1/jobs")).bearer_auth(&token).header("content-type", "application/json").body(body.clone()).send().await?;
        if r.status() != 202 {
            bail!("job {i}: {} {}", r.status(), r.text().await?);
        }
    }
    let (rss, hwm) = rss_mb(pid)?;
    println!("API after {} submissions: RSS {rss:7.1} MB (peak {hwm:.1} MB), {:.1} s", args.jobs, started.elapsed().as_secs_f64());

    // Wait until the worker has run every job (it reads each init image once).
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let list: Value = http.get(format!("{base}/v1/jobs?limit=100")).bearer_auth(&token).send().await?.json().await?;
        let jobs = list["data"].as_array().context("data")?;
        let unfinished = jobs.iter().filter(|j| j["status"] == "queued" || j["status"] == "running").count();
        let failed = jobs.iter().filter(|j| j["status"] == "failed").count();
        if failed > 0 {
            bail!("{failed} jobs failed: {}", jobs.iter().find(|j| j["status"] == "failed").map(|j| j["error"].to_string()).unwrap_or_default());
        }
        if unfinished == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{unfinished} jobs still unfinished");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("all {} jobs succeeded after {:.1} s", args.jobs, started.elapsed().as_secs_f64());

    let (before, _) = rss_mb(pid)?;
    println!("API before the reads:     RSS {before:7.1} MB");
    let mut listed = 0;
    for _ in 0..args.reads {
        let r = http.get(format!("{base}/v1/jobs?limit=100")).bearer_auth(&token).send().await?;
        if r.status() != 200 {
            bail!("list: {}", r.status());
        }
        listed += r.bytes().await?.len();
    }
    let (after_list, hwm) = rss_mb(pid)?;
    println!(
        "after {} × GET /v1/jobs?limit=100 ({:.1} KB each): RSS {after_list:7.1} MB, growth {:+.1} MB (peak {hwm:.1} MB)",
        args.reads,
        listed as f64 / args.reads as f64 / 1e3,
        after_list - before
    );
    for _ in 0..args.reads {
        let r = http.get(format!("{base}/sdapi/v1/progress")).bearer_auth(&token).send().await?;
        if r.status() != 200 {
            bail!("progress: {}", r.status());
        }
    }
    let (after_progress, hwm) = rss_mb(pid)?;
    println!("after {} × GET /sdapi/v1/progress: RSS {after_progress:7.1} MB, growth {:+.1} MB (peak {hwm:.1} MB)", args.reads, after_progress - after_list);
    println!("growth over all reads: {:+.1} MB", after_progress - before);
    Ok(())
}
