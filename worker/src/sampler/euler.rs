//! Euler: diffusers' `EulerDiscreteScheduler` (s_churn = 0, so no noise is added).

use super::config::{choose, Prediction, SchedulerConfig, DDPM_DEFAULTS};
use super::kdiff;
use super::numpy::torch_linspace_f32;
use super::schedule::{timesteps_k, TrainSchedule};
use super::sigmas::{interp_sigmas, karras, sigma_to_t};
use super::{SamplerError, Scheduler};

pub(crate) struct Euler {
    timesteps: Vec<f64>,
    /// One sigma per timestep plus the final one (0 or sigma_min).
    sigmas: Vec<f32>,
    init_noise_sigma: f32,
    prediction: Prediction,
    /// The latest step's x0 prediction.
    denoised: Vec<f32>,
}

impl Euler {
    pub(crate) fn new(cfg: &SchedulerConfig, use_karras: bool, n: usize) -> Result<Self, SamplerError> {
        let c = cfg.common(&DDPM_DEFAULTS)?;
        let prediction = cfg.prediction(true)?;
        let log_linear = choose("interpolation_type", cfg.interpolation_type.as_deref(), false, &[("linear", false), ("log_linear", true)])?;
        let continuous = choose("timestep_type", cfg.timestep_type.as_deref(), false, &[("discrete", false), ("continuous", true)])?;
        let final_is_min = cfg.final_sigma_is_min()?;

        let sched = TrainSchedule::new(&c, true);
        let train_sigmas = sched.sigmas();
        let t = c.num_train_timesteps;
        let mut timesteps: Vec<f64> = timesteps_k(c.spacing, t, n, c.steps_offset).iter().map(|&v| v as f64).collect();
        let mut sigmas: Vec<f64> = if log_linear {
            // torch.linspace(log σ_max, log σ_min, n + 1).exp(): n + 1 sigmas, as diffusers has it.
            let (hi, lo) = (train_sigmas[t - 1].ln(), train_sigmas[0].ln());
            torch_linspace_f32(hi as f64, lo as f64, n + 1).iter().map(|v| v.exp() as f64).collect()
        } else {
            interp_sigmas(&timesteps, &train_sigmas)
        };
        if use_karras {
            let lo = cfg.sigma_min.unwrap_or(sigmas[sigmas.len() - 1]);
            let hi = cfg.sigma_max.unwrap_or(sigmas[0]);
            sigmas = karras(lo, hi, n);
            let log_sigmas = sched.log_sigmas();
            timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)).collect();
        }
        let a0 = sched.alphas_cumprod[0];
        let last = if final_is_min { ((1.0 - a0) / a0).sqrt() } else { 0.0 };
        let sigmas: Vec<f32> = sigmas.iter().map(|&s| s as f32).chain([last]).collect();
        // Timesteps are stored as float32 (or, continuous v-prediction, as 0.25·ln σ).
        let timesteps: Vec<f64> = if continuous && prediction == Prediction::V {
            sigmas[..sigmas.len() - 1].iter().map(|s| (0.25f32 * s.ln()) as f64).collect()
        } else {
            timesteps.iter().map(|&v| v as f32 as f64).collect()
        };
        let init_noise_sigma = kdiff::init_noise_sigma(&sigmas, c.spacing);
        Ok(Euler { timesteps, sigmas, init_noise_sigma, prediction, denoised: Vec::new() })
    }
}

impl Scheduler for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f32 {
        self.init_noise_sigma
    }
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _noise: &mut dyn FnMut(usize) -> Vec<f32>) -> Vec<f32> {
        // gamma = 0, so sigma_hat = sigma.
        let sigma = self.sigmas[index];
        let pred = kdiff::pred_original(self.prediction, model_output, sample, sigma);
        let d = kdiff::derivative(sample, &pred, sigma);
        self.denoised = pred;
        kdiff::euler_update(sample, &d, self.sigmas[index + 1] - sigma)
    }
    fn denoised(&self) -> Option<&[f32]> {
        Some(&self.denoised)
    }
    fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}
