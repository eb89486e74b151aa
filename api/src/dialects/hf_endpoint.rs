//! Hugging Face Inference Endpoint custom handler (the community SD handlers' contract):
//! `POST /` with `{"inputs", "negative_prompt", "height", "width", "guidance_scale",
//! "inference_steps", "seed"}`, or the same fields under `"parameters"`, answers
//! `{"image": "<base64 PNG>"}` once the image is made. It runs the deployment's default model
//! (`--default-model`, or the catalog's only model). Errors: `{"error": "..."}`.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use darkroom_shared::request::{GenerationRequest, OutputFormat};
use serde::Deserialize;
use serde_json::json;

use super::common::{self, Problem};
use crate::error::ApiError;
use crate::service::Service;

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

async fn generate(State(service): State<Arc<Service>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    match handle(&service, &headers, body).await {
        Ok(image) => Json(json!({ "image": image })).into_response(),
        Err(p) => (p.status, Json(json!({ "error": p.message }))).into_response(),
    }
}

async fn handle(service: &Arc<Service>, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<String, Problem> {
    let tenant = common::authenticate(service, headers).await.map_err(problem)?;
    let body: Body = common::read_json(service, body).map_err(problem)?;
    let model = default_model(service).await?;
    let request = translate(model, body);
    let done = common::run(service, tenant.id, request).await.map_err(|e| Problem::from_run(e, rename))?;
    let (_, bytes) = done.images.first().ok_or_else(|| problem(ApiError::Internal("a succeeded job without images".into())))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
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
async fn default_model(service: &Service) -> Result<String, Problem> {
    if let Some(name) = &service.settings().default_model {
        return Ok(common::resolve_alias(service, name));
    }
    let models = service.models().await.map_err(problem)?;
    match models.as_slice() {
        [only] => Ok(only.id.clone()),
        _ => Err(Problem::bad_request(
            "model",
            format!(
                "this endpoint has no default model and the catalog holds {} models: start darkroom-api serve with --default-model NAME (DARKROOM_DEFAULT_MODEL)",
                models.len()
            ),
        )),
    }
}

fn problem(e: ApiError) -> Problem {
    Problem::from_api(e, rename)
}

/// Canonical field names as this dialect calls them.
fn rename(field: &str) -> String {
    match field {
        "prompt" => "inputs",
        "steps" => "inference_steps",
        other => other,
    }
    .to_string()
}
