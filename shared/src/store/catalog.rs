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
    pub live_workers: i64,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Store {
    /// Record a worker (or refresh it) and the models it serves.
    pub async fn register_worker(&self, worker: Uuid, hostname: &str, models: &[ModelEntry]) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for m in models {
            sqlx::query(
                "INSERT INTO models (id, family, native_size, img2img, size_multiple) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET family = $2, native_size = $3, img2img = $4, size_multiple = $5, updated_at = now()",
            )
            .bind(&m.id)
            .bind(m.family.name())
            .bind(m.native_size)
            .bind(m.img2img)
            .bind(m.size_multiple)
            .execute(&mut *tx)
            .await?;
        }
        let ids: Vec<String> = models.iter().map(|m| m.id.clone()).collect();
        sqlx::query(
            "INSERT INTO workers (id, hostname, models) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET hostname = $2, models = $3, last_seen = now(), stopped_at = NULL",
        )
        .bind(worker)
        .bind(hostname)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
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
            "SELECT m.id, m.family, m.native_size, m.size_multiple, m.img2img,
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
            "SELECT m.id, m.family, m.native_size, m.size_multiple, m.img2img,
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
