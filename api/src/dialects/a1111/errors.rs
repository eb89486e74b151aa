//! A1111's error shapes, as the [`A1111`] dialect renders every [`ApiError`]. FastAPI's HTTPBasic
//! failure is `401 {"detail": "Incorrect username or password"}`; body validation is FastAPI's
//! `422 {"detail": [{"loc", "msg", "type"}]}`; every other exception goes through A1111's
//! middleware as `{"error": <class>, "detail", "body", "errors"}`: `HTTPException` (an unknown
//! sampler is its 400 "Sampler not found") or another class (`RuntimeError` for an unknown
//! checkpoint, a failed job or an internal fault).
use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use darkroom_shared::validate::ValidationError;
use serde_json::json;

use crate::dialect::{Dialect, DialectError};
use crate::error::{ApiError, PublicError};

/// AUTOMATIC1111's web API (`/sdapi/v1`).
pub struct A1111;

pub type Answer<T> = Result<T, DialectError<A1111>>;

impl Dialect for A1111 {
    const NAME: &'static str = "a1111";
    const CHALLENGE: &'static str = "Basic";

    fn field_name(canonical: &str) -> Cow<'static, str> {
        match canonical {
            "model" => "override_settings",
            "sampler" => "sampler_name",
            "guidance_scale" => "cfg_scale",
            "num_images" => "batch_size",
            "init_image" => "init_images",
            "strength" => "denoising_strength",
            other => return Cow::Owned(other.to_string()),
        }
        .into()
    }

    fn render(e: PublicError<'_>) -> Response {
        let validation = |kind: &str| {
            // FastAPI's loc is a path: ["body", "override_settings", "sd_model_checkpoint"].
            let field = e.field.as_deref().unwrap_or("");
            let loc: Vec<&str> = std::iter::once("body").chain(field.split('.').filter(|p| !p.is_empty())).collect();
            (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"detail": [{"loc": loc, "msg": e.message, "type": kind}]}))).into_response()
        };
        let exception = |status: StatusCode, class: &str, message: &str| {
            (status, Json(json!({"error": class, "detail": "", "body": "", "errors": message}))).into_response()
        };
        let http =
            |status: StatusCode, detail: &str| (status, Json(json!({"error": "HTTPException", "detail": detail, "body": "", "errors": ""}))).into_response();
        match e.error {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, Json(json!({"detail": "Incorrect username or password"}))).into_response(),
            ApiError::Invalid(ValidationError::UnknownSampler { .. }) => http(StatusCode::BAD_REQUEST, "Sampler not found"),
            ApiError::Invalid(ValidationError::UnknownModel { name, .. }) => {
                // A1111 answers 500 here; an unknown name is the client's fault: 400.
                exception(StatusCode::BAD_REQUEST, "RuntimeError", &format!("model '{name}' not found"))
            }
            ApiError::Invalid(_) | ApiError::Parameter { .. } => validation("value_error"),
            ApiError::Shape { .. } => validation("type_error"),
            ApiError::Malformed { .. } | ApiError::UnsupportedMediaType(_) => validation("json_invalid"),
            ApiError::MethodNotAllowed(_) => http(e.status, "Method Not Allowed"),
            ApiError::JobFailed { message, .. } => exception(e.status, "RuntimeError", message),
            ApiError::Internal(_) => exception(e.status, "RuntimeError", &e.message),
            _ => http(e.status, &e.message),
        }
    }
}
