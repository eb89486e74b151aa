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
use axum::Json;
use darkroom_shared::family::Family;
use darkroom_shared::request::{GenerationRequest, OutputFormat};
use darkroom_shared::store::cache_key;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::dialect::{Dialect, DialectError};
use crate::error::{ApiError, PublicError};
use crate::extract::{Caller, JsonBody, PathParam};
use crate::openapi::{schema_of, tags, Schemas};
use crate::service::{JobWithImages, ModelState, Service, Submission};

/// The serverless API's errors: `{"error": "..."}` (400 for any bad input), and while a model
/// has no live worker, `503 {"error": "Model … is currently loading", "estimated_time": s}`.
pub struct HfServerless;

impl Dialect for HfServerless {
    const NAME: &'static str = "hf-serverless";
    const TAG: &'static str = tags::HF_SERVERLESS;
    const BODY_ERRORS: &'static [u16] = &[400, 408, 413];

    fn error_schema(_status: u16) -> &'static str {
        "HfServerlessError"
    }

    fn error_schemas() -> Schemas {
        let mut out = Schemas::new();
        schema_of::<HfServerlessError>(&mut out);
        out
    }

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
        let estimated_time = match e.error {
            ApiError::ModelLoading { estimated, .. } => Some(estimated.as_secs_f64()),
            _ => None,
        };
        (status, Json(HfServerlessError { error: e.message, estimated_time })).into_response()
    }
}

/// The serverless API's error.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "Model tiny-sd15 is currently loading", "estimated_time": 20.0}))]
pub struct HfServerlessError {
    pub error: String,
    /// Only while the model has no live worker (503): seconds until it may have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_time: Option<f64>,
}

type Answer<T> = Result<T, DialectError<HfServerless>>;

const DEFAULT_STEPS: u32 = 20;
const DEFAULT_SAMPLER: &str = "Euler a";
/// What `/status` reports as `framework`: HF's text-to-image models run on its diffusers backend.
const FRAMEWORK: &str = "diffusers";
/// `/status`'s `compute_type` for a model no worker ever recorded its provider for: workers are
/// deployed on GPUs.
const DEFAULT_COMPUTE_TYPE: &str = "gpu";

pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(generate)).routes(routes!(status))
}

/// Hugging Face's text-to-image request; anything else is a 400 naming it.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = HfTextToImageRequest, example = json!({"inputs": "Astronaut riding a horse", "parameters": {"num_inference_steps": 20, "seed": 42, "target_size": {"width": 64, "height": 64}}}))]
#[serde(deny_unknown_fields)]
struct Body {
    /// The prompt.
    #[schema(max_length = 4000)]
    inputs: String,
    #[serde(default)]
    parameters: Params,
    #[serde(default)]
    options: Options,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[schema(as = HfTextToImageParameters)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Default: diffusers' (7.5; 5.0 for SDXL).
    #[schema(minimum = 0, maximum = 30)]
    guidance_scale: Option<f32>,
    /// A string, or a list joined with ", ".
    negative_prompt: Option<Prompts>,
    #[schema(minimum = 1, maximum = 150, default = 20)]
    num_inference_steps: Option<u32>,
    /// Wins over `width`/`height`.
    target_size: Option<Size>,
    /// Pixels, a multiple of the model's `size_multiple` (`GET /v1/models`; 64 for SD
    /// 1.x/2.x, 32 for SDXL); default: the model's native size.
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8)]
    width: Option<u32>,
    /// Pixels, a multiple of the model's `size_multiple` (`GET /v1/models`; 64 for SD
    /// 1.x/2.x, 32 for SDXL); default: the model's native size.
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8)]
    height: Option<u32>,
    /// A diffusers scheduler class (`DPMSolverMultistepScheduler`...) or an A1111 sampler
    /// name; an incompatible one is a 400.
    #[schema(default = "EulerAncestralDiscreteScheduler")]
    scheduler: Option<String>,
    /// Default: random.
    #[schema(maximum = 9223372036854775807_u64)]
    seed: Option<u64>,
}

/// `negative_prompt` is a string in the current spec and a list in the older one.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = HfNegativePrompt)]
#[serde(untagged)]
enum Prompts {
    One(String),
    Many(Vec<String>),
}

/// The image's size in pixels, multiples of the model's `size_multiple` (`GET /v1/models`).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = HfTargetSize)]
#[serde(deny_unknown_fields)]
struct Size {
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8)]
    width: u32,
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8)]
    height: u32,
}

/// The headers' equivalents (a header wins).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[schema(as = HfOptions)]
#[serde(deny_unknown_fields)]
struct Options {
    #[schema(default = true)]
    use_cache: Option<bool>,
    #[schema(default = false)]
    wait_for_model: Option<bool>,
}

