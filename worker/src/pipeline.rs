//! The Stable Diffusion pipeline: text encoding with classifier-free guidance, the denoising
//! loop, VAE decoding, img2img, N images per request — step for step what diffusers'
//! `StableDiffusion(XL)(Img2Img)Pipeline` does, so the same seed gives the same image.
use std::path::Path;
use std::time::{Duration, Instant};

use darkroom_shared::prompt_syntax;
use darkroom_shared::request::PromptSyntax;

use crate::model::{Family, ModelDir, ModelError};
use crate::onnx::{Graph, GraphError, Input};
use crate::prompt::{self, Chunk, CHUNK_TOKENS};
use crate::rng::TorchRng;
use crate::runtime::Runtime;
use crate::sampler::{new_scheduler, Sampler, SamplerError, SchedulerConfig};
use crate::tokenizer::{ClipTokenizer, TokenizerError};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("the job was canceled")]
    Canceled,
}

fn invalid(field: &'static str, message: impl Into<String>) -> PipelineError {
    PipelineError::Invalid { field, message: message.into() }
}

/// An RGB image, 8 bits per channel, row-major.
#[derive(Clone, Debug)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Everything one generation needs, already resolved (seed chosen, sampler parsed).
#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub prompt: String,
    /// `None` differs from `Some("")` for SDXL models that zero the unconditional embeddings.
    pub negative_prompt: Option<String>,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub guidance_scale: f32,
    pub sampler: Sampler,
    /// Image `i` is made from `seed + i`.
    pub seed: u64,
    pub num_images: usize,
    /// img2img: the init image, already at `width`×`height`, and the strength.
    pub init_image: Option<RgbImage>,
    pub strength: f32,
    /// How the prompts are read.
    pub prompt_syntax: PromptSyntax,
}

/// One generated image and the seed that made it.
#[derive(Clone, Debug)]
pub struct GeneratedImage {
    pub index: usize,
    pub seed: u64,
    pub image: RgbImage,
}

/// Where the time went.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    pub tokenize: Duration,
    pub text_encode: Duration,
    pub vae_encode: Duration,
    /// One entry per UNet evaluation, over all images.
    pub unet_steps: Vec<Duration>,
    pub vae_decode: Duration,
    /// Time spent inside ONNX Runtime's session runs (the rest is ours).
    pub in_onnx_runtime: Duration,
    pub total: Duration,
}

/// The image in progress, for a live preview: the sampler's denoised prediction (x0) where it
/// has one (every sampler we have), else the latents; channel-major, `[channels, height, width]`.
pub struct Latents<'a> {
    pub family: Family,
    pub data: &'a [f32],
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

