//! Reading JSON into the request types, with serde's errors turned into [`ApiError`]s that name
//! the field at fault (`steps`, `parameters.target_size.width`).
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Deserialize `bytes`, mapping serde's errors to the field they concern.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(shape_error)?;
    de.end().map_err(|e| ApiError::Malformed { field: None, message: format!("the request body is not valid JSON: {e}") })?;
    Ok(value)
}

/// Read an already parsed JSON value as `T`, with the same field-naming errors.
pub fn from_value<'de, T: serde::Deserialize<'de>>(value: &'de serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(shape_error)
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
