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
use axum::Json;
use base64::Engine as _;
use darkroom_shared::request::{GenerationRequest, OutputFormat};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::dialect::{Dialect, DialectError};
use crate::error::{ApiError, PublicError};
use crate::extract::{Caller, JsonBody};
use crate::openapi::{schema_of, tags, Schemas};
use crate::service::Service;

/// Hyperbolic's (OpenAI-like) error object, 400 for any bad input.
pub struct Hyperbolic;

impl Dialect for Hyperbolic {
    const NAME: &'static str = "hyperbolic";
    const TAG: &'static str = tags::HYPERBOLIC;
    const BODY_ERRORS: &'static [u16] = &[400, 408, 413];

    fn error_schema(_status: u16) -> &'static str {
        "HyperbolicError"
    }

    fn error_schemas() -> Schemas {
        let mut out = Schemas::new();
        schema_of::<HyperbolicError>(&mut out);
        out
    }

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
        let (kind, code) = match status {
            StatusCode::UNAUTHORIZED => ("authentication_error", Code::Word("invalid_api_key".into())),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limit_error", Code::Word(e.kind.into())),
            s if s.is_client_error() => ("invalid_request_error", Code::Status(status.as_u16())),
            _ => ("server_error", Code::Status(status.as_u16())),
        };
        let body = HyperbolicError { object: "error", message: e.message, kind, param: e.field, code };
        (status, Json(body)).into_response()
    }
}

/// Hyperbolic's (OpenAI-like) error object.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"object": "error", "message": "loras is not supported by this server: LoRAs are not available", "type": "invalid_request_error", "param": "loras", "code": 400}))]
pub struct HyperbolicError {
    /// `error`.
    #[schema(value_type = String, pattern = "^error$")]
    object: &'static str,
    message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error` or `server_error`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    /// The field at fault, as Hyperbolic names it.
    param: Option<String>,
    code: Code,
}

/// The HTTP status; `invalid_api_key` for a 401, `rate_limited`/`quota_exceeded` for a 429.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = HyperbolicErrorCode)]
#[serde(untagged)]
enum Code {
    Status(u16),
    Word(String),
}

type Answer<T> = Result<T, DialectError<Hyperbolic>>;

/// Hyperbolic's documented defaults.
const DEFAULT_STEPS: u32 = 30;
const DEFAULT_CFG_SCALE: f32 = 5.0;

pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(generate))
}

/// Hyperbolic's image generation request; unknown fields are refused.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = HyperbolicRequest, example = json!({"model_name": "SDXL1.0-base", "prompt": "a photo of an astronaut riding a horse on mars", "height": 1024, "width": 1024, "backend": "auto"}))]
#[serde(deny_unknown_fields)]
struct Body {
    /// A catalog model id or an alias (`--model-alias SDXL1.0-base=sdxl`).
    #[schema(example = "SDXL1.0-base")]
    model_name: String,
    #[schema(max_length = 4000)]
    prompt: String,
    /// Pixels, a multiple of the model's `size_multiple` (`GET /v1/models`; 64 for SD
    /// 1.x/2.x, 32 for SDXL); default: the model's native size.
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8)]
    height: Option<u32>,
    /// Pixels, a multiple of the model's `size_multiple` (`GET /v1/models`; 64 for SD
    /// 1.x/2.x, 32 for SDXL); default: the model's native size.
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8)]
    width: Option<u32>,
    /// `auto`, `tvm` or `torch`: a hint about Hyperbolic's own runtimes; we have one.
    #[schema(pattern = "^(auto|tvm|torch)$")]
    backend: Option<String>,
    /// Absent, empty or equal to `prompt` (a different one is refused).
    prompt_2: Option<String>,
    #[schema(max_length = 4000)]
    negative_prompt: Option<String>,
    /// Absent, empty or equal to `negative_prompt` (a different one is refused).
    negative_prompt_2: Option<String>,
    /// img2img: base64 of a PNG, JPEG or WebP image.
    image: Option<String>,
    /// img2img: how much of the image is re-noised (default 0.8).
    #[schema(exclusive_minimum = 0, maximum = 1)]
    strength: Option<f32>,
    /// Default: random (reported as `random_seed`).
    #[schema(maximum = 9223372036854775807_u64)]
    seed: Option<u64>,
    #[schema(minimum = 0, maximum = 30, default = 5.0)]
    cfg_scale: Option<f32>,
    /// Our sampler names (`Euler`, `DPM++ 2M Karras`...).
    #[schema(default = "Euler")]
    sampler: Option<String>,
    #[schema(minimum = 1, maximum = 150, default = 30)]
    steps: Option<u32>,
    /// Not supported: non-empty is refused.
    style_preset: Option<String>,
    /// Not supported: true is refused.
    enable_refiner: Option<bool>,
    /// Not supported: non-empty is refused.
    controlnet_name: Option<String>,
    /// Not supported: non-empty is refused.
    controlnet_image: Option<String>,
    /// Not supported: a non-empty map is refused.
    loras: Option<BTreeMap<String, f64>>,
}

/// One generated image.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = HyperbolicImage)]
struct Generated {
    /// Base64 PNG.
    #[schema(content_encoding = "base64", content_media_type = "image/png")]
    image: String,
    index: i32,
    random_seed: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = HyperbolicResponse)]
struct Generation {
    images: Vec<Generated>,
    /// Seconds from the job's start to its end.
    inference_time: f64,
}

/// Generate images; blocks until they are made.
#[utoipa::path(post, path = "/v1/image/generation", operation_id = "hyperbolicGenerate", tag = tags::HYPERBOLIC, request_body = Body,
    responses(
        (status = 200, description = "The images", body = Generation),
        (status = 400, description = "A bad input or an unsupported feature, named in `param`"),
        (status = 429, description = "The tenant's rate limit, quota or waiting-requests limit is reached"),
        (status = 500, description = "The job failed"),
        (status = 503, description = "No worker has registered a model yet, or a backend does not answer"),
        (status = 504, description = "The job did not finish within `--max-wait-secs`; it was canceled"),
    ))]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_documents_what_the_parser_accepts() {
        crate::openapi::testing::assert_schema_matches_parser::<Body>(&[]);
    }
}
