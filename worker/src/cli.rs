//! The command line of `darkroom-worker`: one clap struct with a subcommand each for
//! `generate`, `bench` and `run`. The model, execution-provider and thread flags, and every flag
//! of `run`, fall back to an environment variable.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use darkroom_shared::config::{Backends, DeliveryPolicy};
use darkroom_shared::logging::LogFormat;
use darkroom_shared::request::{defaults, GenerationRequest, PromptSyntax};
use darkroom_worker::runtime::ProviderChoice;

#[derive(Parser, Debug)]
#[command(name = "darkroom-worker", version, about = "Darkroom worker: Stable Diffusion through ONNX Runtime")]
pub struct Cli {
    /// Log lines as `text` (for people) or `json` (one object a line; README, "Observability").
    #[arg(long, global = true, env = "DARKROOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate images from a model directory (Optimum's ONNX layout).
    Generate(GenerateArgs),
    /// Time each stage over several runs; optionally run Optimum's Python pipeline side by side.
    Bench(BenchArgs),
    /// Serve jobs from the queue for the given models until SIGTERM or SIGINT.
    Run(RunArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A model to serve, as NAME=DIR (DIR in Optimum's ONNX layout). NAME becomes the
    /// catalog's model id. Repeat for several models; env: comma-separated list.
    #[arg(long = "model", env = "DARKROOM_MODELS", value_delimiter = ',', required = true, value_parser = parse_model)]
    pub models: Vec<(String, PathBuf)>,
    /// Execution provider: cpu, cuda, cuda:N or auto.
    #[arg(long, env = "DARKROOM_EP", default_value = "auto")]
    pub ep: ProviderChoice,
    /// ONNX Runtime intra-op threads per session (default: ONNX Runtime's choice).
    #[arg(long, env = "DARKROOM_THREADS")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub backends: Backends,
    #[command(flatten)]
    pub delivery: DeliveryPolicy,
    /// Seconds a claimed job stays ours without renewal; renewed every third of it.
    #[arg(long, env = "DARKROOM_LEASE_SECS", default_value_t = 30.0)]
    pub lease_secs: f64,
    /// Seconds after which a delivery taken from Redis but never claimed is handed out again.
    #[arg(long, env = "DARKROOM_REDELIVER_SECS", default_value_t = 30.0)]
    pub redeliver_secs: f64,
    /// Seconds between heartbeats.
    #[arg(long, env = "DARKROOM_HEARTBEAT_SECS", default_value_t = 5.0)]
    pub heartbeat_secs: f64,
    /// When a job with live previews ends, how many seconds its last preview may still take to
    /// be recorded before the job's result is (previews never hold up the pipeline itself).
    #[arg(long, env = "DARKROOM_PREVIEW_FLUSH_SECS", default_value_t = 1.0)]
    pub preview_flush_secs: f64,
    /// On SIGTERM, seconds the job in hand may still run before it is handed back.
    #[arg(long, env = "DARKROOM_SHUTDOWN_GRACE_SECS", default_value_t = 20.0)]
    pub shutdown_grace_secs: f64,
    /// A job may run on this worker for this many seconds plus --job-deadline-secs-per-cost
    /// times its estimated cost; past that it stops at its next step and ends failed with
    /// error type deadline_exceeded (not retried).
    #[arg(long, env = "DARKROOM_JOB_DEADLINE_SECS", default_value_t = 300.0, value_parser = non_negative_secs)]
    pub job_deadline_secs: f64,
    /// Seconds a job's deadline grows by per unit of estimated cost (one UNet evaluation of a
    /// 512x512 SD 1.x image; a 25-step 512x512 SD 1.x image costs 25, an SDXL 1024x1024 one 300).
    #[arg(long, env = "DARKROOM_JOB_DEADLINE_SECS_PER_COST", default_value_t = 2.0, value_parser = non_negative_secs)]
    pub job_deadline_secs_per_cost: f64,
    /// Seconds past a job's deadline that a pipeline call still running (a hung ONNX Runtime
    /// call) is waited for; then the worker fails the job, stops renewing its lease and exits
    /// with status 3 for its supervisor to restart it. Longer than one ONNX Runtime call.
    #[arg(long, env = "DARKROOM_JOB_HANG_GRACE_SECS", default_value_t = 60.0, value_parser = non_negative_secs)]
    pub job_hang_grace_secs: f64,
    /// Serve Prometheus metrics (job outcomes, job and step histograms) over HTTP on this
    /// address, e.g. 0.0.0.0:9090 (any path answers). Unset: no metrics endpoint.
    #[arg(long, env = "DARKROOM_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// A number of seconds: finite and not negative.
fn non_negative_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?}: expected a number of seconds, 0 or more")),
    }
}

