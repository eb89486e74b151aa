//! Credentials: the API token a request presents, in each scheme we accept. The `Caller`
//! extractor (`extract.rs`) looks it up for every route of every dialect. Tokens are looked up
//! by their SHA-256 in the store and are never logged; neither is the Authorization header.
use axum::http::{header, HeaderMap};
use base64::Engine as _;

use crate::error::ApiError;

/// The token a request presents in its Authorization header. Each accepted scheme is one arm:
/// `Bearer <token>`, and `Basic base64(user:token)` (any user name, the token as the password)
/// for clients that only speak HTTP Basic.
pub fn presented_token(headers: &HeaderMap) -> Result<String, ApiError> {
    let missing = ApiError::Unauthorized("missing credentials: send Authorization: Bearer <token>");
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(missing);
    };
    let value = value.to_str().map_err(|_| ApiError::Unauthorized("the Authorization header is not readable text"))?.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        rest.to_string()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(ApiError::Unauthorized("the Basic credentials are not valid base64 of user:password"))?;
        decoded.split_once(':').map(|(_, password)| password.to_string()).unwrap_or_default()
    } else {
        return Err(ApiError::Unauthorized("unsupported Authorization scheme: send Authorization: Bearer <token>"));
    };
    if token.is_empty() {
        return Err(missing);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn token(value: Option<&str>) -> Result<String, String> {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        presented_token(&h).map_err(|e| e.to_string())
    }

    #[test]
    fn schemes() {
        assert_eq!(token(Some("Bearer drk_abc")).unwrap(), "drk_abc");
        assert_eq!(token(Some("bearer   drk_abc ")).unwrap(), "drk_abc");
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:drk_abc");
        assert_eq!(token(Some(&format!("Basic {basic}"))).unwrap(), "drk_abc");
        assert!(token(None).unwrap_err().contains("missing"));
        assert!(token(Some("Bearer")).unwrap_err().contains("missing"));
        assert!(token(Some("Digest x")).unwrap_err().contains("unsupported"));
        assert!(token(Some("Basic !!!")).is_err());
    }
}
