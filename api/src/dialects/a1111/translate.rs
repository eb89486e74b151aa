//! A1111 requests into the canonical request, and finished jobs back into A1111's answer.
use base64::Engine as _;
use darkroom_shared::infotext::{short_hash, Infotext};
use darkroom_shared::job::JobStatus;
use darkroom_shared::request::{GenerationRequest, OutputFormat, PromptSyntax};
use darkroom_shared::sampler::Sampler;
use darkroom_shared::validate::{ValidationError, MAX_NUM_IMAGES};
use serde_json::{json, Map, Value};

use super::models::{Fields, GenerateResponse};
use crate::error::ApiError;
use crate::service::JobWithImages;

/// A translated txt2img/img2img request: the canonical request (handed to the service, which
/// takes it by value) and what the answer needs besides the job (kept while the job runs).
#[derive(Debug)]
pub struct Translated {
    pub request: GenerationRequest,
    pub echo: Echo,
}

/// What A1111's answer needs besides the finished job. It holds no copy of the init image:
/// an echo that includes it (`include_init_images`) reads it back from the store at the end.
#[derive(Debug)]
pub struct Echo {
    /// The request echoed with A1111's defaults filled in (`init_images` null).
    pub parameters: Value,
    pub sampler: Sampler,
    pub batch_size: u32,
    pub send_images: bool,
    pub img2img: bool,
    /// Whether `parameters.init_images` should show the init image.
    pub include_init_images: bool,
}

/// A body read: the body merged over A1111's defaults (for the echo, without the init images),
/// the fields we act on, and the first init image.
pub struct Body {
    pub merged: Map<String, Value>,
    pub fields: Fields,
    pub init_image: Option<String>,
}

/// Read the fields we act on (errors name the body's field and position), and merge the body
/// over `defaults` for the echo. `init_images` is taken out of the body first and its first
/// image moved out, so that a waiting request holds one copy of it, in the job's request, and
/// none once the job is stored.
pub fn read_body(mut body: Value, mut defaults: Map<String, Value>) -> Result<Body, ApiError> {
    let init_images = body.as_object_mut().and_then(|m| m.remove("init_images"));
    let fields: Fields = crate::json::from_value(&body)?;
    let Value::Object(body) = body else {
        return Err(ApiError::Shape { field: None, message: "the body must be a JSON object".into() });
    };
    defaults.extend(body);
    Ok(Body { merged: defaults, fields, init_image: first_init_image(init_images)? })
}

/// The first of `init_images` (a list of base64 strings, or null); an empty first one is none.
fn first_init_image(value: Option<Value>) -> Result<Option<String>, ApiError> {
    let shape = |message: String| ApiError::Shape { field: Some("init_images".into()), message };
    let items = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(shape(format!("init_images: invalid type: {}, expected a list of base64 strings", kind(&other)))),
    };
    let mut first = None;
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::String(s) if i == 0 => first = Some(s).filter(|s| !s.is_empty()),
            Value::String(_) => {}
            other => return Err(shape(format!("init_images[{i}]: invalid type: {}, expected a base64 string", kind(&other)))),
        }
    }
    Ok(first)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value of a field of A1111's that we refuse, named as A1111 names it.
fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Parameter { field: field.into(), message: message.into() }
}

