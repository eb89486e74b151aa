//! AUTOMATIC1111's web API (`/sdapi/v1/*`, as `--api --api-auth` serves it): txt2img and
//! img2img as jobs of the caller's tenant, the catalog as `sd-models`, per-tenant `options`
//! (the tenant's `sd_model_checkpoint`), samplers and schedulers, and `progress` / `interrupt` /
//! `skip` scoped to the caller's own jobs. Auth: HTTP Basic with the API token as the password
//! (or Bearer). Handlers authenticate, translate (`translate`), call `Service`, shape the answer.
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use darkroom_shared::infotext::short_hash;
use darkroom_shared::job::{Job, JobStatus};
use darkroom_shared::request::OutputFormat;
use darkroom_shared::sampler::Sampler;
use darkroom_shared::store::ModelInfo;
use darkroom_shared::validate::ValidationError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::openapi::tags;
use crate::service::Service;

mod errors;
mod models;
mod translate;

use errors::Answer;
pub use errors::A1111;
use models::{GenerateResponse, Img2ImgRequest, Progress, ProgressState, SamplerItem, SchedulerItem, SdModel, Txt2ImgRequest};

/// A checkpoint's title and sha256 in the document's examples (the tiny test model's).
const EXAMPLE_TITLE: &str = "tiny-sd15 [364658c731]";
const EXAMPLE_SHA256: &str = "364658c731c79abef6d0f2f681b84492b4e31a605a9dd1e6d43d54503535348a";
/// The option key holding the tenant's checkpoint.
const CHECKPOINT: &str = "sd_model_checkpoint";
/// The option key holding the tenant's image format.
const SAMPLES_FORMAT: &str = "samples_format";
/// The longest a txt2img/img2img request blocks for its job (A1111 blocks until done).
const LONGEST_RUN: Duration = Duration::from_secs(3600);

pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(txt2img))
        .routes(routes!(img2img))
        .routes(routes!(sd_models))
        .routes(routes!(get_options, set_options))
        .routes(routes!(samplers))
        .routes(routes!(schedulers))
        .routes(routes!(progress))
        .routes(routes!(interrupt))
        .routes(routes!(skip))
        .routes(routes!(scripts))
        // FastAPI's 404 for the routes A1111 has and we do not (not part of the API).
        .route("/sdapi/v1/", get(not_found).post(not_found))
        .route("/sdapi/v1/{*rest}", get(not_found).post(not_found))
}

/// Generate images from a prompt; blocks until the job ends.
///
/// An ordinary job of the caller's tenant (same validation, queue and limits as
/// `POST /v1/jobs`, visible at `/v1/jobs/{id}`: `info.job_id`). An interrupted job answers 200
/// with no images.
#[utoipa::path(post, path = "/sdapi/v1/txt2img", operation_id = "a1111Txt2img", tag = tags::A1111, request_body = Txt2ImgRequest,
    responses(
        (status = 200, description = "The images (base64 PNG, JPEG or WebP per `samples_format`), the request echoed with defaults, and `info`", body = GenerateResponse),
        (status = 400, description = "Sampler not found (HTTPException), or an unknown `override_settings.sd_model_checkpoint` (RuntimeError)"),
        (status = 429, description = "The tenant's rate limit, quota or waiting-requests limit is reached"),
        (status = 500, description = "The job failed (RuntimeError)"),
        (status = 503, description = "No worker has registered a model yet, or a backend does not answer"),
        (status = 504, description = "The job did not finish in time; it was canceled"),
    ))]
async fn txt2img(State(s): State<Arc<Service>>, caller: Caller<A1111>, JsonBody(body, _): JsonBody<Value, A1111>) -> Answer<Response> {
    generate(&s, caller, body, false).await
}

/// Generate images from an init image and a prompt; blocks until the job ends.
#[utoipa::path(post, path = "/sdapi/v1/img2img", operation_id = "a1111Img2img", tag = tags::A1111, request_body = Img2ImgRequest,
    responses(
        (status = 200, description = "As txt2img", body = GenerateResponse),
        (status = 400, description = "Sampler not found (HTTPException), or an unknown `override_settings.sd_model_checkpoint` (RuntimeError)"),
        (status = 404, description = "Init image not found (no `init_images`)"),
        (status = 429, description = "The tenant's rate limit, quota or waiting-requests limit is reached"),
        (status = 500, description = "The job failed (RuntimeError)"),
        (status = 503, description = "No worker has registered a model yet, or a backend does not answer"),
        (status = 504, description = "The job did not finish in time; it was canceled"),
    ))]
