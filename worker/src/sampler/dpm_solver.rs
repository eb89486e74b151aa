//! DPM++ 2M: diffusers' `DPMSolverMultistepScheduler` with algorithm_type "dpmsolver++" and
//! solver_order 2. The model output is converted to a data prediction x0; the first step is
//! first order, later steps are second order using the previous x0, and the final step is first
//! order whenever final_sigmas_type is "zero" (the default) or there are fewer than 15 steps
//! with lower_order_final. Timesteps are integers; the model input is not scaled.
//! diffusers' `order` class attribute is 1 (the trait default) although the solver is second order.

use super::config::{choose, BetaSchedule, Prediction, SchedulerConfig, DDPM_DEFAULTS};
use super::numpy::np_round;
use super::schedule::{timesteps_dpm, TrainSchedule};
use super::sigmas::{interp_sigmas, karras, sigma_to_t};
use super::{SamplerError, Scheduler};

pub(crate) struct DpmSolverMultistep {
    timesteps: Vec<f64>,
    /// One (VE) sigma per timestep plus the final one (0 or sigma_min).
    sigmas: Vec<f32>,
    prediction: Prediction,
    /// solver_type "heun" instead of "midpoint" for the second-order update.
    heun: bool,
    /// Whether the last step drops to first order.
    final_first_order: bool,
    /// The previous step's x0 prediction (None before the first step).
    prev_x0: Option<Vec<f32>>,
}

/// diffusers' `_sigma_to_alpha_sigma_t` plus lambda = log(alpha) - log(sigma), in float32.
fn alpha_sigma_lambda(sigma: f32) -> (f32, f32, f32) {
    let alpha_t = 1.0 / (sigma * sigma + 1.0).sqrt();
    let sigma_t = sigma * alpha_t;
    (alpha_t, sigma_t, alpha_t.ln() - sigma_t.ln())
}

impl DpmSolverMultistep {
    pub(crate) fn new(cfg: &SchedulerConfig, use_karras: bool, n: usize) -> Result<Self, SamplerError> {
        let c = cfg.common(&DDPM_DEFAULTS)?;
        cfg.reject_thresholding()?;
        if let Some(v @ ("learned" | "learned_range")) = cfg.variance_type.as_deref() {
            return Err(SamplerError::bad_config("variance_type", format!("{v:?} is not supported")));
        }
        if cfg.use_flow_sigmas == Some(true) {
            return Err(SamplerError::bad_config("use_flow_sigmas", "flow-matching sigmas are not supported"));
        }
        // diffusers maps the UniPC/DEIS solver types onto midpoint.
        let solvers = [("midpoint", false), ("logrho", false), ("bh1", false), ("bh2", false), ("heun", true)];
        let heun = choose("solver_type", cfg.solver_type.as_deref(), false, &solvers)?;
        let final_is_min = cfg.final_sigma_is_min()?;

        let sched = TrainSchedule::new(&c, true);
        let t = c.num_train_timesteps;
        // Timesteps whose lambda falls below lambda_min_clipped are cut from the top.
        let lambda_min = cfg.lambda_min_clipped.unwrap_or(f64::NEG_INFINITY) as f32;
        let lambdas: Vec<f32> = sched.alphas_cumprod.iter().map(|&a| a.sqrt().ln() - (1.0 - a).sqrt().ln()).rev().collect();
        let clipped = lambdas.partition_point(|&l| l < lambda_min);
        let last_timestep = t - clipped;
        let int_ts = timesteps_dpm(c.spacing, t, last_timestep, n, c.steps_offset);

        let train_sigmas = sched.sigmas();
        let (sigmas, timesteps): (Vec<f64>, Vec<f64>) = if use_karras {
            let lo = cfg.sigma_min.unwrap_or(train_sigmas[0] as f64);
            let hi = cfg.sigma_max.unwrap_or(train_sigmas[t - 1] as f64);
            let sigmas = karras(lo, hi, n);
            let log_sigmas = sched.log_sigmas();
            let round = c.beta_schedule != BetaSchedule::SquaredCosCapV2;
            let ts = sigmas
                .iter()
                .map(|&s| {
                    let v = sigma_to_t(s, &log_sigmas);
                    // .round() unless squaredcos_cap_v2, then torch's .to(int64) truncates.
                    (if round { np_round(v) } else { v }).trunc()
                })
                .collect();
            (sigmas, ts)
        } else {
            let ts: Vec<f64> = int_ts.iter().map(|&v| v as f64).collect();
            (interp_sigmas(&ts, &train_sigmas), ts)
        };
        let a0 = sched.alphas_cumprod[0];
        let last = if final_is_min { ((1.0 - a0) / a0).sqrt() } else { 0.0 };
        let sigmas: Vec<f32> = sigmas.iter().map(|&s| s as f32).chain([last]).collect();

        let len = timesteps.len();
        let lower_order_final = cfg.lower_order_final.unwrap_or(true);
        let euler_at_final = cfg.euler_at_final.unwrap_or(false);
        let final_first_order = euler_at_final || (lower_order_final && len < 15) || !final_is_min;
        Ok(DpmSolverMultistep { timesteps, sigmas, prediction: c.prediction, heun, final_first_order, prev_x0: None })
    }

