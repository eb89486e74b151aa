//! The training noise schedule (betas, alphas_cumprod, sigmas) and the inference timestep
//! spacings, computed with diffusers' dtypes: torch float32 tensors for the schedule, numpy
//! float64 for the spacings.

use super::config::{BetaSchedule, Common, Spacing};
use super::numpy::{np_arange_f64, np_linspace, np_round, torch_linspace_f32};

/// diffusers' `betas_for_alpha_bar`: betas from a continuous alpha_bar(t), capped at 0.999.
fn betas_for_alpha_bar(n: usize, exp: bool) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        if exp {
            (t * -12.0).exp()
        } else {
            ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2)
        }
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// torch.cumprod on a float32 CPU tensor: the running product is kept in float64.
fn cumprod_f32(x: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    x.iter()
        .map(|&v| {
            acc *= v as f64;
            acc as f32
        })
        .collect()
}

/// diffusers' `rescale_zero_terminal_snr` (arXiv 2305.08891, Algorithm 1), in float32.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
    let mut bar_sqrt: Vec<f32> = cumprod_f32(&alphas).iter().map(|a| a.sqrt()).collect();
    let s0 = bar_sqrt[0];
    let st = bar_sqrt[bar_sqrt.len() - 1];
    let scale = s0 / (s0 - st);
    for v in bar_sqrt.iter_mut() {
        *v = (*v - st) * scale;
    }
    let bar: Vec<f32> = bar_sqrt.iter().map(|v| v * v).collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    for i in 1..bar.len() {
        out.push(1.0 - bar[i] / bar[i - 1]);
    }
    out
}

/// The training schedule shared by all samplers.
pub(crate) struct TrainSchedule {
    /// `alphas_cumprod`, float32 like diffusers' tensor.
    pub alphas_cumprod: Vec<f32>,
}

impl TrainSchedule {
    /// Betas → alphas → cumulative products. `zero_snr_last` sets the final alpha_cumprod to
    /// 2^-24 after rescaling, as the Euler, Euler a and DPM++ classes do (DDIM does not).
    pub(crate) fn new(c: &Common, zero_snr_last: bool) -> TrainSchedule {
        let n = c.num_train_timesteps;
        let mut betas = if let Some(b) = &c.trained_betas {
            b.iter().map(|&v| v as f32).collect()
        } else {
            match c.beta_schedule {
                BetaSchedule::Linear => torch_linspace_f32(c.beta_start, c.beta_end, n),
                BetaSchedule::ScaledLinear => torch_linspace_f32(c.beta_start.sqrt(), c.beta_end.sqrt(), n).into_iter().map(|b| b * b).collect(),
                BetaSchedule::SquaredCosCapV2 => betas_for_alpha_bar(n, false),
                BetaSchedule::Exp => betas_for_alpha_bar(n, true),
            }
        };
        if c.rescale_betas_zero_snr {
            betas = rescale_zero_terminal_snr(&betas);
        }
        let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
        let mut alphas_cumprod = cumprod_f32(&alphas);
        if c.rescale_betas_zero_snr && zero_snr_last {
            alphas_cumprod[n - 1] = 2f32.powi(-24);
        }
        TrainSchedule { alphas_cumprod }
    }

    /// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in float32, ascending in t.
    pub(crate) fn sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect()
    }

    /// `np.log(sigmas)` of the float32 table (a float32 result, as numpy gives).
    pub(crate) fn log_sigmas(&self) -> Vec<f32> {
        self.sigmas().iter().map(|s| s.ln()).collect()
    }
}

/// Inference timesteps, descending, spread over the training timesteps as `spacing` says (as
/// diffusers' `set_timesteps` computes them in numpy). Leading and trailing give integers;
/// linspace gives fractional values, which DDIM rounds (`round_linspace`).
fn spaced_timesteps(spacing: Spacing, train: usize, n: usize, steps_offset: i64, round_linspace: bool) -> Vec<f64> {
    match spacing {
        Spacing::Linspace => np_linspace(0.0, (train - 1) as f64, n).iter().rev().map(|&t| if round_linspace { np_round(t) } else { t }).collect(),
        Spacing::Leading => {
            let ratio = train / n;
            (0..n).rev().map(|i| ((i * ratio) as i64 + steps_offset) as f64).collect()
        }
        Spacing::Trailing => np_arange_f64(train as f64, 0.0, -(train as f64 / n as f64)).iter().map(|&t| np_round(t) - 1.0).collect(),
    }
}

/// Timesteps of the sigma-based schedulers (Euler, Euler a, Heun, LMS): float32 values.
pub(crate) fn timesteps_k(spacing: Spacing, train: usize, n: usize, steps_offset: i64) -> Vec<f32> {
    spaced_timesteps(spacing, train, n, steps_offset, false).into_iter().map(|t| t as f32).collect()
}

/// Timesteps of DDIM: integers.
pub(crate) fn timesteps_ddim(spacing: Spacing, train: usize, n: usize, steps_offset: i64) -> Vec<i64> {
    spaced_timesteps(spacing, train, n, steps_offset, true).into_iter().map(|t| t as i64).collect()
}

/// Timesteps of DPM-Solver: integers over `[0, last_timestep)`, with n + 1 points of which the
/// final one (near 0) is dropped for linspace and leading spacing.
pub(crate) fn timesteps_dpm(spacing: Spacing, train: usize, last: usize, n: usize, steps_offset: i64) -> Vec<i64> {
    match spacing {
        Spacing::Linspace => {
            let v = np_linspace(0.0, last as f64 - 1.0, n + 1);
            v.iter().rev().take(n).map(|&t| np_round(t) as i64).collect()
        }
        Spacing::Leading => {
            let ratio = last / (n + 1);
            (1..=n).rev().map(|i| (i * ratio) as i64 + steps_offset).collect()
        }
        Spacing::Trailing => np_arange_f64(last as f64, 0.0, -(train as f64 / n as f64)).iter().map(|&t| np_round(t) as i64 - 1).collect(),
    }
}
