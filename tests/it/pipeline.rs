//! Full-pipeline parity: our images against the ones diffusers (Optimum's ONNX pipeline) made
//! from the same tiny models, prompts, samplers and seeds (tests/fixtures/reference/pipelines).
use std::collections::HashMap;

use base64::Engine as _;
use darkroom_shared::request::{GenerationRequest, PromptSyntax};
use darkroom_worker::pipeline::{Observer, Pipeline, PipelineError};
use darkroom_worker::request::resolve;
use serde::Deserialize;

use crate::helpers::{fixtures, max_pixel_diff, model_dir, read_png, runtime, scratch};

#[derive(Deserialize)]
struct Manifest {
    cases: Vec<Case>,
}

/// One recorded case (also of `reference/prompts/pipelines`, see `prompts.rs`).
#[derive(Deserialize, Clone)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) model: String,
    prompt: String,
    negative_prompt: Option<String>,
    width: u32,
    height: u32,
    steps: u32,
    guidance_scale: f32,
    sampler: String,
    seed: u64,
    num_images: u32,
    init_image: Option<String>,
    strength: Option<f32>,
    #[serde(default)]
    prompt_syntax: Option<PromptSyntax>,
    /// AUTOMATIC1111 prompts: how many chunks each side has.
    #[serde(default)]
    pub(crate) uncond_chunks: usize,
    #[serde(default)]
    pub(crate) cond_chunks: usize,
    pub(crate) images: Vec<String>,
}

pub(crate) fn request(case: &Case) -> GenerationRequest {
    let dir = fixtures().join("reference/pipelines");
    let init_image = case.init_image.as_ref().map(|f| base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join(f)).expect("init image")));
    GenerationRequest {
        negative_prompt: case.negative_prompt.clone(),
        width: Some(case.width),
        height: Some(case.height),
        steps: case.steps,
        guidance_scale: case.guidance_scale,
        sampler: case.sampler.clone(),
        seed: Some(case.seed),
        num_images: case.num_images,
        init_image,
        strength: case.strength,
        prompt_syntax: case.prompt_syntax,
        ..GenerationRequest::new(&case.model, &case.prompt)
    }
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(fixtures().join("reference/pipelines/manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest parses")
}