/// Fields that change the result and that we do not implement: refused, naming the field,
/// rather than silently ignored.
fn refuse_unsupported(f: &Fields) -> Result<(), ApiError> {
    let unsupported = |field: &'static str, what: &str| Err(invalid(field, format!("{field}: {what} is not supported by this server")));
    if f.enable_hr == Some(true) {
        return unsupported("enable_hr", "hires fix");
    }
    if f.alwayson_scripts.as_ref().is_some_and(|m| !m.is_empty()) {
        return unsupported("alwayson_scripts", "always-on scripts");
    }
    if f.script_name.as_deref().is_some_and(|s| !s.is_empty()) {
        return unsupported("script_name", "scripts");
    }
    if f.restore_faces == Some(true) {
        return unsupported("restore_faces", "face restoration");
    }
    if f.tiling == Some(true) {
        return unsupported("tiling", "tiling");
    }
    if f.subseed_strength.is_some_and(|s| s > 0.0) {
        return unsupported("subseed_strength", "variation seeds");
    }
    if f.styles.as_ref().is_some_and(|s| !s.is_empty()) {
        return unsupported("styles", "prompt styles");
    }
    if f.refiner_checkpoint.as_deref().is_some_and(|s| !s.is_empty() && s != "None") {
        return unsupported("refiner_checkpoint", "a refiner");
    }
    if f.mask.as_deref().is_some_and(|s| !s.is_empty()) {
        return unsupported("mask", "inpainting");
    }
    if f.infotext.as_deref().is_some_and(|s| !s.is_empty()) {
        return unsupported("infotext", "filling fields from an infotext");
    }
    Ok(())
}

/// The sampler: `sampler_name` or `sampler_index` (A1111 names, legacy " Karras" names too),
/// then the `scheduler` field. A name we do not know is A1111's 400 "Sampler not found".
pub fn sampler(f: &Fields) -> Result<Sampler, ApiError> {
    let name = f.sampler_name.as_deref().filter(|s| !s.is_empty()).or(f.sampler_index.as_deref().filter(|s| !s.is_empty())).unwrap_or("Euler");
    let sampler: Sampler = name.parse().map_err(|_| ValidationError::UnknownSampler { name: name.to_string(), valid: Sampler::names() })?;
    match f.scheduler.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(sampler),
        Some(s) => sampler.with_scheduler(s).map_err(|e| invalid("scheduler", e.to_string())),
    }
}

fn non_negative(field: &'static str, v: Option<i64>, default: i64) -> Result<u32, ApiError> {
    let v = v.unwrap_or(default);
    u32::try_from(v).map_err(|_| invalid(field, format!("{field} must be a non-negative integer; got {v}")))
}

/// The option that turns live previews on or off (A1111's default: on).
pub const LIVE_PREVIEWS_ENABLE: &str = "live_previews_enable";
/// The option saying every how many steps a live preview is made (A1111's default: 10).
pub const SHOW_PROGRESS_EVERY_N_STEPS: &str = "show_progress_every_n_steps";
/// A1111's default for [`SHOW_PROGRESS_EVERY_N_STEPS`].
const DEFAULT_PREVIEW_PERIOD: i64 = 10;

