-- Measured model load times. A worker records, once it is registered and ready to take jobs,
-- one row per model it serves: how long that model's ONNX sessions took to create
-- (`load_secs`), how long the worker took from the start of `darkroom-worker run` to being
-- ready (`ready_secs`: every model it serves loaded, Postgres and Redis connected), and its
-- execution provider ('cpu' or 'cuda'). The Hugging Face serverless dialect estimates a cold
-- start from the recent rows of a model (its 503's `estimated_time`, `GET /status/{model}`'s
-- `compute_type`). Workers keep the newest 100 rows per model (`store::MODEL_LOADS_KEPT`).
CREATE TABLE model_loads (
    id          BIGSERIAL PRIMARY KEY,
    model       TEXT NOT NULL,
    worker_id   UUID NOT NULL,
    load_secs   DOUBLE PRECISION NOT NULL CHECK (load_secs >= 0),
    ready_secs  DOUBLE PRECISION NOT NULL CHECK (ready_secs >= 0),
    provider    TEXT,
    loaded_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX model_loads_newest ON model_loads (model, id DESC);
