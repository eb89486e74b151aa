//! Pieces shared by the sigma-space samplers (Euler, Euler a, Heun, LMS), which diffusers
//! writes in k-diffusion's variance-exploding form: x = x0 + sigma * eps.

use super::config::{Prediction, Spacing};

/// diffusers' `init_noise_sigma` for these classes: the largest sigma for linspace and trailing
/// spacing, `sqrt(max^2 + 1)` for leading spacing (float32 tensor math).
pub(crate) fn init_noise_sigma(sigmas: &[f32], spacing: Spacing) -> f32 {
    let max = sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    match spacing {
        Spacing::Linspace | Spacing::Trailing => max,
        Spacing::Leading => (max * max + 1.0).sqrt(),
    }
}

/// `sample / (sigma**2 + 1) ** 0.5`, in place.
pub(crate) fn scale_input(sample: &mut [f32], sigma: f32) {
    let d = (sigma * sigma + 1.0).sqrt();
    for x in sample.iter_mut() {
        *x /= d;
    }
}

/// `original + noise * sigma`.
pub(crate) fn add_noise(original: &[f32], noise: &[f32], sigma: f32) -> Vec<f32> {
    assert_eq!(original.len(), noise.len(), "add_noise: original and noise lengths differ");
    original.iter().zip(noise).map(|(&o, &n)| o + n * sigma).collect()
}

/// The denoised prediction x0 from the model output at noise level `sigma`.
pub(crate) fn pred_original(prediction: Prediction, model_output: &[f32], sample: &[f32], sigma: f32) -> Vec<f32> {
    assert_eq!(model_output.len(), sample.len(), "step: model_output and sample lengths differ");
    match prediction {
        Prediction::Epsilon => sample.iter().zip(model_output).map(|(&s, &m)| s - sigma * m).collect(),
        Prediction::V => {
            let c2 = sigma * sigma + 1.0;
            let c_out = -sigma / c2.sqrt();
            sample.iter().zip(model_output).map(|(&s, &m)| m * c_out + s / c2).collect()
        }
        Prediction::Sample => model_output.to_vec(),
    }
}

/// `(sample - pred_original) / sigma`: the ODE derivative dx/dsigma.
pub(crate) fn derivative(sample: &[f32], pred_original: &[f32], sigma: f32) -> Vec<f32> {
    sample.iter().zip(pred_original).map(|(&s, &p)| (s - p) / sigma).collect()
}

/// `sample + derivative * dt`.
pub(crate) fn euler_update(sample: &[f32], derivative: &[f32], dt: f32) -> Vec<f32> {
    sample.iter().zip(derivative).map(|(&s, &d)| s + d * dt).collect()
}
