-- `Idempotency-Key` on POST /v1/jobs: per tenant, the key, the SHA-256 of the request it came
-- with, and the job it made. Kept 24 hours (older keys are ignored, and deleted by the purge).
CREATE TABLE idempotency_keys (
    tenant_id     UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    request_hash  BYTEA NOT NULL,
    job_id        UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
