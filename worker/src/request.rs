//! From the canonical request to the pipeline's parameters for one loaded model. Validation is
//! the shared one the API applies (`darkroom_shared::validate`); this only fills in what the
//! model decides and decodes the init image, resized to the target.
use darkroom_shared::request::{defaults, GenerationRequest};
use darkroom_shared::store::ModelInfo;
use darkroom_shared::validate::{decode_base64_image, validate, Limits};

use crate::model::ModelDir;
use crate::output;
use crate::pipeline::{GenerateParams, PipelineError};

/// The largest init image we decode, in pixels (bigger ones are refused before decoding).
pub const MAX_INIT_IMAGE_PIXELS: u64 = 4096 * 4096;

fn invalid(field: &'static str, message: impl Into<String>) -> PipelineError {
    PipelineError::Invalid { field, message: message.into() }
}

/// Validate `req` for `model` and resolve it: size defaults to the model's native size, the
/// seed to a random one.
pub fn resolve(req: &GenerationRequest, model: &ModelDir) -> Result<GenerateParams, PipelineError> {
    resolve_validated(req, model).map(|(_, params)| params)
}

/// [`resolve`], also returning the request as validated (the sampler under its canonical name;
/// size, seed and img2img strength filled in): what the images' infotext records.
pub fn resolve_validated(req: &GenerationRequest, model: &ModelDir) -> Result<(GenerationRequest, GenerateParams), PipelineError> {
    let info = ModelInfo {
        id: req.model.clone(),
        family: model.family,
        native_size: model.native_size as i32,
        size_multiple: model.size_multiple as i32,
        img2img: model.img2img,
        sha256: None,
        path: None,
        live_workers: 0,
    };
    let limits = Limits { max_init_image_bytes: MAX_INIT_IMAGE_PIXELS * 4 };
    let req = validate(req, &[info], &limits).map_err(|e| invalid(e.field(), e.to_string()))?;
    let (width, height) = (req.width.unwrap_or(model.native_size as u32) as usize, req.height.unwrap_or(model.native_size as u32) as usize);
    let init_image = match &req.init_image {
        None => None,
        Some(b64) => {
            let bytes = decode_base64_image(b64).map_err(|e| invalid(e.field(), e.to_string()))?;
            let img = output::decode(&bytes, MAX_INIT_IMAGE_PIXELS).map_err(|e| invalid("init_image", e))?;
            Some(output::resize(&img, width, height))
        }
    };
    let params = GenerateParams {
        prompt: req.prompt.clone(),
        negative_prompt: req.negative_prompt.clone(),
        width,
        height,
        steps: req.steps as usize,
        guidance_scale: req.guidance_scale,
        sampler: req.sampler.parse().map_err(|e: crate::sampler::SamplerNameError| invalid("sampler", e.to_string()))?,
        seed: req.seed.unwrap_or_else(darkroom_shared::validate::random_seed),
        num_images: req.num_images as usize,
        init_image,
        strength: req.strength.unwrap_or(defaults::STRENGTH),
        prompt_syntax: req.prompt_syntax.unwrap_or_default(),
    };
    Ok((req, params))
}