async fn img2img(State(s): State<Arc<Service>>, caller: Caller<A1111>, JsonBody(body, _): JsonBody<Value, A1111>) -> Answer<Response> {
    generate(&s, caller, body, true).await
}

/// Translate, submit, block until the job ends, answer `{images, parameters, info}`. An
/// interrupted (canceled) job answers 200 with no images, as A1111 does; a failed one 500.
async fn generate(service: &Service, caller: Caller<A1111>, body: Value, img2img: bool) -> Answer<Response> {
    let tenant = caller.tenant.id;
    let defaults = if img2img { models::img2img_defaults() } else { models::txt2img_defaults() };
    let body = translate::read_body(body, defaults)?;
    let overrides = body.fields.override_settings.clone().unwrap_or_default();
    let options = tenant_options(service, tenant).await?;
    let catalog = service.catalog().await?;
    let model = checkpoint(service, &catalog, overrides.get(CHECKPOINT).or(options.get(CHECKPOINT)), overrides.contains_key(CHECKPOINT))?.id.clone();
    let format = samples_format(overrides.get(SAMPLES_FORMAT).or(options.get(SAMPLES_FORMAT)))?;
    // Live previews as the tenant's options (or this request's overrides) ask, as A1111 does.
    let option = |key| overrides.get(key).or(options.get(key));
    let previews = translate::preview_options(option(translate::LIVE_PREVIEWS_ENABLE), option(translate::SHOW_PROGRESS_EVERY_N_STEPS), |k| {
        if overrides.contains_key(k) {
            format!("override_settings.{k}")
        } else {
            k.to_string()
        }
    })?;
    let translate::Translated { mut request, echo } = translate::translate(body, model, format, img2img)?;
    request.preview_every = translate::preview_every(previews, request.steps);
    let done = service.run_to_end(&caller.tenant, request.into(), &catalog, LONGEST_RUN).await?;
    if done.job.status == JobStatus::Failed {
        return Err(done.failure().into());
    }
    let init_image = if echo.include_init_images { service.init_image(done.job.id).await? } else { None };
    let sha256 = catalog.iter().find(|m| m.id == done.job.request.model).and_then(|m| m.sha256.as_deref());
    Ok(Json(translate::response(&done, &echo, init_image, sha256)).into_response())
}

/// The tenant's stored options.
async fn tenant_options(service: &Service, tenant: uuid::Uuid) -> Result<Map<String, Value>, ApiError> {
    Ok(service.tenant_settings(tenant).await?.into_iter().collect())
}

/// Whether an A1111 checkpoint name (title, `name [hash]`, file name) designates `id` by its
/// name: the text before ` [` (any hash there is not looked at), with or without a
/// `.safetensors`, `.ckpt` or `.onnx` extension.
fn names(id: &str, name: &str) -> bool {
    let base = name.split(" [").next().unwrap_or(name).trim();
    let stem = [".safetensors", ".ckpt", ".onnx"].iter().find_map(|ext| base.strip_suffix(ext)).unwrap_or(base);
    id == name || id == base || id == stem
}

/// A checkpoint's title as A1111 writes it, `name [hash]`; the name alone while the catalog
/// has no hash for the model (registered by a worker that did not hash it).
fn title(m: &ModelInfo) -> String {
    match &m.sha256 {
        Some(sha256) => format!("{} [{}]", m.id, short_hash(sha256)),
        None => m.id.clone(),
    }
}

/// The catalog model an A1111 checkpoint string designates, looked up as A1111 does: by title
/// (`name [hash]`), then by hash (the 10-digit short hash or the full sha256, any case), then
/// by name ([`names`]). So a title whose hash is stale (the model was re-exported) still finds
/// the model by its name, and an unknown hash finds nothing. Ties go to the catalog's order.
fn find<'a>(catalog: &'a [ModelInfo], wanted: &str) -> Option<&'a ModelInfo> {
    let by_hash = || {
        let hash = wanted.trim().to_ascii_lowercase();
        let is_hash = matches!(hash.len(), 10 | 64) && hash.bytes().all(|b| b.is_ascii_hexdigit());
        catalog.iter().filter(|_| is_hash).find(|m| m.sha256.as_deref().is_some_and(|s| s == hash || short_hash(s) == hash))
    };
    catalog.iter().find(|m| m.sha256.is_some() && title(m) == wanted).or_else(by_hash).or_else(|| catalog.iter().find(|m| names(&m.id, wanted)))
}

