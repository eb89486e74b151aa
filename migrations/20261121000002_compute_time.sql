-- How long the worker computed (pipeline and encoding), so the queue's own overhead can be
-- told apart from generation time.
ALTER TABLE jobs ADD COLUMN compute_ms DOUBLE PRECISION;
