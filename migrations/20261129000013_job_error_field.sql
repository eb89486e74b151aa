-- The request field a job's failure is about, when the worker refused the request as invalid
-- (`error_type = 'invalid_request'`, e.g. a prompt longer than a fixed-length UNet export
-- takes): the blocking dialects answer such a job with their 422 naming this field. NULL for
-- every other failure, and while the job has not failed.
ALTER TABLE jobs ADD COLUMN error_field TEXT;
