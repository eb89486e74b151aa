//! Probes: `GET /healthz` (the process answers) and `GET /readyz` (Postgres and Redis answer;
//! 503 naming the one that does not). Neither needs a token; neither shows error details.
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::tags;
use crate::service::Service;

/// How long each backend gets to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`, `ready` or `unavailable`.
    #[schema(value_type = String, pattern = "^(ok|ready|unavailable)$")]
    status: &'static str,
    /// Readiness only: each backend's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<Checks>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Checks {
    /// `ok` or `failed`.
    #[schema(value_type = String, pattern = "^(ok|failed)$")]
    postgres: &'static str,
    /// `ok` or `failed`.
    #[schema(value_type = String, pattern = "^(ok|failed)$")]
    redis: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = tags::HEALTH, responses((status = 200, description = "Alive", body = Health, example = json!({"status": "ok"}))))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", checks: None })
}

/// Readiness: Postgres and Redis answer (each probed for up to 2 s).
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = tags::HEALTH, responses(
    (status = 200, description = "Ready", body = Health, example = json!({"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}})),
    (status = 503, description = "A backend does not answer", body = Health, example = json!({"status": "unavailable", "checks": {"postgres": "ok", "redis": "failed"}})),
))]
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
