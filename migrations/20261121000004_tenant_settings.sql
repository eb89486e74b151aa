-- Per-tenant settings: key/value pairs a dialect keeps for a tenant (e.g. AUTOMATIC1111's
-- options such as the tenant's current `sd_model_checkpoint`). Opaque to the job service.
CREATE TABLE tenant_settings (
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
