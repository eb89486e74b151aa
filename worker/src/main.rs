//! `darkroom-worker`: run Stable Diffusion ONNX pipelines from the command line.
//! `generate` makes images; `bench` times every stage (and, side by side, Optimum's Python pipeline).
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use darkroom_shared::infotext::Infotext;
use darkroom_shared::request::{defaults, GenerationRequest, OutputFormat};
use darkroom_worker::pipeline::{GenerateParams, NoObserver, Pipeline, Timings};
use darkroom_worker::runtime::{ProviderChoice, Runtime};
use darkroom_worker::{output, request};

#[derive(Parser, Debug)]
#[command(name = "darkroom-worker", version, about = "Darkroom worker: Stable Diffusion through ONNX Runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate images from a model directory (Optimum's ONNX layout).
    Generate(GenerateArgs),
    /// Time each stage over several runs; optionally run Optimum's Python pipeline side by side.
    Bench(BenchArgs),
    /// Serve jobs from the queue for the given models until SIGTERM or SIGINT.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// A model to serve, as NAME=DIR (DIR in Optimum's ONNX layout). NAME becomes the
    /// catalog's model id. Repeat for several models; env: comma-separated list.
    #[arg(long = "model", env = "DARKROOM_MODELS", value_delimiter = ',', required = true, value_parser = parse_model)]
    models: Vec<(String, PathBuf)>,
    /// Execution provider: cpu, cuda, cuda:N or auto.
    #[arg(long, env = "DARKROOM_EP", default_value = "auto")]
    ep: ProviderChoice,
    /// ONNX Runtime intra-op threads per session (default: ONNX Runtime's choice).
    #[arg(long, env = "DARKROOM_THREADS")]
    threads: Option<usize>,
    #[command(flatten)]
    backends: darkroom_shared::config::Backends,
    #[command(flatten)]
    delivery: darkroom_shared::config::Delivery,
    /// Seconds a claimed job stays ours without renewal; renewed every third of it.
    #[arg(long, env = "DARKROOM_LEASE_SECS", default_value_t = 30.0)]
    lease_secs: f64,
    /// Seconds after which a delivery taken from Redis but never claimed is handed out again.
    #[arg(long, env = "DARKROOM_REDELIVER_SECS", default_value_t = 30.0)]
    redeliver_secs: f64,
    /// Seconds between heartbeats.
    #[arg(long, env = "DARKROOM_HEARTBEAT_SECS", default_value_t = 5.0)]
    heartbeat_secs: f64,
    /// On SIGTERM, seconds the job in hand may still run before it is handed back.
    #[arg(long, env = "DARKROOM_SHUTDOWN_GRACE_SECS", default_value_t = 20.0)]
    shutdown_grace_secs: f64,
}

fn parse_model(s: &str) -> Result<(String, PathBuf), String> {
    let (name, dir) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=DIR"))?;
    let name = name.trim();
    if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c)) {
        return Err(format!("{name:?}: a model name is 1-128 characters of letters, digits and -_.:/"));
    }
    Ok((name.to_string(), PathBuf::from(dir)))
}

