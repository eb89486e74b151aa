-- Each job's estimated GPU cost (darkroom_shared::cost), computed once at submission: fair
-- queuing shares GPU time between tenants by it, and recovery re-enqueues jobs with it.
ALTER TABLE jobs ADD COLUMN cost DOUBLE PRECISION NOT NULL DEFAULT 1 CHECK (cost > 0);