/// Told about progress; asked whether to stop. All are called between steps.
pub trait Observer {
    /// `step` of `total` denoising steps are done, counted over all images of the job.
    fn on_step(&mut self, _step: usize, _total: usize) {}
    /// Every how many steps (as `on_step` counts them) [`Observer::on_latents`] is called; 0:
    /// never (the pipeline then does no preview work).
    fn preview_every(&self) -> usize {
        0
    }
    /// After `step` of `total` (just before `on_step`), every `preview_every` steps. Called on
    /// the pipeline's thread: do only cheap work here.
    fn on_latents(&mut self, _step: usize, _total: usize, _latents: &Latents<'_>) {}
    fn is_canceled(&self) -> bool {
        false
    }
}

/// An observer that ignores progress and never cancels.
pub struct NoObserver;
impl Observer for NoObserver {}

/// The graphs and tokenizers of one loaded model.
pub struct Pipeline {
    model: ModelDir,
    tokenizer: ClipTokenizer,
    tokenizer_2: Option<ClipTokenizer>,
    text_encoder: Graph,
    text_encoder_2: Option<Graph>,
    unet: Graph,
    vae_decoder: Graph,
    vae_encoder: Option<Graph>,
    scheduler_config: SchedulerConfig,
    /// Latent channels the UNet takes (4 for every SD model).
    latent_channels: usize,
}

/// One side of the text conditioning (or both, stacked): what the UNet takes besides the latents.
struct Text {
    batch: usize,
    hidden: Vec<f32>,
    hidden_shape: Vec<usize>,
    /// SDXL only: pooled text embeddings and the size/crop time ids.
    pooled: Vec<f32>,
    pooled_dim: usize,
    time_ids: Vec<f32>,
}

impl Text {
    /// `self` (uncond) and `cond` in one batch of two.
    fn stack(self, cond: Text) -> Text {
        let mut hidden_shape = cond.hidden_shape.clone();
        hidden_shape[0] = 2;
        Text {
            batch: 2,
            hidden: [self.hidden, cond.hidden].concat(),
            hidden_shape,
            pooled: [self.pooled, cond.pooled].concat(),
            pooled_dim: cond.pooled_dim,
            time_ids: [self.time_ids, cond.time_ids].concat(),
        }
    }
}

/// The text conditioning of a generation.
enum Conditioning {
    /// One UNet call per step: the prompt alone (no guidance), or `[uncond, cond]` stacked.
    Batched(Text),
    /// Guidance with sides of different lengths (AUTOMATIC1111 prompts of different numbers of
    /// chunks): a UNet call per side, each at its own length, as AUTOMATIC1111 does by default.
    Separate { uncond: Text, cond: Text },
}

/// A prompt through the text encoder(s): hidden states `[1, seq, dim]`, the pooled embedding
/// (SDXL), and, for AUTOMATIC1111 prompts, the chunks encoded (per tokenizer).
#[derive(Clone, Debug)]
pub struct EncodedPrompt {
    pub hidden: Vec<f32>,
    pub shape: Vec<usize>,
    pub pooled: Vec<f32>,
    pub chunks: Vec<Chunk>,
    pub chunks_2: Vec<Chunk>,
}

impl Pipeline {
    /// Load every part of the model at `dir` onto the runtime's execution provider.
    pub fn load(runtime: &Runtime, dir: &Path) -> Result<Pipeline, PipelineError> {
        let model = ModelDir::open(dir)?;
        let sdxl = model.family == Family::Sdxl;
        let tokenizer = ClipTokenizer::from_dir(&model.path("tokenizer"))?;
        let tokenizer_2 = if sdxl { Some(ClipTokenizer::from_dir(&model.path("tokenizer_2"))?) } else { None };
        let scheduler_config = SchedulerConfig::from_file(&model.path("scheduler/scheduler_config.json"))?;
        let text_encoder = Graph::open(runtime, &model.path("text_encoder/model.onnx"))?;
        let text_encoder_2 = if sdxl { Some(Graph::open(runtime, &model.path("text_encoder_2/model.onnx"))?) } else { None };
        let unet = Graph::open(runtime, &model.path("unet/model.onnx"))?;
        let vae_decoder = Graph::open(runtime, &model.path("vae_decoder/model.onnx"))?;
        let vae_encoder_path = model.path("vae_encoder/model.onnx");
        let vae_encoder = if vae_encoder_path.is_file() { Some(Graph::open(runtime, &vae_encoder_path)?) } else { None };

        // Check that the parts fit together, naming the file that does not.
        for name in ["sample", "timestep", "encoder_hidden_states"] {
            unet.require_input(name)?;
        }
        if sdxl {
            unet.require_input("text_embeds")?;
            unet.require_input("time_ids")?;
        }
        unet.require_output("out_sample")?;
        vae_decoder.require_input("latent_sample")?;
        vae_decoder.require_output("sample")?;
        let latent_channels = match unet.require_input("sample")?.shape.get(1) {
            Some(&c) if c > 0 => c as usize,
            _ => 4,
        };
        let pipeline =
            Pipeline { model, tokenizer, tokenizer_2, text_encoder, text_encoder_2, unet, vae_decoder, vae_encoder, scheduler_config, latent_channels };
        pipeline.check_widths()?;
        Ok(pipeline)
    }

    /// The text encoders' hidden sizes must add up to the UNet's cross-attention width.
    fn check_widths(&self) -> Result<(), PipelineError> {
        let last = |g: &Graph| g.outputs().iter().find(|o| o.name == "last_hidden_state").and_then(|o| o.shape.get(2).copied());
        let unet_width = self.unet.require_input("encoder_hidden_states")?.shape.get(2).copied();
        let te = last(&self.text_encoder);
        let te2 = self.text_encoder_2.as_ref().map(last);
        let total = match (te, te2) {
            (Some(a), None) => Some(a),
            (Some(a), Some(Some(b))) => Some(a + b),
            _ => None,
        };
        match (total, unet_width) {
            (Some(t), Some(u)) if t > 0 && u > 0 && t != u => Err(ModelError::Mismatch {
                dir: self.model.root.clone(),
                message: format!("unet/model.onnx expects encoder_hidden_states of width {u}, but the text encoder(s) give {t}"),
            }
            .into()),
            _ => Ok(()),
        }
    }

