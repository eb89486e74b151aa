//! The canonical generation request: every dialect the API speaks is translated into this
//! one shape, and it is what a worker receives.
use serde::{Deserialize, Serialize};

/// Image encodings a job can ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Png,
    #[serde(alias = "jpg")]
    Jpeg,
    Webp,
}

impl OutputFormat {
    /// The MIME type of images in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
        }
    }

    /// Parse a format name (`png`, `jpeg`/`jpg`, `webp`), case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "png" => Some(OutputFormat::Png),
            "jpeg" | "jpg" => Some(OutputFormat::Jpeg),
            "webp" => Some(OutputFormat::Webp),
            _ => None,
        }
    }
}

/// Defaults applied when a request leaves a field out.
pub mod defaults {
    pub const STEPS: u32 = 25;
    pub const GUIDANCE_SCALE: f32 = 7.5;
    pub const SAMPLER: &str = "Euler";
    pub const NUM_IMAGES: u32 = 1;
    /// img2img strength when an init image is given without one.
    pub const STRENGTH: f32 = 0.8;
}

/// One generation job, as JSON: `{"model", "prompt", "negative_prompt", "width", "height",
/// "steps", "guidance_scale", "sampler", "seed", "num_images", "init_image", "strength",
/// "output_format", "preview_every"}`. Only `model` and `prompt` are required; `width`/`height` default to the
/// model family's native size and `seed` to a random one (resolved before the job runs, so the
/// stored request always says which seed made the image). Unknown fields are rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "model": "tiny-sd15", "prompt": "a photo of an astronaut riding a horse on mars",
    "width": 64, "height": 64, "steps": 20, "seed": 42
})))]
#[serde(deny_unknown_fields)]
pub struct GenerationRequest {
    /// A catalog model id (`GET /v1/models`).
    #[cfg_attr(feature = "openapi", schema(example = "tiny-sd15"))]
    pub model: String,
    /// What to draw: at most 4000 characters, no NUL character.
    #[cfg_attr(feature = "openapi", schema(max_length = 4000))]
    pub prompt: String,
    /// What not to draw: at most 4000 characters, no NUL character.
    #[cfg_attr(feature = "openapi", schema(max_length = 4000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Pixels, a multiple of the model's `size_multiple` (`GET /v1/models`; 64 for SD 1.x/2.x,
    /// 32 for SDXL): 64 to 1024 for SD 1.x/2.x models, to 2048 for SDXL. Default:
    /// the model's native size.
    #[cfg_attr(feature = "openapi", schema(minimum = 64, maximum = 2048, multiple_of = 8))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Pixels, as `width`.
    #[cfg_attr(feature = "openapi", schema(minimum = 64, maximum = 2048, multiple_of = 8))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Denoising steps.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 150, default = 25))]
    #[serde(default = "default_steps")]
    pub steps: u32,
    /// Classifier-free guidance scale (off at 1 or below).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 30, default = 7.5))]
    #[serde(default = "default_guidance")]
    pub guidance_scale: f32,
    /// An AUTOMATIC1111 sampler name or diffusers scheduler class, case-insensitive (`Euler`,
    /// `Euler a`, `Heun`, `DDIM`, `DPM++ 2M`, `LMS`, their ` Karras` variants,
    /// `DPMSolverMultistepScheduler`...).
    #[cfg_attr(feature = "openapi", schema(default = "Euler", example = "DPM++ 2M Karras"))]
    #[serde(default = "default_sampler")]
    pub sampler: String,
    /// Image *i* uses seed + *i*. Default: random (and reported).
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807_u64))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// How many images.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 8, default = 1))]
    #[serde(default = "default_num_images")]
    pub num_images: u32,
    /// Base64 of a PNG, JPEG or WebP image (a `data:` URI prefix is accepted): img2img.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_image: Option<String>,
    /// img2img: how much of the init image is re-noised, in (0, 1]; default 0.8 with an
    /// `init_image`, refused without one.
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0, maximum = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f32>,
    /// The images' encoding (`jpg` is read as `jpeg`).
    #[serde(default)]
    pub output_format: OutputFormat,
    /// Live previews: every this many steps (counted as the job's progress counts them) the
    /// worker makes a small preview of the denoised image (one pixel per 8×8 pixels, PNG; a
    /// cheap linear approximation, not a VAE decode), recorded as a `preview` event of the job.
    /// 0 to `steps`; absent or 0: no previews (the default).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 150, example = 5))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_every: Option<u32>,
    /// How the prompts are read. `plain` (the default): literally, as diffusers reads them, and
    /// cut after 75 tokens. `a1111`: AUTOMATIC1111's syntax: `(word)` weighs a word 1.1 times
    /// more, `[word]` 1.1 times less, `(word:1.3)` 1.3 times; `\(` and `\[` are literal brackets;
    /// `BREAK` starts a new chunk; and prompts of any length are read in chunks of 75 tokens.
    /// The AUTOMATIC1111 dialect always reads prompts as `a1111`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_syntax: Option<PromptSyntax>,
    /// An `http` or `https` URL to call when the job starts or ends (see `webhook_events`),
    /// signed per the Standard Webhooks spec with the tenant's webhook secret
    /// (`darkroom-api tenant webhook-secret NAME`). At most 2048 characters, no credentials;
    /// hosts in private, loopback or link-local ranges are refused. Native API only.
    #[cfg_attr(feature = "openapi", schema(max_length = 2048, example = "https://example.com/hooks/darkroom"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Which events call the `webhook`: `started` (the job began running) and `completed` (it
    /// succeeded, failed or was canceled). Default with a `webhook`: `["completed"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_events: Option<Vec<WebhookEvent>>,
}