/// The catalog model a checkpoint name stands for ([`find`]); unset (or stale when not
/// `explicit`): the configured default model, else the catalog's first (an empty catalog is a
/// 503). An explicit unknown name is A1111's `RuntimeError("model '…' not found")`.
fn checkpoint<'a>(service: &Service, catalog: &'a [ModelInfo], wanted: Option<&Value>, explicit: bool) -> Result<&'a ModelInfo, ApiError> {
    let Some(first) = catalog.first() else { return Err(ApiError::NoModels) };
    let wanted = wanted.and_then(Value::as_str).filter(|s| !s.is_empty());
    if let Some(name) = wanted {
        if let Some(m) = find(catalog, name) {
            return Ok(m);
        }
        if explicit {
            return Err(ValidationError::UnknownModel { name: name.to_string(), known: catalog.iter().map(|m| m.id.clone()).collect() }.into());
        }
    }
    let default = service.settings().default_model.as_ref().and_then(|d| catalog.iter().find(|m| &m.id == d));
    Ok(default.unwrap_or(first))
}

/// `samples_format` as an output format (png when unset).
fn samples_format(value: Option<&Value>) -> Result<OutputFormat, ApiError> {
    match value.and_then(Value::as_str) {
        None => Ok(OutputFormat::Png),
        Some(f) => OutputFormat::parse(f)
            .ok_or_else(|| ApiError::Parameter { field: SAMPLES_FORMAT.into(), message: format!("samples_format must be png, jpg or webp; got {f:?}") }),
    }
}

/// The catalog as checkpoints: `title` is `name [hash]`, `hash` the first 10 hex digits of
/// `sha256`, the sha256 of the model's UNet weights as its worker hashed them (the bytes of
/// `unet/model.onnx`, then of the external data files the graph references, sorted by name:
/// not A1111's hash of a `.safetensors` file, which an ONNX export does not have); `filename`
/// is the model directory the worker loaded. A model whose worker registered no hash has
/// `title` = its name and null `hash` and `sha256`.
#[utoipa::path(get, path = "/sdapi/v1/sd-models", operation_id = "a1111SdModels", tag = tags::A1111, responses((status = 200, description = "The checkpoints", body = Vec<SdModel>)))]
async fn sd_models(State(service): State<Arc<Service>>, _caller: Caller<A1111>) -> Answer<Json<Vec<SdModel>>> {
    let models = service.catalog().await?;
    Ok(Json(models.iter().map(sd_model).collect()))
}

/// A catalog model as A1111's checkpoint entry.
fn sd_model(m: &ModelInfo) -> SdModel {
    SdModel {
        title: title(m),
        model_name: m.id.clone(),
        hash: m.sha256.as_deref().map(|s| short_hash(s).to_string()),
        sha256: m.sha256.clone(),
        filename: m.path.clone().unwrap_or_else(|| m.id.clone()),
        config: None,
    }
}

