//! From the canonical request to the pipeline's parameters for one loaded model: defaults
//! filled from the model, the seed chosen, the sampler parsed, the init image decoded and
//! resized to the target.
use base64::Engine as _;
use darkroom_shared::request::{defaults, GenerationRequest};

use crate::model::ModelDir;
use crate::output;
use crate::pipeline::{GenerateParams, PipelineError};

/// The largest init image we decode, in pixels (bigger ones are refused before decoding).
pub const MAX_INIT_IMAGE_PIXELS: u64 = 4096 * 4096;

fn invalid(field: &'static str, message: impl Into<String>) -> PipelineError {
    PipelineError::Invalid { field, message: message.into() }
}

/// A random seed in A1111's range, for requests that leave the seed out.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish() % 4_294_967_294
}

/// Resolve `req` against `model`.
pub fn resolve(req: &GenerationRequest, model: &ModelDir) -> Result<GenerateParams, PipelineError> {
    let width = req.width.map(|w| w as usize).unwrap_or(model.native_size);
    let height = req.height.map(|h| h as usize).unwrap_or(model.native_size);
    let f = model.vae_scale_factor;
    for (field, v) in [("width", width), ("height", height)] {
        if v == 0 || v % f != 0 || v > 4096 {
            return Err(invalid(field, format!("must be a positive multiple of {f} up to 4096, got {v}")));
        }
    }
    if !(1..=150).contains(&req.steps) {
        return Err(invalid("steps", format!("must be between 1 and 150, got {}", req.steps)));
    }
    if !(0.0..=30.0).contains(&req.guidance_scale) {
        return Err(invalid("guidance_scale", format!("must be between 0 and 30, got {}", req.guidance_scale)));
    }
    if !(1..=8).contains(&req.num_images) {
        return Err(invalid("num_images", format!("must be between 1 and 8, got {}", req.num_images)));
    }
    let sampler = req.sampler.parse().map_err(|e: crate::sampler::SamplerNameError| invalid("sampler", e.to_string()))?;
    let init_image = match &req.init_image {
        None => None,
        Some(b64) => {
            let data = b64.split_once(";base64,").map(|(_, d)| d).unwrap_or(b64);
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| invalid("init_image", format!("not valid base64: {e}")))?;
            let img = output::decode(&bytes, MAX_INIT_IMAGE_PIXELS).map_err(|e| invalid("init_image", e))?;
            Some(output::resize(&img, width, height))
        }
    };
    if req.strength.is_some() && init_image.is_none() {
        return Err(invalid("strength", "only applies with an init_image (img2img)"));
    }
    Ok(GenerateParams {
        prompt: req.prompt.clone(),
        negative_prompt: req.negative_prompt.clone(),
        width,
        height,
        steps: req.steps as usize,
        guidance_scale: req.guidance_scale,
        sampler,
        seed: req.seed.unwrap_or_else(random_seed),
        num_images: req.num_images as usize,
        init_image,
        strength: req.strength.unwrap_or(defaults::STRENGTH),
    })
}
