//! Euler a: diffusers' `EulerAncestralDiscreteScheduler`. Each step goes down to sigma_down
//! deterministically, then adds fresh noise of size sigma_up (drawn on every step, the last too).

use super::config::{Prediction, SchedulerConfig, DDPM_DEFAULTS};
use super::kdiff;
use super::schedule::{timesteps_k, TrainSchedule};
use super::sigmas::interp_sigmas;
use super::{SamplerError, Scheduler};

pub(crate) struct EulerAncestral {
    timesteps: Vec<f64>,
    /// One sigma per timestep plus a final 0.
    sigmas: Vec<f32>,
    init_noise_sigma: f32,
    prediction: Prediction,
    /// The latest step's x0 prediction.
    denoised: Vec<f32>,
}

impl EulerAncestral {
    pub(crate) fn new(cfg: &SchedulerConfig, n: usize) -> Result<Self, SamplerError> {
        let c = cfg.common(&DDPM_DEFAULTS)?;
        if c.prediction == Prediction::Sample {
            // diffusers raises NotImplementedError at the first step.
            return Err(SamplerError::bad_config("prediction_type", "\"sample\" is not implemented for Euler a"));
        }
        let sched = TrainSchedule::new(&c, true);
        let ts = timesteps_k(c.spacing, c.num_train_timesteps, n, c.steps_offset);
        let timesteps: Vec<f64> = ts.iter().map(|&v| v as f64).collect();
        let sigmas: Vec<f32> = interp_sigmas(&timesteps, &sched.sigmas()).iter().map(|&s| s as f32).chain([0.0]).collect();
        let init_noise_sigma = kdiff::init_noise_sigma(&sigmas, c.spacing);
        Ok(EulerAncestral { timesteps, sigmas, init_noise_sigma, prediction: c.prediction, denoised: Vec::new() })
    }
}

impl Scheduler for EulerAncestral {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f32 {
        self.init_noise_sigma
    }
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], noise: &mut dyn FnMut(usize) -> Vec<f32>) -> Vec<f32> {
        let sigma = self.sigmas[index];
        let pred = kdiff::pred_original(self.prediction, model_output, sample, sigma);
        let (from, to) = (sigma, self.sigmas[index + 1]);
        let sigma_up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let sigma_down = (to * to - sigma_up * sigma_up).sqrt();
        let d = kdiff::derivative(sample, &pred, sigma);
        self.denoised = pred;
        let mut prev = kdiff::euler_update(sample, &d, sigma_down - sigma);
        let eps = noise(model_output.len());
        assert_eq!(eps.len(), prev.len(), "noise closure returned the wrong number of values");
        for (x, e) in prev.iter_mut().zip(eps) {
            *x += e * sigma_up;
        }
        prev
    }
    fn denoised(&self) -> Option<&[f32]> {
        Some(&self.denoised)
    }
    fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}
