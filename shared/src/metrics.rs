//! The Prometheus series both binaries record, by name, with their buckets; and the job
//! outcomes the store records at the moment a job ends.
//!
//! Recording goes through the `metrics` facade: a process that installed no recorder (the
//! administration commands, the tests' direct store connections) records nothing. Labels are
//! bounded: a model id, a job status, a route template, an HTTP status; never a tenant or a job.
//!
//! A job's outcome is counted by the process whose UPDATE moved it to its terminal state, right
//! after that transaction committed. Only one transaction can make that move (every terminal
//! transition requires the job to be queued, or running under the caller's lease, or expired),
//! so each job is counted once, in one process: mostly its worker; an API replica for a job
//! canceled while queued; whichever process's recovery pass ends a job whose worker died.
//! Totals are therefore sums over every API replica and worker.
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::job::JobStatus;

/// Gauge: queued jobs per model (from Postgres; API).
pub const QUEUE_DEPTH: &str = "darkroom_queue_depth";
/// Gauge: running jobs per model (from Postgres; API).
pub const JOBS_RUNNING: &str = "darkroom_jobs_running";
/// Gauge: live workers per model (from Postgres; API).
pub const WORKERS: &str = "darkroom_workers";
/// Counter: jobs that ended, by model and status.
pub const JOBS_TOTAL: &str = "darkroom_jobs_total";
/// Histogram: seconds from submission to the start of the run that ended the job.
pub const JOB_WAIT: &str = "darkroom_job_wait_seconds";
/// Histogram: the worker's seconds of work on a succeeded job (its pipeline call).
pub const JOB_COMPUTE: &str = "darkroom_job_compute_seconds";
/// Histogram: seconds from submission to the end, for every job that ended.
pub const JOB_DURATION: &str = "darkroom_job_duration_seconds";
/// Histogram: seconds of one denoising step (one UNet evaluation and the sampler's update).
pub const UNET_STEP: &str = "darkroom_unet_step_seconds";
/// Counter: HTTP requests answered, by route template and status (API).
pub const HTTP_REQUESTS: &str = "darkroom_http_requests_total";
/// Histogram: seconds to answer an HTTP request, by route template (API).
pub const HTTP_DURATION: &str = "darkroom_http_request_duration_seconds";

/// Counter: webhook delivery attempts, by outcome (`delivered`, `gone`, `http_error`,
/// `timeout`, `network_error`, `refused`, `internal`; API).
pub const WEBHOOK_ATTEMPTS: &str = "darkroom_webhook_attempts_total";

/// Buckets of the job histograms (wait, compute, duration): 50 ms to 30 minutes.
pub const JOB_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0];
/// Buckets of the denoising step histogram: 1 ms (tiny models) to 10 s (SDXL on a CPU).
pub const STEP_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Buckets of the HTTP latency histogram: 1 ms to 5 minutes (a `Prefer: wait` or a blocking
/// dialect answers when its job ends).
pub const HTTP_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// Every histogram with its buckets, for the binaries' Prometheus exporters.
pub const HISTOGRAMS: &[(&str, &[f64])] =
    &[(JOB_WAIT, JOB_BUCKETS), (JOB_COMPUTE, JOB_BUCKETS), (JOB_DURATION, JOB_BUCKETS), (UNET_STEP, STEP_BUCKETS), (HTTP_DURATION, HTTP_BUCKETS)];

/// Describe every series (the `# HELP` lines); call once after installing a recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(QUEUE_DEPTH, "Jobs queued, per model (read from Postgres at scrape time; the same on every API replica).");
    describe_gauge!(JOBS_RUNNING, "Jobs running, per model (read from Postgres at scrape time; the same on every API replica).");
    describe_gauge!(WORKERS, "Live workers serving the model (read from Postgres at scrape time; the same on every API replica).");
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        "Webhook delivery attempts, by outcome (delivered, gone, http_error, timeout, network_error, refused, internal), counted by the replica that made them."
    );
    describe_counter!(JOBS_TOTAL, "Jobs that ended, by status, counted once by the process that ended them: sum over all processes.");
    describe_histogram!(JOB_WAIT, Unit::Seconds, "Seconds from submission to the start of the run that ended the job.");
    describe_histogram!(JOB_COMPUTE, Unit::Seconds, "Seconds of the worker's pipeline call for a succeeded job.");
    describe_histogram!(JOB_DURATION, Unit::Seconds, "Seconds from submission to the end of the job, whatever its status.");
    describe_histogram!(UNET_STEP, Unit::Seconds, "Seconds of one denoising step (UNet evaluation and sampler update).");
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by route template and status code.");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "Seconds to answer an HTTP request, by route template.");
}

/// A job that just reached a terminal state, as the UPDATE that ended it returned it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Ended {
    pub model: String,
    pub status: JobStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The columns an UPDATE that may end a job returns for [`Ended`].
pub(crate) const ENDED_COLUMNS: &str = "model, status, created_at, started_at, finished_at";

impl Ended {
    /// The outcome of a job row read after its end.
    pub fn of(job: &crate::job::Job) -> Ended {
        Ended { model: job.model.clone(), status: job.status, created_at: job.created_at, started_at: job.started_at, finished_at: job.finished_at }
    }

    /// Count the outcome and observe the wait and duration (call after the commit). A row
    /// that is not terminal (a retry put back in the queue) records nothing.
    pub fn record(&self) {
        if !self.status.is_terminal() {
            return;
        }
        metrics::counter!(JOBS_TOTAL, "model" => self.model.clone(), "status" => self.status.as_str()).increment(1);
        let Some(finished) = self.finished_at else { return };
        metrics::histogram!(JOB_DURATION, "model" => self.model.clone()).record(seconds(finished - self.created_at));
        if let Some(started) = self.started_at {
            metrics::histogram!(JOB_WAIT, "model" => self.model.clone()).record(seconds(started - self.created_at));
        }
    }
}

/// The worker's compute time of a succeeded job.
pub fn record_compute(model: &str, compute: Duration) {
    metrics::histogram!(JOB_COMPUTE, "model" => model.to_string()).record(compute.as_secs_f64());
}

/// A span of time in seconds, never negative (clocks of different hosts may disagree a little).
fn seconds(d: chrono::TimeDelta) -> f64 {
    (d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6).max(0.0)
}

/// The gauges of one model, as Postgres has them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelGauges {
    pub model: String,
    pub queued: i64,
    pub running: i64,
    pub workers: i64,
}

/// Set the gauges of every model read (call with every model the catalog or the jobs know,
/// zeros included, so that an emptied queue reads 0 rather than its last value).
pub fn set_gauges(models: &[ModelGauges]) {
    for m in models {
        metrics::gauge!(QUEUE_DEPTH, "model" => m.model.clone()).set(m.queued as f64);
        metrics::gauge!(JOBS_RUNNING, "model" => m.model.clone()).set(m.running as f64);
        metrics::gauge!(WORKERS, "model" => m.model.clone()).set(m.workers as f64);
    }
}