/// How a request's prompts are read (see `GenerationRequest::prompt_syntax`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PromptSyntax {
    /// Literal text, cut after 75 tokens: diffusers' reading.
    #[default]
    Plain,
    /// AUTOMATIC1111's attention syntax, `BREAK` and long prompts.
    A1111,
}

/// An event a job's `webhook` can be called for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WebhookEvent {
    /// The job began running (once, even when a worker's death makes it run again).
    Started,
    /// The job ended: succeeded, failed or canceled.
    Completed,
}

impl WebhookEvent {
    /// The word the request and the outbox use.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Started => "started",
            WebhookEvent::Completed => "completed",
        }
    }
}

fn default_steps() -> u32 {
    defaults::STEPS
}
fn default_guidance() -> f32 {
    defaults::GUIDANCE_SCALE
}
fn default_sampler() -> String {
    defaults::SAMPLER.to_string()
}
fn default_num_images() -> u32 {
    defaults::NUM_IMAGES
}

impl GenerationRequest {
    /// A request with every optional field at its default.
    pub fn new(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        GenerationRequest {
            model: model.into(),
            prompt: prompt.into(),
            negative_prompt: None,
            width: None,
            height: None,
            steps: defaults::STEPS,
            guidance_scale: defaults::GUIDANCE_SCALE,
            sampler: defaults::SAMPLER.to_string(),
            seed: None,
            num_images: defaults::NUM_IMAGES,
            init_image: None,
            strength: None,
            output_format: OutputFormat::Png,
            preview_every: None,
            prompt_syntax: None,
            webhook: None,
            webhook_events: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_json_gets_defaults() {
        let r: GenerationRequest = serde_json::from_str(r#"{"model":"sd15","prompt":"a cat"}"#).unwrap();
        assert_eq!(r, GenerationRequest::new("sd15", "a cat"));
    }

    #[test]
    fn all_fields_round_trip() {
        let json = r#"{"model":"m","prompt":"p","negative_prompt":"n","width":512,"height":768,"steps":30,
            "guidance_scale":5.0,"sampler":"DPM++ 2M Karras","seed":7,"num_images":2,
            "init_image":"aGk=","strength":0.5,"output_format":"jpg","preview_every":5}"#;
        let r: GenerationRequest = serde_json::from_str(json).unwrap();
        assert_eq!(r.output_format, OutputFormat::Jpeg);
        assert_eq!((r.width, r.height, r.seed, r.strength), (Some(512), Some(768), Some(7), Some(0.5)));
        let back: GenerationRequest = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    /// Requests stored before `preview_every` existed hash the same (cache, idempotency).
    #[test]
    fn no_preview_every_serializes_as_before() {
        let json = serde_json::to_string(&GenerationRequest::new("m", "p")).unwrap();
        assert!(!json.contains("preview_every"), "{json}");
    }

    /// Requests without a webhook serialize as before: their request hashes (idempotency keys,
    /// the cache) are unchanged.
    #[test]
    fn webhook_fields_are_left_out_when_unset() {
        let json = serde_json::to_string(&GenerationRequest::new("m", "p")).unwrap();
        assert!(!json.contains("webhook"), "{json}");
        let r: GenerationRequest =
            serde_json::from_str(r#"{"model":"m","prompt":"p","webhook":"https://example.com/h","webhook_events":["started","completed"]}"#).unwrap();
        assert_eq!(r.webhook_events, Some(vec![WebhookEvent::Started, WebhookEvent::Completed]));
        let back: GenerationRequest = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let err = serde_json::from_str::<GenerationRequest>(r#"{"model":"m","prompt":"p","cfg":3}"#).unwrap_err();
        assert!(err.to_string().contains("cfg"), "{err}");
    }
}
