//! Hyperbolic's image API: `POST /v1/image/generation` with `{"model_name", "prompt", ...}`
//! answers `{"images": [{"image": "<base64 PNG>", "index": 0, "random_seed": s}],
//! "inference_time": seconds}`. `model_name` is a catalog id or a configured alias
//! (`--model-alias SD1.5=sd15`). Fields we cannot honour yet (ControlNet, LoRAs, style presets,
//! the SDXL refiner, a second prompt that differs from the first) are refused with a 400 naming
//! them, never ignored. Errors: `{"object": "error", "message", "type", "param", "code"}`.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use darkroom_shared::request::{GenerationRequest, OutputFormat};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::dialect::{Dialect, DialectError};
use crate::error::{ApiError, PublicError};
use crate::extract::{Caller, JsonBody};
use crate::service::Service;

/// Hyperbolic's (OpenAI-like) error object, 400 for any bad input.
pub struct Hyperbolic;

impl Dialect for Hyperbolic {
    const NAME: &'static str = "hyperbolic";

    fn field_name(canonical: &str) -> Cow<'static, str> {
        match canonical {
            "model" => "model_name",
            "guidance_scale" => "cfg_scale",
            "init_image" => "image",
            other => return Cow::Owned(other.to_string()),
        }
        .into()
    }

    fn render(e: PublicError<'_>) -> Response {
        let status = if e.error.is_bad_input() { StatusCode::BAD_REQUEST } else { e.status };
        let (kind, code): (&str, Value) = match status {
            StatusCode::UNAUTHORIZED => ("authentication_error", json!("invalid_api_key")),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limit_error", json!(e.kind)),
            s if s.is_client_error() => ("invalid_request_error", json!(status.as_u16())),
            _ => ("server_error", json!(status.as_u16())),
        };
        let body = json!({"object": "error", "message": e.message, "type": kind, "param": e.field, "code": code});
        (status, Json(body)).into_response()
    }
}

type Answer<T> = Result<T, DialectError<Hyperbolic>>;

/// Hyperbolic's documented defaults.
const DEFAULT_STEPS: u32 = 30;
const DEFAULT_CFG_SCALE: f32 = 5.0;

pub fn router() -> Router<Arc<Service>> {
    Router::new().route("/v1/image/generation", post(generate))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    model_name: String,
    prompt: String,
    height: Option<u32>,
    width: Option<u32>,
    /// `auto`, `tvm` or `torch`: a hint about Hyperbolic's own runtimes; we have one.
    backend: Option<String>,
    prompt_2: Option<String>,
    negative_prompt: Option<String>,
    negative_prompt_2: Option<String>,
    image: Option<String>,
    strength: Option<f32>,
    seed: Option<u64>,
    cfg_scale: Option<f32>,
    sampler: Option<String>,
    steps: Option<u32>,
    style_preset: Option<String>,
    enable_refiner: Option<bool>,
    controlnet_name: Option<String>,
    controlnet_image: Option<String>,
    loras: Option<BTreeMap<String, f64>>,
}

#[derive(Serialize)]
struct Generated {
    image: String,
    index: i32,
    random_seed: i64,
}

#[derive(Serialize)]
struct Generation {
    images: Vec<Generated>,
    inference_time: f64,
}

async fn generate(State(service): State<Arc<Service>>, caller: Caller<Hyperbolic>, JsonBody(body, _): JsonBody<Body, Hyperbolic>) -> Answer<Json<Generation>> {
    let request = translate(&service, body)?;
    let catalog = service.catalog().await?;
    let done = service.run_to_end(&caller.tenant, request.into(), &catalog, service.settings().max_wait).await?.succeeded()?;
    let images = done
        .images
        .iter()
        .map(|(meta, bytes)| Generated { image: base64::engine::general_purpose::STANDARD.encode(bytes), index: meta.idx, random_seed: meta.seed })
        .collect();
    Ok(Json(Generation { images, inference_time: done.elapsed_secs() }))
}

/// The canonical request, or a 400 naming the first field we cannot honour.
fn translate(service: &Service, b: Body) -> Result<GenerationRequest, ApiError> {
    let unsupported =
        |field: &'static str, what: &str| Err(ApiError::Parameter { field: field.into(), message: format!("{field} is not supported by this server: {what}") });
    if let Some(backend) = &b.backend {
        if !["auto", "tvm", "torch"].contains(&backend.as_str()) {
            return Err(ApiError::Parameter { field: "backend".into(), message: format!("backend must be one of auto, tvm, torch; got {backend:?}") });
        }
    }
    if b.controlnet_name.as_deref().is_some_and(|s| !s.is_empty()) {
        return unsupported("controlnet_name", "ControlNet is not available");
    }
    if b.controlnet_image.as_deref().is_some_and(|s| !s.is_empty()) {
        return unsupported("controlnet_image", "ControlNet is not available");
    }
    if b.loras.as_ref().is_some_and(|l| !l.is_empty()) {
        return unsupported("loras", "LoRAs are not available");
    }
    if b.style_preset.as_deref().is_some_and(|s| !s.is_empty()) {
        return unsupported("style_preset", "style presets are not available");
    }
    if b.enable_refiner == Some(true) {
        return unsupported("enable_refiner", "the SDXL refiner is not available");
    }
    if !same_or_absent(&b.prompt_2, Some(&b.prompt)) {
        return unsupported("prompt_2", "a second prompt that differs from prompt (leave it out, or equal to prompt)");
    }
    if !same_or_absent(&b.negative_prompt_2, b.negative_prompt.as_ref()) {
        return unsupported("negative_prompt_2", "a second negative prompt that differs from negative_prompt");
    }
    let mut r = GenerationRequest::new(service.resolve_alias(&b.model_name), b.prompt);
    r.negative_prompt = b.negative_prompt;
    r.width = b.width;
    r.height = b.height;
    r.steps = b.steps.unwrap_or(DEFAULT_STEPS);
    r.guidance_scale = b.cfg_scale.unwrap_or(DEFAULT_CFG_SCALE);
    if let Some(sampler) = b.sampler {
        r.sampler = sampler;
    }
    r.seed = b.seed;
    r.init_image = b.image;
    r.strength = b.strength;
    r.output_format = OutputFormat::Png;
    Ok(r)
}

/// Absent, empty, or equal to `first`.
fn same_or_absent(second: &Option<String>, first: Option<&String>) -> bool {
    match second.as_deref() {
        None | Some("") => true,
        Some(s) => first.is_some_and(|f| f == s),
    }
}
