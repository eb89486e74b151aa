//! Tenants and their API tokens. A token is `drk_` followed by 43 characters of base64url
//! (32 random bytes); only its SHA-256 is stored, with its first 12 characters as a visible prefix.
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Store, StoreError};

const TOKEN_PREFIX: &str = "drk_";
/// How many leading characters of a token are kept visible (`drk_` plus 8).
pub const VISIBLE_PREFIX_LEN: usize = 12;

/// The columns of a [`Tenant`] (in `SELECT`s that alias the table `t`).
const TENANT_COLUMNS: &str = "t.id, t.name, t.created_at, t.rate_per_minute, t.burst, t.max_queued, t.max_running, t.weight";

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub limits: TenantLimits,
}

/// A tenant's own limits; `None` is the serve-wide default. Zero means "no limit" for the rate,
/// the quota and the running cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct TenantLimits {
    /// Jobs a minute, sustained.
    pub rate_per_minute: Option<f64>,
    /// Jobs that may come at once, above the sustained rate.
    pub burst: Option<i32>,
    /// Queued plus running jobs at most.
    pub max_queued: Option<i32>,
    /// Running jobs at most, across all workers.
    pub max_running: Option<i32>,
    /// The tenant's share of GPU time relative to others (1: an equal share).
    pub weight: Option<f64>,
}

/// A change to a tenant's limits: `None` leaves a limit as it is, `Some(None)` returns it to the
/// serve-wide default, `Some(Some(v))` sets it.
#[derive(Clone, Copy, Debug, Default)]
pub struct LimitsUpdate {
    pub rate_per_minute: Option<Option<f64>>,
    pub burst: Option<Option<i32>>,
    pub max_queued: Option<Option<i32>>,
    pub max_running: Option<Option<i32>>,
    pub weight: Option<Option<f64>>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TenantSummary {
    #[sqlx(flatten)]
    pub tenant: Tenant,
    pub active_tokens: i64,
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl Store {
    pub async fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(StoreError::Conflict("a tenant name must be 1 to 100 characters".into()));
        }
        sqlx::query_as(&format!("INSERT INTO tenants AS t (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING {TENANT_COLUMNS}"))
            .bind(Uuid::now_v7())
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("a tenant named {name:?} already exists")))
    }

    pub async fn list_tenants(&self) -> Result<Vec<TenantSummary>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TENANT_COLUMNS}, count(k.id) FILTER (WHERE k.revoked_at IS NULL) AS active_tokens
             FROM tenants t LEFT JOIN api_tokens k ON k.tenant_id = t.id GROUP BY t.id ORDER BY t.name"
        ))
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        Ok(sqlx::query_as(&format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.name = $1")).bind(name).fetch_optional(self.pool()).await?)
    }

    /// Change some of a tenant's limits; the tenant as it is then.
    pub async fn set_tenant_limits(&self, name: &str, update: &LimitsUpdate) -> Result<Tenant, StoreError> {
        // Each column: keep it ($n = false), or set it to the value that follows (NULL: the default).
        sqlx::query_as(&format!(
            "UPDATE tenants AS t SET
                 rate_per_minute = CASE WHEN $2 THEN $3 ELSE rate_per_minute END,
                 burst = CASE WHEN $4 THEN $5 ELSE burst END,
                 max_queued = CASE WHEN $6 THEN $7 ELSE max_queued END,
                 max_running = CASE WHEN $8 THEN $9 ELSE max_running END,
                 weight = CASE WHEN $10 THEN $11 ELSE weight END
             WHERE name = $1 RETURNING {TENANT_COLUMNS}"
        ))
        .bind(name)
        .bind(update.rate_per_minute.is_some())
        .bind(update.rate_per_minute.flatten())
        .bind(update.burst.is_some())
        .bind(update.burst.flatten())
        .bind(update.max_queued.is_some())
        .bind(update.max_queued.flatten())
        .bind(update.max_running.is_some())
        .bind(update.max_running.flatten())
        .bind(update.weight.is_some())
        .bind(update.weight.flatten())
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no tenant named {name:?}")))
    }

    /// Every tenant's own limits (for the queue's copy of weights and running caps).
    pub async fn all_tenant_limits(&self) -> Result<Vec<(Uuid, TenantLimits)>, StoreError> {
        let rows: Vec<Tenant> = sqlx::query_as(&format!("SELECT {TENANT_COLUMNS} FROM tenants t")).fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(|t| (t.id, t.limits)).collect())
    }

    /// Issue a new token for `tenant`; the token itself is returned once and never stored.
    pub async fn issue_token(&self, tenant: &str) -> Result<String, StoreError> {
        let tenant = self.tenant_by_name(tenant).await?.ok_or_else(|| StoreError::NotFound(format!("no tenant named {tenant:?}")))?;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
        sqlx::query("INSERT INTO api_tokens (id, tenant_id, prefix, sha256) VALUES ($1, $2, $3, $4)")
            .bind(Uuid::now_v7())
            .bind(tenant.id)
            .bind(&token[..VISIBLE_PREFIX_LEN])
            .bind(hash(&token))
            .execute(self.pool())
            .await?;
        Ok(token)
    }

    /// Revoke the token whose visible prefix starts with `prefix`. Exactly one must match.
    pub async fn revoke_token(&self, prefix: &str) -> Result<String, StoreError> {
        if prefix.len() < 6 {
            return Err(StoreError::Conflict("give at least 6 characters of the token's prefix".into()));
        }
        let prefix = &prefix[..prefix.len().min(VISIBLE_PREFIX_LEN)];
        let pattern = format!("{}%", prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let matches: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, prefix FROM api_tokens WHERE prefix LIKE $1 AND revoked_at IS NULL").bind(pattern).fetch_all(self.pool()).await?;
        match matches.as_slice() {
            [] => Err(StoreError::NotFound(format!("no active token starts with {prefix:?}"))),
            [(id, full)] => {
                sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1").bind(id).execute(self.pool()).await?;
                Ok(full.clone())
            }
            _ => Err(StoreError::Conflict(format!("{} active tokens start with {prefix:?}; give more of the prefix", matches.len()))),
        }
    }

    /// The tenant an (unrevoked) token belongs to.
    pub async fn tenant_for_token(&self, token: &str) -> Result<Option<Tenant>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        Ok(sqlx::query_as(&format!(
            "SELECT {TENANT_COLUMNS} FROM api_tokens k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.sha256 = $1 AND k.revoked_at IS NULL"
        ))
        .bind(hash(token))
        .fetch_optional(self.pool())
        .await?)
    }
}
