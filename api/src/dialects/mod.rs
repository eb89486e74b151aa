//! Wire-compatible dialects of the APIs our users already call. Each dialect is one module: a
//! [`Dialect`](crate::dialect::Dialect) (its error shape and field names) and thin handlers that
//! take the shared extractors, map the request into the canonical one, call the same `Service`
//! as the native API (same tokens, tenants, queue, limits and submit-and-wait), and shape the
//! finished job back into the dialect's response. A new dialect is a module and a line below.
//! No dialect logic lives below this module.
use std::sync::Arc;

use axum::Router;

use crate::service::Service;

mod a1111;
mod hf_endpoint;
mod hf_serverless;
mod hyperbolic;

/// Every dialect's routes.
pub fn router() -> Router<Arc<Service>> {
    Router::new().merge(a1111::router()).merge(hf_endpoint::router()).merge(hf_serverless::router()).merge(hyperbolic::router())
}
