//! One integration-test binary: every end-to-end test, sharing the helpers in `helpers.rs`.
mod api;
mod cli;
mod helpers;
mod pipeline;
mod service;
mod workers;