/// The tenant's options: A1111's defaults for those we report, overlaid with the tenant's own;
/// `sd_model_checkpoint` is the title (`name [hash]`) of the model txt2img runs and
/// `sd_checkpoint_hash` its full sha256 (null while the catalog has no hash for it).
#[utoipa::path(get, path = "/sdapi/v1/options", operation_id = "a1111GetOptions", tag = tags::A1111,
    responses(
        (status = 200, description = "The options", body = HashMap<String, serde_json::Value>,
            example = json!({"sd_model_checkpoint": EXAMPLE_TITLE, "sd_checkpoint_hash": EXAMPLE_SHA256, "samples_format": "png", "sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1})),
        (status = 503, description = "No worker has registered a model yet, or a backend does not answer"),
    ))]
async fn get_options(State(service): State<Arc<Service>>, caller: Caller<A1111>) -> Answer<Json<Map<String, Value>>> {
    let stored = tenant_options(&service, caller.tenant.id).await?;
    let mut options: Map<String, Value> = match json!({
        "samples_format": "png", "sd_checkpoint_hash": null, "sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1,
        "eta_noise_seed_delta": 0, "enable_pnginfo": true, "samples_save": true, "jpeg_quality": 80,
        "live_previews_enable": true, "show_progress_every_n_steps": 10
    }) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let catalog = service.catalog().await?;
    let current = checkpoint(&service, &catalog, stored.get(CHECKPOINT), false)?;
    options.extend(stored);
    options.insert(CHECKPOINT.into(), Value::String(title(current)));
    options.insert("sd_checkpoint_hash".into(), current.sha256.clone().map_or(Value::Null, Value::String));
    Ok(Json(options))
}

/// Set options for the caller's tenant only.
///
/// `sd_model_checkpoint` must name a catalog model by title (`name [hash]`), name (a file name
/// such as `name.safetensors` too) or hash (the 10-digit short hash or the full sha256), looked
/// up in that order as A1111 does; it is stored as the model's name, so that it still holds
/// when the model's hash changes, and read back as the title. `samples_format` must
/// be `png`, `jpg` or `webp`; `live_previews_enable` a boolean and `show_progress_every_n_steps`
/// an integer from -1 (they set the live previews of txt2img/img2img, shown by `progress`);
/// other options are kept as given (at most `--max-options-keys`
/// keys and `--max-options-bytes` bytes, no NUL character).
#[utoipa::path(post, path = "/sdapi/v1/options", operation_id = "a1111SetOptions", tag = tags::A1111,
    request_body(content = HashMap<String, serde_json::Value>, example = json!({"sd_model_checkpoint": EXAMPLE_TITLE, "samples_format": "webp"})),
    responses(
        (status = 200, description = "Stored", body = JsonNull),
        (status = 400, description = "An unknown `sd_model_checkpoint` (RuntimeError)"),
        (status = 503, description = "No worker has registered a model yet, or a backend does not answer"),
    ))]
async fn set_options(
    State(service): State<Arc<Service>>,
    caller: Caller<A1111>,
    JsonBody(options, _): JsonBody<Map<String, Value>, A1111>,
) -> Answer<Json<Value>> {
    let catalog = service.catalog().await?;
    let mut updates: Vec<(String, Value)> = Vec::new();
    for (key, value) in options {
        if key.contains('\0') || has_nul(&value) {
            let field = key.escape_debug().to_string();
            return Err(ApiError::Parameter { message: format!("{field}: options must not contain NUL characters (U+0000)"), field: field.into() }.into());
        }
        let value = match key.as_str() {
            CHECKPOINT => Value::String(checkpoint(&service, &catalog, Some(&value), true)?.id.clone()),
            SAMPLES_FORMAT => {
                samples_format(Some(&value))?;
                value
            }
            translate::LIVE_PREVIEWS_ENABLE => {
                translate::preview_options(Some(&value), None, str::to_string)?;
                value
            }
            translate::SHOW_PROGRESS_EVERY_N_STEPS => {
                translate::preview_options(None, Some(&value), str::to_string)?;
                value
            }
            _ => value,
        };
        updates.push((key, value));
    }
    service.set_tenant_settings(caller.tenant.id, &updates).await?;
    Ok(Json(Value::Null))
}

/// Whether a JSON value holds a NUL character anywhere (Postgres' JSON type refuses them).
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The samplers we implement (their Karras variants are `scheduler: karras`).
#[utoipa::path(get, path = "/sdapi/v1/samplers", operation_id = "a1111Samplers", tag = tags::A1111, responses((status = 200, description = "The samplers", body = Vec<SamplerItem>)))]
async fn samplers(_caller: Caller<A1111>) -> Answer<Json<Vec<SamplerItem>>> {
    let items = Sampler::names()
        .into_iter()
        .filter_map(|n| n.parse::<Sampler>().ok())
        .filter(|s| !s.karras)
        .map(|s| SamplerItem { name: s.a1111_name(), aliases: vec![s.diffusers_class().to_string()], options: Map::new() })
        .collect();
    Ok(Json(items))
}

/// The schedulers we implement: `automatic` and `karras`.
#[utoipa::path(get, path = "/sdapi/v1/schedulers", operation_id = "a1111Schedulers", tag = tags::A1111, responses((status = 200, description = "The schedulers", body = Vec<SchedulerItem>)))]
async fn schedulers(_caller: Caller<A1111>) -> Answer<Json<Vec<SchedulerItem>>> {
    Ok(Json(vec![
        SchedulerItem { name: "automatic", label: "Automatic", aliases: None, default_rho: -1.0, need_inner_model: false },
        SchedulerItem { name: "karras", label: "Karras", aliases: None, default_rho: 7.0, need_inner_model: false },
    ]))
}

/// `progress`'s query (read as text, so that a bad value is a 422 naming it).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ProgressQuery {
    /// Leave `current_image` out (null), as A1111 does; default false.
    #[param(value_type = Option<bool>)]
    skip_current_image: Option<String>,
}

