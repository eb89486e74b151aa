//! DDIM: diffusers' `DDIMScheduler` with eta = 0 (deterministic). Works on alphas_cumprod at
//! integer timesteps; the model input is not scaled and the initial noise is not scaled.

use super::config::{Defaults, Prediction, SchedulerConfig, Spacing};
use super::schedule::{timesteps_ddim, TrainSchedule};
use super::{SamplerError, Scheduler};

/// DDIMScheduler's defaults: 0.0001..0.02 linear, *leading* spacing.
const DDIM_DEFAULTS: Defaults = Defaults { beta_start: 0.0001, beta_end: 0.02, spacing: Spacing::Leading, has_rescale: true, has_exp_schedule: false };

pub(crate) struct Ddim {
    timesteps: Vec<f64>,
    int_timesteps: Vec<i64>,
    alphas_cumprod: Vec<f32>,
    /// alpha_cumprod "before" timestep 0: 1 with set_alpha_to_one, else alphas_cumprod[0].
    final_alpha_cumprod: f32,
    /// `num_train_timesteps // num_inference_steps`: the previous timestep is t minus this.
    step_ratio: i64,
    prediction: Prediction,
    clip: Option<f32>,
    /// The latest step's x0 prediction.
    denoised: Vec<f32>,
}

impl Ddim {
    pub(crate) fn new(cfg: &SchedulerConfig, n: usize) -> Result<Self, SamplerError> {
        let c = cfg.common(&DDIM_DEFAULTS)?;
        cfg.reject_thresholding()?;
        let t = c.num_train_timesteps;
        if n > t {
            return Err(SamplerError::BadSteps { steps: n, message: format!("DDIM allows at most num_train_timesteps = {t}") });
        }
        let clip = if cfg.clip_sample.unwrap_or(true) { Some(cfg.clip_sample_range.unwrap_or(1.0) as f32) } else { None };
        let sched = TrainSchedule::new(&c, false);
        let final_alpha_cumprod = if cfg.set_alpha_to_one.unwrap_or(true) { 1.0 } else { sched.alphas_cumprod[0] };
        let int_timesteps = timesteps_ddim(c.spacing, t, n, c.steps_offset);
        if let Some(bad) = int_timesteps.iter().find(|&&v| v < 0 || v >= t as i64) {
            return Err(SamplerError::BadSteps { steps: n, message: format!("timestep {bad} falls outside 0..{t} (check steps_offset)") });
        }
        Ok(Ddim {
            timesteps: int_timesteps.iter().map(|&v| v as f64).collect(),
            int_timesteps,
            alphas_cumprod: sched.alphas_cumprod,
            final_alpha_cumprod,
            step_ratio: (t / n) as i64,
            prediction: c.prediction,
            clip,
            denoised: Vec::new(),
        })
    }
}

impl Scheduler for Ddim {
    /// DDIM works on alphas, not sigmas.
    fn sigmas(&self) -> &[f32] {
        &[]
    }
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }
    /// DDIM takes the sample as it is.
    fn scale_model_input(&self, _sample: &mut [f32], _index: usize) {}
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _noise: &mut dyn FnMut(usize) -> Vec<f32>) -> Vec<f32> {
        assert_eq!(model_output.len(), sample.len(), "step: model_output and sample lengths differ");
        let t = self.int_timesteps[index];
        let prev_t = t - self.step_ratio;
        let a_t = self.alphas_cumprod[t as usize];
        let a_prev = if prev_t >= 0 { self.alphas_cumprod[prev_t as usize] } else { self.final_alpha_cumprod };
        let b_t = 1.0 - a_t;
        let (sa, sb) = (a_t.sqrt(), b_t.sqrt());
        let (mut x0, eps): (Vec<f32>, Vec<f32>) = match self.prediction {
            Prediction::Epsilon => (sample.iter().zip(model_output).map(|(&s, &m)| (s - sb * m) / sa).collect(), model_output.to_vec()),
            Prediction::Sample => (model_output.to_vec(), sample.iter().zip(model_output).map(|(&s, &m)| (s - sa * m) / sb).collect()),
            Prediction::V => (
                sample.iter().zip(model_output).map(|(&s, &m)| sa * s - sb * m).collect(),
                sample.iter().zip(model_output).map(|(&s, &m)| sa * m + sb * s).collect(),
            ),
        };
        if let Some(r) = self.clip {
            x0.iter_mut().for_each(|x| *x = x.clamp(-r, r));
        }
        // eta = 0: std_dev_t = 0, so the direction coefficient is sqrt(1 - a_prev - 0).
        let dir = (1.0 - a_prev - 0.0).sqrt();
        let c0 = a_prev.sqrt();
        let prev = x0.iter().zip(&eps).map(|(&x, &e)| c0 * x + dir * e).collect();
        self.denoised = x0;
        prev
    }
    fn denoised(&self) -> Option<&[f32]> {
        Some(&self.denoised)
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        assert_eq!(original.len(), noise.len(), "add_noise: original and noise lengths differ");
        let a = self.alphas_cumprod[self.int_timesteps[index] as usize];
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        original.iter().zip(noise).map(|(&o, &n)| sa * o + sb * n).collect()
    }
}