    pub fn model(&self) -> &ModelDir {
        &self.model
    }

    /// Whether img2img is possible (the export has a VAE encoder).
    pub fn supports_img2img(&self) -> bool {
        self.vae_encoder.is_some()
    }

    /// Run the whole pipeline. Images come back in order; image `i` used seed `seed + i`.
    pub fn generate(&mut self, p: &GenerateParams, observer: &mut dyn Observer) -> Result<(Vec<GeneratedImage>, Timings), PipelineError> {
        let start = Instant::now();
        let onnx_before = self.onnx_time();
        let mut timings = Timings::default();
        let f = self.model.vae_scale_factor;
        if !p.width.is_multiple_of(f) || !p.height.is_multiple_of(f) || p.width == 0 || p.height == 0 {
            return Err(invalid("width", format!("width and height must be positive multiples of {f}, got {}x{}", p.width, p.height)));
        }
        if p.init_image.is_some() && self.vae_encoder.is_none() {
            return Err(invalid("init_image", "this model export has no vae_encoder/model.onnx, so it cannot do img2img"));
        }
        let guided = p.guidance_scale > 1.0;
        let cond = self.encode_text(p, guided, &mut timings)?;

        // One scheduler per image: the timesteps tell how many steps each image runs.
        let probe = new_scheduler(p.sampler, &self.scheduler_config, p.steps)?;
        let begin = match &p.init_image {
            Some(_) => img2img_begin(p.steps, p.strength, probe.order())?,
            None => 0,
        };
        let per_image = probe.timesteps().len().saturating_sub(begin);
        let total = per_image * p.num_images;
        drop(probe);

        let (lh, lw) = (p.height / f, p.width / f);
        let latent_len = self.latent_channels * lh * lw;
        let mut images = Vec::with_capacity(p.num_images);
        for index in 0..p.num_images {
            let seed = p.seed.wrapping_add(index as u64);
            let mut rng = TorchRng::new(seed);
            let mut scheduler = new_scheduler(p.sampler, &self.scheduler_config, p.steps)?;
            let mut latents = match &p.init_image {
                None => {
                    let sigma = scheduler.init_noise_sigma();
                    rng.randn(latent_len).into_iter().map(|v| v * sigma).collect::<Vec<f32>>()
                }
                Some(init) => {
                    scheduler.set_begin_index(begin);
                    let t = Instant::now();
                    let encoded = self.encode_image(init, &mut rng)?;
                    timings.vae_encode += t.elapsed();
                    let noise = rng.randn(encoded.len());
                    scheduler.add_noise(&encoded, &noise, begin)
                }
            };
            let timesteps: Vec<f64> = scheduler.timesteps().to_vec();
            for (n, i) in (begin..timesteps.len()).enumerate() {
                if observer.is_canceled() {
                    return Err(PipelineError::Canceled);
                }
                let t = Instant::now();
                let noise_pred = self.predict_noise(&latents, &cond, scheduler.as_ref(), i, timesteps[i], p.guidance_scale, [lh, lw])?;
                latents = scheduler.step(&noise_pred, i, &latents, &mut |len| rng.randn(len));
                timings.unet_steps.push(t.elapsed());
                let step = index * per_image + n + 1;
                let every = observer.preview_every();
                if every > 0 && step.is_multiple_of(every) {
                    let data = scheduler.denoised().unwrap_or(&latents);
                    let view = Latents { family: self.model.family, data, channels: self.latent_channels, height: lh, width: lw };
                    observer.on_latents(step, total, &view);
                }
                observer.on_step(step, total);
            }
            if observer.is_canceled() {
                return Err(PipelineError::Canceled);
            }
            let t = Instant::now();
            let image = self.decode(&latents, [lh, lw])?;
            timings.vae_decode += t.elapsed();
            images.push(GeneratedImage { index, seed, image });
        }
        timings.in_onnx_runtime = self.onnx_time() - onnx_before;
        timings.total = start.elapsed();
        Ok((images, timings))
    }