/// The caller's current job (the oldest running one, else the oldest queued), as A1111's
/// global `progress`: another tenant's work is never visible. `current_image` is the job's
/// newest live preview (base64 PNG), made as the tenant's `live_previews_enable` and
/// `show_progress_every_n_steps` options asked when the job was submitted (see `preview_every`
/// on `POST /v1/jobs`); null before the first one, and with `skip_current_image=true`.
#[utoipa::path(get, path = "/sdapi/v1/progress", operation_id = "a1111Progress", tag = tags::A1111, params(ProgressQuery),
    responses(
        (status = 200, description = "Progress of the caller's current job", body = Progress),
        (status = 422, description = "`skip_current_image` is not a boolean"),
    ))]
async fn progress(State(service): State<Arc<Service>>, caller: Caller<A1111>, query: Result<Query<ProgressQuery>, QueryRejection>) -> Answer<Json<Progress>> {
    let Query(query) = query.map_err(|e| ApiError::Malformed { field: None, message: format!("the query string cannot be read: {}", e.body_text()) })?;
    let skip_image = match query.skip_current_image.as_deref() {
        None => false,
        Some(raw) => query_bool(raw).ok_or_else(|| ApiError::Parameter {
            field: "skip_current_image".into(),
            message: format!("skip_current_image must be a boolean (true or false); got {raw:?}"),
        })?,
    };
    let (current, job_count) = service.current_job(caller.tenant.id).await?;
    let current: Option<&Job> = current.as_ref();
    let (step, total) = current.map(|j| (i64::from(j.progress_step), i64::from(j.progress_total))).unwrap_or((0, 0));
    let fraction = if total > 0 { step as f64 / total as f64 } else { 0.0 };
    let elapsed = current.and_then(|j| j.started_at).map(|s| (chrono::Utc::now() - s).num_milliseconds().max(0) as f64 / 1000.0).unwrap_or(0.0);
    let eta_relative = if fraction > 0.0 { elapsed / fraction - elapsed } else { 0.0 };
    let state = ProgressState {
        skipped: false,
        interrupted: current.is_some_and(|j| j.cancel_requested),
        stopping_generation: false,
        job: current.map(|j| j.id.to_string()).unwrap_or_default(),
        job_count,
        job_timestamp: current.map(|j| j.started_at.unwrap_or(j.created_at).format("%Y%m%d%H%M%S").to_string()).unwrap_or_else(|| "0".into()),
        job_no: 0,
        sampling_step: step,
        sampling_steps: total,
    };
    let textinfo = current.map(|j| format!("job {} {}", j.id, j.status.as_str()));
    let current_image = match current {
        Some(j) if !skip_image && j.status == JobStatus::Running => service.latest_preview(j.id).await?.map(|p| p.image),
        _ => None,
    };
    Ok(Json(Progress { progress: fraction, eta_relative, state, current_image, textinfo }))
}

/// A query-string boolean as FastAPI (pydantic) reads one.
fn query_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// Stop the caller's running jobs at their next step (queued jobs are left to run, as A1111's
/// interrupt only stops the current generation).
#[utoipa::path(post, path = "/sdapi/v1/interrupt", operation_id = "a1111Interrupt", tag = tags::A1111, responses((status = 200, description = "Done", body = Empty)))]
async fn interrupt(State(service): State<Arc<Service>>, caller: Caller<A1111>) -> Answer<Json<Empty>> {
    service.interrupt_running(caller.tenant.id).await?;
    Ok(Json(Empty {}))
}

/// As interrupt: a job is one generation.
#[utoipa::path(post, path = "/sdapi/v1/skip", operation_id = "a1111Skip", tag = tags::A1111, responses((status = 200, description = "Done", body = Empty)))]
async fn skip(state: State<Arc<Service>>, caller: Caller<A1111>) -> Answer<Json<Empty>> {
    interrupt(state, caller).await
}

/// No scripts are installed (clients such as webuiapi probe this for extensions).
#[utoipa::path(get, path = "/sdapi/v1/scripts", operation_id = "a1111Scripts", tag = tags::A1111, responses((status = 200, description = "No scripts", body = ScriptList)))]
async fn scripts(_caller: Caller<A1111>) -> Answer<Json<ScriptList>> {
    Ok(Json(ScriptList { txt2img: Vec::new(), img2img: Vec::new() }))
}

