-- Why a failed job failed, as a stable machine-readable word beside the human `error` text:
-- generation_failed, invalid_request, model_unavailable, deadline_exceeded, lease_expired.
-- Set only when a job ends `failed`; NULL otherwise (and for jobs that failed before this column).
ALTER TABLE jobs ADD COLUMN error_type TEXT;
