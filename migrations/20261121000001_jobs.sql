-- Tenants, their API tokens, the model catalog, live workers, jobs and their images.
-- Postgres is the source of truth for every job's state; Redis only delivers job ids.

CREATE TABLE tenants (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a token is stored; `prefix` is its visible start, used to revoke it.
CREATE TABLE api_tokens (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    prefix      TEXT NOT NULL UNIQUE,
    sha256      BYTEA NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);

-- The catalog: one row per model id that a worker has registered.
CREATE TABLE models (
    id           TEXT PRIMARY KEY,
    family       TEXT NOT NULL CHECK (family IN ('sd', 'sdxl')),
    native_size  INT NOT NULL,
    img2img      BOOLEAN NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Workers and their heartbeats; a worker is live while last_seen is recent.
CREATE TABLE workers (
    id          UUID PRIMARY KEY,
    hostname    TEXT NOT NULL,
    models      TEXT[] NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen   TIMESTAMPTZ NOT NULL DEFAULT now(),
    stopped_at  TIMESTAMPTZ
);

CREATE TYPE job_status AS ENUM ('queued', 'running', 'succeeded', 'failed', 'canceled');

CREATE TABLE jobs (
    id                UUID PRIMARY KEY,             -- UUIDv7: ordered by creation time
    tenant_id         UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    model             TEXT NOT NULL,
    request           JSONB NOT NULL,               -- the canonical request, seed resolved
    status            job_status NOT NULL DEFAULT 'queued',
    attempts          INT NOT NULL DEFAULT 0,       -- deliveries that reached a worker
    lease             UUID,                         -- fencing token of the current holder
    lease_expires_at  TIMESTAMPTZ,
    worker_id         UUID,
    progress_step     INT NOT NULL DEFAULT 0,
    progress_total    INT NOT NULL DEFAULT 0,
    cancel_requested  BOOLEAN NOT NULL DEFAULT false,
    error             TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at        TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ
);

CREATE INDEX jobs_by_tenant ON jobs (tenant_id, id DESC);
CREATE INDEX jobs_queued ON jobs (model, tenant_id, id) WHERE status = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE status = 'running';

CREATE TABLE images (
    job_id   UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx      INT NOT NULL,
    seed     BIGINT NOT NULL,
    format   TEXT NOT NULL,
    width    INT NOT NULL,
    height   INT NOT NULL,
    bytes    BYTEA NOT NULL,
    PRIMARY KEY (job_id, idx)
);
