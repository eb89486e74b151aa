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
#[derive(Serialize, utoipa::ToSchema)]
pub struct GenerateResponse {
    /// Base64 images, without a `data:` prefix; empty when `send_images` is false.
    pub images: Vec<String>,
    /// The request, with A1111's defaults filled in.
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// `Processed.js()`: a JSON document in a string.
    pub info: String,
}

/// One entry of `GET /sdapi/v1/sd-models`: a catalog model as an A1111 checkpoint.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "title": "tiny-sd15 [364658c731]", "model_name": "tiny-sd15", "hash": "364658c731",
    "sha256": "364658c731c79abef6d0f2f681b84492b4e31a605a9dd1e6d43d54503535348a",
    "filename": "/models/tiny-sd15", "config": null
}))]
pub struct SdModel {
    /// `model_name [hash]` (A1111's format); the name alone while the model has no hash.
    pub title: String,
    /// The catalog's model id.
    pub model_name: String,
    /// The first 10 hex digits of `sha256`; null while unknown.
    #[schema(pattern = "^[0-9a-f]{10}$")]
    pub hash: Option<String>,
    /// The sha256 (lowercase hex) of the model's UNet weights, as its worker hashed them when
    /// loading it: the bytes of `unet/model.onnx`, then those of each external data file the
    /// graph references (Optimum's `unet/model.onnx_data`), sorted by name, as one stream. Not
    /// A1111's hash of a `.safetensors` checkpoint (an ONNX export has none): the same export
    /// hashes the same on every worker. Null while unknown.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: Option<String>,
    /// The model directory the worker loaded (an absolute path on the worker's machine); the
    /// model's name when the worker did not say.
    pub filename: String,
    /// Always null: an ONNX export has no separate config file.
    pub config: Option<String>,
}

/// One entry of `GET /sdapi/v1/samplers`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SamplerItem {
    pub name: String,
    pub aliases: Vec<String>,
    #[schema(value_type = Object)]
    pub options: Map<String, Value>,
}

/// One entry of `GET /sdapi/v1/schedulers`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SchedulerItem {
    #[schema(value_type = String)]
    pub name: &'static str,
    #[schema(value_type = String)]
    pub label: &'static str,
    #[schema(value_type = Option<Vec<String>>)]
    pub aliases: Option<Vec<&'static str>>,
    pub default_rho: f64,
    pub need_inner_model: bool,
}

/// `GET /sdapi/v1/progress`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = A1111Progress)]
pub struct Progress {
    pub progress: f64,
    pub eta_relative: f64,
    pub state: ProgressState,
    pub current_image: Option<String>,
    pub textinfo: Option<String>,
}

/// `shared.state.dict()`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = A1111ProgressState)]
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

