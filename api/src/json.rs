//! `ApiJson<T>`: a JSON body extractor whose every rejection is an [`ApiError`] in our shape,
//! naming the field at fault (axum's own `Json` answers plain text). The body limit
//! (`--max-body-bytes`, enforced by axum's `DefaultBodyLimit`) becomes a JSON 413.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::service::Service;

/// A JSON request body, deserialized into `T`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
    Arc<Service>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        check_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: Arc::<Service>::from_ref(state).settings().max_body_bytes }
            } else {
                ApiError::Malformed { field: None, message: format!("the request body could not be read: {}", rejection.body_text()) }
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// A body declared as something other than JSON is refused; no Content-Type at all is read as JSON.
fn check_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let mime = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(text.to_string()))
    }
}

/// Deserialize `bytes`, mapping serde's errors to the field they concern.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(shape_error)?;
    de.end().map_err(|e| ApiError::Malformed { field: None, message: format!("the request body is not valid JSON: {e}") })?;
    Ok(value)
}

fn shape_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let message = inner.to_string();
            // A missing field is reported at its parent (an unknown one at itself): name it.
            let named =
                ["unknown field `", "missing field `"].iter().find_map(|p| message.strip_prefix(p)).and_then(|rest| rest.split('`').next()).map(str::to_string);
            let field = match (path.as_str(), named) {
                (".", None) => None,
                (".", Some(name)) => Some(name),
                (p, Some(name)) if p.rsplit('.').next() != Some(name.as_str()) => Some(format!("{p}.{name}")),
                (p, _) => Some(p.to_string()),
            };
            let message = match &field {
                Some(f) if !message.contains(&format!("`{}`", f.rsplit('.').next().unwrap_or(f))) => format!("{f}: {message}"),
                _ => message,
            };
            ApiError::Shape { field, message }
        }
        _ => ApiError::Malformed { field: None, message: format!("the request body is not valid JSON: {inner}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use darkroom_shared::request::GenerationRequest;

    fn field(body: &str) -> (Option<String>, String, bool) {
        match parse::<GenerationRequest>(body.as_bytes()) {
            Err(ApiError::Shape { field, message }) => (field, message, true),
            Err(ApiError::Malformed { field, message }) => (field, message, false),
            other => panic!("{body}: {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn fields_are_named() {
        let (f, m, shape) = field(r#"{"model":"m","prompt":"p","steps":"x"}"#);
        assert_eq!((f.as_deref(), shape), (Some("steps"), true), "{m}");
        assert!(m.starts_with("steps: invalid type"), "{m}");
        let (f, m, _) = field(r#"{"model":"m","prompt":"p","cfg":1}"#);
        assert_eq!(f.as_deref(), Some("cfg"));
        assert!(m.contains("expected one of"), "{m}");
        let (f, _, _) = field(r#"{"model":"m"}"#);
        assert_eq!(f.as_deref(), Some("prompt"));
        let (f, _, _) = field(r#"{"model":"m","prompt":"p","output_format":"gif"}"#);
        assert_eq!(f.as_deref(), Some("output_format"));
        let (f, _, _) = field(r#"{"model":"m","prompt":"p","seed":-1}"#);
        assert_eq!(f.as_deref(), Some("seed"));
        let (f, _, shape) = field(r#"{"model":"m","#);
        assert_eq!((f, shape), (None, false));
        let (_, _, shape) = field(r#"{"model":"m","prompt":"p"} trailing"#);
        assert!(!shape);
        let (f, _, shape) = field("[]");
        assert_eq!((f, shape), (None, true));
    }
}
