//! `scheduler_config.json` and diffusers' `from_config` semantics.
//!
//! A model ships a config written for *some* scheduler class (PNDM for SD 1.5, Euler for SDXL,
//! ...). diffusers' `Target.from_config(config)` takes the keys present in the file and the
//! target class's own defaults for keys absent; keys listed in `_use_default_values` count as
//! absent (they were defaults of the class that wrote the file). [`SchedulerConfig`] keeps
//! every key as an `Option`; [`Defaults`] holds one class's defaults and [`SchedulerConfig::common`]
//! merges the two into the settings every sampler shares.

use serde::{Deserialize, Deserializer};

use super::SamplerError;

/// The keys of a diffusers `scheduler_config.json` that our samplers read; unknown keys are ignored.
/// `None` means "absent from the file" (JSON `null` counts as absent too).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// The class the file was written for (informational only).
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    #[serde(deserialize_with = "de_usize")]
    pub num_train_timesteps: Option<usize>,
    #[serde(deserialize_with = "de_f64")]
    pub beta_start: Option<f64>,
    #[serde(deserialize_with = "de_f64")]
    pub beta_end: Option<f64>,
    /// "linear", "scaled_linear", "squaredcos_cap_v2" (and "exp" for Heun).
    pub beta_schedule: Option<String>,
    pub trained_betas: Option<Vec<f64>>,
    /// "epsilon", "v_prediction" or "sample".
    pub prediction_type: Option<String>,
    /// "linspace", "leading" or "trailing".
    pub timestep_spacing: Option<String>,
    #[serde(deserialize_with = "de_i64")]
    pub steps_offset: Option<i64>,
    /// DDIM: whether the final step goes to alpha_cumprod = 1.
    pub set_alpha_to_one: Option<bool>,
    /// DDIM, Heun: clamp the predicted x0 to ±clip_sample_range.
    pub clip_sample: Option<bool>,
    #[serde(deserialize_with = "de_f64")]
    pub clip_sample_range: Option<f64>,
    /// Euler: "linear" or "log_linear".
    pub interpolation_type: Option<String>,
    /// Euler, Euler a, DDIM, DPM++: rescale betas to zero terminal SNR.
    pub rescale_betas_zero_snr: Option<bool>,
    /// Euler, DPM++: "zero" or "sigma_min".
    pub final_sigmas_type: Option<String>,
    /// Karras range overrides (Euler, Heun, DPM++; LMS ignores them like diffusers).
    #[serde(deserialize_with = "de_f64")]
    pub sigma_min: Option<f64>,
    #[serde(deserialize_with = "de_f64")]
    pub sigma_max: Option<f64>,
    /// Euler: "discrete" or "continuous" (continuous with v_prediction: t = 0.25·ln σ).
    pub timestep_type: Option<String>,
    /// DDIM, DPM++: dynamic thresholding (pixel-space models only; rejected here).
    pub thresholding: Option<bool>,
    /// DPM++: "midpoint" or "heun".
    pub solver_type: Option<String>,
    /// DPM++: use lower-order steps at the end when there are fewer than 15 steps.
    pub lower_order_final: Option<bool>,
    /// DPM++: always make the last step first order.
    pub euler_at_final: Option<bool>,
    /// DPM++: clip timesteps whose lambda is below this (JSON may say `-Infinity`).
    #[serde(deserialize_with = "de_f64")]
    pub lambda_min_clipped: Option<f64>,
    /// DPM++: "learned"/"learned_range" are not supported.
    pub variance_type: Option<String>,
    /// DPM++: flow-matching sigmas are not supported.
    pub use_flow_sigmas: Option<bool>,
    /// Informational: the chosen [`super::Sampler`] decides Karras, order and algorithm.
    pub use_karras_sigmas: Option<bool>,
    #[serde(deserialize_with = "de_usize")]
    pub solver_order: Option<usize>,
    pub algorithm_type: Option<String>,
}

