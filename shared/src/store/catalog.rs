//! The model catalog and the workers that serve it. Workers register the models they load
//! (the worker's model name is the catalog id) and send heartbeats; a model's live workers are
//! those seen within the liveness window.
use std::time::Duration;

use uuid::Uuid;

use super::{Store, StoreError};
use crate::family::Family;

/// A model as a worker registers it.
#[derive(Clone, Debug)]
pub struct ModelEntry {
    pub id: String,
    pub family: Family,
    pub native_size: i32,
    /// Width and height must be multiples of this (pixels): 8 × the UNet's downsampling.
    pub size_multiple: i32,
    pub img2img: bool,
    /// The sha256 (lowercase hex) of the model's UNet weights, as the worker hashed them
    /// (worker/src/fingerprint.rs); `None` when the registering code did not compute one.
    pub sha256: Option<String>,
    /// The model directory the worker loaded, as the worker names it.
    pub path: Option<String>,
}

/// Another live worker that serves a model id with different weights than a registering one.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct HashConflict {
    pub model: String,
    pub worker: Uuid,
    pub hostname: String,
    /// The other worker's sha256 for the model.
    pub sha256: String,
}

/// A catalog entry with how many live workers serve it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ModelInfo {
    pub id: String,
    #[sqlx(try_from = "String")]
    pub family: Family,
    pub native_size: i32,
    /// Width and height must be multiples of this (pixels).
    pub size_multiple: i32,
    pub img2img: bool,
    /// The sha256 of the UNet weights, from the latest registration (`None` before one that
    /// carried it).
    pub sha256: Option<String>,
    /// The model directory, as the latest registering worker named it.
    pub path: Option<String>,
    pub live_workers: i64,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Store {
    /// Record a worker (or refresh it) and the models it serves. The catalog keeps the latest
    /// registration's fields, its sha256 and path included (a registration without a sha256
    /// keeps the one known).
    pub async fn register_worker(&self, worker: Uuid, hostname: &str, models: &[ModelEntry]) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for m in models {
            sqlx::query(
                "INSERT INTO models (id, family, native_size, img2img, size_multiple, sha256, path) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (id) DO UPDATE SET family = $2, native_size = $3, img2img = $4, size_multiple = $5,
                    sha256 = coalesce($6, models.sha256), path = coalesce($7, models.path), updated_at = now()",
            )
            .bind(&m.id)
            .bind(m.family.name())
            .bind(m.native_size)
            .bind(m.img2img)
            .bind(m.size_multiple)
            .bind(&m.sha256)
            .bind(&m.path)
            .execute(&mut *tx)
            .await?;
        }
        let ids: Vec<String> = models.iter().map(|m| m.id.clone()).collect();
        let hashes: serde_json::Map<String, serde_json::Value> =
            models.iter().filter_map(|m| Some((m.id.clone(), serde_json::Value::String(m.sha256.clone()?)))).collect();
        sqlx::query(
            "INSERT INTO workers (id, hostname, models, model_sha256) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET hostname = $2, models = $3, model_sha256 = $4, last_seen = now(), stopped_at = NULL",
        )
        .bind(worker)
        .bind(hostname)
        .bind(&ids)
        .bind(sqlx::types::Json(hashes))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The other live workers (not stopped, seen within `live`) that serve one of `models`'
    /// ids with a different sha256 than the entry's: the same id would then stand for different
    /// weights depending on the worker a job lands on. Entries without a sha256 conflict with
    /// nothing.
    pub async fn hash_conflicts(&self, worker: Uuid, models: &[ModelEntry], live: Duration) -> Result<Vec<HashConflict>, StoreError> {
        let mut conflicts = Vec::new();
        for m in models {
            let Some(sha256) = &m.sha256 else { continue };
            let found: Vec<HashConflict> = sqlx::query_as(
                "SELECT $2 AS model, w.id AS worker, w.hostname, w.model_sha256 ->> $2 AS sha256 FROM workers w
                 WHERE w.id <> $1 AND $2 = ANY (w.models) AND w.stopped_at IS NULL
                   AND w.last_seen > now() - make_interval(secs => $4)
                   AND w.model_sha256 ? $2 AND w.model_sha256 ->> $2 <> $3
                 ORDER BY w.id",
            )
            .bind(worker)
            .bind(&m.id)
            .bind(sha256)
            .bind(secs(live))
            .fetch_all(self.pool())
            .await?;
            conflicts.extend(found);
        }
        Ok(conflicts)
    }

    pub async fn heartbeat(&self, worker: Uuid) -> Result<(), StoreError> {
        sqlx::query("UPDATE workers SET last_seen = now() WHERE id = $1").bind(worker).execute(self.pool()).await?;
        Ok(())
    }

    /// A worker that exits cleanly stops counting as live at once.
    pub async fn worker_stopped(&self, worker: Uuid) -> Result<(), StoreError> {
        sqlx::query("UPDATE workers SET stopped_at = now() WHERE id = $1").bind(worker).execute(self.pool()).await?;
        Ok(())
    }

    /// The catalog with live worker counts (`live` is the heartbeat window).
    pub async fn list_models(&self, live: Duration) -> Result<Vec<ModelInfo>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT m.id, m.family, m.native_size, m.size_multiple, m.img2img, m.sha256, m.path,
                    (SELECT count(*) FROM workers w WHERE m.id = ANY (w.models) AND w.stopped_at IS NULL
                       AND w.last_seen > now() - make_interval(secs => $1)) AS live_workers
             FROM models m ORDER BY m.id",
        )
        .bind(secs(live))
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn model(&self, id: &str, live: Duration) -> Result<Option<ModelInfo>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT m.id, m.family, m.native_size, m.size_multiple, m.img2img, m.sha256, m.path,
                    (SELECT count(*) FROM workers w WHERE m.id = ANY (w.models) AND w.stopped_at IS NULL
                       AND w.last_seen > now() - make_interval(secs => $2)) AS live_workers
             FROM models m WHERE m.id = $1",
        )
        .bind(id)
        .bind(secs(live))
        .fetch_optional(self.pool())
        .await?)
    }
}
