//! LMS: diffusers' `LMSDiscreteScheduler`, a linear multistep method of order 4 in sigma. The
//! coefficients integrate the Lagrange basis polynomials through the last `order` sigmas over
//! [sigma_t, sigma_{t+1}]; diffusers uses scipy's adaptive quadrature, we integrate exactly
//! with Gauss–Legendre (the integrand is a polynomial of degree < 4).

use std::collections::VecDeque;

use super::config::{Defaults, Prediction, SchedulerConfig, DDPM_DEFAULTS};
use super::kdiff;
use super::schedule::{timesteps_k, TrainSchedule};
use super::sigmas::{interp_sigmas, karras, sigma_to_t};
use super::{SamplerError, Scheduler};

/// diffusers' `step(order=4)` default.
const LMS_ORDER: usize = 4;

/// LMSDiscreteScheduler has no rescale_betas_zero_snr.
const LMS_DEFAULTS: Defaults = Defaults { has_rescale: false, ..DDPM_DEFAULTS };

pub(crate) struct Lms {
    timesteps: Vec<f64>,
    /// One sigma per timestep plus a final 0.
    sigmas: Vec<f32>,
    init_noise_sigma: f32,
    prediction: Prediction,
    /// The most recent derivatives, newest last (at most LMS_ORDER).
    derivatives: VecDeque<Vec<f32>>,
    /// The latest step's x0 prediction.
    denoised: Vec<f32>,
}

/// 3-point Gauss–Legendre nodes and weights on [-1, 1]: exact for polynomials of degree ≤ 5.
const GL_NODES: [f64; 3] = [-0.774_596_669_241_483_4, 0.0, 0.774_596_669_241_483_4];
const GL_WEIGHTS: [f64; 3] = [5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0];

impl Lms {
    pub(crate) fn new(cfg: &SchedulerConfig, use_karras: bool, n: usize) -> Result<Self, SamplerError> {
        let c = cfg.common(&LMS_DEFAULTS)?;
        let sched = TrainSchedule::new(&c, false);
        let ts = timesteps_k(c.spacing, c.num_train_timesteps, n, c.steps_offset);
        let mut timesteps: Vec<f64> = ts.iter().map(|&v| v as f64).collect();
        let mut sigmas = interp_sigmas(&timesteps, &sched.sigmas());
        if use_karras {
            // Unlike Euler, LMS's Karras range ignores config sigma_min/sigma_max.
            sigmas = karras(sigmas[sigmas.len() - 1], sigmas[0], n);
            let log_sigmas = sched.log_sigmas();
            timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas) as f32 as f64).collect();
        }
        let sigmas: Vec<f32> = sigmas.iter().map(|&s| s as f32).chain([0.0]).collect();
        let init_noise_sigma = kdiff::init_noise_sigma(&sigmas, c.spacing);
        Ok(Lms { timesteps, sigmas, init_noise_sigma, prediction: c.prediction, derivatives: VecDeque::new(), denoised: Vec::new() })
    }

    /// `get_lms_coefficient(order, t, current_order)`: ∫ over [σ_t, σ_{t+1}] of the Lagrange
    /// basis polynomial that is 1 at σ_{t-current} and 0 at the other σ_{t-k}, k < order.
    fn coefficient(&self, order: usize, t: usize, current: usize) -> f64 {
        let s = |i: usize| self.sigmas[i] as f64;
        let basis = |tau: f64| (0..order).filter(|&k| k != current).map(|k| (tau - s(t - k)) / (s(t - current) - s(t - k))).product::<f64>();
        let (a, b) = (s(t), s(t + 1));
        let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
        half * GL_NODES.iter().zip(GL_WEIGHTS).map(|(&x, w)| w * basis(mid + half * x)).sum::<f64>()
    }
}

impl Scheduler for Lms {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f32 {
        self.init_noise_sigma
    }
    /// Forgets earlier derivatives (diffusers starts with none after set_timesteps).
    fn set_begin_index(&mut self, _begin_index: usize) {
        self.derivatives.clear();
    }
    fn step(&mut self, model_output: &[f32], index: usize, sample: &[f32], _noise: &mut dyn FnMut(usize) -> Vec<f32>) -> Vec<f32> {
        let sigma = self.sigmas[index];
        let pred = kdiff::pred_original(self.prediction, model_output, sample, sigma);
        self.derivatives.push_back(kdiff::derivative(sample, &pred, sigma));
        self.denoised = pred;
        if self.derivatives.len() > LMS_ORDER {
            self.derivatives.pop_front();
        }
        // diffusers picks the order from the step index, not from the derivatives it has: after
        // set_begin_index(k > 0) the coefficients are those of order min(k + 1, 4) but only the
        // derivatives available are used (zip truncates).
        let order = (index + 1).min(LMS_ORDER);
        let mut acc: Option<Vec<f32>> = None;
        for (k, d) in (0..order).zip(self.derivatives.iter().rev()) {
            let coeff = self.coefficient(order, index, k) as f32;
            match acc.as_mut() {
                None => acc = Some(d.iter().map(|&v| coeff * v).collect()),
                Some(a) => a.iter_mut().zip(d).for_each(|(x, &v)| *x += coeff * v),
            }
        }
        let acc = acc.expect("at least one derivative");
        sample.iter().zip(&acc).map(|(&s, &a)| s + a).collect()
    }
    fn denoised(&self) -> Option<&[f32]> {
        Some(&self.denoised)
    }
    fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}
