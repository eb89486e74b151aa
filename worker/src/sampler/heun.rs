//! Heun: diffusers' `HeunDiscreteScheduler`, a second-order method taking two UNet calls per
//! step. Its timesteps are `[t0, t1, t1, t2, t2, ..., t_{n-1}, t_{n-1}]` (2n - 1 entries): an
//! Euler predictor at the first copy of each timestep, the trapezoid corrector at the second.
//! The last step (to sigma 0) is a plain Euler step, so there is no corrector call for it.

use super::config::{Defaults, Prediction, SchedulerConfig, Spacing};
use super::kdiff;
use super::schedule::{timesteps_k, TrainSchedule};
use super::sigmas::{interp_sigmas, karras, sigma_to_t};
use super::{SamplerError, Scheduler};

/// HeunDiscreteScheduler's defaults differ from the other classes: 0.00085..0.012 (linear).
const HEUN_DEFAULTS: Defaults = Defaults { beta_start: 0.00085, beta_end: 0.012, spacing: Spacing::Linspace, has_rescale: false, has_exp_schedule: true };

pub(crate) struct Heun {
    timesteps: Vec<f64>,
    /// `[s0, s1, s1, ..., s_{n-1}, s_{n-1}, 0]`, aligned with the timesteps plus a final 0.
    sigmas: Vec<f32>,
    init_noise_sigma: f32,
    prediction: Prediction,
    clip: Option<f32>,
    /// Predictor state kept for the corrector call: (derivative, dt, sample).
    first_order: Option<(Vec<f32>, f32, Vec<f32>)>,
    /// The latest step's x0 prediction.
    denoised: Vec<f32>,
}

impl Heun {
    pub(crate) fn new(cfg: &SchedulerConfig, use_karras: bool, n: usize) -> Result<Self, SamplerError> {
        let c = cfg.common(&HEUN_DEFAULTS)?;
        let clip = if cfg.clip_sample.unwrap_or(false) { Some(cfg.clip_sample_range.unwrap_or(1.0) as f32) } else { None };
        let sched = TrainSchedule::new(&c, false);
        let train_sigmas = sched.sigmas();
        let ts = timesteps_k(c.spacing, c.num_train_timesteps, n, c.steps_offset);
        let mut timesteps: Vec<f64> = ts.iter().map(|&v| v as f64).collect();
        let mut sigmas = interp_sigmas(&timesteps, &train_sigmas);
        if use_karras {
            let lo = cfg.sigma_min.unwrap_or(sigmas[sigmas.len() - 1]);
            let hi = cfg.sigma_max.unwrap_or(sigmas[0]);
            sigmas = karras(lo, hi, n);
            let log_sigmas = sched.log_sigmas();
            timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)).collect();
        }
        // Repeat every sigma but the first (and the final 0), and every timestep but the first.
        let mut rep_sigmas = vec![sigmas[0] as f32];
        for &s in &sigmas[1..] {
            rep_sigmas.extend([s as f32, s as f32]);
        }
        rep_sigmas.push(0.0);
        let mut rep_timesteps = vec![timesteps[0] as f32 as f64];
        for &t in &timesteps[1..] {
            let t = t as f32 as f64;
            rep_timesteps.extend([t, t]);
        }
        let init_noise_sigma = kdiff::init_noise_sigma(&rep_sigmas, c.spacing);
        Ok(Heun { timesteps: rep_timesteps, sigmas: rep_sigmas, init_noise_sigma, prediction: c.prediction, clip, first_order: None, denoised: Vec::new() })
    }
}

impl Scheduler for Heun {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f32 {
        self.init_noise_sigma
    }
    fn order(&self) -> usize {
        2
    }
    /// Starts in the predictor state (an img2img begin index t_start * 2 is a predictor call).
    fn set_begin_index(&mut self, _begin_index: usize) {
        self.first_order = None;
    }
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _noise: &mut dyn FnMut(usize) -> Vec<f32>) -> Vec<f32> {
        let predictor = self.first_order.is_none();
        let (sigma, sigma_next) = if predictor { (self.sigmas[index], self.sigmas[index + 1]) } else { (self.sigmas[index - 1], self.sigmas[index]) };
        // The model saw sigma at the predictor call and sigma_next at the corrector call.
        let sigma_input = if predictor { sigma } else { sigma_next };
        let mut pred = kdiff::pred_original(self.prediction, model_output, sample, sigma_input);
        if let Some(r) = self.clip {
            pred.iter_mut().for_each(|x| *x = x.clamp(-r, r));
        }
        let first_order = self.first_order.take();
        // The derivative at the sigma the model saw (predictor: sigma, corrector: sigma_next).
        let d = kdiff::derivative(sample, &pred, sigma_input);
        self.denoised = pred;
        match first_order {
            None => {
                let dt = sigma_next - sigma;
                let prev = kdiff::euler_update(sample, &d, dt);
                self.first_order = Some((d, dt, sample.to_vec()));
                prev
            }
            Some((d_prev, dt, x)) => {
                let avg: Vec<f32> = d_prev.iter().zip(&d).map(|(&a, &b)| (a + b) / 2.0).collect();
                kdiff::euler_update(&x, &avg, dt)
            }
        }
    }
    fn denoised(&self) -> Option<&[f32]> {
        Some(&self.denoised)
    }
    fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}