/// `NAME=DIR`, the name 1-128 characters of letters, digits and `-_.:/`.
fn parse_model(s: &str) -> Result<(String, PathBuf), String> {
    let (name, dir) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=DIR"))?;
    let name = name.trim();
    if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c)) {
        return Err(format!("{name:?}: a model name is 1-128 characters of letters, digits and -_.:/"));
    }
    Ok((name.to_string(), PathBuf::from(dir)))
}

// The flags `generate` and `bench` share.
#[derive(Args, Debug)]
pub struct Common {
    /// Model directory exported by `optimum-cli export onnx`.
    #[arg(long, env = "DARKROOM_MODEL_DIR")]
    pub model_dir: PathBuf,
    #[arg(long)]
    pub prompt: String,
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Image width in pixels (default: the model's native size).
    #[arg(long)]
    pub width: Option<u32>,
    /// Image height in pixels (default: the model's native size).
    #[arg(long)]
    pub height: Option<u32>,
    #[arg(long, default_value_t = defaults::STEPS)]
    pub steps: u32,
    /// Classifier-free guidance scale (guidance is off at 1 or below).
    #[arg(long, default_value_t = defaults::GUIDANCE_SCALE)]
    pub guidance: f32,
    /// Seed of image 0; image i uses seed + i (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// AUTOMATIC1111 name ("Euler a", "DPM++ 2M Karras", …) or diffusers class name.
    #[arg(long, default_value = defaults::SAMPLER)]
    pub sampler: String,
    /// How the prompts are read: `plain` (literally, cut after 75 tokens, as diffusers) or
    /// `a1111` (AUTOMATIC1111's `(word:1.3)` weights, `BREAK`, prompts of any length).
    #[arg(long, value_enum, default_value_t = PromptSyntax::Plain)]
    pub prompt_syntax: PromptSyntax,
    /// Execution provider: cpu, cuda, cuda:N or auto.
    #[arg(long, env = "DARKROOM_EP", default_value = "auto")]
    pub ep: ProviderChoice,
    /// ONNX Runtime intra-op threads per session (default: ONNX Runtime's choice).
    #[arg(long, env = "DARKROOM_THREADS")]
    pub threads: Option<usize>,
}

impl Common {
    /// The flags as a canonical request; the model is named after its directory.
    pub fn request(&self) -> GenerationRequest {
        let model = self.model_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        GenerationRequest {
            negative_prompt: self.negative_prompt.clone(),
            width: self.width,
            height: self.height,
            steps: self.steps,
            guidance_scale: self.guidance,
            sampler: self.sampler.clone(),
            seed: self.seed,
            prompt_syntax: (self.prompt_syntax != PromptSyntax::Plain).then_some(self.prompt_syntax),
            ..GenerationRequest::new(model, self.prompt.clone())
        }
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = defaults::NUM_IMAGES)]
    pub num_images: u32,
    /// img2img: start from this image (PNG, JPEG or WebP), resized to the target size.
    #[arg(long)]
    pub init_image: Option<PathBuf>,
    /// img2img: how much of the init image to re-noise, in (0, 1].
    #[arg(long, requires = "init_image")]
    pub strength: Option<f32>,
    /// Output file; the format follows its extension (.png, .jpg, .webp). With several
    /// images, image i is written to NAME-i.EXT.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Progress on stderr: `auto` (a progress bar per image when stderr is a terminal, else
    /// plain lines), `lines` (always plain lines, for logs) or `none`.
    #[arg(long, env = "DARKROOM_PROGRESS", value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// With `lines`: a line every N steps of an image (and at its last step); 0 means about ten
    /// lines per image.
    #[arg(long, env = "DARKROOM_PROGRESS_EVERY", default_value_t = 0)]
    pub progress_every: usize,
}

/// How `generate` shows its progress.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    Auto,
    Lines,
    None,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Also run tools/bench/optimum_pipeline.py with this Python, on the same model and settings.
    #[arg(long)]
    pub compare_python: Option<PathBuf>,
    /// Also time this many live previews (latents to RGB, then PNG) at SD 1.x's 64×64 latents
    /// (512² images), SDXL's 128×128 (1024²) and this run's size, against its UNet step; 0: no.
    #[arg(long, default_value_t = 0)]
    pub previews: usize,
}