/// The body of `POST /sdapi/v1/txt2img` (A1111's `StableDiffusionTxt2ImgProcessingAPI`), for the
/// OpenAPI document: the body is read by [`Fields`] and merged over [`txt2img_defaults`], which a
/// test keeps equal to these fields. Bounds are ours (the job's validation); other fields are
/// accepted and echoed in `parameters`; unknown ones are ignored. Refused with a 422 naming
/// them: `enable_hr`, `alwayson_scripts` (non-empty), `script_name`, `restore_faces`, `tiling`,
/// `subseed_strength > 0`, `styles` (non-empty), `refiner_checkpoint`, `infotext`.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
#[schema(example = json!({
    "prompt": "apple", "negative_prompt": "red", "sampler_name": "DPM++ 2M Karras", "seed": 985454925,
    "cfg_scale": 7, "steps": 20, "width": 512, "height": 512
}))]
pub struct Txt2ImgRequest {
    #[schema(max_length = 4000, default = "")]
    prompt: Option<String>,
    #[schema(max_length = 4000, default = "")]
    negative_prompt: Option<String>,
    /// Prompt styles: not supported (non-empty is refused).
    styles: Option<Vec<String>>,
    /// -1: random; image *i* uses seed + *i*.
    #[schema(minimum = -1, maximum = 9223372036854775807_i64, default = -1)]
    seed: Option<i64>,
    #[schema(default = -1)]
    subseed: Option<i64>,
    /// Variation seeds: not supported (above 0 is refused).
    #[schema(default = 0)]
    subseed_strength: Option<f64>,
    #[schema(default = -1)]
    seed_resize_from_h: Option<i64>,
    #[schema(default = -1)]
    seed_resize_from_w: Option<i64>,
    /// An A1111 sampler name (`Euler`, `Euler a`, `DPM++ 2M Karras`, legacy `k_lms_ka`...);
    /// unknown: 400 "Sampler not found".
    #[schema(example = "DPM++ 2M Karras")]
    sampler_name: Option<String>,
    /// `automatic` or `karras`.
    #[schema(example = "karras")]
    scheduler: Option<String>,
    /// Images per batch; `batch_size × n_iter` at most 8.
    #[schema(minimum = 1, maximum = 8, default = 1)]
    batch_size: Option<i64>,
    /// Batches; `batch_size × n_iter` at most 8.
    #[schema(minimum = 1, maximum = 8, default = 1)]
    n_iter: Option<i64>,
    #[schema(minimum = 1, maximum = 150, default = 50)]
    steps: Option<i64>,
    #[schema(minimum = 0, maximum = 30, default = 7.0)]
    cfg_scale: Option<f64>,
    /// Pixels, a multiple of the model's `size_multiple` (`GET /v1/models`; 64 for SD 1.x/2.x,
    /// 32 for SDXL), 64 to 1024 for SD 1.x/2.x models, to 2048 for SDXL.
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8, default = 512)]
    width: Option<i64>,
    /// Pixels, as `width`.
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8, default = 512)]
    height: Option<i64>,
    /// Face restoration: not supported (true is refused).
    restore_faces: Option<bool>,
    /// Tiling: not supported (true is refused).
    tiling: Option<bool>,
    #[schema(default = false)]
    do_not_save_samples: Option<bool>,
    #[schema(default = false)]
    do_not_save_grid: Option<bool>,
    eta: Option<f64>,
    /// img2img only: how much of the init image is re-noised.
    #[schema(exclusive_minimum = 0, maximum = 1, default = 0.75)]
    denoising_strength: Option<f64>,
    s_min_uncond: Option<f64>,
    s_churn: Option<f64>,
    s_tmax: Option<f64>,
    s_tmin: Option<f64>,
    s_noise: Option<f64>,
    /// For this request only: `sd_model_checkpoint` (a catalog model by title `name [hash]`,
    /// name or hash, as `POST /sdapi/v1/options` takes it; unknown: 400 RuntimeError) and
    /// `samples_format` (`png`, `jpg`, `webp`).
    #[schema(value_type = Option<Object>, example = json!({"sd_model_checkpoint": "tiny-sd15 [364658c731]"}))]
    override_settings: Option<Map<String, Value>>,
    #[schema(default = true)]
    override_settings_restore_afterwards: Option<bool>,
    /// A refiner: not supported (a name other than `None` is refused).
    refiner_checkpoint: Option<String>,
    refiner_switch_at: Option<f64>,
    #[schema(default = false)]
    disable_extra_networks: Option<bool>,
    firstpass_image: Option<String>,
    #[schema(value_type = Option<Object>)]
    comments: Option<Map<String, Value>>,
    /// Hires fix: not supported (true is refused).
    #[schema(default = false)]
    enable_hr: Option<bool>,
    #[schema(default = 0)]
    firstphase_width: Option<i64>,
    #[schema(default = 0)]
    firstphase_height: Option<i64>,
    #[schema(default = 2.0)]
    hr_scale: Option<f64>,
    hr_upscaler: Option<String>,
    #[schema(default = 0)]
    hr_second_pass_steps: Option<i64>,
    #[schema(default = 0)]
    hr_resize_x: Option<i64>,
    #[schema(default = 0)]
    hr_resize_y: Option<i64>,
    hr_checkpoint_name: Option<String>,
    hr_sampler_name: Option<String>,
    hr_scheduler: Option<String>,
    #[schema(default = "")]
    hr_prompt: Option<String>,
    #[schema(default = "")]
    hr_negative_prompt: Option<String>,
    force_task_id: Option<String>,
    /// The sampler, when `sampler_name` is not given.
    #[schema(default = "Euler")]
    sampler_index: Option<String>,
    /// Scripts: not supported (a name is refused).
    script_name: Option<String>,
    #[schema(value_type = Option<Vec<Object>>, default = json!([]))]
    script_args: Option<Vec<Value>>,
    /// false: the answer's `images` is empty.
    #[schema(default = true)]
    send_images: Option<bool>,
    #[schema(default = false)]
    save_images: Option<bool>,
    /// Always-on scripts: not supported (non-empty is refused).
    #[schema(value_type = Option<Object>, default = json!({}))]
    alwayson_scripts: Option<Map<String, Value>>,
    /// Filling fields from an infotext: not supported (non-empty is refused).
    infotext: Option<String>,
}

