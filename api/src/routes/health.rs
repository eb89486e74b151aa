//! Probes: `GET /healthz` (the process answers) and `GET /readyz` (Postgres and Redis answer;
//! 503 naming the one that does not). Neither needs a token; neither shows error details.
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::service::Service;

/// How long each backend gets to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<Arc<Service>> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

#[derive(Serialize)]
struct Health {
    /// `ok`, `ready` or `unavailable`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<Checks>,
}

#[derive(Serialize)]
struct Checks {
    /// `ok` or `failed`.
    postgres: &'static str,
    redis: &'static str,
}

async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", checks: None })
}

async fn readyz(State(service): State<Arc<Service>>) -> (StatusCode, Json<Health>) {
    let r = service.readiness(PROBE_TIMEOUT).await;
    let verdict = |name: &str, result: &Result<(), String>| match result {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!("readiness: {name} failed: {e}");
            "failed"
        }
    };
    let checks = Checks { postgres: verdict("postgres", &r.postgres), redis: verdict("redis", &r.redis) };
    if r.postgres.is_ok() && r.redis.is_ok() {
        (StatusCode::OK, Json(Health { status: "ready", checks: Some(checks) }))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "unavailable", checks: Some(checks) }))
    }
}