#[test]
fn every_reference_image_is_reproduced_within_2_of_255() {
    let manifest = manifest();
    assert!(manifest.cases.len() >= 12, "the manifest covers both models, three samplers and two seeds");
    let mut pipelines: HashMap<String, Pipeline> = HashMap::new();
    let mut failures = Vec::new();
    for case in &manifest.cases {
        let pipeline = pipelines.entry(case.model.clone()).or_insert_with(|| Pipeline::load(runtime(), &model_dir(&case.model)).expect("tiny model loads"));
        let params = resolve(&request(case), pipeline.model()).expect("reference request is valid");
        let (images, _) = pipeline.generate(&params, &mut darkroom_worker::pipeline::NoObserver).expect("generates");
        assert_eq!(images.len(), case.images.len(), "{}", case.name);
        for (ours, file) in images.iter().zip(&case.images) {
            let theirs = read_png(&fixtures().join("reference/pipelines").join(file));
            let diff = max_pixel_diff(&ours.image, &theirs);
            eprintln!("{:40} {file:40} max diff {diff}", case.name);
            if diff > 2 {
                failures.push(format!("{} ({file}): max pixel difference {diff}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "images differ from diffusers':\n{}", failures.join("\n"));
}

#[test]
fn image_i_uses_seed_plus_i() {
    let mut pipeline = Pipeline::load(runtime(), &model_dir("tiny-sd15")).unwrap();
    let mut req =
        GenerationRequest { width: Some(64), height: Some(64), steps: 4, seed: Some(100), num_images: 2, ..GenerationRequest::new("m", "a red apple") };
    let params = resolve(&req, pipeline.model()).unwrap();
    let (pair, _) = pipeline.generate(&params, &mut darkroom_worker::pipeline::NoObserver).unwrap();
    assert_eq!((pair[0].seed, pair[1].seed), (100, 101));
    req.num_images = 1;
    req.seed = Some(101);
    let params = resolve(&req, pipeline.model()).unwrap();
    let (single, _) = pipeline.generate(&params, &mut darkroom_worker::pipeline::NoObserver).unwrap();
    assert_eq!(max_pixel_diff(&pair[1].image, &single[0].image), 0);
    assert_ne!(pair[0].image.pixels, pair[1].image.pixels);
}

struct CancelAfter {
    steps_seen: Vec<(usize, usize)>,
    cancel_at: usize,
}

impl Observer for CancelAfter {
    fn on_step(&mut self, step: usize, total: usize) {
        self.steps_seen.push((step, total));
    }
    fn is_canceled(&self) -> bool {
        self.steps_seen.len() >= self.cancel_at
    }
}

#[test]
fn progress_is_reported_per_step_and_cancel_stops_between_steps() {
    let mut pipeline = Pipeline::load(runtime(), &model_dir("tiny-sd15")).unwrap();
    let req = GenerationRequest { width: Some(64), height: Some(64), steps: 6, seed: Some(1), num_images: 2, ..GenerationRequest::new("m", "a boat") };
    let params = resolve(&req, pipeline.model()).unwrap();
    let mut full = CancelAfter { steps_seen: vec![], cancel_at: usize::MAX };
    pipeline.generate(&params, &mut full).unwrap();
    assert_eq!(full.steps_seen, (1..=12).map(|s| (s, 12)).collect::<Vec<_>>());
    let mut cancel = CancelAfter { steps_seen: vec![], cancel_at: 3 };
    let err = pipeline.generate(&params, &mut cancel).unwrap_err();
    assert!(matches!(err, PipelineError::Canceled), "{err}");
    assert_eq!(cancel.steps_seen.len(), 3, "stopped at the next step boundary");
}

#[test]
fn fp16_export_runs_and_stays_close_to_fp32() {
    let req = GenerationRequest {
        width: Some(64),
        height: Some(64),
        steps: 8,
        seed: Some(42),
        sampler: "Euler a".into(),
        ..GenerationRequest::new("m", "a photo of an astronaut riding a horse on mars")
    };
    let mut fp32 = Pipeline::load(runtime(), &model_dir("tiny-sd15")).unwrap();
    let mut fp16 = Pipeline::load(runtime(), &model_dir("tiny-sd15-fp16")).unwrap();
    let params = resolve(&req, fp32.model()).unwrap();
    let (a, _) = fp32.generate(&params, &mut darkroom_worker::pipeline::NoObserver).unwrap();
    let (b, _) = fp16.generate(&params, &mut darkroom_worker::pipeline::NoObserver).unwrap();
    let mean: f64 = a[0].image.pixels.iter().zip(&b[0].image.pixels).map(|(x, y)| x.abs_diff(*y) as f64).sum::<f64>() / a[0].image.pixels.len() as f64;
    assert!(mean < 4.0, "fp16 image drifts from fp32 by {mean:.2} on average");
}

#[test]
fn incomplete_model_dirs_name_the_missing_file() {
    let src = model_dir("tiny-sd15");
    for missing in ["unet/model.onnx", "tokenizer/vocab.json", "model_index.json", "scheduler/scheduler_config.json"] {
        let dir = scratch(&format!("incomplete-{}", missing.replace('/', "-")));
        copy_dir(&src, &dir);
        std::fs::remove_file(dir.join(missing)).unwrap();
        let err = Pipeline::load(runtime(), &dir).err().expect("loading fails").to_string();
        assert!(err.contains(missing), "error for missing {missing} names it: {err}");
    }
    // the UNet's weights live in unet/model.onnx_data, as in real exports
    let dir = scratch("incomplete-external-data");
    copy_dir(&model_dir("tiny-sdxl"), &dir);
    std::fs::remove_file(dir.join("unet/model.onnx_data")).unwrap();
    let err = Pipeline::load(runtime(), &dir).err().expect("loading fails").to_string();
    assert!(err.contains("unet/model.onnx_data"), "{err}");
    let dir = scratch("not-json");
    copy_dir(&src, &dir);
    std::fs::write(dir.join("model_index.json"), "{ nope").unwrap();
    let err = Pipeline::load(runtime(), &dir).err().expect("loading fails").to_string();
    assert!(err.contains("model_index.json") && err.contains("invalid JSON"), "{err}");
}

#[test]
fn mismatched_parts_are_named() {
    // SDXL's first text encoder (width 16) next to SD 1.5's UNet (width 32).
    let dir = scratch("mismatched");
    copy_dir(&model_dir("tiny-sd15"), &dir);
    for f in ["model.onnx", "config.json"] {
        let _ = std::fs::copy(model_dir("tiny-sdxl").join("text_encoder").join(f), dir.join("text_encoder").join(f));
    }
    let err = Pipeline::load(runtime(), &dir).err().expect("loading fails").to_string();
    assert!(err.contains("unet/model.onnx") && err.contains("encoder_hidden_states"), "{err}");
}

fn copy_dir(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// What a model's width and height must be multiples of: the VAE's 8 times the UNet's
/// downsampling (tiny-sd15 has two down blocks: 16), read from the export's configs.
#[test]
fn the_size_multiple_comes_from_the_unet() {
    let model = darkroom_worker::model::ModelDir::open(&model_dir("tiny-sd15")).expect("tiny-sd15 opens");
    assert_eq!((model.native_size, model.size_multiple), (64, 16));
}
