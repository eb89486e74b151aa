//! `darkroom-worker generate`: load one model, make the images the flags ask for (showing their
//! progress on stderr: `progress.rs`), write each with its infotext, and print the time every
//! stage took. Also what `bench` shares with it:
//! loading a model, validation errors named after the flags, the timing report.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use darkroom_shared::infotext::Infotext;
use darkroom_shared::request::OutputFormat;
use darkroom_worker::pipeline::{Pipeline, PipelineError, Timings};
use darkroom_worker::runtime::Runtime;
use darkroom_worker::{output, request};

use crate::cli::{Common, GenerateArgs};
use crate::progress::Progress;

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let format = format_of(&args.output)?;
    let mut req = args.common.request();
    req.num_images = args.num_images;
    req.strength = args.strength;
    req.output_format = format;
    if let Some(path) = &args.init_image {
        let bytes = std::fs::read(path).with_context(|| format!("reading --init-image {}", path.display()))?;
        req.init_image = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    let (mut pipeline, load_time) = load(&args.common)?;
    let (validated, params) = request::resolve_validated(&req, pipeline.model()).map_err(flag_error)?;
    let mut progress = Progress::new(args.progress, args.progress_every, params.num_images);
    let (images, timings) = pipeline.generate(&params, &mut progress)?;
    let model_name = pipeline.model().name();
    let size = (params.width as u32, params.height as u32);
    for img in &images {
        let path = output_path(&args.output, img.index, images.len());
        let info = Infotext::new(&validated, img.seed, size, &model_name);
        let bytes = output::encode(&img.image, format, &info.to_string())?;
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        println!("image {} seed {} -> {}", img.index, img.seed, path.display());
    }
    print_timings("load", load_time);
    report(&timings);
    Ok(())
}

/// The pipeline for `--model-dir` on the chosen execution provider, and how long loading took.
pub fn load(common: &Common) -> anyhow::Result<(Pipeline, Duration)> {
    let runtime = Runtime::new(common.ep, common.threads)?;
    let t = Instant::now();
    let pipeline = Pipeline::load(&runtime, &common.model_dir)?;
    Ok((pipeline, t.elapsed()))
}

fn format_of(path: &Path) -> anyhow::Result<OutputFormat> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    OutputFormat::parse(ext).with_context(|| format!("{}: the output's extension must be .png, .jpg, .jpeg or .webp", path.display()))
}

/// Name CLI flags the way the user typed them in validation errors.
pub fn flag_error(e: PipelineError) -> anyhow::Error {
    match e {
        PipelineError::Invalid { field, message } => {
            let flag = match field {
                "guidance_scale" => "guidance".to_string(),
                f => f.replace('_', "-"),
            };
            // The message may name the field itself ("prompt: ..."): once is enough.
            let message = message.strip_prefix(&format!("{field}: ")).unwrap_or(&message);
            anyhow::anyhow!("--{flag}: {message}")
        }
        other => other.into(),
    }
}

/// `--output` itself for one image; `NAME-i.EXT` for image i of several.
fn output_path(base: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return base.to_path_buf();
    }
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = base.extension().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    base.with_file_name(format!("{stem}-{index}.{ext}"))
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_timings(stage: &str, d: Duration) {
    println!("{stage:>12}: {:10.2} ms", ms(d));
}

/// One line per stage, the UNet's per step, and how much of the total ran outside ONNX Runtime.
pub fn report(t: &Timings) {
    print_timings("tokenize", t.tokenize);
    print_timings("text encode", t.text_encode);
    if t.vae_encode > Duration::ZERO {
        print_timings("vae encode", t.vae_encode);
    }
    let unet: Duration = t.unet_steps.iter().sum();
    println!("{:>12}: {:10.2} ms ({} steps, {:.2} ms/step)", "unet", ms(unet), t.unet_steps.len(), ms(unet) / t.unet_steps.len().max(1) as f64);
    print_timings("vae decode", t.vae_decode);
    print_timings("total", t.total);
    let outside = t.total.saturating_sub(t.in_onnx_runtime);
    println!(
        "{:>12}: {:10.2} ms ({:.2}% of total outside ONNX Runtime's session runs)",
        "ours",
        ms(outside),
        100.0 * outside.as_secs_f64() / t.total.as_secs_f64().max(1e-9)
    );
}
