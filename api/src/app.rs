//! The router: every route, the body limit, panics and unknown routes answered in our error
//! shape, request tracing (method, path, status and request id: never other headers), the HTTP
//! metrics and the request id (outermost). `/metrics` is merged in by `serve`.
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use axum::response::{IntoResponse, Response};

use crate::dialect::{method_not_allowed, Native};
use crate::error::{panic_message, ApiError};
use crate::request_id::RequestSpan;
use crate::service::Service;
use crate::{dialects, metrics, request_id, routes};

/// The whole HTTP surface of `darkroom-api serve`.
pub fn router(service: Arc<Service>) -> Router {
    let limit = service.settings().max_body_bytes;
    Router::new()
        .merge(routes::jobs::router())
        .merge(routes::models::router())
        .merge(routes::health::router())
        .merge(dialects::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed::<Native>)
        .layer(DefaultBodyLimit::max(limit))
        .layer(CatchPanicLayer::custom(|panic| -> Response { panic_message(panic).into_response() }))
        .layer(TraceLayer::new_for_http().make_span_with(RequestSpan).on_response(DefaultOnResponse::new().level(Level::INFO)))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(service)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}
