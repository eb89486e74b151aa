//! Per-tenant settings: opaque key/value pairs (JSON values) that the API keeps for a tenant.
//! What the keys mean is up to the caller (a dialect).
use sqlx::types::Json;
use uuid::Uuid;

use super::{Store, StoreError};

impl Store {
    /// Every setting of the tenant, by key.
    pub async fn tenant_settings(&self, tenant: Uuid) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let rows: Vec<(String, Json<serde_json::Value>)> =
            sqlx::query_as("SELECT key, value FROM tenant_settings WHERE tenant_id = $1 ORDER BY key").bind(tenant).fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(|(k, Json(v))| (k, v)).collect())
    }

    /// Set (insert or replace) some of the tenant's settings, all or none.
    ///
    /// A tenant keeps at most `max_keys` settings of at most `max_bytes` together (keys and JSON
    /// values); a change that would pass either is refused whole ([`StoreError::TooLarge`]).
    pub async fn set_tenant_settings(&self, tenant: Uuid, settings: &[(String, serde_json::Value)], max_keys: i64, max_bytes: i64) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for (key, value) in settings {
            sqlx::query(
                "INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id, key) DO UPDATE SET value = $3, updated_at = now()",
            )
            .bind(tenant)
            .bind(key)
            .bind(Json(value))
            .execute(&mut *tx)
            .await?;
        }
        let (keys, bytes): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(octet_length(key) + octet_length(value::text)), 0)::bigint FROM tenant_settings WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
        if keys > max_keys || bytes > max_bytes {
            return Err(StoreError::TooLarge(format!(
                "the options would hold {keys} keys and {bytes} bytes; at most {max_keys} keys and {max_bytes} bytes are kept per tenant"
            )));
        }
        tx.commit().await?;
        Ok(())
    }
}