#[derive(Args, Debug)]
struct Common {
    /// Model directory exported by `optimum-cli export onnx`.
    #[arg(long, env = "DARKROOM_MODEL_DIR")]
    model_dir: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Image width in pixels (default: the model's native size).
    #[arg(long)]
    width: Option<u32>,
    /// Image height in pixels (default: the model's native size).
    #[arg(long)]
    height: Option<u32>,
    #[arg(long, default_value_t = defaults::STEPS)]
    steps: u32,
    /// Classifier-free guidance scale (guidance is off at 1 or below).
    #[arg(long, default_value_t = defaults::GUIDANCE_SCALE)]
    guidance: f32,
    /// Seed of image 0; image i uses seed + i (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// AUTOMATIC1111 name ("Euler a", "DPM++ 2M Karras", …) or diffusers class name.
    #[arg(long, default_value = defaults::SAMPLER)]
    sampler: String,
    /// Execution provider: cpu, cuda, cuda:N or auto.
    #[arg(long, env = "DARKROOM_EP", default_value = "auto")]
    ep: ProviderChoice,
    /// ONNX Runtime intra-op threads per session (default: ONNX Runtime's choice).
    #[arg(long, env = "DARKROOM_THREADS")]
    threads: Option<usize>,
}

#[derive(Args, Debug)]
struct GenerateArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = defaults::NUM_IMAGES)]
    num_images: u32,
    /// img2img: start from this image (PNG, JPEG or WebP), resized to the target size.
    #[arg(long)]
    init_image: Option<PathBuf>,
    /// img2img: how much of the init image to re-noise, in (0, 1].
    #[arg(long, requires = "init_image")]
    strength: Option<f32>,
    /// Output file; the format follows its extension (.png, .jpg, .webp). With several
    /// images, image i is written to NAME-i.EXT.
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Args, Debug)]
struct BenchArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Also run tools/bench/optimum_pipeline.py with this Python, on the same model and settings.
    #[arg(long)]
    compare_python: Option<PathBuf>,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,ort=warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate(args),
        Command::Bench(args) => bench(args),
        Command::Run(args) => serve(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The CLI's flags as a canonical request; the model is named after its directory.
fn canonical(common: &Common) -> GenerationRequest {
    let model = common.model_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    GenerationRequest {
        negative_prompt: common.negative_prompt.clone(),
        width: common.width,
        height: common.height,
        steps: common.steps,
        guidance_scale: common.guidance,
        sampler: common.sampler.clone(),
        seed: common.seed,
        ..GenerationRequest::new(model, common.prompt.clone())
    }
}

fn load(common: &Common) -> anyhow::Result<(Pipeline, Duration)> {
    let runtime = Runtime::new(common.ep, common.threads)?;
    let t = std::time::Instant::now();
    let pipeline = Pipeline::load(&runtime, &common.model_dir)?;
    Ok((pipeline, t.elapsed()))
}

fn format_of(path: &Path) -> anyhow::Result<OutputFormat> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    OutputFormat::parse(ext).with_context(|| format!("{}: the output's extension must be .png, .jpg, .jpeg or .webp", path.display()))
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let format = format_of(&args.output)?;
    let mut req = canonical(&args.common);
    req.num_images = args.num_images;
    req.strength = args.strength;
    req.output_format = format;
    if let Some(path) = &args.init_image {
        let bytes = std::fs::read(path).with_context(|| format!("reading --init-image {}", path.display()))?;
        req.init_image = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    let (mut pipeline, load_time) = load(&args.common)?;
    let params = request::resolve(&req, pipeline.model()).map_err(flag_error)?;
    let (images, timings) = pipeline.generate(&params, &mut NoObserver)?;
    let model_name = pipeline.model().name();
    let sampler_name = params.sampler.to_string();
    for img in &images {
        let path = output_path(&args.output, img.index, images.len());
        let info = infotext(&params, &sampler_name, img.seed, &model_name);
        let bytes = output::encode(&img.image, format, &info.to_string())?;
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        println!("image {} seed {} -> {}", img.index, img.seed, path.display());
    }
    print_timings("load", load_time);
    report(&timings);
    Ok(())
}

/// Name CLI flags the way the user typed them in validation errors.
fn flag_error(e: darkroom_worker::pipeline::PipelineError) -> anyhow::Error {
    use darkroom_worker::pipeline::PipelineError::Invalid;
    match e {
        Invalid { field, message } => {
            let flag = match field {
                "guidance_scale" => "guidance".to_string(),
                f => f.replace('_', "-"),
            };
            anyhow::anyhow!("--{flag}: {message}")
        }
        other => other.into(),
    }
}

fn infotext<'a>(p: &'a GenerateParams, sampler: &'a str, seed: u64, model: &'a str) -> Infotext<'a> {
    Infotext {
        prompt: &p.prompt,
        negative_prompt: p.negative_prompt.as_deref(),
        steps: p.steps as u32,
        sampler,
        guidance_scale: p.guidance_scale,
        seed,
        width: p.width as u32,
        height: p.height as u32,
        model,
        denoising_strength: p.init_image.as_ref().map(|_| p.strength),
    }
}

fn output_path(base: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return base.to_path_buf();
    }
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = base.extension().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    base.with_file_name(format!("{stem}-{index}.{ext}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_timings(stage: &str, d: Duration) {
    println!("{stage:>12}: {:10.2} ms", ms(d));
}

fn report(t: &Timings) {
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

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let mut req = canonical(c);
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
    let n = runs.len() as u32;
    let mean = |f: &dyn Fn(&Timings) -> Duration| runs.iter().map(f).sum::<Duration>() / n;
    let mean_total = mean(&|t| t.total);
    let min_total = runs.iter().map(|t| t.total).min().unwrap_or_default();
    let mean_timings = Timings {
        tokenize: mean(&|t| t.tokenize),
        text_encode: mean(&|t| t.text_encode),
        vae_encode: mean(&|t| t.vae_encode),
        unet_steps: (0..runs[0].unet_steps.len()).map(|i| runs.iter().map(|t| t.unet_steps[i]).sum::<Duration>() / n).collect(),
        vae_decode: mean(&|t| t.vae_decode),
        in_onnx_runtime: mean(&|t| t.in_onnx_runtime),
        total: mean_total,
    };
    println!(
        "darkroom: {} runs of {}x{}, {} steps, {} ({}), mean per stage:",
        n,
        params.width,
        params.height,
        params.steps,
        params.sampler,
        c.model_dir.display()
    );
    report(&mean_timings);
    println!("darkroom wall per image: mean {:.2} ms, min {:.2} ms", ms(mean_total), ms(min_total));
    if let Some(python) = &args.compare_python {
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
        println!("optimum (python) wall per image: mean {py_mean:.2} ms, min {py_min:.2} ms");
        println!("ratio darkroom/optimum: mean {:.3}, min {:.3}", ms(mean_total) / py_mean, ms(min_total) / py_min);
    }
    Ok(())
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.01))
}

fn serve(args: RunArgs) -> anyhow::Result<()> {
    use darkroom_worker::service::{self, Served, Settings};
    let runtime = Runtime::new(args.ep, args.threads)?;
    let mut served = Vec::new();
    for (name, dir) in &args.models {
        let t = std::time::Instant::now();
        let pipeline = Pipeline::load(&runtime, dir).with_context(|| format!("loading model {name:?} from {}", dir.display()))?;
        tracing::info!(model = %name, dir = %dir.display(), family = pipeline.model().family.name(), "loaded in {:.1} s", t.elapsed().as_secs_f64());
        served.push(Served::new(name.clone(), pipeline));
    }
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
        let store = darkroom_shared::store::Store::connect_relaxed(&args.backends.database_url, args.backends.db_connections)
            .await
            .context("connecting to Postgres")?;
        store.migrate().await.context("migrating the database")?;
        let queue = darkroom_shared::queue::Queue::connect(&args.backends.redis_url, &args.backends.redis_prefix).await.context("connecting to Redis")?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested: no new jobs");
            let _ = tx.send(true);
        });
        service::run(store, queue, served, settings, rx).await?;
        Ok(())
    })
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
