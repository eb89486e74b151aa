//! Model families: one type for the store (the catalog's `family` column), the API (bounds,
//! dialect defaults, the catalog view) and the worker (which pipeline a model needs).
use serde::{Deserialize, Serialize};

/// The model families we run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Stable Diffusion 1.x and 2.x: one CLIP text encoder.
    Sd,
    /// Stable Diffusion XL: two text encoders, pooled embeddings and time ids.
    Sdxl,
}

impl Family {
    /// The name stored in the catalog and shown by the API.
    pub fn name(self) -> &'static str {
        match self {
            Family::Sd => "sd",
            Family::Sdxl => "sdxl",
        }
    }

    /// The width and height range of the family, in pixels (both multiples of 8).
    pub fn size_range(self) -> (u32, u32) {
        match self {
            Family::Sd => (64, 1024),
            Family::Sdxl => (64, 2048),
        }
    }

    /// diffusers' default guidance scale for the family's pipelines.
    pub fn default_guidance_scale(self) -> f32 {
        match self {
            Family::Sd => 7.5,
            Family::Sdxl => 5.0,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A family name the catalog does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown model family {0:?} (expected sd or sdxl)")]
pub struct UnknownFamily(pub String);

impl std::str::FromStr for Family {
    type Err = UnknownFamily;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sd" => Ok(Family::Sd),
            "sdxl" => Ok(Family::Sdxl),
            other => Err(UnknownFamily(other.to_string())),
        }
    }
}

/// For reading the catalog's text column (`#[sqlx(try_from = "String")]`).
impl TryFrom<String> for Family {
    type Error = UnknownFamily;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in [Family::Sd, Family::Sdxl] {
            assert_eq!(f.name().parse::<Family>(), Ok(f));
            assert_eq!(serde_json::to_value(f).ok(), Some(serde_json::Value::String(f.name().into())));
        }
        assert!("sd3".parse::<Family>().is_err());
    }
}
