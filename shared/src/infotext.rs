//! AUTOMATIC1111's "infotext": the generation parameters as one human-readable text, stored in
//! PNG `parameters` chunks and returned by the A1111 dialect.
use crate::request::{defaults, GenerationRequest};

/// What an infotext records about one image.
#[derive(Clone, Debug)]
pub struct Infotext<'a> {
    pub prompt: &'a str,
    pub negative_prompt: Option<&'a str>,
    pub steps: u32,
    pub sampler: &'a str,
    pub guidance_scale: f32,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub model: &'a str,
    /// The model's short hash (`Model hash:`), when known.
    pub model_hash: Option<&'a str>,
    /// img2img only.
    pub denoising_strength: Option<f32>,
}

impl<'a> Infotext<'a> {
    /// The infotext of one image of `req`: the image's seed, its size (width, height) and the
    /// model's name as it should read. `req` is the request as validated
    /// (`validate::validate`), so its sampler has its canonical name; img2img's denoising
    /// strength is the request's, or the default when it has an init image without one.
    pub fn new(req: &'a GenerationRequest, seed: u64, (width, height): (u32, u32), model: &'a str) -> Self {
        Infotext {
            prompt: &req.prompt,
            negative_prompt: req.negative_prompt.as_deref(),
            steps: req.steps,
            sampler: &req.sampler,
            guidance_scale: req.guidance_scale,
            seed,
            width,
            height,
            model,
            model_hash: None,
            denoising_strength: req.strength.or_else(|| req.init_image.as_ref().map(|_| defaults::STRENGTH)),
        }
    }

    /// With the model's hash, as AUTOMATIC1111 writes it (`Model hash: `, its 10-digit short
    /// form) before the model's name; the full sha256 is shortened here.
    pub fn with_model_hash(self, sha256: Option<&'a str>) -> Self {
        Infotext { model_hash: sha256.map(short_hash), ..self }
    }
}

/// AUTOMATIC1111's short model hash: the first 10 hex digits of the sha256.
pub fn short_hash(sha256: &str) -> &str {
    sha256.get(..10).unwrap_or(sha256)
}

impl std::fmt::Display for Infotext<'_> {
    /// `<prompt>\nNegative prompt: <negative>\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, Model: m`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.prompt)?;
        if let Some(neg) = self.negative_prompt.filter(|n| !n.is_empty()) {
            write!(f, "\nNegative prompt: {neg}")?;
        }
        write!(
            f,
            "\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {}, Size: {}x{}",
            self.steps, self.sampler, self.guidance_scale, self.seed, self.width, self.height
        )?;
        if let Some(h) = self.model_hash {
            write!(f, ", Model hash: {h}")?;
        }
        write!(f, ", Model: {}", self.model)?;
        if let Some(s) = self.denoising_strength {
            write!(f, ", Denoising strength: {s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_a1111() {
        let t = Infotext {
            prompt: "a cat",
            negative_prompt: Some("blurry"),
            steps: 20,
            sampler: "DPM++ 2M Karras",
            guidance_scale: 7.0,
            seed: 42,
            width: 512,
            height: 768,
            model: "sd15",
            model_hash: None,
            denoising_strength: None,
        };
        assert_eq!(t.to_string(), "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model: sd15");
        let t = Infotext { negative_prompt: None, guidance_scale: 7.5, denoising_strength: Some(0.6), ..t };
        assert!(t.to_string().starts_with("a cat\nSteps: 20"));
        assert!(t.to_string().ends_with("CFG scale: 7.5, Seed: 42, Size: 512x768, Model: sd15, Denoising strength: 0.6"));
    }

    #[test]
    fn built_from_the_request() {
        let mut req = GenerationRequest::new("sd15", "a cat");
        req.negative_prompt = Some("blurry".into());
        req.steps = 20;
        req.sampler = "DPM++ 2M Karras".into();
        req.guidance_scale = 7.0;
        let t = Infotext::new(&req, 42, (512, 768), "sd15");
        assert_eq!(t.to_string(), "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model: sd15");
        let hashed = Infotext::new(&req, 42, (512, 768), "sd15").with_model_hash(Some("364658c7310c9b8b1dcf0bf9c1d2c46a0d2c1f0e8b7f2d0e1c3a5b7d9f1e3a5c"));
        assert!(hashed.to_string().ends_with("Size: 512x768, Model hash: 364658c731, Model: sd15"), "{hashed}");
        req.init_image = Some("aGk=".into());
        assert!(Infotext::new(&req, 42, (512, 768), "sd15").to_string().ends_with("Model: sd15, Denoising strength: 0.8"));
        req.strength = Some(0.6);
        assert!(Infotext::new(&req, 42, (512, 768), "sd15").to_string().ends_with("Model: sd15, Denoising strength: 0.6"));
    }
}