    fn onnx_time(&self) -> Duration {
        let mut t = self.text_encoder.run_time() + self.unet.run_time() + self.vae_decoder.run_time();
        if let Some(g) = &self.text_encoder_2 {
            t += g.run_time();
        }
        if let Some(g) = &self.vae_encoder {
            t += g.run_time();
        }
        t
    }

    /// Prompt and negative prompt through the text encoder(s), read as `p.prompt_syntax` says.
    fn encode_text(&mut self, p: &GenerateParams, guided: bool, timings: &mut Timings) -> Result<Conditioning, PipelineError> {
        let negative = p.negative_prompt.as_deref().unwrap_or("");
        // Zeros for the negative side: diffusers' SDXL with no negative prompt and
        // force_zeros_for_empty_prompt; AUTOMATIC1111's SDXL whenever the negative prompt is empty.
        let zero_negative = self.model.family == Family::Sdxl
            && match p.prompt_syntax {
                PromptSyntax::Plain => p.negative_prompt.is_none() && self.model.force_zeros_for_empty_prompt,
                PromptSyntax::A1111 => negative.is_empty(),
            };
        let time_ids: Vec<f32> = [p.height, p.width, 0, 0, p.height, p.width].iter().map(|&v| v as f32).collect();
        let side = |e: EncodedPrompt, time_ids: &[f32]| {
            let sdxl = !e.pooled.is_empty();
            Text {
                batch: 1,
                pooled_dim: e.pooled.len(),
                pooled: e.pooled,
                hidden: e.hidden,
                hidden_shape: e.shape,
                time_ids: if sdxl { time_ids.to_vec() } else { vec![] },
            }
        };
        let cond = side(self.encode_prompt(&p.prompt, p.prompt_syntax, timings)?, &time_ids);
        let conditioning = if !guided {
            Conditioning::Batched(cond)
        } else {
            let uncond = if zero_negative {
                // diffusers: zeros like the prompt's; AUTOMATIC1111: the empty prompt's one chunk, zeroed.
                let seq = match p.prompt_syntax {
                    PromptSyntax::Plain => cond.hidden_shape[1],
                    PromptSyntax::A1111 => CHUNK_TOKENS + 2,
                };
                let dim = cond.hidden_shape[2];
                Text {
                    batch: 1,
                    hidden: vec![0.0; seq * dim],
                    hidden_shape: vec![1, seq, dim],
                    pooled: vec![0.0; cond.pooled_dim],
                    pooled_dim: cond.pooled_dim,
                    time_ids: time_ids.clone(),
                }
            } else {
                side(self.encode_prompt(negative, p.prompt_syntax, timings)?, &time_ids)
            };
            if uncond.hidden_shape == cond.hidden_shape {
                Conditioning::Batched(uncond.stack(cond))
            } else {
                Conditioning::Separate { uncond, cond }
            }
        };
        // The hidden-state shapes fix the UNet's sequence length: check the export takes it.
        let lengths = match &conditioning {
            Conditioning::Batched(t) => vec![t.hidden_shape[1]],
            Conditioning::Separate { uncond, cond } => vec![uncond.hidden_shape[1], cond.hidden_shape[1]],
        };
        let declared = self.unet.require_input("encoder_hidden_states")?.shape.get(1).copied().unwrap_or(-1);
        check_sequence(declared, &lengths)?;
        Ok(conditioning)
    }

