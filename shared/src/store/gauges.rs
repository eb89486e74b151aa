//! The state gauges of the metrics (`darkroom_queue_depth`, `darkroom_jobs_running`,
//! `darkroom_workers`), read from Postgres, the truth, so that every API replica exports the
//! same values.
use std::time::Duration;

use super::{Store, StoreError};
use crate::job::JobStatus;
use crate::metrics::ModelGauges;

#[derive(sqlx::FromRow)]
struct Row {
    model: String,
    queued: i64,
    running: i64,
    workers: i64,
}

impl Store {
    /// Queued jobs, running jobs and live workers (heartbeat within `live`) of every model the
    /// catalog or an unfinished job names, zeros included. One statement: the two job counts
    /// read the partial indexes on queued and on running jobs, so their cost follows the
    /// backlog, never the job history.
    pub async fn model_gauges(&self, live: Duration) -> Result<Vec<ModelGauges>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(
            "WITH queued AS (SELECT model, count(*) AS n FROM jobs WHERE status = $2 GROUP BY model),
                  running AS (SELECT model, count(*) AS n FROM jobs WHERE status = $3 GROUP BY model),
                  live AS (SELECT m AS model, count(*) AS n FROM workers, unnest(models) AS m
                           WHERE stopped_at IS NULL AND last_seen > now() - make_interval(secs => $1) GROUP BY m),
                  names AS (SELECT id AS model FROM models UNION SELECT model FROM queued
                            UNION SELECT model FROM running UNION SELECT model FROM live)
             SELECT names.model, coalesce(q.n, 0) AS queued, coalesce(r.n, 0) AS running, coalesce(l.n, 0) AS workers
             FROM names LEFT JOIN queued q USING (model) LEFT JOIN running r USING (model) LEFT JOIN live l USING (model)
             ORDER BY names.model",
        )
        .bind(live.as_secs_f64())
        .bind(JobStatus::Queued)
        .bind(JobStatus::Running)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|r| ModelGauges { model: r.model, queued: r.queued, running: r.running, workers: r.workers }).collect())
    }
}