impl SchedulerConfig {
    /// Reads a diffusers `scheduler_config.json`.
    pub fn from_file(path: &std::path::Path) -> Result<Self, SamplerError> {
        let text = std::fs::read_to_string(path).map_err(|source| SamplerError::Io { path: path.display().to_string(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses the text of a `scheduler_config.json`.
    pub fn from_json_str(text: &str) -> Result<Self, SamplerError> {
        Self::parse(text, "<string>")
    }

    fn parse(text: &str, origin: &str) -> Result<Self, SamplerError> {
        let json_err = |source| SamplerError::Json { origin: origin.to_string(), source };
        // Python's json writes float('-inf') as -Infinity (DPM's lambda_min_clipped default).
        let text = quote_nonfinite(text);
        let mut value: serde_json::Value = serde_json::from_str(&text).map_err(json_err)?;
        if let Some(obj) = value.as_object_mut() {
            // Keys the writing class left at its defaults: the target class's defaults apply.
            if let Some(serde_json::Value::Array(keys)) = obj.remove("_use_default_values") {
                for key in keys.iter().filter_map(|k| k.as_str()) {
                    obj.remove(key);
                }
            }
        }
        serde_json::from_value(value).map_err(json_err)
    }
}

/// Beta schedule of the training noise process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BetaSchedule {
    Linear,
    ScaledLinear,
    SquaredCosCapV2,
    /// `betas_for_alpha_bar(alpha_transform_type="exp")`, Heun only.
    Exp,
}

/// What the model predicts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Prediction {
    /// The added noise ("epsilon").
    Epsilon,
    /// The velocity alpha·eps − sigma·x0 ("v_prediction").
    V,
    /// The clean sample x0 ("sample").
    Sample,
}

/// How inference timesteps are spread over the training timesteps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Spacing {
    Linspace,
    Leading,
    Trailing,
}

/// One diffusers class's constructor defaults for the shared keys.
pub(crate) struct Defaults {
    pub beta_start: f64,
    pub beta_end: f64,
    pub spacing: Spacing,
    /// Whether the class has `rescale_betas_zero_snr` (Heun and LMS do not: the key is ignored).
    pub has_rescale: bool,
    /// Whether the class accepts beta_schedule "exp" (Heun only).
    pub has_exp_schedule: bool,
}

/// The "DDPM family" defaults (Euler, Euler a, DDIM, DPM++, LMS): 0.0001..0.02 linear, linspace.
pub(crate) const DDPM_DEFAULTS: Defaults =
    Defaults { beta_start: 0.0001, beta_end: 0.02, spacing: Spacing::Linspace, has_rescale: true, has_exp_schedule: false };

/// Settings every sampler shares, after merging the file with the class defaults.
#[derive(Clone, Debug)]
pub(crate) struct Common {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction: Prediction,
    pub spacing: Spacing,
    pub steps_offset: i64,
    pub rescale_betas_zero_snr: bool,
}

impl SchedulerConfig {
    /// Merges the shared keys with a class's defaults (`beta_schedule` defaults to "linear" and
    /// `prediction_type` to "epsilon" in every class).
    pub(crate) fn common(&self, d: &Defaults) -> Result<Common, SamplerError> {
        let num_train_timesteps = self.num_train_timesteps.unwrap_or(1000);
        if num_train_timesteps < 2 {
            return Err(SamplerError::bad_config("num_train_timesteps", "must be at least 2"));
        }
        let mut schedules =
            vec![("linear", BetaSchedule::Linear), ("scaled_linear", BetaSchedule::ScaledLinear), ("squaredcos_cap_v2", BetaSchedule::SquaredCosCapV2)];
        if d.has_exp_schedule {
            schedules.push(("exp", BetaSchedule::Exp));
        }
        let beta_schedule = choose("beta_schedule", self.beta_schedule.as_deref(), BetaSchedule::Linear, &schedules)?;
        let trained_betas = self.trained_betas.clone();
        if let Some(b) = &trained_betas {
            if b.len() != num_train_timesteps {
                return Err(SamplerError::bad_config("trained_betas", format!("has {} values but num_train_timesteps is {num_train_timesteps}", b.len())));
            }
        }
        Ok(Common {
            num_train_timesteps,
            beta_start: self.beta_start.unwrap_or(d.beta_start),
            beta_end: self.beta_end.unwrap_or(d.beta_end),
            beta_schedule,
            trained_betas,
            prediction: self.prediction(false)?,
            spacing: self.spacing(d.spacing)?,
            steps_offset: self.steps_offset.unwrap_or(0),
            rescale_betas_zero_snr: d.has_rescale && self.rescale_betas_zero_snr.unwrap_or(false),
        })
    }

