//! Hugging Face Inference Endpoint custom handler (the community SD handlers' contract):
//! `POST /` with `{"inputs", "negative_prompt", "height", "width", "guidance_scale",
//! "inference_steps", "seed"}`, or the same fields under `"parameters"`, answers
//! `{"image": "<base64 PNG>"}` once the image is made. It runs the deployment's default model
//! (`--default-model`, or the catalog's only model). Errors: `{"error": "..."}`.
use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use darkroom_shared::request::{GenerationRequest, OutputFormat};
use darkroom_shared::store::ModelInfo;
use serde::Deserialize;
use serde_json::json;

use crate::dialect::{Dialect, DialectError};
use crate::error::{ApiError, PublicError};
use crate::extract::{Caller, JsonBody};
use crate::service::Service;

/// The endpoint handler's errors: `{"error": "..."}`, 400 for any bad input.
pub struct HfEndpoint;

impl Dialect for HfEndpoint {
    const NAME: &'static str = "hf-endpoint";

    fn field_name(canonical: &str) -> Cow<'static, str> {
        match canonical {
            "prompt" => "inputs",
            "steps" => "inference_steps",
            other => return Cow::Owned(other.to_string()),
        }
        .into()
    }

    fn render(e: PublicError<'_>) -> Response {
        let status = if e.error.is_bad_input() { axum::http::StatusCode::BAD_REQUEST } else { e.status };
        (status, Json(json!({ "error": e.message }))).into_response()
    }
}

type Answer<T> = Result<T, DialectError<HfEndpoint>>;

/// Steps when the request gives none (the handler's documented default).
const DEFAULT_STEPS: u32 = 25;

pub fn router() -> Router<Arc<Service>> {
    Router::new().route("/", post(generate))
}

/// The generation fields, at the top level or under `parameters`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Params {
    negative_prompt: Option<String>,
    height: Option<u32>,
    width: Option<u32>,
    guidance_scale: Option<f32>,
    #[serde(alias = "num_inference_steps")]
    inference_steps: Option<u32>,
    seed: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    inputs: String,
    parameters: Option<Params>,
    negative_prompt: Option<String>,
    height: Option<u32>,
    width: Option<u32>,
    guidance_scale: Option<f32>,
    #[serde(alias = "num_inference_steps")]
    inference_steps: Option<u32>,
    seed: Option<u64>,
}

async fn generate(
    State(service): State<Arc<Service>>,
    caller: Caller<HfEndpoint>,
    JsonBody(body, _): JsonBody<Body, HfEndpoint>,
) -> Answer<Json<serde_json::Value>> {
    let catalog = service.catalog().await?;
    let model = default_model(&service, &catalog)?;
    let done = service.run_to_end(&caller.tenant, translate(model, body).into(), &catalog, service.settings().max_wait).await?.succeeded()?;
    let (_, bytes) = done.images.first().ok_or_else(|| ApiError::Internal("a succeeded job without images".into()))?;
    Ok(Json(json!({ "image": base64::engine::general_purpose::STANDARD.encode(bytes) })))
}

fn translate(model: String, body: Body) -> GenerationRequest {
    let p = body.parameters.unwrap_or_default();
    let mut r = GenerationRequest::new(model, body.inputs);
    r.negative_prompt = body.negative_prompt.or(p.negative_prompt);
    r.width = body.width.or(p.width);
    r.height = body.height.or(p.height);
    r.guidance_scale = body.guidance_scale.or(p.guidance_scale).unwrap_or(r.guidance_scale);
    r.steps = body.inference_steps.or(p.inference_steps).unwrap_or(DEFAULT_STEPS);
    r.seed = body.seed.or(p.seed);
    r.output_format = OutputFormat::Png;
    r
}

/// `--default-model` (through the aliases), else the catalog's only model.
fn default_model(service: &Service, catalog: &[ModelInfo]) -> Result<String, ApiError> {
    if let Some(name) = &service.settings().default_model {
        return Ok(service.resolve_alias(name));
    }
    match catalog {
        [only] => Ok(only.id.clone()),
        _ => Err(ApiError::Parameter {
            field: "model".into(),
            message: format!(
                "this endpoint has no default model and the catalog holds {} models: start darkroom-api serve with --default-model NAME (DARKROOM_DEFAULT_MODEL)",
                catalog.len()
            ),
        }),
    }
}
