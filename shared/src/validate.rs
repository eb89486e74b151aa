//! Validation of the canonical request, done once, before a job is stored. Every dialect the
//! API speaks translates into a [`GenerationRequest`] and passes it through [`validate`], which
//! checks it against the model catalog and the service's bounds and returns it normalized:
//! width and height filled from the model, the sampler named canonically, the img2img strength
//! made explicit and the seed resolved (so the stored job always says which seed made it).
use std::io::Cursor;

use base64::Engine as _;

use crate::prompt_syntax::{self, SyntaxError};
use crate::request::{defaults, GenerationRequest, PromptSyntax, WebhookEvent};
use crate::sampler::Sampler;
use crate::store::ModelInfo;

/// Bounds on the request that do not depend on the model.
pub const MAX_STEPS: u32 = 150;
pub const MAX_GUIDANCE_SCALE: f32 = 30.0;
pub const MAX_NUM_IMAGES: u32 = 8;
/// In characters, for `prompt` and `negative_prompt` alike.
pub const MAX_PROMPT_CHARS: usize = 4000;
/// The largest width or height an init image may declare.
pub const MAX_INIT_IMAGE_SIDE: u32 = 4096;
/// Seeds are stored as Postgres BIGINT: image `i` of a job uses `seed + i`.
pub const MAX_SEED: u64 = i64::MAX as u64;
/// The longest `webhook` URL, in bytes.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;
/// Random seeds are drawn from AUTOMATIC1111's range, `0..4294967294`.
pub const RANDOM_SEED_RANGE: u64 = 4_294_967_294;

/// Limits that come from the service's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The most bytes a decoded init image may take (the request body limit).
    pub max_init_image_bytes: u64,
}