    /// `prediction_type`; Euler also accepts "original_sample" as "sample".
    pub(crate) fn prediction(&self, allow_original_sample: bool) -> Result<Prediction, SamplerError> {
        let mut choices = vec![("epsilon", Prediction::Epsilon), ("v_prediction", Prediction::V), ("sample", Prediction::Sample)];
        if allow_original_sample {
            choices.push(("original_sample", Prediction::Sample));
        }
        choose("prediction_type", self.prediction_type.as_deref(), Prediction::Epsilon, &choices)
    }

    fn spacing(&self, default: Spacing) -> Result<Spacing, SamplerError> {
        let choices = [("linspace", Spacing::Linspace), ("leading", Spacing::Leading), ("trailing", Spacing::Trailing)];
        choose("timestep_spacing", self.timestep_spacing.as_deref(), default, &choices)
    }

    /// `final_sigmas_type`: true for "sigma_min", false for "zero" (the default).
    pub(crate) fn final_sigma_is_min(&self) -> Result<bool, SamplerError> {
        choose("final_sigmas_type", self.final_sigmas_type.as_deref(), false, &[("zero", false), ("sigma_min", true)])
    }

    /// Rejects `thresholding: true` (needs per-image quantiles; only pixel-space models use it).
    pub(crate) fn reject_thresholding(&self) -> Result<(), SamplerError> {
        if self.thresholding == Some(true) {
            return Err(SamplerError::bad_config("thresholding", "dynamic thresholding is not supported"));
        }
        Ok(())
    }
}

/// Replaces the bare tokens `NaN`, `Infinity` and `-Infinity` that Python's json writes (outside
/// strings) with the strings "NaN", "Infinity", "-Infinity", which [`de_f64`] accepts.
fn quote_nonfinite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        let token = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push('"');
            out.push_str(t);
            out.push('"');
            rest = &rest[t.len()..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// A JSON number, or one of the strings [`quote_nonfinite`] produces.
#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    Float(f64),
    Text(String),
}

fn de_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<Num>::deserialize(d)? {
        None => Ok(None),
        Some(Num::Float(x)) => Ok(Some(x)),
        Some(Num::Text(s)) => match s.as_str() {
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "NaN" => Ok(Some(f64::NAN)),
            _ => Err(serde::de::Error::custom(format!("expected a number, got {s:?}"))),
        },
    }
}

/// An integer that Python may have written as `1000` or `1000.0`.
fn de_integral<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match de_f64(d)? {
        Some(x) if x.fract() != 0.0 || !x.is_finite() => Err(serde::de::Error::custom(format!("expected an integer, got {x}"))),
        other => Ok(other),
    }
}

fn de_usize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    match de_integral(d)? {
        Some(x) if x < 0.0 => Err(serde::de::Error::custom(format!("expected a non-negative integer, got {x}"))),
        other => Ok(other.map(|x| x as usize)),
    }
}

fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(de_integral(d)?.map(|x| x as i64))
}

/// The value a string config `key` selects among `choices` (`default` when the key is absent);
/// any other value is a `BadConfig` error listing the accepted ones.
pub(crate) fn choose<T: Copy>(key: &str, value: Option<&str>, default: T, choices: &[(&str, T)]) -> Result<T, SamplerError> {
    let Some(value) = value else { return Ok(default) };
    choices.iter().find(|(name, _)| *name == value).map(|&(_, v)| v).ok_or_else(|| {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        SamplerError::bad_config(key, format!("{value:?} is not one of {}", names.join(", ")))
    })
}