/// Generate an image; answers its bytes.
///
/// One image per request, in the format `Accept` asks for: `image/png`, `image/jpeg` or
/// `image/webp` (the first it names); JPEG for none, `*/*` or `image/*`. A request identical to an earlier
/// succeeded one of the same tenant is answered from the stored image unless `x-use-cache` is
/// false.
#[utoipa::path(post, path = "/models/{*model_id}", operation_id = "hfTextToImage", tag = tags::HF_SERVERLESS, request_body = Body,
    params(
        ("model_id" = String, Path, description = "A catalog model id or a configured alias (may contain `/`)", example = "tiny-sd15"),
        ("x-use-cache" = Option<bool>, Header, description = "Answer an identical earlier request from its stored image (default true)"),
        ("x-wait-for-model" = Option<bool>, Header, description = "With no live worker for the model: queue and wait instead of a 503 (default false)"),
    ),
    responses(
        (status = 200, description = "The image's bytes", content(("image/png"), ("image/jpeg"), ("image/webp")),
            headers(
                ("x-compute-type" = String, description = "`darkroom`, or `cache`"),
                ("x-compute-time" = String, description = "Seconds the job ran"),
                ("x-compute-images" = String, description = "`1`"),
                ("x-darkroom-job" = String, description = "The job id (`/v1/jobs/{id}`)"),
                ("x-darkroom-seed" = String, description = "The image's seed"),
            )),
        (status = 400, description = "A bad input (body field or header), named"),
        (status = 404, description = "No such model"),
        (status = 406, description = "`Accept` names none of the image types we make"),
        (status = 429, description = "The tenant's rate limit, quota or waiting-requests limit is reached"),
        (status = 500, description = "The job failed"),
        (status = 503, description = "The model has no live worker (`estimated_time`; send `x-wait-for-model: true` to wait), or a backend does not answer"),
        (status = 504, description = "The job did not finish within `--max-wait-secs`; it was canceled"),
    ))]
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

/// `GET /status/{model_id}`'s answer, as the Inference API's status route gives it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = HfModelStatus, example = json!({"loaded": true, "state": "Loaded", "compute_type": "gpu", "framework": "diffusers"}))]
struct ModelStatus {
    /// Whether a live worker serves the model.
    loaded: bool,
    /// `Loaded` (a live worker serves it) or `Loadable` (in the catalog; a worker would load it).
    #[schema(pattern = "^(Loaded|Loadable)$")]
    state: &'static str,
    /// `gpu` or `cpu`: what its live workers run on, else its newest recorded start's, else `gpu`.
    #[schema(pattern = "^(gpu|cpu)$")]
    compute_type: &'static str,
    /// Always `diffusers`.
    framework: &'static str,
}

/// Whether a live worker serves the model (`Loaded`), or it is in the catalog and a worker would
/// load it (`Loadable`); 404 for a model not in the catalog.
#[utoipa::path(get, path = "/status/{*model_id}", operation_id = "hfModelStatus", tag = tags::HF_SERVERLESS,
    params(("model_id" = String, Path, description = "A catalog model id or a configured alias (may contain `/`)", example = "tiny-sd15")),
    responses(
        (status = 200, description = "The model's state", body = ModelStatus),
        (status = 404, description = "No such model"),
    ))]
async fn status(
    State(service): State<Arc<Service>>,
    _caller: Caller<HfServerless>,
    PathParam(model, _): PathParam<String, HfServerless>,
) -> Answer<Json<ModelStatus>> {
    match service.model_state(&service.resolve_alias(&model)).await? {
        Some(state) => Ok(Json(status_body(&state))),
        None => Err(ApiError::NotFound(format!("Model {model} does not exist")).into()),
    }
}

fn status_body(state: &ModelState) -> ModelStatus {
    let loaded = state.live_workers > 0;
    let compute_type = match state.provider.as_deref() {
        Some("cuda") => "gpu",
        Some("cpu") => "cpu",
        _ => DEFAULT_COMPUTE_TYPE,
    };
    ModelStatus { loaded, state: if loaded { "Loaded" } else { "Loadable" }, compute_type, framework: FRAMEWORK }
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

    use serde_json::json;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_schemas_document_what_the_parser_accepts() {
        use crate::openapi::testing::assert_schema_matches_parser;
        assert_schema_matches_parser::<Body>(&[]);
        assert_schema_matches_parser::<Params>(&[]);
        assert_schema_matches_parser::<Size>(&[]);
        assert_schema_matches_parser::<Options>(&[]);
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
        assert_eq!(json!(status_body(&state(2, Some("cuda")))), json!({"loaded": true, "state": "Loaded", "compute_type": "gpu", "framework": "diffusers"}));
        assert_eq!(json!(status_body(&state(0, Some("cpu")))), json!({"loaded": false, "state": "Loadable", "compute_type": "cpu", "framework": "diffusers"}));
        assert_eq!(status_body(&state(0, None)).compute_type, "gpu");
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
