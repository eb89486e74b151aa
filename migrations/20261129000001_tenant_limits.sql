-- Per-tenant limits (issue: multi-tenancy). NULL means "the serve-wide default" (flags of
-- `darkroom-api serve`), so a default changed there reaches every tenant without its own.
ALTER TABLE tenants
    ADD COLUMN rate_per_minute DOUBLE PRECISION CHECK (rate_per_minute >= 0),  -- 0: no rate limit
    ADD COLUMN burst           INT CHECK (burst >= 1),
    ADD COLUMN max_queued      INT CHECK (max_queued >= 0),                   -- 0: no quota
    ADD COLUMN max_running     INT CHECK (max_running >= 0),                  -- 0: no cap
    ADD COLUMN weight          DOUBLE PRECISION CHECK (weight > 0);
