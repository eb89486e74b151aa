//! `darkroom-worker bench`: time every stage of one model over several runs after a warm-up,
//! print the means, and optionally run Optimum's Python pipeline
//! (tools/bench/optimum_pipeline.py) on the same model and settings for the ratio.
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use darkroom_worker::model::Family;
use darkroom_worker::pipeline::{GenerateParams, NoObserver, Timings};
use darkroom_worker::rng::TorchRng;
use darkroom_worker::{preview, request};

use crate::cli::BenchArgs;
use crate::generate::{flag_error, load, ms, report};

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let mut req = c.request();
    req.seed = Some(c.seed.unwrap_or(42));
    let (mut pipeline, _) = load(c)?;
    let params = request::resolve(&req, pipeline.model()).map_err(flag_error)?;
    for _ in 0..args.warmup {
        pipeline.generate(&params, &mut NoObserver)?;
    }
    let mut runs = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        runs.push(pipeline.generate(&params, &mut NoObserver)?.1);
    }
    if runs.is_empty() {
        bail!("--runs must be at least 1");
    }
    let mean_timings = mean(&runs);
    let mean_total = mean_timings.total;
    let min_total = runs.iter().map(|t| t.total).min().unwrap_or_default();
    println!(
        "darkroom: {} runs of {}x{}, {} steps, {} ({}), mean per stage:",
        runs.len(),
        params.width,
        params.height,
        params.steps,
        params.sampler,
        c.model_dir.display()
    );
    report(&mean_timings);
    println!("darkroom wall per image: mean {:.2} ms, min {:.2} ms", ms(mean_total), ms(min_total));
    if args.previews > 0 {
        let steps = &mean_timings.unet_steps;
        let step = steps.iter().sum::<Duration>() / (steps.len().max(1) as u32);
        let f = pipeline.model().vae_scale_factor;
        let own = (pipeline.model().family, params.height / f, params.width / f);
        for (family, h, w) in [(Family::Sd, 64, 64), (Family::Sdxl, 128, 128), own] {
            let (matrix, png) = preview_cost(family, h, w, args.previews)?;
            let total = matrix + png;
            println!(
                "preview of {w}x{h} latents ({family}, {} runs): matrix {:.1} us + PNG {:.1} us = {:.1} us, {:.3} % of this run's UNet step ({:.2} ms)",
                args.previews,
                matrix.as_secs_f64() * 1e6,
                png.as_secs_f64() * 1e6,
                total.as_secs_f64() * 1e6,
                100.0 * total.as_secs_f64() / step.as_secs_f64(),
                ms(step),
            );
        }
    }
    if let Some(python) = &args.compare_python {
        let (py_mean, py_min) = python_bench(python, &args, &params)?;
        println!("optimum (python) wall per image: mean {py_mean:.2} ms, min {py_min:.2} ms");
        println!("ratio darkroom/optimum: mean {:.3}, min {:.3}", ms(mean_total) / py_mean, ms(min_total) / py_min);
    }
    Ok(())
}

/// The mean of every stage over `runs` (at least one).
fn mean(runs: &[Timings]) -> Timings {
    let n = runs.len() as u32;
    let mean = |f: &dyn Fn(&Timings) -> Duration| runs.iter().map(f).sum::<Duration>() / n;
    Timings {
        tokenize: mean(&|t| t.tokenize),
        text_encode: mean(&|t| t.text_encode),
        vae_encode: mean(&|t| t.vae_encode),
        unet_steps: (0..runs[0].unet_steps.len()).map(|i| runs.iter().map(|t| t.unet_steps[i]).sum::<Duration>() / n).collect(),
        vae_decode: mean(&|t| t.vae_decode),
        in_onnx_runtime: mean(&|t| t.in_onnx_runtime),
        total: mean(&|t| t.total),
    }
}

/// The mean time of one live preview of `h`×`w` latents, in its two parts: the linear map to RGB
/// (on the pipeline's thread) and the PNG encoding with base64 (on the async side). The latents
/// are standard-normal noise (what early steps hold; the cost does not depend on the values).
fn preview_cost(family: Family, h: usize, w: usize, runs: usize) -> anyhow::Result<(Duration, Duration)> {
    let latents = TorchRng::new(7).randn(preview::LATENT_CHANNELS * h * w);
    let (mut matrix, mut png) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..runs {
        let t = Instant::now();
        let image = preview::approximate(family, &latents, h, w).context("latents of the wrong size")?;
        let t2 = Instant::now();
        let encoded = preview::encode(&image, 1, 1)?;
        png += t2.elapsed();
        matrix += t2 - t;
        std::hint::black_box(encoded);
    }
    Ok((matrix / runs as u32, png / runs as u32))
}

/// Run Optimum's pipeline with `python` on the same model and settings; its wall time per
/// image in milliseconds, mean and min.
fn python_bench(python: &Path, args: &BenchArgs, params: &GenerateParams) -> anyhow::Result<(f64, f64)> {
    let c = &args.common;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/bench/optimum_pipeline.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(&script)
        .args(["--model-dir", &c.model_dir.to_string_lossy(), "--prompt", &c.prompt])
        .args(["--width", &params.width.to_string(), "--height", &params.height.to_string()])
        .args(["--steps", &params.steps.to_string(), "--guidance", &params.guidance_scale.to_string()])
        .args(["--sampler", &params.sampler.to_string(), "--seed", &params.seed.to_string()])
        .args(["--runs", &args.runs.to_string(), "--warmup", &args.warmup.to_string()]);
    if let Some(neg) = &c.negative_prompt {
        cmd.args(["--negative-prompt", neg]);
    }
    if let Some(t) = c.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    let out = cmd.output().with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("the Python benchmark failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(line.lines().last().unwrap_or("")).context("parsing the Python benchmark's JSON line")?;
    let py_mean = json["wall_s_per_image_mean"].as_f64().context("wall_s_per_image_mean")? * 1e3;
    let py_min = json["wall_s_per_image_min"].as_f64().context("wall_s_per_image_min")? * 1e3;
    Ok((py_mean, py_min))
}