/// `{}`.
#[derive(Serialize, utoipa::ToSchema)]
struct Empty {}

/// The installed scripts: none.
#[derive(Serialize, utoipa::ToSchema)]
struct ScriptList {
    txt2img: Vec<String>,
    img2img: Vec<String>,
}

/// JSON's `null`, for the document.
struct JsonNull;

impl utoipa::PartialSchema for JsonNull {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Null).into()
    }
}

impl utoipa::ToSchema for JsonNull {}

/// FastAPI's answer for a route it does not have.
async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn nul_anywhere_in_an_option() {
        use serde_json::json;
        assert!(super::has_nul(&json!({"a": ["x", {"b\u{0}": 1}]})));
        assert!(super::has_nul(&json!("\u{0}")));
        assert!(!super::has_nul(&json!({"a": ["x", {"b": "\u{1}"}]})));
    }

    #[test]
    fn query_booleans() {
        for (raw, want) in
            [("true", Some(true)), ("True", Some(true)), ("1", Some(true)), ("false", Some(false)), ("0", Some(false)), ("maybe", None), ("", None)]
        {
            assert_eq!(super::query_bool(raw), want, "{raw}");
        }
    }

    #[test]
    fn checkpoint_names() {
        for name in ["sd15", "sd15 [6ce0161689]", "sd15.safetensors", "sd15.safetensors [6ce0161689]"] {
            assert!(super::names("sd15", name), "{name}");
        }
        assert!(!super::names("sd15", "sdxl"));
    }

    fn model(id: &str, sha256: Option<&str>) -> darkroom_shared::store::ModelInfo {
        darkroom_shared::store::ModelInfo {
            id: id.into(),
            family: darkroom_shared::family::Family::Sd,
            native_size: 512,
            size_multiple: 8,
            img2img: true,
            sha256: sha256.map(str::to_string),
            path: Some(format!("/models/{id}")),
            live_workers: 1,
        }
    }

    const SD15: &str = "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa";
    const XL: &str = "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b";

    #[test]
    fn titles_and_entries() {
        let m = model("sd15", Some(SD15));
        assert_eq!(super::title(&m), "sd15 [6ce0161689]");
        let entry = serde_json::to_value(super::sd_model(&m)).expect("json");
        assert_eq!(
            entry,
            serde_json::json!({"title": "sd15 [6ce0161689]", "model_name": "sd15", "hash": "6ce0161689", "sha256": SD15,
                "filename": "/models/sd15", "config": null})
        );
        let unknown = model("old", None);
        assert_eq!(super::title(&unknown), "old");
        let entry = serde_json::to_value(super::sd_model(&unknown)).expect("json");
        assert_eq!((entry["hash"].is_null(), entry["sha256"].is_null()), (true, true));
    }

    #[test]
    fn checkpoints_are_found_by_title_then_hash_then_name() {
        let catalog = [model("sd15", Some(SD15)), model("xl", Some(XL)), model("old", None)];
        let found = |wanted: &str| super::find(&catalog, wanted).map(|m| m.id.as_str());
        for wanted in ["sd15 [6ce0161689]", "6ce0161689", "6CE0161689", SD15, "sd15", "sd15.safetensors", "sd15.safetensors [6ce0161689]"] {
            assert_eq!(found(wanted), Some("sd15"), "{wanted}");
        }
        assert_eq!(found("xl [31e35c80fc]"), Some("xl"));
        // A stale hash in a title: found by the name, as A1111 does.
        assert_eq!(found("sd15 [0123456789]"), Some("sd15"));
        // Another model's hash in a title: the title matches no model, the whole string is no
        // hash, and the name wins.
        assert_eq!(found("sd15 [31e35c80fc]"), Some("sd15"));
        assert_eq!(found("old"), Some("old"));
        for unknown in ["0123456789", "6ce016168", "6ce0161689b", "nope", "nope [6ce0161689]", ""] {
            assert_eq!(found(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn the_title_comes_before_a_hash_and_a_hash_before_a_name() {
        // A model named like another's short hash: the name is only looked at last.
        let catalog = [model("6ce0161689", Some(XL)), model("sd15", Some(SD15))];
        assert_eq!(super::find(&catalog, "6ce0161689").map(|m| m.id.as_str()), Some("sd15"));
        assert_eq!(super::find(&catalog, "6ce0161689 [31e35c80fc]").map(|m| m.id.as_str()), Some("6ce0161689"));
    }
}