    /// One prompt through the text encoder(s). `Plain`: as diffusers, one sequence of 77 tokens,
    /// longer prompts cut. `A1111`: AUTOMATIC1111's syntax, chunks of 75 tokens each encoded
    /// as 77 and weighted, concatenated along the sequence; SDXL's pooled embedding is the
    /// first chunk's, unweighted.
    pub fn encode_prompt(&mut self, prompt: &str, syntax: PromptSyntax, timings: &mut Timings) -> Result<EncodedPrompt, PipelineError> {
        let t = Instant::now();
        let (chunks, chunks_2) = match syntax {
            PromptSyntax::Plain => {
                let frame = |tok: &ClipTokenizer| -> Result<Chunk, TokenizerError> {
                    let ids = tok.encode(prompt)?;
                    Ok(Chunk { weights: vec![1.0; ids.len()], ids })
                };
                (vec![frame(&self.tokenizer)?], self.tokenizer_2.as_ref().map(frame).transpose()?.into_iter().collect())
            }
            PromptSyntax::A1111 => {
                let segments = prompt_syntax::parse(prompt).map_err(|e| invalid("prompt", e.to_string()))?;
                let chunks_2 = match &self.tokenizer_2 {
                    Some(tok) => prompt::chunks(tok, &segments)?,
                    None => vec![],
                };
                (prompt::chunks(&self.tokenizer, &segments)?, chunks_2)
            }
        };
        timings.tokenize += t.elapsed();
        let t = Instant::now();
        let mut hidden = Vec::new();
        let mut pooled = Vec::new();
        let mut shape = vec![1, 0, 0];
        match self.model.family {
            Family::Sd => {
                for chunk in &chunks {
                    let (mut z, s) = encode_sd(&mut self.text_encoder, &chunk.ids)?;
                    prompt::emphasize(&mut z, &chunk.weights, s[2]);
                    hidden.extend_from_slice(&z);
                    (shape[1], shape[2]) = (shape[1] + s[1], s[2]);
                }
            }
            Family::Sdxl => {
                if chunks.len() != chunks_2.len() {
                    return Err(invalid("prompt", format!("the two tokenizers split the prompt into {} and {} chunks", chunks.len(), chunks_2.len())));
                }
                let te2 = self.text_encoder_2.as_mut().expect("SDXL has a second text encoder");
                for (i, (c1, c2)) in chunks.iter().zip(&chunks_2).enumerate() {
                    let mut z = encode_sdxl(&mut self.text_encoder, te2, &c1.ids, &c2.ids)?;
                    prompt::emphasize(&mut z.hidden_1, &c1.weights, z.dims.0);
                    prompt::emphasize(&mut z.hidden_2, &c2.weights, z.dims.1);
                    hidden.extend(z.side_by_side());
                    (shape[1], shape[2]) = (shape[1] + z.seq, z.dims.0 + z.dims.1);
                    if i == 0 {
                        pooled = z.pooled;
                    }
                }
            }
        }
        timings.text_encode += t.elapsed();
        Ok(EncodedPrompt { hidden, shape, pooled, chunks, chunks_2 })
    }

    /// The guided noise prediction for one step: one UNet call with both halves batched, or
    /// one per side when their lengths differ.
    #[allow(clippy::too_many_arguments)]
    fn predict_noise(
        &mut self,
        latents: &[f32],
        cond: &Conditioning,
        scheduler: &dyn crate::sampler::Scheduler,
        index: usize,
        timestep: f64,
        guidance: f32,
        size: [usize; 2],
    ) -> Result<Vec<f32>, PipelineError> {
        let mut scaled = latents.to_vec();
        scheduler.scale_model_input(&mut scaled, index);
        let guide = |u: &[f32], c: &[f32]| u.iter().zip(c).map(|(&u, &c)| u + guidance * (c - u)).collect();
        match cond {
            Conditioning::Batched(text) if text.batch == 1 => self.unet_call(&scaled, text, timestep, size),
            Conditioning::Batched(text) => {
                let out = self.unet_call(&[scaled.as_slice(), scaled.as_slice()].concat(), text, timestep, size)?;
                let (u, c) = out.split_at(out.len() / 2);
                Ok(guide(u, c))
            }
            Conditioning::Separate { uncond, cond } => {
                let u = self.unet_call(&scaled, uncond, timestep, size)?;
                let c = self.unet_call(&scaled, cond, timestep, size)?;
                Ok(guide(&u, &c))
            }
        }
    }

    /// One UNet evaluation of `sample` (`text.batch` latents) under `text`.
    fn unet_call(&mut self, sample: &[f32], text: &Text, timestep: f64, [lh, lw]: [usize; 2]) -> Result<Vec<f32>, PipelineError> {
        let sample_shape = [text.batch, self.latent_channels, lh, lw];
        let t = [timestep as f32];
        let t_shape: Vec<usize> = match self.unet.require_input("timestep")?.shape.len() {
            0 => vec![],
            _ => vec![1],
        };
        let mut inputs = vec![
            Input::f32("sample", &sample_shape, sample),
            Input::f32("timestep", &t_shape, &t),
            Input::f32("encoder_hidden_states", &text.hidden_shape, &text.hidden),
        ];
        let pooled_shape = [text.batch, text.pooled_dim];
        let time_shape = [text.batch, 6];
        if self.model.family == Family::Sdxl {
            inputs.push(Input::f32("text_embeds", &pooled_shape, &text.pooled));
            inputs.push(Input::f32("time_ids", &time_shape, &text.time_ids));
        }
        Ok(self.unet.run(&inputs, &["out_sample"])?.remove(0).data)
    }