    /// `convert_model_output` for dpmsolver++: the data prediction x0 at sigmas[index].
    fn to_x0(&self, model_output: &[f32], sample: &[f32], index: usize) -> Vec<f32> {
        assert_eq!(model_output.len(), sample.len(), "step: model_output and sample lengths differ");
        let (alpha_t, sigma_t, _) = alpha_sigma_lambda(self.sigmas[index]);
        match self.prediction {
            Prediction::Epsilon => sample.iter().zip(model_output).map(|(&s, &m)| (s - sigma_t * m) / alpha_t).collect(),
            Prediction::Sample => model_output.to_vec(),
            Prediction::V => sample.iter().zip(model_output).map(|(&s, &m)| alpha_t * s - sigma_t * m).collect(),
        }
    }
}

impl Scheduler for DpmSolverMultistep {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }
    /// The first step taken (txt2img or img2img) is first order, as in diffusers.
    fn set_begin_index(&mut self, _begin_index: usize) {
        self.prev_x0 = None;
    }
    fn denoised(&self) -> Option<&[f32]> {
        self.prev_x0.as_deref()
    }
    /// DPM-Solver takes the sample as it is.
    fn scale_model_input(&self, _sample: &mut [f32], _index: usize) {}
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _noise: &mut dyn FnMut(usize) -> Vec<f32>) -> Vec<f32> {
        let x0 = self.to_x0(model_output, sample, index);
        let is_last = index == self.timesteps.len() - 1;
        let prev_x0 = self.prev_x0.replace(x0.clone());
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(self.sigmas[index + 1]);
        let (_, sigma_s0, lambda_s0) = alpha_sigma_lambda(self.sigmas[index]);
        let h = lambda_t - lambda_s0;
        let a = sigma_t / sigma_s0;
        let b = alpha_t * ((-h).exp() - 1.0);
        match prev_x0 {
            Some(m1) if !(is_last && self.final_first_order) => {
                // Second-order multistep update with D1 = (m0 - m1) / r0.
                let (_, _, lambda_s1) = alpha_sigma_lambda(self.sigmas[index - 1]);
                let r0 = (lambda_s0 - lambda_s1) / h;
                let inv_r0 = 1.0 / r0;
                // With h = 0 (final sigma_min equal to the last sigma) diffusers' heun coefficient
                // is 0/0 = NaN; we use its limit, 0 (D1 is 0 there anyway).
                let c1 = match (self.heun, h == 0.0) {
                    (true, true) => 0.0,
                    (true, false) => alpha_t * (((-h).exp() - 1.0) / h + 1.0),
                    (false, _) => 0.5 * b,
                };
                sample
                    .iter()
                    .zip(x0.iter().zip(&m1))
                    .map(|(&s, (&m0, &m1))| {
                        let d1 = inv_r0 * (m0 - m1);
                        if self.heun {
                            a * s - b * m0 + c1 * d1
                        } else {
                            a * s - b * m0 - c1 * d1
                        }
                    })
                    .collect()
            }
            // First-order update (DPM-Solver++ 1 = DDIM in x0 form).
            _ => sample.iter().zip(&x0).map(|(&s, &m0)| a * s - b * m0).collect(),
        }
    }
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        assert_eq!(original.len(), noise.len(), "add_noise: original and noise lengths differ");
        let (alpha_t, sigma_t, _) = alpha_sigma_lambda(self.sigmas[index]);
        original.iter().zip(noise).map(|(&o, &n)| alpha_t * o + sigma_t * n).collect()
    }
    fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}
