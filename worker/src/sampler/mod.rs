//! Samplers matching diffusers' schedulers step for step.
//!
//! Each sampler reproduces one diffusers scheduler class (diffusers 0.35):
//!
//! | A1111 name        | diffusers class                    | Karras |
//! |-------------------|------------------------------------|--------|
//! | `Euler`           | `EulerDiscreteScheduler`           | yes    |
//! | `Euler a`         | `EulerAncestralDiscreteScheduler`  | no     |
//! | `Heun`            | `HeunDiscreteScheduler`            | yes    |
//! | `DDIM`            | `DDIMScheduler` (eta 0)            | no     |
//! | `DPM++ 2M`        | `DPMSolverMultistepScheduler` (dpmsolver++, order 2) | yes |
//! | `LMS`             | `LMSDiscreteScheduler` (order 4)   | yes    |
//!
//! A model's `scheduler_config.json` may name any class; like diffusers'
//! `TargetClass.from_config(config)` the keys present in the file are used and the target
//! class's own defaults fill in the rest (see [`config`]). The schedules are computed the way
//! diffusers computes them (float32 torch tensors, float64 numpy arrays, rounded to float32 where
//! diffusers rounds), and the steps use float32 elementwise math on flat latents.
//!
//! Pipeline loop (what diffusers' `StableDiffusionPipeline` does):
//! ```text
//! let mut s = new_scheduler(sampler, &config, steps)?;
//! latents = noise * s.init_noise_sigma();
//! for (i, &t) in s.timesteps().to_vec().iter().enumerate() {
//!     let mut x = latents.clone(); s.scale_model_input(&mut x, i);
//!     let eps = unet(x, t);                       // t as the UNet's timestep input
//!     latents = s.step(&eps, i, &latents, &mut noise_fn);
//! }
//! ```

mod config;
mod ddim;
mod dpm_solver;
mod euler;
mod euler_ancestral;
mod heun;
mod kdiff;
mod lms;
mod numpy;
mod schedule;
mod sigmas;

#[cfg(test)]
mod tests;

pub use config::SchedulerConfig;
pub use darkroom_shared::sampler::{Sampler, SamplerError as SamplerNameError, SamplerKind};

/// Errors from sampler names, scheduler configs and scheduler construction.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// The sampler name is not one we know, or not with that scheduler.
    #[error(transparent)]
    Name(#[from] SamplerNameError),
    /// The scheduler config has a bad or unsupported value; `key` names the config key.
    #[error("scheduler config: bad value for {key:?}: {message}")]
    BadConfig { key: String, message: String },
    /// The number of inference steps cannot be used with this config.
    #[error("invalid number of inference steps {steps}: {message}")]
    BadSteps { steps: usize, message: String },
    /// `scheduler_config.json` could not be read.
    #[error("cannot read scheduler config {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// `scheduler_config.json` is not valid JSON of the expected shape.
    #[error("cannot parse scheduler config {origin}: {source}")]
    Json { origin: String, source: serde_json::Error },
}

impl SamplerError {
    pub(crate) fn bad_config(key: &str, message: impl Into<String>) -> Self {
        SamplerError::BadConfig { key: key.to_string(), message: message.into() }
    }
}

/// One diffusers scheduler after `set_timesteps(num_inference_steps)`. The provided methods are
/// what the sigma-based (k-diffusion style) samplers share; DDIM and DPM++ override them.
pub trait Scheduler: Send {
    /// Timesteps at which the UNet is evaluated, in order (Heun repeats interior ones: one entry per UNet call).
    fn timesteps(&self) -> &[f64];
    /// Multiplier for the initial noise (diffusers' init_noise_sigma).
    fn init_noise_sigma(&self) -> f32;
    /// The scheduler's sigma table as diffusers stores it (`scheduler.sigmas`, float32); empty for DDIM,
    /// which has none. Heun's table repeats interior sigmas like its timesteps.
    fn sigmas(&self) -> &[f32];
    /// diffusers' step(); called once per timesteps() entry, in order. `noise(n)` returns n standard-normal f32 values
    /// drawn from the image's generator (used only by ancestral samplers; diffusers draws randn_tensor(model_output.shape, generator)).
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], noise: &mut dyn FnMut(usize) -> Vec<f32>) -> Vec<f32>;
    /// The denoised prediction (x0) of the latest step, where the sampler computes one: what
    /// live previews show (the latents themselves are still mostly noise early on).
    fn denoised(&self) -> Option<&[f32]> {
        None
    }
    /// diffusers' `scheduler.order` (2 for Heun, 1 otherwise); img2img starts at `t_start * order`.
    fn order(&self) -> usize {
        1
    }
    /// img2img: start at this index into timesteps() (diffusers' set_begin_index). Steps are
    /// addressed by index, so only samplers that keep history have anything to reset.
    fn set_begin_index(&mut self, _begin_index: usize) {}
    /// diffusers' scale_model_input for the UNet call at timesteps()[index], in place on a flat
    /// latent: divide by sqrt(sigma^2 + 1).
    fn scale_model_input(&self, sample: &mut [f32], index: usize) {
        kdiff::scale_input(sample, self.sigmas()[index]);
    }
    /// diffusers' add_noise at timesteps()[index] (img2img): original + noise * sigma.
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        kdiff::add_noise(original, noise, self.sigmas()[index])
    }
}

/// Builds the scheduler for `sampler` from a model's scheduler config and sets its timesteps,
/// like `SamplerClass.from_config(config, use_karras_sigmas=sampler.karras)` followed by
/// `set_timesteps(num_inference_steps)`.
pub fn new_scheduler(sampler: Sampler, config: &SchedulerConfig, num_inference_steps: usize) -> Result<Box<dyn Scheduler>, SamplerError> {
    if num_inference_steps == 0 {
        return Err(SamplerError::BadSteps { steps: 0, message: "must be at least 1".into() });
    }
    if sampler.karras && !sampler.kind.supports_karras() {
        return Err(SamplerNameError::UnknownSampler { name: format!("{} Karras", sampler.kind.a1111_base()), valid: Sampler::names().join(", ") }.into());
    }
    let k = sampler.karras;
    let n = num_inference_steps;
    Ok(match sampler.kind {
        SamplerKind::Euler => Box::new(euler::Euler::new(config, k, n)?),
        SamplerKind::EulerAncestral => Box::new(euler_ancestral::EulerAncestral::new(config, n)?),
        SamplerKind::Heun => Box::new(heun::Heun::new(config, k, n)?),
        SamplerKind::Ddim => Box::new(ddim::Ddim::new(config, n)?),
        SamplerKind::DpmPp2m => Box::new(dpm_solver::DpmSolverMultistep::new(config, k, n)?),
        SamplerKind::Lms => Box::new(lms::Lms::new(config, k, n)?),
    })
}
