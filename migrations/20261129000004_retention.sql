-- Retention: a finished job's images (and its init image, inside the request) are deleted
-- after `--retention`, which sets purged_at; the job row itself goes after `--job-retention`.
ALTER TABLE jobs ADD COLUMN purged_at TIMESTAMPTZ;
CREATE INDEX jobs_unpurged_by_finish ON jobs (finished_at) WHERE finished_at IS NOT NULL AND purged_at IS NULL;
CREATE INDEX jobs_by_finish ON jobs (finished_at) WHERE finished_at IS NOT NULL;
