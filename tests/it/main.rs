//! One integration-test binary: every end-to-end test, sharing the helpers in `helpers.rs`.
mod api;
mod boundary;
mod cli;
mod deadline;
mod dialect_a1111;
mod dialects_hf;
mod dialects_hyperbolic;
mod fuzz;
mod helpers;
mod limits;
mod metrics;
mod openapi;
mod pipeline;
mod restart;
mod service;
mod webhooks;
mod workers;
