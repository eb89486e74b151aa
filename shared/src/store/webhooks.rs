//! Signed webhooks: each tenant's signing secret, and the outbox of deliveries (migration
//! `…0011`). Outbox rows are written by a trigger on `jobs` when a job whose request names a
//! `webhook` starts or ends; any API replica claims due rows (`FOR UPDATE SKIP LOCKED`, with a
//! lease), delivers them and records the outcome, fenced by its claim.
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::job::Job;

/// The channel on which new outbox rows are announced (empty payload).
pub const WEBHOOK_CHANNEL: &str = "darkroom_webhooks";
/// How long a rotated-out secret still signs deliveries.
pub const PREVIOUS_SECRET_HOURS: i32 = 24;
/// Random bytes in a secret (Standard Webhooks: 24 to 64).
const SECRET_BYTES: usize = 32;

/// What `darkroom-api tenant webhook-secret` did.
#[derive(Clone, Debug)]
pub struct NewSecret {
    pub secret: String,
    /// Set when a secret was rotated out: it signs deliveries until then.
    pub previous_until: Option<DateTime<Utc>>,
}

/// A claimed delivery.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    /// The `webhook-id` header: the same on every attempt.
    pub webhook_id: String,
    pub job_id: Uuid,
    pub tenant_id: Uuid,
    /// `started` or `completed`.
    pub event: String,
    pub url: String,
    /// The job's row when the event happened.
    #[sqlx(json)]
    pub job: Job,
    /// The body, once rendered (at the first attempt).
    pub payload: Option<String>,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// The fencing token of this claim.
    pub claim: Uuid,
    pub created_at: DateTime<Utc>,
}

/// How an attempt ended, as recorded on its row.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptResult {
    /// A 2xx: done.
    Delivered { status: u16 },
    /// Not delivered; try again after `retry_in`.
    Retry { status: Option<u16>, error: String, retry_in: Duration },
    /// Given up: a 410 Gone, or the attempts are spent.
    Dead { status: Option<u16>, error: String },
}

fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl Store {
    /// Create the tenant's webhook secret, or rotate it: the previous one keeps signing for
    /// [`PREVIOUS_SECRET_HOURS`].
    pub async fn rotate_webhook_secret(&self, tenant: &str) -> Result<NewSecret, StoreError> {
        let row: Option<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "UPDATE tenants SET
                 webhook_secret_previous = webhook_secret,
                 webhook_secret_previous_until = CASE WHEN webhook_secret IS NULL THEN NULL ELSE now() + make_interval(hours => $3) END,
                 webhook_secret = $2
             WHERE name = $1 RETURNING webhook_secret, webhook_secret_previous_until",
        )
        .bind(tenant)
        .bind(new_secret())
        .bind(PREVIOUS_SECRET_HOURS)
        .fetch_optional(self.pool())
        .await?;
        let (secret, previous_until) = row.ok_or_else(|| StoreError::NotFound(format!("no tenant named {tenant:?}")))?;
        Ok(NewSecret { secret, previous_until })
    }

    /// The secrets that sign the tenant's deliveries now: the current one, then the previous
    /// one while it is still valid. Empty when the tenant has none.
    pub async fn webhook_secrets(&self, tenant: Uuid) -> Result<Vec<String>, StoreError> {
        let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT webhook_secret, CASE WHEN webhook_secret_previous_until > now() THEN webhook_secret_previous END
             FROM tenants WHERE id = $1",
        )
        .bind(tenant)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(a, b)| a.into_iter().chain(b).collect()).unwrap_or_default())
    }

    /// Claim up to `limit` due deliveries for `lease`: each gets a fresh claim token and one
    /// more attempt. A replica that dies mid-delivery leaves its rows to others after the lease.
    pub async fn claim_webhooks(&self, lease: Duration, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        Ok(sqlx::query_as(
            "WITH due AS (
                 SELECT id FROM webhook_deliveries
                 WHERE state = 'pending' AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until <= now())
                 ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             UPDATE webhook_deliveries d SET claim = gen_random_uuid(), locked_until = now() + make_interval(secs => $1), attempts = attempts + 1
             FROM due WHERE d.id = due.id
             RETURNING d.id, d.webhook_id, d.job_id, d.tenant_id, d.event, d.url, d.job, d.payload, d.attempts, d.claim, d.created_at",
        )
        .bind(lease.as_secs_f64())
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Keep `payload` as the delivery's body unless one was kept already; the body to send.
    pub async fn keep_webhook_payload(&self, id: i64, payload: &str) -> Result<String, StoreError> {
        let (kept,): (String,) = sqlx::query_as("UPDATE webhook_deliveries SET payload = coalesce(payload, $2) WHERE id = $1 RETURNING payload")
            .bind(id)
            .bind(payload)
            .fetch_one(self.pool())
            .await?;
        Ok(kept)
    }

    /// Record an attempt's result, if `claim` still holds the delivery (false otherwise).
    pub async fn finish_webhook_attempt(&self, id: i64, claim: Uuid, result: &AttemptResult) -> Result<bool, StoreError> {
        let (state, status, error, retry_in) = match result {
            AttemptResult::Delivered { status } => ("delivered", Some(*status), None, None),
            AttemptResult::Retry { status, error, retry_in } => ("pending", *status, Some(error.as_str()), Some(retry_in.as_secs_f64())),
            AttemptResult::Dead { status, error } => ("dead", *status, Some(error.as_str()), None),
        };
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET state = $3, last_status = $4, last_error = $5, claim = NULL, locked_until = NULL,
                 next_attempt_at = CASE WHEN $6::float8 IS NULL THEN next_attempt_at ELSE now() + make_interval(secs => $6) END,
                 finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END
             WHERE id = $1 AND claim = $2",
        )
        .bind(id)
        .bind(claim)
        .bind(state)
        .bind(status.map(i32::from))
        .bind(error)
        .bind(retry_in)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1;
        Ok(done)
    }
}
