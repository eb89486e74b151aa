//! Prometheus metrics of the API: `GET /metrics` (no token; on the main listener, and on
//! `--metrics-listen` when given), the HTTP series recorded by [`track`], and the state gauges
//! (queue depth, running jobs, live workers per model) read from Postgres at scrape time.
//!
//! The gauges come from one grouped query on Postgres, the truth, made at most once per
//! `--metrics-refresh-secs` per replica: every replica scraped at the same moment exports the
//! same values, so `max()` over replicas is the value (a `sum()` would count it once per
//! replica). The job outcomes and histograms this process records are those of the jobs it
//! ended (see `darkroom_shared::metrics`).
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use darkroom_shared::metrics::{self as names, ModelGauges};
use darkroom_shared::store::Store;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The `route` label of requests that matched no route (404s), so that probes for random
/// paths cannot add series.
pub const UNMATCHED: &str = "unmatched";

/// How often histograms are compacted between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The installed recorder and what a scrape refreshes.
pub struct Metrics {
    handle: PrometheusHandle,
    store: Store,
    worker_live: Duration,
    refresh_every: Duration,
    state: Mutex<Refresh>,
}

/// When the gauges were last read, and every model they were ever set for.
#[derive(Default)]
struct Refresh {
    at: Option<Instant>,
    models: BTreeSet<String>,
}

/// Install the process-wide Prometheus recorder (once per process) with the histograms'
/// buckets, and start its upkeep.
pub fn install(store: Store, worker_live: Duration, refresh_every: Duration, shutdown: CancellationToken) -> Result<Arc<Metrics>, BuildError> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in names::HISTOGRAMS {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_string()), buckets)?;
    }
    let handle = builder.install_recorder()?;
    names::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move { darkroom_shared::shutdown::every(UPKEEP_EVERY, &shutdown, || async { upkeep.run_upkeep() }).await });
    Ok(Arc::new(Metrics { handle, store, worker_live, refresh_every, state: Mutex::default() }))
}

/// `GET /metrics`, for any state.
pub fn router<S>(metrics: Arc<Metrics>) -> Router<S> {
    Router::new().route("/metrics", get(scrape)).with_state(metrics)
}

/// The exposition, with the gauges refreshed when older than `--metrics-refresh-secs`. When
/// Postgres does not answer, the last values are served (and the failure logged).
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = crate::openapi::tags::HEALTH,
    responses((status = 200, description = "Prometheus text exposition format 0.0.4: the series are listed in the README, \"Observability\"",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
pub(crate) async fn scrape(State(metrics): State<Arc<Metrics>>) -> Response {
    metrics.refresh().await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.handle.render()).into_response()
}

impl Metrics {
    async fn refresh(&self) {
        // One refresh at a time: concurrent scrapes wait for it and then find it fresh.
        let mut state = self.state.lock().await;
        if state.at.is_some_and(|at| at.elapsed() < self.refresh_every) {
            return;
        }
        match self.store.model_gauges(self.worker_live).await {
            Ok(mut gauges) => {
                // A model that no longer appears (its catalog row deleted) reads 0, not its last value.
                let gone: Vec<String> = state.models.iter().filter(|m| !gauges.iter().any(|g| &g.model == *m)).cloned().collect();
                gauges.extend(gone.into_iter().map(|model| ModelGauges { model, ..ModelGauges::default() }));
                names::set_gauges(&gauges);
                state.models.extend(gauges.into_iter().map(|g| g.model));
                state.at = Some(Instant::now());
            }
            Err(e) => tracing::warn!("metrics: reading the gauges from Postgres failed (serving the last values): {e}"),
        }
    }
}

/// Middleware: count every answered request and time it, by route template (`/v1/jobs/{id}`)
/// and status. The time runs to the response's head (a streamed body is not waited for).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| UNMATCHED.to_string());
    let start = Instant::now();
    let response = next.run(request).await;
    metrics::counter!(names::HTTP_REQUESTS, "route" => route.clone(), "status" => response.status().as_str().to_string()).increment(1);
    metrics::histogram!(names::HTTP_DURATION, "route" => route).record(start.elapsed().as_secs_f64());
    response
}
