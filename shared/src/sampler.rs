//! Sampler names: AUTOMATIC1111 names, k-diffusion aliases and diffusers class names. The API
//! validates names with this; the worker's `sampler` module implements the algorithms.

/// A sampler name we do not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamplerError {
    /// The sampler name is not one we know; `valid` lists the accepted names.
    #[error("unknown sampler {name:?}; valid samplers: {valid}")]
    UnknownSampler { name: String, valid: String },
    /// A1111's `scheduler` field has a value we do not support for this sampler.
    #[error("unsupported scheduler {scheduler:?} for sampler {sampler:?}; supported: {supported}")]
    UnsupportedScheduler { scheduler: String, sampler: String, supported: String },
}

/// The sampling algorithm, one per diffusers scheduler class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SamplerKind {
    Euler,
    EulerAncestral,
    Heun,
    Ddim,
    DpmPp2m,
    Lms,
}

/// A sampler as a user names it: the algorithm plus whether it uses Karras sigmas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sampler {
    pub kind: SamplerKind,
    pub karras: bool,
}

/// Every kind, in the order A1111 lists them.
const KINDS: [SamplerKind; 6] = [SamplerKind::DpmPp2m, SamplerKind::EulerAncestral, SamplerKind::Euler, SamplerKind::Lms, SamplerKind::Heun, SamplerKind::Ddim];

impl SamplerKind {
    /// A1111's name without the " Karras" suffix.
    pub fn a1111_base(self) -> &'static str {
        match self {
            SamplerKind::Euler => "Euler",
            SamplerKind::EulerAncestral => "Euler a",
            SamplerKind::Heun => "Heun",
            SamplerKind::Ddim => "DDIM",
            SamplerKind::DpmPp2m => "DPM++ 2M",
            SamplerKind::Lms => "LMS",
        }
    }

    /// Whether diffusers' class offers `use_karras_sigmas` (Euler a and DDIM do not).
    pub fn supports_karras(self) -> bool {
        !matches!(self, SamplerKind::EulerAncestral | SamplerKind::Ddim)
    }

    fn diffusers_class(self) -> &'static str {
        match self {
            SamplerKind::Euler => "EulerDiscreteScheduler",
            SamplerKind::EulerAncestral => "EulerAncestralDiscreteScheduler",
            SamplerKind::Heun => "HeunDiscreteScheduler",
            SamplerKind::Ddim => "DDIMScheduler",
            SamplerKind::DpmPp2m => "DPMSolverMultistepScheduler",
            SamplerKind::Lms => "LMSDiscreteScheduler",
        }
    }

    /// k-diffusion / legacy A1111 aliases (lowercase), without the Karras variants.
    fn k_aliases(self) -> &'static [&'static str] {
        match self {
            SamplerKind::Euler => &["k_euler"],
            SamplerKind::EulerAncestral => &["k_euler_a", "k_euler_ancestral"],
            SamplerKind::Heun => &["k_heun"],
            SamplerKind::Ddim => &["ddim"],
            SamplerKind::DpmPp2m => &["k_dpmpp_2m"],
            SamplerKind::Lms => &["k_lms"],
        }
    }
}

impl Sampler {
    /// A1111's `scheduler` field: "automatic" keeps the sampler, "karras" selects Karras sigmas.
    pub fn with_scheduler(self, scheduler: &str) -> Result<Sampler, SamplerError> {
        let s = scheduler.trim().to_ascii_lowercase();
        let supported = if self.kind.supports_karras() { "Automatic, Karras" } else { "Automatic" };
        match s.as_str() {
            "automatic" => Ok(self),
            "karras" if self.kind.supports_karras() => Ok(Sampler { karras: true, ..self }),
            _ => Err(SamplerError::UnsupportedScheduler { scheduler: scheduler.to_string(), sampler: self.a1111_name(), supported: supported.to_string() }),
        }
    }

    /// The canonical A1111 name, e.g. "DPM++ 2M Karras".
    pub fn a1111_name(&self) -> String {
        let base = self.kind.a1111_base();
        if self.karras {
            format!("{base} Karras")
        } else {
            base.to_string()
        }
    }

    /// The diffusers scheduler class this sampler reproduces.
    pub fn diffusers_class(&self) -> &'static str {
        self.kind.diffusers_class()
    }

    /// Every canonical A1111 name we accept.
    pub fn names() -> Vec<String> {
        let mut out = Vec::new();
        for kind in KINDS {
            out.push(Sampler { kind, karras: false }.a1111_name());
            if kind.supports_karras() {
                out.push(Sampler { kind, karras: true }.a1111_name());
            }
        }
        out
    }
}

impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.a1111_name())
    }
}

impl std::str::FromStr for Sampler {
    type Err = SamplerError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        // Case-insensitive, surrounding whitespace ignored, inner runs of whitespace collapsed.
        let key = name.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
        for kind in KINDS {
            let base = kind.a1111_base().to_ascii_lowercase();
            let plain = Sampler { kind, karras: false };
            let karras = Sampler { kind, karras: true };
            if key == base || key == kind.diffusers_class().to_ascii_lowercase() {
                return Ok(plain);
            }
            if kind.k_aliases().contains(&key.as_str()) {
                return Ok(plain);
            }
            if kind.supports_karras() {
                if key == format!("{base} karras") {
                    return Ok(karras);
                }
                // A1111's legacy aliases "k_lms_ka", "k_dpmpp_2m_ka"; also "k_euler_karras" etc.
                for alias in kind.k_aliases() {
                    if key == format!("{alias}_ka") || key == format!("{alias}_karras") {
                        return Ok(karras);
                    }
                }
            }
        }
        Err(SamplerError::UnknownSampler { name: name.to_string(), valid: Sampler::names().join(", ") })
    }
}
