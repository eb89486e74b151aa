//! The estimated GPU cost of a job, in one unit shared by fair queuing (tenants' shares of GPU
//! time), admission limits and metrics. The unit is one UNet evaluation of one SD 1.x image at
//! 512×512 (a 64×64 latent), guidance included:
//!
//! ```text
//! cost = evaluations_per_step(sampler) × steps_run × (latent_width × latent_height / 64²)
//!        × num_images × family_factor
//! ```
//!
//! - `steps_run` is `steps`, or `ceil(steps × strength)` for img2img (the denoising skips the rest);
//! - `evaluations_per_step` is 2 for Heun (a second-order step evaluates the UNet twice), else 1;
//! - the latent is the image size over 8 on each side; a UNet's work grows with its pixels;
//! - `family_factor` is 1 for SD 1.x/2.x and 3 for SDXL (its UNet is about three times as large
//!   per latent pixel: 2.6 B against 0.86 B parameters).
//!
//! The text encoders and the VAE are left out: per image they cost a few UNet steps' worth, the
//! same for every job of a size, and the formula ranks jobs, it does not time them.
use crate::family::Family;
use crate::request::GenerationRequest;
use crate::sampler::{Sampler, SamplerKind};

/// Latent pixels of the unit: SD 1.x at 512×512.
const UNIT_LATENT_PIXELS: f64 = 64.0 * 64.0;

/// The estimated cost of a validated `request` (width, height and strength filled in) on a model
/// of `family`, in UNet evaluations of a 512×512 SD 1.x image.
pub fn job_cost(request: &GenerationRequest, family: Family) -> f64 {
    let per_step = match request.sampler.parse::<Sampler>() {
        Ok(Sampler { kind: SamplerKind::Heun, .. }) => 2.0,
        _ => 1.0,
    };
    let steps = match (request.init_image.is_some(), request.strength) {
        (true, Some(strength)) => (f64::from(request.steps) * f64::from(strength)).ceil().max(1.0),
        _ => f64::from(request.steps),
    };
    let native = match family {
        Family::Sd => 512,
        Family::Sdxl => 1024,
    };
    let latent = |side: Option<u32>| f64::from(side.unwrap_or(native) / 8);
    let pixels = latent(request.width) * latent(request.height) / UNIT_LATENT_PIXELS;
    let family_factor = match family {
        Family::Sd => 1.0,
        Family::Sdxl => 3.0,
    };
    per_step * steps * pixels * f64::from(request.num_images.max(1)) * family_factor
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(steps: u32, size: u32, images: u32, sampler: &str) -> GenerationRequest {
        let mut r = GenerationRequest::new("m", "p");
        (r.steps, r.width, r.height, r.num_images, r.sampler) = (steps, Some(size), Some(size), images, sampler.into());
        r
    }

    #[test]
    fn the_formula() {
        assert_eq!(job_cost(&request(25, 512, 1, "Euler"), Family::Sd), 25.0);
        assert_eq!(job_cost(&request(25, 512, 8, "Euler"), Family::Sd), 200.0);
        assert_eq!(job_cost(&request(25, 1024, 1, "Euler"), Family::Sd), 100.0);
        assert_eq!(job_cost(&request(25, 512, 1, "Heun"), Family::Sd), 50.0);
        assert_eq!(job_cost(&request(25, 1024, 1, "DPM++ 2M Karras"), Family::Sdxl), 300.0);
        let mut img2img = request(20, 512, 1, "Euler");
        (img2img.init_image, img2img.strength) = (Some("x".into()), Some(0.5));
        assert_eq!(job_cost(&img2img, Family::Sd), 10.0);
        assert_eq!(job_cost(&request(20, 64, 1, "Euler"), Family::Sd), 20.0 / 64.0);
    }
}
