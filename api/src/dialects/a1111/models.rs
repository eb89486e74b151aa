//! AUTOMATIC1111's request and response shapes. A request body is merged over A1111's defaults
//! (so `parameters` echoes the request with every default filled, as A1111 does), then the
//! fields we act on are read from the merged object into [`Fields`]; other known fields are
//! accepted and echoed, unknown ones ignored (pydantic's default).
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The fields of `StableDiffusionProcessingTxt2Img` / the API's txt2img model, at their defaults.
pub fn txt2img_defaults() -> Map<String, Value> {
    let v = serde_json::from_str(
        r#"{
        "prompt": "", "negative_prompt": "", "styles": null, "seed": -1, "subseed": -1, "subseed_strength": 0,
        "seed_resize_from_h": -1, "seed_resize_from_w": -1, "sampler_name": null, "scheduler": null,
        "batch_size": 1, "n_iter": 1, "steps": 50, "cfg_scale": 7.0, "width": 512, "height": 512,
        "restore_faces": null, "tiling": null, "do_not_save_samples": false, "do_not_save_grid": false,
        "eta": null, "denoising_strength": 0.75, "s_min_uncond": null, "s_churn": null, "s_tmax": null,
        "s_tmin": null, "s_noise": null, "override_settings": null, "override_settings_restore_afterwards": true,
        "refiner_checkpoint": null, "refiner_switch_at": null, "disable_extra_networks": false,
        "firstpass_image": null, "comments": null, "enable_hr": false, "firstphase_width": 0,
        "firstphase_height": 0, "hr_scale": 2.0, "hr_upscaler": null, "hr_second_pass_steps": 0,
        "hr_resize_x": 0, "hr_resize_y": 0, "hr_checkpoint_name": null, "hr_sampler_name": null,
        "hr_scheduler": null, "hr_prompt": "", "hr_negative_prompt": "", "force_task_id": null,
        "sampler_index": "Euler", "script_name": null, "script_args": [], "send_images": true,
        "save_images": false, "alwayson_scripts": {}, "infotext": null
    }"#,
    )
    .unwrap_or(Value::Null);
    into_map(v)
}

/// img2img's fields: txt2img's without the hires ones, plus the init image and inpainting ones.
pub fn img2img_defaults() -> Map<String, Value> {
    let mut m = txt2img_defaults();
    for k in [
        "enable_hr",
        "firstphase_width",
        "firstphase_height",
        "hr_scale",
        "hr_upscaler",
        "hr_second_pass_steps",
        "hr_resize_x",
        "hr_resize_y",
        "hr_checkpoint_name",
        "hr_sampler_name",
        "hr_scheduler",
        "hr_prompt",
        "hr_negative_prompt",
        "firstpass_image",
    ] {
        m.remove(k);
    }
    let extra = json!({
        "init_images": null, "resize_mode": 0, "image_cfg_scale": null, "mask": null, "mask_blur_x": 4,
        "mask_blur_y": 4, "mask_blur": null, "mask_round": true, "inpainting_fill": 0, "inpaint_full_res": true,
        "inpaint_full_res_padding": 0, "inpainting_mask_invert": 0, "initial_noise_multiplier": null,
        "latent_mask": null, "include_init_images": false
    });
    m.extend(into_map(extra));
    m
}

fn into_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The fields we act on (null means "the default", as for A1111's Optional fields).
#[derive(Debug, Default, Deserialize)]
pub struct Fields {
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub styles: Option<Vec<String>>,
    pub seed: Option<i64>,
    pub subseed_strength: Option<f64>,
    pub sampler_name: Option<String>,
    pub sampler_index: Option<String>,
    pub scheduler: Option<String>,
    pub batch_size: Option<i64>,
    pub n_iter: Option<i64>,
    pub steps: Option<i64>,
    pub cfg_scale: Option<f64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub restore_faces: Option<bool>,
    pub tiling: Option<bool>,
    pub denoising_strength: Option<f64>,
    pub override_settings: Option<Map<String, Value>>,
    pub refiner_checkpoint: Option<String>,
    pub enable_hr: Option<bool>,
    pub script_name: Option<String>,
    pub send_images: Option<bool>,
    pub alwayson_scripts: Option<Map<String, Value>>,
    pub infotext: Option<String>,
    // img2img (`init_images` is read apart: `translate::read_body`)
    pub mask: Option<String>,
}

/// The answer of txt2img and img2img.
#[derive(Serialize)]
pub struct GenerateResponse {
    /// Base64 images, without a `data:` prefix; empty when `send_images` is false.
    pub images: Vec<String>,
    pub parameters: Value,
    /// `Processed.js()`: a JSON document in a string.
    pub info: String,
}

/// One entry of `GET /sdapi/v1/sd-models`.
#[derive(Serialize)]
pub struct SdModel {
    pub title: String,
    pub model_name: String,
    pub hash: Option<String>,
    pub sha256: Option<String>,
    pub filename: String,
    pub config: Option<String>,
}

/// One entry of `GET /sdapi/v1/samplers`.
#[derive(Serialize)]
pub struct SamplerItem {
    pub name: String,
    pub aliases: Vec<String>,
    pub options: Map<String, Value>,
}

/// One entry of `GET /sdapi/v1/schedulers`.
#[derive(Serialize)]
pub struct SchedulerItem {
    pub name: &'static str,
    pub label: &'static str,
    pub aliases: Option<Vec<&'static str>>,
    pub default_rho: f64,
    pub need_inner_model: bool,
}

/// `GET /sdapi/v1/progress`.
#[derive(Serialize)]
pub struct Progress {
    pub progress: f64,
    pub eta_relative: f64,
    pub state: ProgressState,
    pub current_image: Option<String>,
    pub textinfo: Option<String>,
}

/// `shared.state.dict()`.
#[derive(Serialize)]
pub struct ProgressState {
    pub skipped: bool,
    pub interrupted: bool,
    pub stopping_generation: bool,
    pub job: String,
    pub job_count: i64,
    pub job_timestamp: String,
    pub job_no: i64,
    pub sampling_step: i64,
    pub sampling_steps: i64,
}
