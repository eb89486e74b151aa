//! Prometheus metrics of a worker (`darkroom-worker run --metrics-listen ADDR`): the outcomes
//! and wait, compute and duration histograms of the jobs it ends (recorded by the store, see
//! `darkroom_shared::metrics`) and the time of every denoising step it runs.
use std::net::SocketAddr;
use std::time::Duration;

use darkroom_shared::metrics as names;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// Install the process-wide recorder with an HTTP endpoint on `addr` (any path answers).
/// Call within the Tokio runtime, which then serves the endpoint.
pub fn install(addr: SocketAddr) -> Result<(), BuildError> {
    let mut builder = PrometheusBuilder::new().with_http_listener(addr);
    for (name, buckets) in names::HISTOGRAMS {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_string()), buckets)?;
    }
    builder.install()?;
    names::describe();
    Ok(())
}

/// Record the denoising steps of a job of `model` (a no-op when no recorder is installed).
pub fn record_steps(model: &str, steps: &[Duration]) {
    let histogram = metrics::histogram!(names::UNET_STEP, "model" => model.to_string());
    for step in steps {
        histogram.record(step.as_secs_f64());
    }
}
