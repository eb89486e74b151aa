//! The request id: `x-request-id` as the client sent it, or one generated when it sent none or
//! one that is not 1-128 characters of letters, digits and `-_.:/+=@` (such an id is replaced,
//! not refused: a proxy's odd id must not fail the request). The id is echoed in the response,
//! is a field of the request's tracing span (so every log line of the request carries it), and
//! is stored with a job the request submits (so every log line of the job's worker does too).
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::trace::MakeSpan;
use tracing::Span;

/// The header that carries the id, in requests and responses.
pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id kept as given.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    /// The id of the request being handled, for what the handler stores (a job's `request_id`).
    static CURRENT: String;
}

/// Whether `id` is kept as the client sent it.
pub fn is_valid(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
}

/// Middleware (outside the trace layer): settle the request's id, put it in the request's
/// headers (where [`RequestSpan`] reads it), run the request with it as [`current`], and echo
/// it in the response.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let given = request.headers().get(&HEADER).and_then(|v| v.to_str().ok()).filter(|id| is_valid(id));
    let id = match given {
        Some(id) => id.to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    // Valid ids are visible ASCII, so they always make a header value.
    let value = HeaderValue::from_str(&id).ok();
    if let Some(v) = &value {
        request.headers_mut().insert(HEADER.clone(), v.clone());
    }
    let mut response = CURRENT.scope(id, next.run(request)).await;
    if let Some(v) = value {
        response.headers_mut().insert(HEADER.clone(), v);
    }
    response
}

/// The id of the request this task is handling (none outside a request).
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The trace layer's span of a request: method, URI, HTTP version and request id.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let id = request.headers().get(&HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        tracing::info_span!("request", method = %request.method(), uri = %request.uri(), version = ?request.version(), request_id = %id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_in_length_and_characters() {
        assert!(is_valid("0190e0a4-0000-7000-8000-000000000000"));
        assert!(is_valid("req_ABC.def:1/2+3=4@x"));
        assert!(is_valid(&"a".repeat(MAX_LEN)));
        assert!(!is_valid(""));
        assert!(!is_valid(&"a".repeat(MAX_LEN + 1)));
        assert!(!is_valid("has space"));
        assert!(!is_valid("quote\""));
        assert!(!is_valid("caf\u{e9}"));
    }
}
