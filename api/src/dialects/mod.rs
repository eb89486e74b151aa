//! Wire-compatible dialects of the APIs our users already call. Each dialect is a thin
//! translator: its module maps its requests into the canonical request, calls the same
//! `Service` as the native API (same tokens, tenants, queue and limits), and shapes the finished
//! job (or the error) back into its own responses. No dialect logic lives below this module.
use std::sync::Arc;

use axum::Router;

use crate::service::Service;

mod a1111;
mod common;
mod hf_endpoint;
mod hf_serverless;
mod hyperbolic;

/// Every dialect's routes.
pub fn router() -> Router<Arc<Service>> {
    Router::new().merge(a1111::router()).merge(hf_endpoint::router()).merge(hf_serverless::router()).merge(hyperbolic::router())
}
