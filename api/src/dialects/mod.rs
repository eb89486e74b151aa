//! Wire-compatible dialects of the APIs our users already call. Each dialect is a thin
//! translator: its module maps its requests into the canonical request, calls the same
//! `Service` as the native API (same tokens, tenants, queue and limits), and shapes the finished
//! job (or the error) back into its own responses. No dialect logic lives below this module.
use std::sync::Arc;

use axum::Router;

use crate::service::Service;

/// Every dialect's routes.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
}
