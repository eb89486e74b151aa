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
use serde::Serialize;

use crate::dialect::{Dialect, DialectError};
use crate::error::{ApiError, PublicError};
use crate::openapi::{schema_of, tags, Schemas};

/// FastAPI's 401 of HTTPBasic.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"detail": "Incorrect username or password"}))]
pub struct A1111Unauthorized {
    pub detail: String,
}

/// FastAPI's 422: the body's fields at fault.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"detail": [{"loc": ["body", "steps"], "msg": "steps must be an integer from 1 to 150; got 500", "type": "value_error"}]}))]
pub struct A1111ValidationError {
    pub detail: Vec<A1111ValidationItem>,
}

/// One field at fault.
#[derive(Serialize, utoipa::ToSchema)]
pub struct A1111ValidationItem {
    /// `["body", <field>, <sub-field>...]`.
    pub loc: Vec<String>,
    pub msg: String,
    /// `value_error`, `type_error` or `json_invalid`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A1111's exception middleware: `error` is the exception's class (`HTTPException`,
/// `RuntimeError`); an HTTPException's text is in `detail`, another's in `errors`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "HTTPException", "detail": "Sampler not found", "body": "", "errors": ""}))]
pub struct A1111Exception {
    pub error: String,
    pub detail: String,
    pub body: String,
    pub errors: String,
}

/// AUTOMATIC1111's web API (`/sdapi/v1`).
pub struct A1111;

pub type Answer<T> = Result<T, DialectError<A1111>>;

impl Dialect for A1111 {
    const NAME: &'static str = "a1111";
    const CHALLENGE: &'static str = "Basic";
    const TAG: &'static str = tags::A1111;
    const BODY_ERRORS: &'static [u16] = &[408, 413, 422];

    fn error_schema(status: u16) -> &'static str {
        match status {
            401 => "A1111Unauthorized",
            422 => "A1111ValidationError",
            _ => "A1111Exception",
        }
    }

    fn error_schemas() -> Schemas {
        let mut out = Schemas::new();
        schema_of::<A1111Unauthorized>(&mut out);
        schema_of::<A1111ValidationError>(&mut out);
        schema_of::<A1111Exception>(&mut out);
        out
    }

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
            let item = A1111ValidationItem { loc: loc.into_iter().map(str::to_string).collect(), msg: e.message.clone(), kind: kind.to_string() };
            (StatusCode::UNPROCESSABLE_ENTITY, Json(A1111ValidationError { detail: vec![item] })).into_response()
        };
        let exception = |status: StatusCode, class: &str, message: &str| {
            let body = A1111Exception { error: class.into(), detail: String::new(), body: String::new(), errors: message.into() };
            (status, Json(body)).into_response()
        };
        let http = |status: StatusCode, detail: &str| {
            let body = A1111Exception { error: "HTTPException".into(), detail: detail.into(), body: String::new(), errors: String::new() };
            (status, Json(body)).into_response()
        };
        match e.error {
            ApiError::Unauthorized(_) => {
                (StatusCode::UNAUTHORIZED, Json(A1111Unauthorized { detail: "Incorrect username or password".into() })).into_response()
            }
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
