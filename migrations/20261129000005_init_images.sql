-- An img2img job's init image (base64, as submitted) lives apart from `jobs.request`: only the
-- worker that claims the job reads it, so listing, polling, waiting on or canceling jobs never
-- loads up to 16 MiB per job. It goes with the job's images (retention) or with the job.
CREATE TABLE init_images (
    job_id UUID PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    image  TEXT NOT NULL
);
-- Base64 does not compress: store it out of line without trying.
ALTER TABLE init_images ALTER COLUMN image SET STORAGE EXTERNAL;

INSERT INTO init_images (job_id, image)
    SELECT id, request->>'init_image' FROM jobs WHERE request ? 'init_image' AND purged_at IS NULL;
UPDATE jobs SET request = request - 'init_image' WHERE request ? 'init_image';

-- A tenant's unfinished jobs (A1111 progress, interrupt) without scanning its history.
CREATE INDEX jobs_unfinished ON jobs (tenant_id, id) WHERE status IN ('queued', 'running');
