//! Sigma schedules: interpolation at the inference timesteps, Karras et al. (2022) sigmas and the
//! inverse map from a sigma back to a (fractional) training timestep.

use super::numpy::{np_interp_index, np_linspace};

/// `np.interp(timesteps, arange(len(sigmas)), sigmas)`: the training sigma at each (possibly
/// fractional) timestep, in float64.
pub(crate) fn interp_sigmas(timesteps: &[f64], train_sigmas: &[f32]) -> Vec<f64> {
    timesteps.iter().map(|&t| np_interp_index(t, train_sigmas)).collect()
}

/// diffusers' `_convert_to_karras`: n sigmas from sigma_max down to sigma_min, evenly spaced in
/// sigma^(1/7), in float64.
pub(crate) fn karras(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0f64;
    let min_inv_rho = sigma_min.powf(1.0 / rho);
    let max_inv_rho = sigma_max.powf(1.0 / rho);
    np_linspace(0.0, 1.0, n).iter().map(|&r| (max_inv_rho + r * (min_inv_rho - max_inv_rho)).powf(rho)).collect()
}

/// diffusers' `_sigma_to_t`: the fractional training timestep whose sigma is `sigma`, by linear
/// interpolation in log-sigma. `log_sigmas` is numpy's float32 `np.log(sigmas)`; the distances
/// are float64 but the bracket width `low - high` is a float32 difference, as in numpy.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    // cumsum(dists >= 0).argmax(): the last index with log_sigmas[i] <= log_sigma, or 0.
    let low_idx = log_sigmas.iter().rposition(|&l| log_sigma - l as f64 >= 0.0).unwrap_or(0).min(n - 2);
    let high_idx = low_idx + 1;
    let low = log_sigmas[low_idx];
    let high = log_sigmas[high_idx];
    let w = ((low as f64 - log_sigma) / (low - high) as f64).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * high_idx as f64
}
