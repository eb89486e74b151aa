//! Hugging Face serverless Inference API, text-to-image: `POST /models/{model_id}` with
//! `{"inputs", "parameters": {...}, "options": {...}}` answers the image's raw bytes, in the
//! format the `Accept` header asks for (PNG, JPEG or WebP; JPEG for `*/*` or none).
//!
//! - `x-use-cache` (default true; or `options.use_cache`): a request identical to an earlier one
//!   of the same tenant (the seed included when given) is answered from the stored image.
//! - `x-wait-for-model` (default false; or `options.wait_for_model`): when no live worker serves
//!   the model, a 503 `{"error": "Model <id> is currently loading", "estimated_time": s}`;
//!   with true, the job is queued and the request waits for a worker. `estimated_time` is the
//!   median of the model's recorded worker start-ups (`Service::load_estimate`).
//! - `GET /status/{model_id}`: `{"loaded", "state", "compute_type", "framework"}`, as the
//!   Inference API's status route (what `huggingface_hub`'s `get_model_status` read).
//!
//! Defaults are those of HF's diffusers backend: `EulerAncestralDiscreteScheduler` ("Euler a"),
//! 20 steps, and diffusers' guidance (7.5; 5.0 for SDXL). Errors: `{"error": "..."}`.
use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use darkroom_shared::family::Family;
use darkroom_shared::request::{GenerationRequest, OutputFormat};
use darkroom_shared::store::cache_key;
use serde::Deserialize;
use serde_json::json;

use crate::dialect::{Dialect, DialectError};
use crate::error::{ApiError, PublicError};
use crate::extract::{Caller, JsonBody, PathParam};
use crate::service::{JobWithImages, ModelState, Service, Submission};

/// The serverless API's errors: `{"error": "..."}` (400 for any bad input), and while a model
/// has no live worker, `503 {"error": "Model … is currently loading", "estimated_time": s}`.
pub struct HfServerless;

impl Dialect for HfServerless {
    const NAME: &'static str = "hf-serverless";

    fn field_name(canonical: &str) -> Cow<'static, str> {
        match canonical {
            "prompt" => "inputs".into(),
            "steps" => "parameters.num_inference_steps".into(),
            "sampler" => "parameters.scheduler".into(),
            "guidance_scale" | "negative_prompt" | "seed" | "width" | "height" => format!("parameters.{canonical}").into(),
            other => other.to_string().into(),
        }
    }

    fn render(e: PublicError<'_>) -> Response {
        let status = if e.error.is_bad_input() { StatusCode::BAD_REQUEST } else { e.status };
        let body = match e.error {
            ApiError::ModelLoading { estimated, .. } => json!({ "error": e.message, "estimated_time": estimated.as_secs_f64() }),
            _ => json!({ "error": e.message }),
        };
        (status, Json(body)).into_response()
    }
}

type Answer<T> = Result<T, DialectError<HfServerless>>;

const DEFAULT_STEPS: u32 = 20;
const DEFAULT_SAMPLER: &str = "Euler a";
/// What `/status` reports as `framework`: HF's text-to-image models run on its diffusers backend.
const FRAMEWORK: &str = "diffusers";
/// `/status`'s `compute_type` for a model no worker ever recorded its provider for: workers are
/// deployed on GPUs.
const DEFAULT_COMPUTE_TYPE: &str = "gpu";

