//! Measured model load times: what workers record when they become ready, and what the API reads
//! back to tell a client how long a model with no live worker takes to come up (the Hugging Face
//! serverless dialect's 503 `estimated_time` and `GET /status/{model}`).
use std::time::Duration;

use uuid::Uuid;

use super::{Store, StoreError};

/// The newest rows kept per model; older ones are deleted as new ones come.
pub const MODEL_LOADS_KEPT: i64 = 100;

/// One model as a worker loaded it.
#[derive(Clone, Debug)]
pub struct ModelLoad {
    pub model: String,
    /// How long creating the model's ONNX sessions took.
    pub load: Duration,
}

/// A worker's start, as it records it once ready to take jobs.
#[derive(Clone, Debug)]
pub struct WorkerStart {
    pub worker: Uuid,
    /// From the start of `darkroom-worker run` to being ready: every model loaded, the backends
    /// connected, registered.
    pub ready: Duration,
    /// The execution provider the worker runs its models on: `cpu` or `cuda`.
    pub provider: Option<String>,
    pub models: Vec<ModelLoad>,
}

/// What the recorded loads say about a model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadHistory {
    /// The ready times (seconds) of the newest workers that served the model, newest first.
    pub ready_secs: Vec<f64>,
    /// The provider of the model's live workers (`cuda` when any of them runs CUDA), else that of
    /// the newest recorded load; `None` when nothing was ever recorded.
    pub provider: Option<String>,
}

impl Store {
    /// Record a worker's start: one row per model it serves. Keeps the newest
    /// [`MODEL_LOADS_KEPT`] rows of each of these models.
    pub async fn record_worker_start(&self, start: &WorkerStart) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for m in &start.models {
            sqlx::query("INSERT INTO model_loads (model, worker_id, load_secs, ready_secs, provider) VALUES ($1, $2, $3, $4, $5)")
                .bind(&m.model)
                .bind(start.worker)
                .bind(m.load.as_secs_f64())
                .bind(start.ready.as_secs_f64())
                .bind(&start.provider)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM model_loads WHERE model = $1 AND id < (SELECT min(id) FROM (SELECT id FROM model_loads WHERE model = $1 ORDER BY id DESC LIMIT $2) newest)")
                .bind(&m.model)
                .bind(MODEL_LOADS_KEPT)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest `window` ready times recorded for `model` and the provider it runs on (see
    /// [`LoadHistory`]); `live` is the heartbeat window that makes a worker live.
    pub async fn load_history(&self, model: &str, window: u32, live: Duration) -> Result<LoadHistory, StoreError> {
        let ready: Vec<(f64,)> = sqlx::query_as("SELECT ready_secs FROM model_loads WHERE model = $1 ORDER BY id DESC LIMIT $2")
            .bind(model)
            .bind(i64::from(window))
            .fetch_all(self.pool())
            .await?;
        let provider: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT l.provider FROM model_loads l
               LEFT JOIN workers w ON w.id = l.worker_id AND $1 = ANY (w.models) AND w.stopped_at IS NULL
                                  AND w.last_seen > now() - make_interval(secs => $2)
              WHERE l.model = $1 AND l.provider IS NOT NULL
              ORDER BY (w.id IS NOT NULL) DESC, (w.id IS NOT NULL AND l.provider = 'cuda') DESC, l.id DESC
              LIMIT 1",
        )
        .bind(model)
        .bind(live.as_secs_f64())
        .fetch_optional(self.pool())
        .await?;
        Ok(LoadHistory { ready_secs: ready.into_iter().map(|(s,)| s).collect(), provider: provider.and_then(|(p,)| p) })
    }
}
