//! What the Darkroom API and worker binaries share: the canonical request, jobs, the store
//! (Postgres, the truth) and the queue (Redis, delivery only).
pub mod config;
pub mod cost;
pub mod family;
pub mod infotext;
pub mod job;
pub mod logging;
pub mod metrics;
pub mod prompt_syntax;
pub mod queue;
pub mod ratelimit;
pub mod recovery;
pub mod request;
pub mod sampler;
pub mod shutdown;
pub mod store;
pub mod validate;