pub fn router() -> Router<Arc<Service>> {
    Router::new().route("/models/{*model_id}", post(generate)).route("/status/{*model_id}", get(status))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    inputs: String,
    #[serde(default)]
    parameters: Params,
    #[serde(default)]
    options: Options,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Params {
    guidance_scale: Option<f32>,
    negative_prompt: Option<Prompts>,
    num_inference_steps: Option<u32>,
    target_size: Option<Size>,
    width: Option<u32>,
    height: Option<u32>,
    scheduler: Option<String>,
    seed: Option<u64>,
}

/// `negative_prompt` is a string in the current spec and a list in the older one.
#[derive(Deserialize)]
#[serde(untagged)]
enum Prompts {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Size {
    width: u32,
    height: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Options {
    use_cache: Option<bool>,
    wait_for_model: Option<bool>,
}

async fn generate(
    State(service): State<Arc<Service>>,
    caller: Caller<HfServerless>,
    PathParam(model, _): PathParam<String, HfServerless>,
    headers: HeaderMap,
    JsonBody(body, _): JsonBody<Body, HfServerless>,
) -> Answer<Response> {
    let format = accepted_format(&headers)?;
    let id = service.resolve_alias(&model);
    let catalog = service.catalog().await?;
    let Some(info) = catalog.iter().find(|m| m.id == id) else {
        return Err(ApiError::NotFound(format!("Model {model} does not exist")).into());
    };
    let use_cache = flag(&headers, "x-use-cache")?.or(body.options.use_cache).unwrap_or(true);
    let wait = flag(&headers, "x-wait-for-model")?.or(body.options.wait_for_model).unwrap_or(false);
    let request = translate(id, info.family, body.inputs, body.parameters, format);
    let key = cache_key(&request);

    if use_cache {
        if let Some(done) = service.cached(caller.tenant.id, &key).await? {
            return image_response(done, "cache");
        }
    }
    if info.live_workers == 0 && !wait {
        return Err(ApiError::ModelLoading { model, estimated: service.load_estimate(&request.model).await? }.into());
    }
    let submission = Submission { request, cache_key: Some(key), idempotency_key: None };
    let done = service.run_to_end(&caller.tenant, submission, &catalog, service.settings().max_wait).await?.succeeded()?;
    image_response(done, "darkroom")
}

/// `GET /status/{model_id}`: whether a live worker serves the model (`Loaded`), or it is in the
/// catalog and a worker would load it (`Loadable`); 404 for a model not in the catalog.
async fn status(
    State(service): State<Arc<Service>>,
    _caller: Caller<HfServerless>,
    PathParam(model, _): PathParam<String, HfServerless>,
) -> Answer<Json<serde_json::Value>> {
    match service.model_state(&service.resolve_alias(&model)).await? {
        Some(state) => Ok(Json(status_body(&state))),
        None => Err(ApiError::NotFound(format!("Model {model} does not exist")).into()),
    }
}

fn status_body(state: &ModelState) -> serde_json::Value {
    let loaded = state.live_workers > 0;
    let compute_type = match state.provider.as_deref() {
        Some("cuda") => "gpu",
        Some("cpu") => "cpu",
        _ => DEFAULT_COMPUTE_TYPE,
    };
    json!({"loaded": loaded, "state": if loaded { "Loaded" } else { "Loadable" }, "compute_type": compute_type, "framework": FRAMEWORK})
}

fn translate(model: String, family: Family, inputs: String, p: Params, format: OutputFormat) -> GenerationRequest {
    let mut r = GenerationRequest::new(model, inputs);
    r.negative_prompt = p.negative_prompt.map(|n| match n {
        Prompts::One(s) => s,
        Prompts::Many(v) => v.join(", "),
    });
    let (width, height) = match p.target_size {
        Some(size) => (Some(size.width), Some(size.height)),
        None => (p.width, p.height),
    };
    (r.width, r.height) = (width, height);
    r.steps = p.num_inference_steps.unwrap_or(DEFAULT_STEPS);
    r.guidance_scale = p.guidance_scale.unwrap_or(family.default_guidance_scale());
    r.sampler = p.scheduler.unwrap_or_else(|| DEFAULT_SAMPLER.to_string());
    r.seed = p.seed;
    r.output_format = format;
    r
}

/// The first image's bytes with its Content-Type and HF's `x-compute-*` headers.
fn image_response(done: JobWithImages, compute_type: &'static str) -> Answer<Response> {
    let secs = if compute_type == "cache" { 0.0 } else { done.elapsed_secs() };
    let Some((meta, bytes)) = done.images.into_iter().next() else {
        return Err(ApiError::Internal("a succeeded job without images".into()).into());
    };
    let content_type = OutputFormat::parse(&meta.format).map(OutputFormat::content_type).unwrap_or("application/octet-stream");
    let mut response = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    let h = response.headers_mut();
    h.insert("x-compute-type", HeaderValue::from_static(compute_type));
    h.insert("x-compute-images", HeaderValue::from_static("1"));
    for (name, value) in [("x-compute-time", format!("{secs:.3}")), ("x-darkroom-job", done.job.id.to_string()), ("x-darkroom-seed", meta.seed.to_string())] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    Ok(response)
}

/// The image format `Accept` asks for: the first of PNG, JPEG, WebP it names (by order, not
/// by q-value); JPEG for none, `*/*` or `image/*`; a 406 when it names only others.
fn accepted_format(headers: &HeaderMap) -> Result<OutputFormat, ApiError> {
    let values: Vec<&str> = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
    if values.is_empty() {
        return Ok(OutputFormat::Jpeg);
    }
    let mut wildcard = false;
    for mime in values.iter().flat_map(|v| v.split(',')).map(|m| m.split(';').next().unwrap_or("").trim().to_ascii_lowercase()) {
        match mime.as_str() {
            "image/png" => return Ok(OutputFormat::Png),
            "image/jpeg" | "image/jpg" => return Ok(OutputFormat::Jpeg),
            "image/webp" => return Ok(OutputFormat::Webp),
            "*/*" | "image/*" | "" => wildcard = true,
            _ => {}
        }
    }
    if wildcard {
        Ok(OutputFormat::Jpeg)
    } else {
        Err(ApiError::NotAcceptable("Accept must allow image/png, image/jpeg or image/webp".into()))
    }
}

/// A boolean header (`true`/`false`/`1`/`0`, any case); absent is `None`.
fn flag(headers: &HeaderMap, name: &'static str) -> Result<Option<bool>, ApiError> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    match value.to_str().unwrap_or("").trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(Some(true)),
        "false" | "0" | "no" => Ok(Some(false)),
        other => Err(ApiError::Parameter { field: name.into(), message: format!("{name} must be true or false; got {other:?}") }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn accept_picks_the_first_supported_format() {
        let format = |accept: &'static str| accepted_format(&headers(&[("accept", accept)])).ok();
        assert_eq!(accepted_format(&HeaderMap::new()).ok(), Some(OutputFormat::Jpeg));
        assert_eq!(format("*/*"), Some(OutputFormat::Jpeg));
        assert_eq!(format("image/png"), Some(OutputFormat::Png));
        assert_eq!(format("text/html, image/webp;q=0.5, image/png"), Some(OutputFormat::Webp));
        assert_eq!(format("image/tiff, image/*"), Some(OutputFormat::Jpeg));
        assert_eq!(format("image/tiff"), None);
    }

    #[test]
    fn status_shapes() {
        let state = |live_workers, provider: Option<&str>| ModelState { live_workers, provider: provider.map(String::from), estimated_load: Duration::ZERO };
        assert_eq!(status_body(&state(2, Some("cuda"))), json!({"loaded": true, "state": "Loaded", "compute_type": "gpu", "framework": "diffusers"}));
        assert_eq!(status_body(&state(0, Some("cpu"))), json!({"loaded": false, "state": "Loadable", "compute_type": "cpu", "framework": "diffusers"}));
        assert_eq!(status_body(&state(0, None))["compute_type"], "gpu");
    }

    #[test]
    fn boolean_headers() {
        assert_eq!(flag(&headers(&[("x-use-cache", "False")]), "x-use-cache").ok(), Some(Some(false)));
        assert_eq!(flag(&headers(&[("x-use-cache", "1")]), "x-use-cache").ok(), Some(Some(true)));
        assert_eq!(flag(&HeaderMap::new(), "x-use-cache").ok(), Some(None));
        assert!(flag(&headers(&[("x-use-cache", "maybe")]), "x-use-cache").is_err());
    }

    #[test]
    fn the_cache_key_leaves_out_an_absent_seed_only() {
        let params = || Params { seed: None, ..Params::default() };
        let a = translate("m".into(), Family::Sd, "p".into(), params(), OutputFormat::Png);
        let b = translate("m".into(), Family::Sd, "p".into(), params(), OutputFormat::Png);
        assert_eq!(cache_key(&a), cache_key(&b));
        let seeded = translate("m".into(), Family::Sd, "p".into(), Params { seed: Some(1), ..Params::default() }, OutputFormat::Png);
        assert_ne!(cache_key(&a), cache_key(&seeded));
        let jpeg = translate("m".into(), Family::Sd, "p".into(), params(), OutputFormat::Jpeg);
        assert_ne!(cache_key(&a), cache_key(&jpeg));
        assert_eq!((a.steps, a.sampler.as_str(), a.guidance_scale), (20, "Euler a", 7.5));
        assert_eq!(translate("m".into(), Family::Sdxl, "p".into(), params(), OutputFormat::Png).guidance_scale, 5.0);
    }
}
