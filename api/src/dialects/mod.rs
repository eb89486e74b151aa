//! Wire-compatible dialects of the APIs our users already call. Each dialect is one module: a
//! [`Dialect`](crate::dialect::Dialect) (its error shape and field names) and thin handlers that
//! take the shared extractors, map the request into the canonical one, call the same `Service`
//! as the native API (same tokens, tenants, queue, limits and submit-and-wait), and shape the
//! finished job back into the dialect's response. A new dialect is a module and a line in
//! [`router`] and [`describe_all`]. No dialect logic lives below this module.
use std::sync::Arc;

use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::dialect::{method_not_allowed, Dialect};
use crate::openapi::describe;
use crate::service::Service;

mod a1111;
mod hf_endpoint;
mod hf_serverless;
mod hyperbolic;

/// Every dialect's routes, documented.
pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .merge(in_shape_of::<a1111::A1111>(a1111::router()))
        .merge(in_shape_of::<hf_endpoint::HfEndpoint>(hf_endpoint::router()))
        .merge(in_shape_of::<hf_serverless::HfServerless>(hf_serverless::router()))
        .merge(in_shape_of::<hyperbolic::Hyperbolic>(hyperbolic::router()))
}

/// A dialect's routes, with a method they do not take answered 405 in the dialect's shape.
fn in_shape_of<D: Dialect>(routes: OpenApiRouter<Arc<Service>>) -> OpenApiRouter<Arc<Service>> {
    let (routes, api) = routes.split_for_parts();
    OpenApiRouter::with_openapi(api).merge(routes.method_not_allowed_fallback(method_not_allowed::<D>).into())
}

/// Every dialect's error shapes and security in the OpenAPI document (`openapi::describe`).
pub fn describe_all(api: &mut OpenApi) {
    describe::<a1111::A1111>(api);
    describe::<hf_endpoint::HfEndpoint>(api);
    describe::<hf_serverless::HfServerless>(api);
    describe::<hyperbolic::Hyperbolic>(api);
}
