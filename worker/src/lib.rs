//! The Darkroom worker's inference core: ONNX-exported Stable Diffusion pipelines run
//! through ONNX Runtime, with diffusers-exact samplers and torch-exact seeded noise.
pub mod rng;
pub mod sampler;
pub mod tokenizer;
