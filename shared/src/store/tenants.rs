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

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TenantSummary {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
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
        sqlx::query_as("INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id, name, created_at")
            .bind(Uuid::now_v7())
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("a tenant named {name:?} already exists")))
    }

    pub async fn list_tenants(&self) -> Result<Vec<TenantSummary>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT t.id, t.name, t.created_at, count(k.id) FILTER (WHERE k.revoked_at IS NULL) AS active_tokens
             FROM tenants t LEFT JOIN api_tokens k ON k.tenant_id = t.id GROUP BY t.id ORDER BY t.name",
        )
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        Ok(sqlx::query_as("SELECT id, name, created_at FROM tenants WHERE name = $1").bind(name).fetch_optional(self.pool()).await?)
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
        Ok(sqlx::query_as(
            "SELECT t.id, t.name, t.created_at FROM api_tokens k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.sha256 = $1 AND k.revoked_at IS NULL",
        )
        .bind(hash(token))
        .fetch_optional(self.pool())
        .await?)
    }
}
