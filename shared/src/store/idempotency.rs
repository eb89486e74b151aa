//! `Idempotency-Key`: a client's key for a submission, so that a retried request (after a
//! timeout, a dropped connection) returns the job the first one made instead of a second job.
//! Keys are per tenant and live [`IDEMPOTENCY_TTL_HOURS`] hours.
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::request::GenerationRequest;

/// How long a key is remembered.
pub const IDEMPOTENCY_TTL_HOURS: i32 = 24;

/// What a key says about a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyUse {
    /// Not seen (or expired): submit.
    New,
    /// Seen with the same request: this is its job.
    Replay(Uuid),
    /// Seen with another request.
    Mismatch,
}

/// The hash a key is bound to: SHA-256 of the request as the client sent it.
pub fn request_hash(request: &GenerationRequest) -> Vec<u8> {
    Sha256::digest(serde_json::to_vec(request).unwrap_or_default()).to_vec()
}

impl Store {
    /// What `key` says about `hash` for `tenant`.
    pub async fn idempotency_key(&self, tenant: Uuid, key: &str, hash: &[u8]) -> Result<KeyUse, StoreError> {
        let row: Option<(Vec<u8>, Uuid)> = sqlx::query_as(
            "SELECT request_hash, job_id FROM idempotency_keys
             WHERE tenant_id = $1 AND key = $2 AND created_at > now() - make_interval(hours => $3)",
        )
        .bind(tenant)
        .bind(key)
        .bind(IDEMPOTENCY_TTL_HOURS)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            None => KeyUse::New,
            Some((h, job)) if h == hash => KeyUse::Replay(job),
            Some(_) => KeyUse::Mismatch,
        })
    }

    /// Bind `key` to `job`. If a concurrent request bound it first (or an expired binding is
    /// there), the key's current use is returned instead of [`KeyUse::New`].
    pub async fn bind_idempotency_key(&self, tenant: Uuid, key: &str, hash: &[u8], job: Uuid) -> Result<KeyUse, StoreError> {
        let bound = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, job_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, key) DO UPDATE SET request_hash = $3, job_id = $4, created_at = now()
                 WHERE idempotency_keys.created_at <= now() - make_interval(hours => $5)",
        )
        .bind(tenant)
        .bind(key)
        .bind(hash)
        .bind(job)
        .bind(IDEMPOTENCY_TTL_HOURS)
        .execute(self.pool())
        .await?
        .rows_affected();
        if bound == 1 {
            Ok(KeyUse::New)
        } else {
            self.idempotency_key(tenant, key, hash).await
        }
    }
}
