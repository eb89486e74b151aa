-- A model's identity, for AUTOMATIC1111's `sd-models` (title `name [hash]`, `sha256`, `filename`):
-- the sha256 of its UNet's weights, as the worker computes it when it loads the model (the bytes
-- of `unet/model.onnx`, then of each external data file the graph references, by name; see
-- worker/src/fingerprint.rs), and the model directory the worker loaded it from. Workers set both
-- when they register (the latest registration wins); NULL until then, and for rows registered
-- by an older worker.
ALTER TABLE models
    ADD COLUMN sha256 TEXT CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    ADD COLUMN path TEXT;

-- Each worker's hashes by model id (`{"tiny-sd15": "<sha256>"}`), so that a worker registering a
-- model whose weights differ from those another live worker serves under the same id can say
-- which worker that is.
ALTER TABLE workers ADD COLUMN model_sha256 JSONB NOT NULL DEFAULT '{}';
