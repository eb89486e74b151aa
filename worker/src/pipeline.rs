//! The Stable Diffusion pipeline: text encoding with classifier-free guidance, the denoising
//! loop, VAE decoding, img2img, N images per request — step for step what diffusers'
//! `StableDiffusion(XL)(Img2Img)Pipeline` does, so the same seed gives the same image.
use std::path::Path;
use std::time::{Duration, Instant};

use crate::model::{Family, ModelDir, ModelError};
use crate::onnx::{Graph, GraphError, Input};
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

/// The text conditioning for one image: `[uncond, cond]` stacked when guidance is on.
struct Conditioning {
    batch: usize,
    hidden: Vec<f32>,
    hidden_shape: Vec<usize>,
    /// SDXL only: pooled text embeddings and the size/crop time ids.
    pooled: Vec<f32>,
    pooled_dim: usize,
    time_ids: Vec<f32>,
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

    /// Prompt and negative prompt through the text encoder(s); `[uncond, cond]` when guided.
    fn encode_text(&mut self, p: &GenerateParams, guided: bool, timings: &mut Timings) -> Result<Conditioning, PipelineError> {
        let t = Instant::now();
        let negative = p.negative_prompt.as_deref().unwrap_or("");
        let ids = self.tokenizer.encode(&p.prompt)?;
        let neg_ids = self.tokenizer.encode(negative)?;
        let ids_2 = match &self.tokenizer_2 {
            Some(tok) => Some((tok.encode(&p.prompt)?, tok.encode(negative)?)),
            None => None,
        };
        timings.tokenize += t.elapsed();
        let t = Instant::now();
        let cond = match self.model.family {
            Family::Sd => {
                let (pos, shape) = encode_sd(&mut self.text_encoder, &ids)?;
                let hidden = if guided {
                    let (neg, _) = encode_sd(&mut self.text_encoder, &neg_ids)?;
                    [neg, pos].concat()
                } else {
                    pos
                };
                let batch = if guided { 2 } else { 1 };
                Conditioning { batch, hidden, hidden_shape: vec![batch, shape[1], shape[2]], pooled: vec![], pooled_dim: 0, time_ids: vec![] }
            }
            Family::Sdxl => {
                let (ids_2, neg_ids_2) = ids_2.expect("SDXL has a second tokenizer");
                let te2 = self.text_encoder_2.as_mut().expect("SDXL has a second text encoder");
                let (pos, pos_pooled, shape) = encode_sdxl(&mut self.text_encoder, te2, &ids, &ids_2)?;
                let pooled_dim = pos_pooled.len();
                let time_ids: Vec<f32> = [p.height, p.width, 0, 0, p.height, p.width].iter().map(|&v| v as f32).collect();
                if guided {
                    // diffusers: no negative prompt + force_zeros_for_empty_prompt => zero embeddings
                    let (neg, neg_pooled) = if p.negative_prompt.is_none() && self.model.force_zeros_for_empty_prompt {
                        (vec![0.0; pos.len()], vec![0.0; pooled_dim])
                    } else {
                        let (n, np, _) = encode_sdxl(&mut self.text_encoder, te2, &neg_ids, &neg_ids_2)?;
                        (n, np)
                    };
                    Conditioning {
                        batch: 2,
                        hidden: [neg, pos].concat(),
                        hidden_shape: vec![2, shape[1], shape[2]],
                        pooled: [neg_pooled, pos_pooled].concat(),
                        pooled_dim,
                        time_ids: [time_ids.clone(), time_ids].concat(),
                    }
                } else {
                    Conditioning { batch: 1, hidden: pos, hidden_shape: shape, pooled: pos_pooled, pooled_dim, time_ids }
                }
            }
        };
        timings.text_encode += t.elapsed();
        Ok(cond)
    }

    /// One UNet evaluation (both guidance halves in one batch) and the guided noise prediction.
    #[allow(clippy::too_many_arguments)]
    fn predict_noise(
        &mut self,
        latents: &[f32],
        cond: &Conditioning,
        scheduler: &dyn crate::sampler::Scheduler,
        index: usize,
        timestep: f64,
        guidance: f32,
        [lh, lw]: [usize; 2],
    ) -> Result<Vec<f32>, PipelineError> {
        let mut scaled = latents.to_vec();
        scheduler.scale_model_input(&mut scaled, index);
        let sample = if cond.batch == 2 { [scaled.as_slice(), scaled.as_slice()].concat() } else { scaled };
        let sample_shape = [cond.batch, self.latent_channels, lh, lw];
        let t = [timestep as f32];
        let t_shape: Vec<usize> = match self.unet.require_input("timestep")?.shape.len() {
            0 => vec![],
            _ => vec![1],
        };
        let mut inputs = vec![
            Input::f32("sample", &sample_shape, &sample),
            Input::f32("timestep", &t_shape, &t),
            Input::f32("encoder_hidden_states", &cond.hidden_shape, &cond.hidden),
        ];
        let pooled_shape = [cond.batch, cond.pooled_dim];
        let time_shape = [cond.batch, 6];
        if self.model.family == Family::Sdxl {
            inputs.push(Input::f32("text_embeds", &pooled_shape, &cond.pooled));
            inputs.push(Input::f32("time_ids", &time_shape, &cond.time_ids));
        }
        let out = self.unet.run(&inputs, &["out_sample"])?.remove(0).data;
        if cond.batch == 1 {
            return Ok(out);
        }
        let (uncond, text) = out.split_at(out.len() / 2);
        Ok(uncond.iter().zip(text).map(|(&u, &c)| u + guidance * (c - u)).collect())
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

/// SDXL text conditioning: hidden states (flat), pooled embedding, and the hidden states' shape.
type SdxlText = (Vec<f32>, Vec<f32>, Vec<usize>);

/// SDXL: both encoders' penultimate hidden states side by side, and the second's pooled embedding.
fn encode_sdxl(te1: &mut Graph, te2: &mut Graph, ids: &[i64], ids_2: &[i64]) -> Result<SdxlText, PipelineError> {
    let h1_name = penultimate_hidden(te1)?;
    let h1 = te1.run(&[Input::i64("input_ids", &[1, ids.len()], ids)], &[&h1_name])?.remove(0);
    let h2_name = penultimate_hidden(te2)?;
    let pooled_name = if te2.output("text_embeds").is_some() { "text_embeds" } else { "pooler_output" };
    let mut out = te2.run(&[Input::i64("input_ids", &[1, ids_2.len()], ids_2)], &[&h2_name, pooled_name])?;
    let pooled = out.remove(1).data;
    let h2 = out.remove(0);
    let (seq, d1, d2) = (h1.shape[1], h1.shape[2], h2.shape[2]);
    let mut hidden = Vec::with_capacity(seq * (d1 + d2));
    for s in 0..seq {
        hidden.extend_from_slice(&h1.data[s * d1..(s + 1) * d1]);
        hidden.extend_from_slice(&h2.data[s * d2..(s + 1) * d2]);
    }
    Ok((hidden, pooled, vec![1, seq, d1 + d2]))
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
    use super::img2img_begin;

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
