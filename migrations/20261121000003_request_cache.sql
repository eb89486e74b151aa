-- The HF serverless dialect's identical-request cache: SHA-256 of the canonical request as
-- the dialect built it (the seed left out when the client gave none). A succeeded job with the
-- same key for the same tenant answers the request without GPU work.
ALTER TABLE jobs ADD COLUMN cache_key BYTEA;
CREATE INDEX jobs_cache ON jobs (tenant_id, cache_key) WHERE status = 'succeeded' AND cache_key IS NOT NULL;
