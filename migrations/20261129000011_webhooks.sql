-- Signed webhooks (Standard Webhooks): each tenant's signing secret, and an outbox of
-- deliveries that any API replica works through.
--
-- A tenant's secret is `whsec_` + base64 of 32 random bytes (`darkroom-api tenant
-- webhook-secret NAME`). Rotating it keeps the previous one until `webhook_secret_previous_until`
-- (a day): deliveries are signed with both meanwhile. The secrets are kept as they are: signing
-- needs them.
ALTER TABLE tenants
    ADD COLUMN webhook_secret TEXT,
    ADD COLUMN webhook_secret_previous TEXT,
    ADD COLUMN webhook_secret_previous_until TIMESTAMPTZ;

-- One row per (job, event) whose request asked for it, written by a trigger on `jobs` so that
-- no code path that moves a job can miss one. `job` is the job's row when the event happened
-- (the API renders `payload` from it, once, at the first attempt: every retry sends the same
-- bytes under the same `webhook_id`). A delivery is claimed by setting `claim` and
-- `locked_until` (a lease): a replica that dies mid-delivery leaves it to another once the lease
-- passes. `state`: `pending` until delivered (2xx) or `dead` (410 Gone, or attempts spent).
-- Rows go with their job (retention).
CREATE TABLE webhook_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    webhook_id       TEXT NOT NULL UNIQUE,
    job_id           UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    tenant_id        UUID NOT NULL,
    event            TEXT NOT NULL CHECK (event IN ('started', 'completed')),
    url              TEXT NOT NULL,
    job              JSONB NOT NULL,
    payload          TEXT,
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         INT NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    claim            UUID,
    locked_until     TIMESTAMPTZ,
    last_status      INT,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ,
    UNIQUE (job_id, event)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';

CREATE FUNCTION enqueue_job_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    hook_event TEXT;
BEGIN
    IF NOT (NEW.request ? 'webhook') THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NULL;
    END IF;
    hook_event := CASE
        WHEN NEW.status = 'running' THEN 'started'
        WHEN NEW.status IN ('succeeded', 'failed', 'canceled') THEN 'completed'
    END;
    IF hook_event IS NULL OR NOT (coalesce(NEW.request -> 'webhook_events', '["completed"]') ? hook_event) THEN
        RETURN NULL;
    END IF;
    -- A job that runs again (its worker died) starts once as far as its webhook is concerned.
    INSERT INTO webhook_deliveries (webhook_id, job_id, tenant_id, event, url, job)
    VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), NEW.id, NEW.tenant_id, hook_event,
            NEW.request ->> 'webhook', to_jsonb(NEW))
    ON CONFLICT (job_id, event) DO NOTHING;
    PERFORM pg_notify('darkroom_webhooks', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_enqueue_webhook
    AFTER INSERT OR UPDATE OF status ON jobs
    FOR EACH ROW EXECUTE FUNCTION enqueue_job_webhook();