/// The live-preview options' values: `live_previews_enable` (a boolean, default true) and
/// `show_progress_every_n_steps` (an integer from -1, default 10); null is the default. A bad
/// value is a 422 naming the option, as `field` (`override_settings.<key>` for an override).
pub fn preview_options(enable: Option<&Value>, every: Option<&Value>, field: impl Fn(&'static str) -> String) -> Result<(bool, i64), ApiError> {
    let bad =
        |key: &'static str, what: &str, got: &Value| ApiError::Parameter { field: field(key).into(), message: format!("{key} must be {what}; got {got}") };
    let enable = match enable {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(bad(LIVE_PREVIEWS_ENABLE, "true or false", other)),
    };
    let every = match every {
        None | Some(Value::Null) => DEFAULT_PREVIEW_PERIOD,
        Some(v) => v.as_i64().filter(|&n| n >= -1).ok_or_else(|| bad(SHOW_PROGRESS_EVERY_N_STEPS, "an integer from -1 (no live previews)", v))?,
    };
    Ok((enable, every))
}

/// A1111's live-preview options as the canonical `preview_every` for a job of `steps` steps.
/// A1111 makes a preview once `show_progress_every_n_steps` steps have passed since the last
/// one, unless previews are disabled or the period is -1: so 0 (like 1) is every step, and a
/// period longer than the job makes none during sampling.
pub fn preview_every((enable, every): (bool, i64), steps: u32) -> Option<u32> {
    if !enable || every < 0 {
        return None;
    }
    let every = u32::try_from(every.max(1)).ok()?;
    (every <= steps).then_some(every)
}

/// Translate; `model` is the checkpoint already resolved, `format` the tenant's `samples_format`.
pub fn translate(body: Body, model: String, format: OutputFormat, img2img: bool) -> Result<Translated, ApiError> {
    let Body { mut merged, fields, init_image } = body;
    let f = &fields;
    refuse_unsupported(f)?;
    let sampler = sampler(f)?;
    let batch_size = non_negative("batch_size", f.batch_size, 1)?;
    let n_iter = non_negative("n_iter", f.n_iter, 1)?;
    if batch_size == 0 || n_iter == 0 {
        return Err(invalid(if batch_size == 0 { "batch_size" } else { "n_iter" }, "batch_size and n_iter must be at least 1"));
    }
    let total = batch_size.saturating_mul(n_iter);
    if total > MAX_NUM_IMAGES {
        return Err(invalid("batch_size", format!("batch_size × n_iter must be at most {MAX_NUM_IMAGES}; got {batch_size} × {n_iter} = {total}")));
    }
    let seed = match f.seed.unwrap_or(-1) {
        -1 => None,
        s => Some(u64::try_from(s).map_err(|_| invalid("seed", format!("seed must be -1 (random) or a non-negative integer; got {s}")))?),
    };
    let mut request = GenerationRequest::new(model, f.prompt.clone().unwrap_or_default());
    // Prompts mean here what they mean in AUTOMATIC1111: its attention syntax, BREAK, any length.
    request.prompt_syntax = Some(PromptSyntax::A1111);
    request.negative_prompt = f.negative_prompt.clone().filter(|n| !n.is_empty());
    request.width = Some(non_negative("width", f.width, 512)?);
    request.height = Some(non_negative("height", f.height, 512)?);
    request.steps = non_negative("steps", f.steps, 50)?;
    request.guidance_scale = f.cfg_scale.unwrap_or(7.0) as f32;
    request.sampler = sampler.a1111_name();
    request.seed = seed;
    request.num_images = total;
    request.output_format = format;
    // A1111 leaves the init images out of the echo unless include_init_images.
    let include_init_images = img2img && merged.get("include_init_images") == Some(&Value::Bool(true));
    if img2img {
        let Some(image) = init_image else {
            return Err(ApiError::NotFound("Init image not found".into()));
        };
        request.init_image = Some(image);
        request.strength = Some(f.denoising_strength.unwrap_or(0.75) as f32);
        if !include_init_images {
            merged.insert("mask".into(), Value::Null);
        }
    } else if init_image.is_some() {
        return Err(invalid("init_images", "init_images only applies to /sdapi/v1/img2img"));
    }
    let send_images = f.send_images.unwrap_or(true);
    let echo = Echo { parameters: Value::Object(merged), sampler, batch_size, send_images, img2img, include_init_images };
    Ok(Translated { request, echo })
}

/// The answer for a finished job: its images (base64, no `data:` prefix) and `info`.
/// `init_image` is the job's stored init image when the echo includes it.
/// `sha256` is the job's model's, from the catalog (its short form is A1111's model hash).
pub fn response(done: &JobWithImages, t: &Echo, init_image: Option<String>, sha256: Option<&str>) -> GenerateResponse {
    let r = &done.job.request;
    let seed = r.seed.unwrap_or(0);
    let n = u64::from(r.num_images);
    let all_seeds: Vec<u64> = (0..n).map(|i| seed + i).collect();
    let (width, height) = (r.width.unwrap_or(0), r.height.unwrap_or(0));
    let infotexts: Vec<String> = all_seeds.iter().map(|&s| Infotext::new(r, s, (width, height), &r.model).with_model_hash(sha256).to_string()).collect();
    let timestamp = done.job.started_at.unwrap_or(done.job.created_at).format("%Y%m%d%H%M%S").to_string();
    let schedule = if t.sampler.karras { "Karras" } else { "Automatic" };
    let negative = r.negative_prompt.clone().unwrap_or_default();
    let info = json!({
        "prompt": r.prompt, "all_prompts": vec![&r.prompt; n as usize],
        "negative_prompt": negative, "all_negative_prompts": vec![&negative; n as usize],
        "seed": seed, "all_seeds": all_seeds, "subseed": seed, "all_subseeds": all_seeds, "subseed_strength": 0,
        "width": width, "height": height, "sampler_name": t.sampler.kind.a1111_base(), "cfg_scale": r.guidance_scale,
        "steps": r.steps, "batch_size": t.batch_size, "restore_faces": false, "face_restoration_model": null,
        "sd_model_name": r.model, "sd_model_hash": sha256.map(short_hash), "sd_vae_name": null, "sd_vae_hash": null,
        "seed_resize_from_w": -1, "seed_resize_from_h": -1,
        "denoising_strength": if t.img2img { json!(r.strength) } else { json!(0) },
        "extra_generation_params": {"Schedule type": schedule}, "index_of_first_image": 0, "infotexts": infotexts,
        "styles": [], "job_timestamp": timestamp, "clip_skip": 1, "is_using_inpainting_conditioning": false,
        "version": concat!("darkroom ", env!("CARGO_PKG_VERSION")),
        "job_id": done.job.id, "status": done.job.status.as_str(),
    });
    let images = if t.send_images && done.job.status == JobStatus::Succeeded {
        done.images.iter().map(|(_, bytes)| base64::engine::general_purpose::STANDARD.encode(bytes)).collect()
    } else {
        Vec::new()
    };
    let mut parameters = t.parameters.clone();
    if let (Some(image), Value::Object(p)) = (init_image, &mut parameters) {
        p.insert("init_images".into(), json!([image]));
    }
    GenerateResponse { images, parameters, info: info.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::a1111::models::{img2img_defaults, txt2img_defaults};

    fn fields(body: &str, img2img: bool) -> Result<Translated, ApiError> {
        let defaults = if img2img { img2img_defaults() } else { txt2img_defaults() };
        translate(read_body(crate::json::parse(body.as_bytes())?, defaults)?, "m".into(), OutputFormat::Png, img2img)
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::Parameter { field, .. } => field.into_owned(),
            ApiError::Shape { field, .. } => field.unwrap_or_default(),
            other => format!("{other:?}"),
        }
    }

    /// The documented bodies are the defaults the body is merged over, and hold every field read.
    #[test]
    fn the_schemas_document_every_field() {
        use crate::dialects::a1111::models::{Fields, Img2ImgRequest, Txt2ImgRequest};
        use crate::openapi::testing::{properties, serde_fields};
        for (documented, defaults) in [(properties::<Txt2ImgRequest>(), txt2img_defaults()), (properties::<Img2ImgRequest>(), img2img_defaults())] {
            let mut documented = documented;
            documented.sort();
            let mut keys: Vec<String> = defaults.keys().cloned().collect();
            keys.sort();
            assert_eq!(documented, keys);
        }
        let img2img = properties::<Img2ImgRequest>();
        let txt2img = properties::<Txt2ImgRequest>();
        for field in serde_fields::<Fields>() {
            assert!(txt2img.iter().chain(&img2img).any(|p| p == field), "{field} is read but not documented");
        }
    }

    #[test]
    fn defaults_are_a1111s() {
        assert_eq!(txt2img_defaults()["steps"], 50);
        assert!(img2img_defaults().contains_key("init_images") && !img2img_defaults().contains_key("enable_hr"));
        let t = fields("{}", false).unwrap_or_else(|e| panic!("{e:?}"));
        let r = &t.request;
        assert_eq!((r.steps, r.guidance_scale, r.width, r.height, r.sampler.as_str(), r.seed, r.num_images), (50, 7.0, Some(512), Some(512), "Euler", None, 1));
        assert_eq!(t.echo.parameters["sampler_index"], "Euler");
    }

    #[test]
    fn samplers_and_schedulers() {
        let name = |body: &str| fields(body, false).map(|t| t.request.sampler);
        assert_eq!(name(r#"{"sampler_name":"DPM++ 2M Karras"}"#).unwrap(), "DPM++ 2M Karras");
        assert_eq!(name(r#"{"sampler_index":"k_lms_ka"}"#).unwrap(), "LMS Karras");
        assert_eq!(name(r#"{"sampler_name":"Euler","scheduler":"karras"}"#).unwrap(), "Euler Karras");
        assert_eq!(name(r#"{"sampler_name":"DPM++ 2M Karras","scheduler":"automatic"}"#).unwrap(), "DPM++ 2M Karras");
        assert!(matches!(name(r#"{"sampler_name":"UniPC"}"#), Err(ApiError::Invalid(ValidationError::UnknownSampler { .. }))));
        assert_eq!(field_of(name(r#"{"sampler_name":"DDIM","scheduler":"karras"}"#).unwrap_err()), "scheduler");
    }

    #[test]
    fn batches_seeds_and_refusals() {
        let t = fields(r#"{"batch_size":2,"n_iter":4,"seed":7}"#, false).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((t.request.num_images, t.request.seed, t.echo.batch_size), (8, Some(7), 2));
        assert_eq!(field_of(fields(r#"{"batch_size":3,"n_iter":3}"#, false).unwrap_err()), "batch_size");
        assert_eq!(field_of(fields(r#"{"seed":-2}"#, false).unwrap_err()), "seed");
        assert_eq!(field_of(fields(r#"{"steps":"x"}"#, false).unwrap_err()), "steps");
        for (body, field) in [(r#"{"enable_hr":true}"#, "enable_hr"), (r#"{"script_name":"xyz"}"#, "script_name"), (r#"{"tiling":true}"#, "tiling")] {
            assert_eq!(field_of(fields(body, false).unwrap_err()), field);
        }
        // Accepted and ignored: what does not change the image, or says "off".
        assert!(fields(r#"{"save_images":true,"restore_faces":false,"alwayson_scripts":{},"script_args":[],"eta":1.0}"#, false).is_ok());
    }

    #[test]
    fn live_preview_options_as_a1111_reads_them() {
        let named = |k: &'static str| k.to_string();
        let opts = |enable: Value, every: Value| preview_options(Some(&enable), Some(&every), named);
        // Defaults: on, every 10 steps.
        assert_eq!(preview_options(None, None, named).unwrap(), (true, 10));
        assert_eq!(preview_every(opts(Value::Null, Value::Null).unwrap(), 50), Some(10));
        // -1: none; 0: every step; longer than the job: none.
        assert_eq!(preview_every(opts(json!(true), json!(-1)).unwrap(), 50), None);
        assert_eq!(preview_every(opts(json!(true), json!(0)).unwrap(), 50), Some(1));
        assert_eq!(preview_every(opts(json!(true), json!(3)).unwrap(), 50), Some(3));
        assert_eq!(preview_every(opts(json!(true), json!(20)).unwrap(), 10), None);
        assert_eq!(preview_every(opts(json!(false), json!(3)).unwrap(), 50), None);
        // Bad values name the option.
        for (enable, every, field) in [
            (json!("yes"), json!(1), LIVE_PREVIEWS_ENABLE),
            (json!(true), json!(-2), SHOW_PROGRESS_EVERY_N_STEPS),
            (json!(true), json!(1.5), SHOW_PROGRESS_EVERY_N_STEPS),
        ] {
            let e = preview_options(Some(&enable), Some(&every), |k| format!("override_settings.{k}")).unwrap_err();
            assert_eq!(field_of(e), format!("override_settings.{field}"));
        }
    }

    #[test]
    fn img2img_needs_an_init_image() {
        assert!(matches!(fields("{}", true), Err(ApiError::NotFound(m)) if m == "Init image not found"));
        let t = fields(r#"{"init_images":["aGk="],"denoising_strength":0.3}"#, true).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((t.request.init_image.as_deref(), t.request.strength), (Some("aGk="), Some(0.3)));
        assert_eq!(t.echo.parameters["init_images"], Value::Null);
    }
}
