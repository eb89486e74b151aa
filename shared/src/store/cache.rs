//! The identical-request cache of the dialects that have one (Hugging Face serverless
//! `x-use-cache`): a job carries the key of the request that made it, and a later identical
//! request of the same tenant is answered with that job's images.
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::jobs::JOB_COLUMNS;
use super::{Store, StoreError};
use crate::job::{Job, JobStatus};
use crate::request::GenerationRequest;

/// The cache key of a request as a dialect built it: SHA-256 of its JSON (the struct's field
/// order is fixed, so equal requests give equal keys). Leave the seed out when the client gave none.
pub fn cache_key(request: &GenerationRequest) -> Vec<u8> {
    let json = serde_json::to_vec(request).unwrap_or_default();
    Sha256::digest(&json).to_vec()
}

impl Store {
    /// Mark `job` as the answer to requests with `key` (once it succeeds).
    pub async fn set_cache_key(&self, job: Uuid, key: &[u8]) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET cache_key = $2 WHERE id = $1").bind(job).bind(key).execute(self.pool()).await?;
        Ok(())
    }

    /// The tenant's newest succeeded job made for a request with `key`, if any.
    pub async fn cached_job(&self, tenant: Uuid, key: &[u8]) -> Result<Option<Job>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND cache_key = $2 AND status = $3 AND purged_at IS NULL ORDER BY id DESC LIMIT 1"
        ))
        .bind(tenant)
        .bind(key)
        .bind(JobStatus::Succeeded)
        .fetch_optional(self.pool())
        .await?)
    }
}