    /// img2img: the init image through the VAE encoder, sampled with the image's generator.
    fn encode_image(&mut self, image: &RgbImage, rng: &mut TorchRng) -> Result<Vec<f32>, PipelineError> {
        let encoder = self.vae_encoder.as_mut().ok_or_else(|| invalid("init_image", "no vae_encoder"))?;
        let (w, h) = (image.width, image.height);
        let mut chw = vec![0f32; 3 * w * h];
        for (i, px) in image.pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                chw[c * w * h + i] = px[c] as f32 / 255.0 * 2.0 - 1.0;
            }
        }
        let input = [Input::f32("sample", &[1, 3, h, w], &chw)];
        let scaling = self.model.vae_scaling_factor;
        let latents = if encoder.output("latent_parameters").is_some() {
            // mean and log-variance stacked on the channel axis; diffusers samples mean + std * randn
            let moments = encoder.run(&input, &["latent_parameters"])?.remove(0).data;
            let (mean, logvar) = moments.split_at(moments.len() / 2);
            let noise = rng.randn(mean.len());
            mean.iter().zip(logvar).zip(noise).map(|((&m, &lv), n)| (m + (0.5 * lv.clamp(-30.0, 20.0)).exp() * n) * scaling).collect()
        } else {
            let sample = encoder.run(&input, &["latent_sample"])?.remove(0).data;
            sample.into_iter().map(|v| v * scaling).collect()
        };
        Ok(latents)
    }

    /// Latents through the VAE decoder to 8-bit RGB, as diffusers' postprocessing rounds.
    fn decode(&mut self, latents: &[f32], [lh, lw]: [usize; 2]) -> Result<RgbImage, PipelineError> {
        let scaled: Vec<f32> = latents.iter().map(|v| v / self.model.vae_scaling_factor).collect();
        let out = self.vae_decoder.run(&[Input::f32("latent_sample", &[1, self.latent_channels, lh, lw], &scaled)], &["sample"])?.remove(0);
        let (h, w) = (out.shape[2], out.shape[3]);
        let plane = w * h;
        let mut pixels = vec![0u8; 3 * plane];
        for i in 0..plane {
            for c in 0..3 {
                let v = (out.data[c * plane + i] / 2.0 + 0.5).clamp(0.0, 1.0);
                pixels[3 * i + c] = (v * 255.0).round_ties_even() as u8;
            }
        }
        Ok(RgbImage { width: w, height: h, pixels })
    }
}

/// A UNet export declaring a fixed text length (`declared` > 0; Optimum's are dynamic, -1)
/// cannot take prompts of other lengths: the prompt is refused, saying why.
fn check_sequence(declared: i64, lengths: &[usize]) -> Result<(), PipelineError> {
    match lengths.iter().find(|&&len| declared > 0 && len as i64 != declared) {
        None => Ok(()),
        Some(&len) => Err(invalid(
            "prompt",
            format!(
                "this model's UNet export takes exactly {declared} text tokens, but the prompt needs {len} \
                 ({} chunks of 75); shorten the prompt and the negative prompt to 75 tokens each, or use a model \
                 exported with a dynamic sequence length (Optimum's default)",
                len / (CHUNK_TOKENS + 2)
            ),
        )),
    }
}

/// diffusers' img2img `get_timesteps`: which index of the schedule a strength starts at.
pub fn img2img_begin(steps: usize, strength: f32, order: usize) -> Result<usize, PipelineError> {
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(invalid("strength", format!("must be in (0, 1], got {strength}")));
    }
    // diffusers computes int(steps * strength) on the Python float the user wrote: widen the
    // f32 through its shortest decimal form (0.3f32 -> 0.3, not 0.30000001192...).
    let strength64: f64 = strength.to_string().parse().unwrap_or(strength as f64);
    let init = ((steps as f64 * strength64) as usize).min(steps);
    if init == 0 {
        return Err(invalid("strength", format!("strength {strength} with {steps} steps leaves no step to run; raise strength or steps")));
    }
    Ok((steps - init) * order)
}

