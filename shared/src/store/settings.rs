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
    pub async fn set_tenant_settings(&self, tenant: Uuid, settings: &[(String, serde_json::Value)]) -> Result<(), StoreError> {
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
        tx.commit().await?;
        Ok(())
    }
}
