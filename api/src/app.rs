//! The router: every route (documented: `openapi.rs`), the body limit, panics and unknown routes
//! answered in our error shape, request tracing (method, path, status and request id: never
//! other headers), the HTTP metrics and the request id (outermost). `/metrics` is merged in by
//! `serve`.
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;

use axum::response::{IntoResponse, Response};

use crate::dialect::{method_not_allowed, Native};
use crate::error::{panic_message, ApiError};
use crate::request_id::RequestSpan;
use crate::service::Service;
use crate::{dialects, metrics, openapi, request_id, routes};

/// The whole HTTP surface of `darkroom-api serve`.
pub fn router(service: Arc<Service>) -> Router {
    let limit = service.settings().max_body_bytes;
    let (routes, api) = documented_routes().split_for_parts();
    Router::new()
        .merge(routes)
        .merge(openapi::docs(api))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed::<Native>)
        .layer(DefaultBodyLimit::max(limit))
        .layer(CatchPanicLayer::custom(|panic| -> Response { panic_message(panic).into_response() }))
        .layer(TraceLayer::new_for_http().make_span_with(RequestSpan).on_response(DefaultOnResponse::new().level(Level::INFO)))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(service)
}

/// Each module's routes with their OpenAPI operations (the document is served at /openapi.json).
pub fn documented_routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(routes::jobs::router())
        .merge(routes::events::router())
        .merge(routes::models::router())
        .merge(routes::health::router())
        .merge(routes::playground::router())
        .merge(dialects::router())
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}