/// Why a request was refused. Each variant names the field at fault ([`ValidationError::field`])
/// and says what is allowed; [`ValidationError::allowed`] lists the valid values of closed sets.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ValidationError {
    #[error("unknown model {name:?}; known models: {}", list_or_none(known))]
    UnknownModel { name: String, known: Vec<String> },
    #[error("unknown sampler {name:?}; valid samplers: {}", valid.join(", "))]
    UnknownSampler { name: String, valid: Vec<String> },
    /// A number outside its range (or not a multiple it must be).
    #[error("{field} must be {allowed}; got {got}")]
    OutOfRange { field: &'static str, allowed: String, got: String },
    /// A text longer than allowed, in characters.
    #[error("{field} must be at most {max} characters; got {got}")]
    TooLong { field: &'static str, max: usize, got: usize },
    /// The init image is not base64 of a decodable PNG, JPEG or WebP within the size limits.
    #[error("init_image {reason}")]
    InitImage { reason: String },
    /// A field that does not apply here (strength without init_image, img2img on a model without it).
    #[error("{field} {reason}")]
    NotApplicable { field: &'static str, reason: String },
    /// A prompt that AUTOMATIC1111's syntax cannot read (`prompt_syntax: "a1111"`).
    #[error("{field}: {error}")]
    PromptSyntax { field: &'static str, error: SyntaxError },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none (no worker has registered a model yet)".to_string()
    } else {
        items.join(", ")
    }
}

impl ValidationError {
    /// The request field at fault, by its canonical name.
    pub fn field(&self) -> &'static str {
        match self {
            ValidationError::UnknownModel { .. } => "model",
            ValidationError::UnknownSampler { .. } => "sampler",
            ValidationError::InitImage { .. } => "init_image",
            ValidationError::OutOfRange { field, .. }
            | ValidationError::TooLong { field, .. }
            | ValidationError::NotApplicable { field, .. }
            | ValidationError::PromptSyntax { field, .. } => field,
        }
    }

    /// The valid values, where the field takes one of a known set.
    pub fn allowed(&self) -> Option<&[String]> {
        match self {
            ValidationError::UnknownModel { known, .. } => Some(known),
            ValidationError::UnknownSampler { valid, .. } => Some(valid),
            _ => None,
        }
    }
}

/// A random seed in AUTOMATIC1111's range.
pub fn random_seed() -> u64 {
    rand::random_range(0..RANDOM_SEED_RANGE)
}

/// Check `req` against the catalog and the bounds; return it normalized (see the module docs).
/// Decoding the init image is CPU work: call this off the async executor when one is present.
pub fn validate(req: &GenerationRequest, catalog: &[ModelInfo], limits: &Limits) -> Result<GenerationRequest, ValidationError> {
    let Some(model) = catalog.iter().find(|m| m.id == req.model) else {
        return Err(ValidationError::UnknownModel { name: req.model.clone(), known: catalog.iter().map(|m| m.id.clone()).collect() });
    };
    let mut out = req.clone();

    check_len("prompt", &req.prompt)?;
    if let Some(negative) = &req.negative_prompt {
        check_len("negative_prompt", negative)?;
    }
    if req.prompt_syntax == Some(PromptSyntax::A1111) {
        for (field, text) in [("prompt", Some(&req.prompt)), ("negative_prompt", req.negative_prompt.as_ref())] {
            if let Some(text) = text {
                prompt_syntax::parse(text).map_err(|error| ValidationError::PromptSyntax { field, error })?;
            }
        }
    }

    let (min, max) = model.family.size_range();
    let native = u32::try_from(model.native_size).unwrap_or(min);
    // The model's own multiple (an ONNX UNet cannot run other sizes), and never below the VAE's 8.
    let multiple = u32::try_from(model.size_multiple).unwrap_or(8).max(8);
    for (field, value, slot) in [("width", req.width, &mut out.width), ("height", req.height, &mut out.height)] {
        let v = value.unwrap_or(native);
        if v < min || v > max || v % multiple != 0 {
            return Err(ValidationError::OutOfRange {
                field,
                allowed: format!("a multiple of {multiple} from {min} to {max} for {} ({} family) models", model.id, model.family),
                got: v.to_string(),
            });
        }
        *slot = Some(v);
    }

    if !(1..=MAX_STEPS).contains(&req.steps) {
        return Err(out_of_range("steps", format!("an integer from 1 to {MAX_STEPS}"), req.steps));
    }
    if !(0.0..=MAX_GUIDANCE_SCALE).contains(&req.guidance_scale) {
        return Err(out_of_range("guidance_scale", format!("a number from 0 to {MAX_GUIDANCE_SCALE}"), req.guidance_scale));
    }
    if !(1..=MAX_NUM_IMAGES).contains(&req.num_images) {
        return Err(out_of_range("num_images", format!("an integer from 1 to {MAX_NUM_IMAGES}"), req.num_images));
    }

    // 0 means off, like absent: stored as absent, so both hash alike.
    match req.preview_every {
        Some(0) => out.preview_every = None,
        Some(n) if n > req.steps => {
            return Err(out_of_range("preview_every", format!("an integer from 0 (off) to steps ({})", req.steps), n));
        }
        _ => {}
    }

    let sampler: Sampler = req.sampler.parse().map_err(|_| ValidationError::UnknownSampler { name: req.sampler.clone(), valid: Sampler::names() })?;
    out.sampler = sampler.a1111_name();

    // Image i uses seed + i, and every one of them must fit a BIGINT.
    let max_seed = MAX_SEED - u64::from(req.num_images - 1);
    match req.seed {
        Some(seed) if seed > max_seed => {
            let allowed =
                if req.num_images > 1 { format!("at most {max_seed} (9223372036854775807 minus num_images - 1)") } else { format!("at most {MAX_SEED}") };
            return Err(out_of_range("seed", allowed, seed));
        }
        Some(_) => {}
        None => out.seed = Some(random_seed()),
    }

    match (&req.init_image, req.strength) {
        (None, Some(_)) => {
            return Err(ValidationError::NotApplicable { field: "strength", reason: "only applies with an init_image (img2img)".into() });
        }
        (None, None) => {}
        (Some(image), strength) => {
            if !model.img2img {
                return Err(ValidationError::NotApplicable {
                    field: "init_image",
                    reason: format!("is not supported by model {} (it has no VAE encoder for img2img)", model.id),
                });
            }
            let strength = strength.unwrap_or(defaults::STRENGTH);
            if !(strength > 0.0 && strength <= 1.0) {
                return Err(out_of_range("strength", "a number greater than 0 and at most 1".into(), strength));
            }
            let strength64: f64 = strength.to_string().parse().unwrap_or(f64::from(strength));
            if f64::from(req.steps) * strength64 < 1.0 {
                return Err(out_of_range(
                    "strength",
                    format!("at least 1/steps (with {} steps, at least {:.4}) so one step runs", req.steps, 1.0 / f64::from(req.steps)),
                    strength,
                ));
            }
            out.strength = Some(strength);
            check_init_image(image, limits)?;
        }
    }
    (out.webhook, out.webhook_events) = check_webhook(req.webhook.as_deref(), req.webhook_events.as_deref())?;
    Ok(out)
}

/// The webhook URL, parsed and normalized, and its events (sorted, without repeats; default
/// `["completed"]`). Only the URL's syntax is checked here; where it points (no private
/// addresses) is the API's check, which resolves the host.
fn check_webhook(url: Option<&str>, events: Option<&[WebhookEvent]>) -> Result<(Option<String>, Option<Vec<WebhookEvent>>), ValidationError> {
    let Some(raw) = url else {
        return match events {
            None => Ok((None, None)),
            Some(_) => Err(ValidationError::NotApplicable { field: "webhook_events", reason: "only applies with a webhook URL".into() }),
        };
    };
    let url = parse_webhook_url(raw)?;
    let mut events = events.map(<[WebhookEvent]>::to_vec).unwrap_or_else(|| vec![WebhookEvent::Completed]);
    events.sort();
    events.dedup();
    if events.is_empty() {
        return Err(ValidationError::NotApplicable { field: "webhook_events", reason: "must name at least one of started, completed".into() });
    }
    Ok((Some(url.to_string()), Some(events)))
}

/// A webhook URL: `http` or `https`, a host, no user name or password, no fragment, at most
/// [`MAX_WEBHOOK_URL_LEN`] bytes.
pub fn parse_webhook_url(raw: &str) -> Result<url::Url, ValidationError> {
    let bad = |reason: String| ValidationError::NotApplicable { field: "webhook", reason };
    if raw.len() > MAX_WEBHOOK_URL_LEN {
        return Err(ValidationError::TooLong { field: "webhook", max: MAX_WEBHOOK_URL_LEN, got: raw.chars().count() });
    }
    let url = url::Url::parse(raw.trim()).map_err(|e| bad(format!("must be an absolute http or https URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!("must be an http or https URL; got scheme {:?}", url.scheme())));
    }
    if url.host().is_none() {
        return Err(bad("must name a host".into()));
    }
    // A secret in a URL ends up in logs and job views: the tenant's webhook secret signs instead.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a user name or password (deliveries are signed with the tenant's webhook secret)".into()));
    }
    if url.fragment().is_some() {
        return Err(bad("must not have a fragment (#...): it is never sent".into()));
    }
    if url.as_str().len() > MAX_WEBHOOK_URL_LEN {
        return Err(ValidationError::TooLong { field: "webhook", max: MAX_WEBHOOK_URL_LEN, got: url.as_str().chars().count() });
    }
    Ok(url)
}

fn out_of_range(field: &'static str, allowed: String, got: impl ToString) -> ValidationError {
    ValidationError::OutOfRange { field, allowed, got: got.to_string() }
}

fn check_len(field: &'static str, text: &str) -> Result<(), ValidationError> {
    check_text(field, text)?;
    let n = text.chars().count();
    if n > MAX_PROMPT_CHARS {
        return Err(ValidationError::TooLong { field, max: MAX_PROMPT_CHARS, got: n });
    }
    Ok(())
}

/// A text the store can keep: no NUL character (Postgres' text and JSON types refuse U+0000).
pub fn check_text(field: &'static str, text: &str) -> Result<(), ValidationError> {
    if text.contains('\0') {
        return Err(ValidationError::NotApplicable { field, reason: "must not contain NUL characters (U+0000)".into() });
    }
    Ok(())
}

/// Strip an optional `data:image/...;base64,` prefix and decode the base64.
pub fn decode_base64_image(value: &str) -> Result<Vec<u8>, ValidationError> {
    let data = match value.strip_prefix("data:") {
        Some(rest) => match rest.split_once(";base64,") {
            Some((mime, data)) if mime.starts_with("image/") => data,
            _ => return Err(ValidationError::InitImage { reason: "must be base64, or a data:image/...;base64, URI".into() }),
        },
        None => value,
    };
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(compact.as_bytes()))
        .map_err(|e| ValidationError::InitImage { reason: format!("is not valid base64: {e}") })
}

/// The init image must be a PNG, JPEG or WebP that declares at most 4096x4096 pixels, whose
/// decoded pixels fit `limits`, and that decodes. The declared size is checked before decoding.
fn check_init_image(value: &str, limits: &Limits) -> Result<(), ValidationError> {
    let bad = |reason: String| ValidationError::InitImage { reason };
    let bytes = decode_base64_image(value)?;
    let reader = || image::ImageReader::new(Cursor::new(&bytes[..])).with_guessed_format().map_err(|e| bad(format!("could not be read: {e}")));
    let format = reader()?.format();
    if !matches!(format, Some(image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::WebP)) {
        return Err(bad("must be a PNG, JPEG or WebP image".into()));
    }
    let (w, h) = reader()?.into_dimensions().map_err(|e| bad(format!("is not a decodable image: {e}")))?;
    if w == 0 || h == 0 || w > MAX_INIT_IMAGE_SIDE || h > MAX_INIT_IMAGE_SIDE {
        return Err(bad(format!("must be at most {MAX_INIT_IMAGE_SIDE}x{MAX_INIT_IMAGE_SIDE} pixels; it declares {w}x{h}")));
    }
    // RGBA, 8 bits per channel: what the decoded pixels take at the least.
    let decoded = u64::from(w) * u64::from(h) * 4;
    if decoded > limits.max_init_image_bytes {
        return Err(bad(format!("decodes to {decoded} bytes ({w}x{h}); at most {} are allowed", limits.max_init_image_bytes)));
    }
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(MAX_INIT_IMAGE_SIDE);
    image_limits.max_image_height = Some(MAX_INIT_IMAGE_SIDE);
    image_limits.max_alloc = Some(limits.max_init_image_bytes.saturating_mul(2));
    let mut r = reader()?;
    r.limits(image_limits);
    r.decode().map_err(|e| bad(format!("is not a decodable image: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::Family;

    fn catalog() -> Vec<ModelInfo> {
        vec![
            ModelInfo { id: "sd15".into(), family: Family::Sd, native_size: 512, size_multiple: 8, img2img: true, sha256: None, path: None, live_workers: 1 },
            ModelInfo {
                id: "xl".into(),
                family: Family::Sdxl,
                native_size: 1024,
                size_multiple: 32,
                img2img: false,
                sha256: None,
                path: None,
                live_workers: 0,
            },
        ]
    }

    const LIMITS: Limits = Limits { max_init_image_bytes: 16 << 20 };

    fn check(req: &GenerationRequest) -> Result<GenerationRequest, ValidationError> {
        validate(req, &catalog(), &LIMITS)
    }

    fn png(w: u32, h: u32) -> String {
        let mut buf = Vec::new();
        image::RgbImage::new(w, h).write_to(&mut Cursor::new(&mut buf), image::ImageFormat::Png).unwrap();
        base64::engine::general_purpose::STANDARD.encode(buf)
    }

    fn field_of(req: &GenerationRequest) -> &'static str {
        check(req).unwrap_err().field()
    }

    #[test]
    fn nul_characters_are_refused_naming_the_field() {
        let mut r = GenerationRequest::new("sd15", "a\0b");
        assert_eq!(field_of(&r), "prompt");
        (r.prompt, r.negative_prompt) = ("ok".into(), Some("\0".into()));
        assert_eq!(field_of(&r), "negative_prompt");
    }

    #[test]
    fn defaults_are_filled_and_the_seed_resolved() {
        let out = check(&GenerationRequest::new("sd15", "a cat")).unwrap();
        assert_eq!((out.width, out.height), (Some(512), Some(512)));
        assert!(out.seed.unwrap() < RANDOM_SEED_RANGE);
        assert_eq!(out.strength, None);
        let mut req = GenerationRequest::new("xl", "a cat");
        req.sampler = "dpm++ 2m  karras".into();
        req.seed = Some(7);
        let out = check(&req).unwrap();
        assert_eq!((out.width, out.sampler.as_str(), out.seed), (Some(1024), "DPM++ 2M Karras", Some(7)));
    }

    #[test]
    fn each_bound_names_its_field() {
        let base = GenerationRequest::new("sd15", "p");
        type Change = Box<dyn Fn(&mut GenerationRequest)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|r| r.model = "nope".into()), "model"),
            (Box::new(|r| r.width = Some(65)), "width"),
            (Box::new(|r| r.width = Some(1032)), "width"),
            (Box::new(|r| r.height = Some(56)), "height"),
            (Box::new(|r| r.steps = 0), "steps"),
            (Box::new(|r| r.steps = 151), "steps"),
            (Box::new(|r| r.guidance_scale = 30.5), "guidance_scale"),
            (Box::new(|r| r.guidance_scale = -1.0), "guidance_scale"),
            (Box::new(|r| r.num_images = 9), "num_images"),
            (Box::new(|r| r.prompt = "x".repeat(4001)), "prompt"),
            (Box::new(|r| r.negative_prompt = Some("é".repeat(4001))), "negative_prompt"),
            (Box::new(|r| r.seed = Some(1 << 63)), "seed"),
            (Box::new(|r| r.sampler = "Euler b".into()), "sampler"),
            (Box::new(|r| r.preview_every = Some(26)), "preview_every"),
            (Box::new(|r| r.strength = Some(0.5)), "strength"),
            (Box::new(|r| r.init_image = Some("not base64!".into())), "init_image"),
            (Box::new(|r| r.init_image = Some(base64::engine::general_purpose::STANDARD.encode(b"GIF89a....."))), "init_image"),
        ];
        for (change, field) in cases {
            let mut req = base.clone();
            change(&mut req);
            assert_eq!(field_of(&req), field, "{req:?}");
        }
        let mut req = base.clone();
        req.prompt = "é".repeat(4000);
        req.width = Some(1024);
        req.seed = Some(MAX_SEED);
        assert!(check(&req).is_ok());
        req.num_images = 2;
        assert_eq!(field_of(&req), "seed");
    }

    #[test]
    fn preview_every_is_off_at_zero_and_at_most_steps() {
        let mut req = GenerationRequest::new("sd15", "p");
        req.preview_every = Some(0);
        assert_eq!(check(&req).unwrap().preview_every, None);
        req.preview_every = Some(req.steps);
        assert_eq!(check(&req).unwrap().preview_every, Some(req.steps));
        req.steps = 4;
        req.preview_every = Some(5);
        let err = check(&req).unwrap_err();
        assert_eq!(err.field(), "preview_every");
        assert!(err.to_string().contains("steps (4)"), "{err}");
    }

    /// An ONNX UNet runs only sizes its downsampling divides: other multiples of 8 are refused
    /// before they reach a worker (where they failed the job).
    #[test]
    fn sizes_are_multiples_of_the_models_own_multiple() {
        let mut req = GenerationRequest::new("xl", "p");
        req.width = Some(1032);
        let err = check(&req).unwrap_err();
        assert_eq!(err.field(), "width");
        assert!(err.to_string().contains("a multiple of 32"), "{err}");
        req.width = Some(1056);
        assert!(check(&req).is_ok());
        // The VAE's 8 holds whatever the catalog says.
        let mut catalog = catalog();
        catalog[0].size_multiple = 0;
        let mut req = GenerationRequest::new("sd15", "p");
        req.height = Some(516);
        assert_eq!(validate(&req, &catalog, &LIMITS).unwrap_err().field(), "height");
    }

    #[test]
    fn sdxl_allows_larger_sizes() {
        let mut req = GenerationRequest::new("xl", "p");
        req.width = Some(2048);
        assert!(check(&req).is_ok());
        req.width = Some(2056);
        assert_eq!(field_of(&req), "width");
    }

    #[test]
    fn unknown_model_and_sampler_list_the_valid_values() {
        let err = check(&GenerationRequest::new("nope", "p")).unwrap_err();
        assert_eq!(err.allowed().unwrap(), ["sd15".to_string(), "xl".to_string()]);
        assert!(err.to_string().contains("sd15, xl"), "{err}");
        let mut req = GenerationRequest::new("sd15", "p");
        req.sampler = "nope".into();
        let err = check(&req).unwrap_err();
        assert!(err.allowed().unwrap().contains(&"Euler a".to_string()));
        assert!(err.to_string().contains("DPM++ 2M Karras"), "{err}");
    }

    #[test]
    fn init_images_are_checked() {
        let mut req = GenerationRequest::new("sd15", "p");
        req.init_image = Some(format!("data:image/png;base64,{}", png(16, 8)));
        let out = check(&req).unwrap();
        assert_eq!(out.strength, Some(defaults::STRENGTH));
        for bad in [0.0, 1.5, -0.1] {
            req.strength = Some(bad);
            assert_eq!(field_of(&req), "strength");
        }
        req.strength = Some(1.0);
        assert!(check(&req).is_ok());
        // A model without img2img.
        req.model = "xl".into();
        assert_eq!(field_of(&req), "init_image");
        // Too large declared, and too many decoded bytes for the limit.
        let mut req = GenerationRequest::new("sd15", "p");
        req.init_image = Some(png(4097, 1));
        assert!(check(&req).unwrap_err().to_string().contains("4097x1"));
        req.init_image = Some(png(64, 64));
        let tight = Limits { max_init_image_bytes: 64 * 64 * 4 - 1 };
        assert_eq!(validate(&req, &catalog(), &tight).unwrap_err().field(), "init_image");
        // A truncated PNG.
        let mut bytes = base64::engine::general_purpose::STANDARD.decode(png(64, 64)).unwrap();
        bytes.truncate(40);
        req.init_image = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        assert_eq!(field_of(&req), "init_image");
    }

    #[test]
    fn a_huge_declared_png_is_refused_before_decoding() {
        // A PNG declaring 60000x60000 pixels with no image data.
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(60000u32.to_be_bytes());
        ihdr.extend(60000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        bytes.extend(13u32.to_be_bytes());
        bytes.extend(&ihdr);
        bytes.extend(crc32(&ihdr).to_be_bytes());
        for chunk in [&b"IDAT"[..], &b"IEND"[..]] {
            bytes.extend(0u32.to_be_bytes());
            bytes.extend(chunk);
            bytes.extend(crc32(chunk).to_be_bytes());
        }
        let mut req = GenerationRequest::new("sd15", "p");
        req.init_image = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        let err = check(&req).unwrap_err();
        assert!(err.to_string().contains("60000x60000"), "{err}");
    }

    #[test]
    fn webhooks_are_checked_and_normalized() {
        let mut req = GenerationRequest::new("sd15", "p");
        req.webhook = Some("HTTPS://Example.COM:443/h?x=1".into());
        let out = check(&req).unwrap();
        assert_eq!(out.webhook.as_deref(), Some("https://example.com/h?x=1"));
        assert_eq!(out.webhook_events, Some(vec![WebhookEvent::Completed]));
        req.webhook_events = Some(vec![WebhookEvent::Completed, WebhookEvent::Started, WebhookEvent::Completed]);
        assert_eq!(check(&req).unwrap().webhook_events, Some(vec![WebhookEvent::Started, WebhookEvent::Completed]));
        for bad in [
            "ftp://example.com/h",
            "example.com/h",
            "https://user:pw@example.com/h",
            "https://user@example.com/h",
            "https://example.com/h#frag",
            "data:text/plain,hi",
        ] {
            req.webhook = Some(bad.into());
            assert_eq!(field_of(&req), "webhook", "{bad}");
        }
        req.webhook = Some(format!("https://example.com/{}", "a".repeat(MAX_WEBHOOK_URL_LEN)));
        assert_eq!(field_of(&req), "webhook");
        req.webhook = Some("https://example.com/h".into());
        req.webhook_events = Some(vec![]);
        assert_eq!(field_of(&req), "webhook_events");
        req.webhook = None;
        req.webhook_events = Some(vec![WebhookEvent::Started]);
        assert_eq!(field_of(&req), "webhook_events");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
}