/// The body of `POST /sdapi/v1/img2img` (A1111's `StableDiffusionImg2ImgProcessingAPI`): the
/// txt2img fields without the hires ones, with the init image (required) and A1111's
/// inpainting fields (`mask` is refused: no inpainting). Kept equal to [`img2img_defaults`] by
/// a test.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
#[schema(example = json!({
    "prompt": "an oil painting",
    "init_images": ["iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAFklEQVR42mM4UaFBEmIY1TCqYfhqAAADaGgQ4a3ZQQAAAABJRU5ErkJggg=="],
    "denoising_strength": 0.6, "sampler_name": "Euler", "steps": 10, "width": 64, "height": 64
}))]
pub struct Img2ImgRequest {
    #[schema(max_length = 4000, default = "")]
    prompt: Option<String>,
    #[schema(max_length = 4000, default = "")]
    negative_prompt: Option<String>,
    styles: Option<Vec<String>>,
    #[schema(minimum = -1, maximum = 9223372036854775807_i64, default = -1)]
    seed: Option<i64>,
    #[schema(default = -1)]
    subseed: Option<i64>,
    #[schema(default = 0)]
    subseed_strength: Option<f64>,
    #[schema(default = -1)]
    seed_resize_from_h: Option<i64>,
    #[schema(default = -1)]
    seed_resize_from_w: Option<i64>,
    sampler_name: Option<String>,
    scheduler: Option<String>,
    #[schema(minimum = 1, maximum = 8, default = 1)]
    batch_size: Option<i64>,
    #[schema(minimum = 1, maximum = 8, default = 1)]
    n_iter: Option<i64>,
    #[schema(minimum = 1, maximum = 150, default = 50)]
    steps: Option<i64>,
    #[schema(minimum = 0, maximum = 30, default = 7.0)]
    cfg_scale: Option<f64>,
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8, default = 512)]
    width: Option<i64>,
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8, default = 512)]
    height: Option<i64>,
    restore_faces: Option<bool>,
    tiling: Option<bool>,
    #[schema(default = false)]
    do_not_save_samples: Option<bool>,
    #[schema(default = false)]
    do_not_save_grid: Option<bool>,
    eta: Option<f64>,
    /// How much of the init image is re-noised; at least 1/steps.
    #[schema(exclusive_minimum = 0, maximum = 1, default = 0.75)]
    denoising_strength: Option<f64>,
    s_min_uncond: Option<f64>,
    s_churn: Option<f64>,
    s_tmax: Option<f64>,
    s_tmin: Option<f64>,
    s_noise: Option<f64>,
    #[schema(value_type = Option<Object>)]
    override_settings: Option<Map<String, Value>>,
    #[schema(default = true)]
    override_settings_restore_afterwards: Option<bool>,
    refiner_checkpoint: Option<String>,
    refiner_switch_at: Option<f64>,
    #[schema(default = false)]
    disable_extra_networks: Option<bool>,
    #[schema(value_type = Option<Object>)]
    comments: Option<Map<String, Value>>,
    force_task_id: Option<String>,
    #[schema(default = "Euler")]
    sampler_index: Option<String>,
    script_name: Option<String>,
    #[schema(value_type = Option<Vec<Object>>, default = json!([]))]
    script_args: Option<Vec<Value>>,
    #[schema(default = true)]
    send_images: Option<bool>,
    #[schema(default = false)]
    save_images: Option<bool>,
    #[schema(value_type = Option<Object>, default = json!({}))]
    alwayson_scripts: Option<Map<String, Value>>,
    infotext: Option<String>,
    /// The init image: base64 (or a `data:image/...;base64,` URI) of a PNG, JPEG or WebP; only
    /// the first is used. Missing: 404 "Init image not found".
    init_images: Option<Vec<String>>,
    #[schema(default = 0)]
    resize_mode: Option<i64>,
    image_cfg_scale: Option<f64>,
    /// Inpainting: not supported (a mask is refused).
    mask: Option<String>,
    #[schema(default = 4)]
    mask_blur_x: Option<i64>,
    #[schema(default = 4)]
    mask_blur_y: Option<i64>,
    mask_blur: Option<i64>,
    #[schema(default = true)]
    mask_round: Option<bool>,
    #[schema(default = 0)]
    inpainting_fill: Option<i64>,
    #[schema(default = true)]
    inpaint_full_res: Option<bool>,
    #[schema(default = 0)]
    inpaint_full_res_padding: Option<i64>,
    #[schema(default = 0)]
    inpainting_mask_invert: Option<i64>,
    initial_noise_multiplier: Option<f64>,
    latent_mask: Option<String>,
    /// Echo the init image in `parameters.init_images`.
    #[schema(default = false)]
    include_init_images: Option<bool>,
}
