//! A1111's error shapes. FastAPI's HTTPBasic failure is `401 {"detail": "Incorrect username or
//! password"}`; body validation is FastAPI's `422 {"detail": [{"loc", "msg", "type"}]}`; every
//! other exception goes through A1111's middleware as `{"error": <class>, "detail", "body",
//! "errors"}`. Our own errors are mapped here, naming A1111's field where one is at fault.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiError;

#[derive(Debug)]
pub enum A1111Error {
    /// 401, with a Basic challenge so that clients send their credentials.
    Unauthorized,
    /// 422 in FastAPI's shape, for the body field `field`.
    Invalid { field: String, msg: String, kind: &'static str },
    /// An `HTTPException` raised by A1111's handlers (e.g. 400 "Sampler not found").
    Http { status: StatusCode, detail: String },
    /// Another exception class (e.g. `RuntimeError` for an unknown checkpoint or a failed job).
    Exception { status: StatusCode, class: &'static str, message: String },
}

impl A1111Error {
    pub fn invalid(field: &str, msg: impl Into<String>) -> A1111Error {
        A1111Error::Invalid { field: field.to_string(), msg: msg.into(), kind: "value_error" }
    }

    pub fn http(status: StatusCode, detail: impl Into<String>) -> A1111Error {
        A1111Error::Http { status, detail: detail.into() }
    }
}

/// A1111's name for a canonical request field.
pub fn a1111_field(canonical: &str) -> &str {
    match canonical {
        "model" => "override_settings",
        "sampler" => "sampler_name",
        "guidance_scale" => "cfg_scale",
        "num_images" => "batch_size",
        "init_image" => "init_images",
        "strength" => "denoising_strength",
        other => other,
    }
}

impl From<ApiError> for A1111Error {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid(v) => {
                let canonical = v.field();
                let field = a1111_field(canonical);
                let text = v.to_string();
                let msg = text.strip_prefix(canonical).map(|rest| format!("{field}{rest}")).unwrap_or(text);
                A1111Error::Invalid { field: field.to_string(), msg, kind: "value_error" }
            }
            ApiError::Shape { field, message } => A1111Error::Invalid { field: field.unwrap_or_default(), msg: message, kind: "type_error" },
            ApiError::Parameter { field, message } => A1111Error::Invalid { field: field.to_string(), msg: message, kind: "value_error" },
            ApiError::Malformed { message, .. } | ApiError::UnsupportedMediaType(message) => {
                A1111Error::Invalid { field: String::new(), msg: message, kind: "json_invalid" }
            }
            ApiError::Unauthorized(_) => A1111Error::Unauthorized,
            ApiError::NotFound(m) => A1111Error::http(StatusCode::NOT_FOUND, m),
            ApiError::Conflict(m) => A1111Error::http(StatusCode::CONFLICT, m),
            e @ ApiError::PayloadTooLarge { .. } => A1111Error::http(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            ApiError::MethodNotAllowed(_) => A1111Error::http(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
            ApiError::Unavailable(detail) => {
                tracing::warn!("a1111 answering 503: {detail}");
                A1111Error::http(StatusCode::SERVICE_UNAVAILABLE, "the service is temporarily unavailable; try again shortly")
            }
            ApiError::Internal(detail) => {
                tracing::error!("a1111 answering 500: {detail}");
                A1111Error::Exception { status: StatusCode::INTERNAL_SERVER_ERROR, class: "RuntimeError", message: "internal error".into() }
            }
        }
    }
}

impl IntoResponse for A1111Error {
    fn into_response(self) -> Response {
        match self {
            A1111Error::Unauthorized => {
                let mut r = (StatusCode::UNAUTHORIZED, Json(json!({"detail": "Incorrect username or password"}))).into_response();
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                r
            }
            A1111Error::Invalid { field, msg, kind } => {
                // FastAPI's loc is a path: ["body", "override_settings", "sd_model_checkpoint"].
                let loc: Vec<&str> = std::iter::once("body").chain(field.split('.').filter(|p| !p.is_empty())).collect();
                (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"detail": [{"loc": loc, "msg": msg, "type": kind}]}))).into_response()
            }
            A1111Error::Http { status, detail } => {
                (status, Json(json!({"error": "HTTPException", "detail": detail, "body": "", "errors": ""}))).into_response()
            }
            A1111Error::Exception { status, class, message } => {
                (status, Json(json!({"error": class, "detail": "", "body": "", "errors": message}))).into_response()
            }
        }
    }
}