/// SD 1.x/2.x: `last_hidden_state` of the one text encoder.
fn encode_sd(encoder: &mut Graph, ids: &[i64]) -> Result<(Vec<f32>, Vec<usize>), PipelineError> {
    let out = encoder.run(&[Input::i64("input_ids", &[1, ids.len()], ids)], &["last_hidden_state"])?.remove(0);
    Ok((out.data, out.shape))
}

/// One SDXL encoding: each encoder's penultimate hidden states (`seq` rows of `dims.0` and
/// `dims.1`) and the second's pooled embedding.
struct SdxlText {
    hidden_1: Vec<f32>,
    hidden_2: Vec<f32>,
    pooled: Vec<f32>,
    seq: usize,
    dims: (usize, usize),
}

impl SdxlText {
    /// The two encoders' rows side by side, text_encoder first: `[seq, dims.0 + dims.1]`.
    fn side_by_side(&self) -> Vec<f32> {
        let (d1, d2) = self.dims;
        let mut hidden = Vec::with_capacity(self.seq * (d1 + d2));
        for s in 0..self.seq {
            hidden.extend_from_slice(&self.hidden_1[s * d1..(s + 1) * d1]);
            hidden.extend_from_slice(&self.hidden_2[s * d2..(s + 1) * d2]);
        }
        hidden
    }
}

/// SDXL: both encoders' penultimate hidden states, and the second's pooled embedding.
fn encode_sdxl(te1: &mut Graph, te2: &mut Graph, ids: &[i64], ids_2: &[i64]) -> Result<SdxlText, PipelineError> {
    let h1_name = penultimate_hidden(te1)?;
    let h1 = te1.run(&[Input::i64("input_ids", &[1, ids.len()], ids)], &[&h1_name])?.remove(0);
    let h2_name = penultimate_hidden(te2)?;
    let pooled_name = if te2.output("text_embeds").is_some() { "text_embeds" } else { "pooler_output" };
    let mut out = te2.run(&[Input::i64("input_ids", &[1, ids_2.len()], ids_2)], &[&h2_name, pooled_name])?;
    let pooled = out.remove(1).data;
    let h2 = out.remove(0);
    Ok(SdxlText { seq: h1.shape[1], dims: (h1.shape[2], h2.shape[2]), hidden_1: h1.data, hidden_2: h2.data, pooled })
}

/// The name of `hidden_states[-2]` among a text encoder's outputs (`hidden_states.N`).
fn penultimate_hidden(encoder: &Graph) -> Result<String, PipelineError> {
    let mut layers: Vec<usize> = encoder.outputs().iter().filter_map(|o| o.name.strip_prefix("hidden_states.")?.parse().ok()).collect();
    layers.sort_unstable();
    match layers.len() {
        n if n >= 2 => Ok(format!("hidden_states.{}", layers[n - 2])),
        _ => Err(GraphError::MissingOutput {
            path: encoder.path().to_path_buf(),
            name: "hidden_states.N".into(),
            have: encoder.outputs().iter().map(|o| o.name.clone()).collect::<Vec<_>>().join(", "),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::{check_sequence, img2img_begin, PipelineError};

    #[test]
    fn a_fixed_length_unet_refuses_longer_prompts_by_name() {
        assert!(check_sequence(-1, &[77, 231]).is_ok(), "dynamic: any length");
        assert!(check_sequence(77, &[77]).is_ok());
        match check_sequence(77, &[77, 154]) {
            Err(PipelineError::Invalid { field: "prompt", message }) => assert!(message.contains("exactly 77") && message.contains("154"), "{message}"),
            other => panic!("expected a refusal naming the prompt, got {other:?}"),
        }
    }

    #[test]
    fn img2img_start_matches_python_float_arithmetic() {
        // int(10 * 0.3) == 3 and int(10 * 0.6) == 6 in Python; f32 widening must not change that.
        assert_eq!(img2img_begin(10, 0.3, 1).unwrap(), 7);
        assert_eq!(img2img_begin(10, 0.6, 1).unwrap(), 4);
        assert_eq!(img2img_begin(10, 0.6, 2).unwrap(), 8);
        assert_eq!(img2img_begin(25, 1.0, 1).unwrap(), 0);
        assert!(img2img_begin(4, 0.2, 1).is_err());
        assert!(img2img_begin(4, 0.0, 1).is_err());
        assert!(img2img_begin(4, 1.5, 1).is_err());
    }
}
