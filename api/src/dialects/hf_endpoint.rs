//! Hugging Face Inference Endpoint custom handler (the community SD handlers' contract):
//! `POST /` with `{"inputs", "negative_prompt", "height", "width", "guidance_scale",
//! "inference_steps", "seed"}`, or the same fields under `"parameters"`, answers
//! `{"image": "<base64 PNG>"}` once the image is made. It runs the deployment's default model
//! (`--default-model`, or the catalog's only model). Errors: `{"error": "..."}`.
use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use darkroom_shared::request::{GenerationRequest, OutputFormat};
use darkroom_shared::store::ModelInfo;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::dialect::{Dialect, DialectError};
use crate::error::{ApiError, PublicError};
use crate::extract::{Caller, JsonBody};
use crate::openapi::{schema_of, tags, Schemas};
use crate::service::Service;

/// The endpoint handler's errors: `{"error": "..."}`, 400 for any bad input.
pub struct HfEndpoint;

impl Dialect for HfEndpoint {
    const NAME: &'static str = "hf-endpoint";
    const TAG: &'static str = tags::HF_ENDPOINT;
    const BODY_ERRORS: &'static [u16] = &[400, 408, 413];

    fn error_schema(_status: u16) -> &'static str {
        "HfError"
    }

    fn error_schemas() -> Schemas {
        let mut out = Schemas::new();
        schema_of::<HfError>(&mut out);
        out
    }

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
        (status, Json(HfError { error: e.message })).into_response()
    }
}

/// A Hugging Face handler's error.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "inference_steps must be an integer from 1 to 150; got 0"}))]
pub struct HfError {
    pub error: String,
}

/// The answer: the image, base64 PNG.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = HfEndpointImage)]
struct Image {
    #[schema(content_encoding = "base64", content_media_type = "image/png")]
    image: String,
}

type Answer<T> = Result<T, DialectError<HfEndpoint>>;

/// Steps when the request gives none (the handler's documented default).
const DEFAULT_STEPS: u32 = 25;

pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(generate))
}

/// The generation fields, at the top level or under `parameters` (the top level wins).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[schema(as = HfEndpointParameters)]
#[serde(deny_unknown_fields)]
struct Params {
    #[schema(max_length = 4000)]
    negative_prompt: Option<String>,
    /// Pixels, a multiple of the model's `size_multiple` (`GET /v1/models`; 64 for SD
    /// 1.x/2.x, 32 for SDXL); default: the model's native size.
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8)]
    height: Option<u32>,
    /// Pixels, a multiple of the model's `size_multiple` (`GET /v1/models`; 64 for SD
    /// 1.x/2.x, 32 for SDXL); default: the model's native size.
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8)]
    width: Option<u32>,
    #[schema(minimum = 0, maximum = 30, default = 7.5)]
    guidance_scale: Option<f32>,
    /// Also read as `num_inference_steps`.
    #[serde(alias = "num_inference_steps")]
    #[schema(minimum = 1, maximum = 150, default = 25)]
    inference_steps: Option<u32>,
    /// Default: random.
    #[schema(maximum = 9223372036854775807_u64)]
    seed: Option<u64>,
}

/// The community Stable Diffusion endpoint handler's body; anything else is a 400 naming it.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = HfEndpointRequest, example = json!({"inputs": "Positive prompt", "negative_prompt": "Negative prompt goes here", "height": 512, "width": 512, "guidance_scale": 7.5}))]
#[serde(deny_unknown_fields)]
struct Body {
    /// The prompt.
    #[schema(max_length = 4000)]
    inputs: String,
    parameters: Option<Params>,
    #[schema(max_length = 4000)]
    negative_prompt: Option<String>,
    /// Pixels, a multiple of the model's `size_multiple` (`GET /v1/models`; 64 for SD
    /// 1.x/2.x, 32 for SDXL); default: the model's native size.
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8)]
    height: Option<u32>,
    /// Pixels, a multiple of the model's `size_multiple` (`GET /v1/models`; 64 for SD
    /// 1.x/2.x, 32 for SDXL); default: the model's native size.
    #[schema(minimum = 64, maximum = 2048, multiple_of = 8)]
    width: Option<u32>,
    #[schema(minimum = 0, maximum = 30, default = 7.5)]
    guidance_scale: Option<f32>,
    /// Also read as `num_inference_steps`.
    #[serde(alias = "num_inference_steps")]
    #[schema(minimum = 1, maximum = 150, default = 25)]
    inference_steps: Option<u32>,
    /// Default: random.
    #[schema(maximum = 9223372036854775807_u64)]
    seed: Option<u64>,
}

/// Generate an image with the deployment's default model; blocks until it is made.
///
/// The model is `--default-model`, or the catalog's only model.
#[utoipa::path(post, path = "/", operation_id = "hfEndpointGenerate", tag = tags::HF_ENDPOINT, request_body = Body,
    responses(
        (status = 200, description = "The image", body = Image),
        (status = 400, description = "A bad input, named; or no default model with several in the catalog"),
        (status = 429, description = "The tenant's rate limit, quota or waiting-requests limit is reached"),
        (status = 500, description = "The job failed"),
        (status = 503, description = "No worker has registered a model yet, or a backend does not answer"),
        (status = 504, description = "The job did not finish within `--max-wait-secs`; it was canceled"),
    ))]
async fn generate(State(service): State<Arc<Service>>, caller: Caller<HfEndpoint>, JsonBody(body, _): JsonBody<Body, HfEndpoint>) -> Answer<Json<Image>> {
    let catalog = service.catalog().await?;
    let model = default_model(&service, &catalog)?;
    let done = service.run_to_end(&caller.tenant, translate(model, body).into(), &catalog, service.settings().max_wait).await?.succeeded()?;
    let (_, bytes) = done.images.first().ok_or_else(|| ApiError::Internal("a succeeded job without images".into()))?;
    Ok(Json(Image { image: base64::engine::general_purpose::STANDARD.encode(bytes) }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schemas_document_what_the_parser_accepts() {
        use crate::openapi::testing::assert_schema_matches_parser;
        assert_schema_matches_parser::<Body>(&["num_inference_steps"]);
        assert_schema_matches_parser::<Params>(&["num_inference_steps"]);
    }
}
