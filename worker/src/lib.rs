//! The Darkroom worker's inference core: ONNX-exported Stable Diffusion pipelines run
//! through ONNX Runtime, with diffusers-exact samplers and torch-exact seeded noise.
pub mod deadline;
pub mod fingerprint;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod output;
pub mod pipeline;
pub mod preview;
pub mod prompt;
pub mod request;
pub mod rng;
pub mod runtime;
pub mod sampler;
pub mod service;
pub mod tokenizer;
