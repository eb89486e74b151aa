//! AUTOMATIC1111 prompt semantics against references recorded from an independent Python
//! implementation of its algorithm (`tools/fixtures/record_prompts.py`, cross-checked there
//! against AUTOMATIC1111's own code): token chunks and weights exactly, text-encoder outputs
//! to a relative error of 1e-5, and whole images within 2 of 255.
use std::collections::HashMap;

use base64::Engine as _;
use darkroom_shared::request::{GenerationRequest, PromptSyntax};
use darkroom_worker::pipeline::{NoObserver, Pipeline, Timings};
use darkroom_worker::request::resolve;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::helpers::{fixtures, max_pixel_diff, model_dir, read_png, runtime, ApiServer, ServiceEnv};
use crate::workers::Worker;

#[derive(Deserialize)]
struct Embeddings {
    cases: Vec<EmbeddingCase>,
}

#[derive(Deserialize)]
struct EmbeddingCase {
    model: String,
    name: String,
    prompt: String,
    chunks: usize,
    input_ids: Vec<Vec<i64>>,
    #[serde(default)]
    input_ids_2: Vec<Vec<i64>>,
    multipliers: Vec<Vec<f64>>,
    #[serde(default)]
    multipliers_2: Vec<Vec<f64>>,
    hidden: Slice,
    pooled: Option<Slice>,
}

/// Where a tensor lies in `embeddings.bin` (offset in float32s).
#[derive(Deserialize)]
struct Slice {
    offset: usize,
    shape: Vec<usize>,
}

impl Slice {
    fn read<'a>(&self, bin: &'a [f32]) -> &'a [f32] {
        &bin[self.offset..self.offset + self.shape.iter().product::<usize>()]
    }
}

/// max |ours - theirs| / max |theirs|.
fn relative_error(ours: &[f32], theirs: &[f32]) -> f64 {
    let scale = theirs.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    let diff = ours.iter().zip(theirs).fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    diff / scale.max(f64::MIN_POSITIVE)
}

fn reference(name: &str) -> std::path::PathBuf {
    fixtures().join("reference/prompts").join(name)
}

fn pipeline<'a>(cache: &'a mut HashMap<String, Pipeline>, model: &str) -> &'a mut Pipeline {
    cache.entry(model.to_string()).or_insert_with(|| Pipeline::load(runtime(), &model_dir(model)).expect("tiny model loads"))
}

#[test]
fn a1111_prompts_encode_as_the_reference_implementation_does() {
    let manifest: Embeddings = serde_json::from_str(&std::fs::read_to_string(reference("embeddings.json")).expect("embeddings.json")).expect("parses");
    let bytes = std::fs::read(reference("embeddings.bin")).expect("embeddings.bin");
    let bin: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    for model in ["tiny-sd15", "tiny-sdxl"] {
        assert!(manifest.cases.iter().filter(|c| c.model == model).count() >= 30, "at least 30 prompts on {model}");
    }
    let mut cache = HashMap::new();
    let mut failures = Vec::new();
    let mut worst: f64 = 0.0;
    for case in &manifest.cases {
        let pipeline = pipeline(&mut cache, &case.model);
        let ours = pipeline.encode_prompt(&case.prompt, PromptSyntax::A1111, &mut Timings::default()).expect("encodes");
        let what = format!("{} {} ({:?})", case.model, case.name, case.prompt.chars().take(60).collect::<String>());
        let ids: Vec<Vec<i64>> = ours.chunks.iter().map(|c| c.ids.clone()).collect();
        let ids_2: Vec<Vec<i64>> = ours.chunks_2.iter().map(|c| c.ids.clone()).collect();
        // The recorded weights are Python floats; the encoder sees them as float32, as AUTOMATIC1111's torch does.
        let as_f32 = |m: &[Vec<f64>]| m.iter().map(|c| c.iter().map(|&w| w as f32).collect::<Vec<_>>()).collect::<Vec<_>>();
        let weights: Vec<Vec<f32>> = ours.chunks.iter().map(|c| c.weights.clone()).collect();
        let weights_2: Vec<Vec<f32>> = ours.chunks_2.iter().map(|c| c.weights.clone()).collect();
        if ours.chunks.len() != case.chunks || ids != case.input_ids || ids_2 != case.input_ids_2 {
            failures.push(format!("{what}: token chunks differ:\n  ours:   {ids:?}\n  theirs: {:?}", case.input_ids));
            continue;
        }
        if weights != as_f32(&case.multipliers) || weights_2 != as_f32(&case.multipliers_2) {
            failures.push(format!("{what}: weights differ:\n  ours:   {weights:?}\n  theirs: {:?}", case.multipliers));
            continue;
        }
        if ours.shape != case.hidden.shape {
            failures.push(format!("{what}: hidden states of shape {:?}, expected {:?}", ours.shape, case.hidden.shape));
            continue;
        }
        let err = relative_error(&ours.hidden, case.hidden.read(&bin));
        worst = worst.max(err);
        if err > 1e-5 {
            failures.push(format!("{what}: hidden states differ by {err:.2e} (relative)"));
        }
        match &case.pooled {
            Some(pooled) => {
                let err = relative_error(&ours.pooled, pooled.read(&bin));
                worst = worst.max(err);
                if ours.pooled.len() != pooled.shape.iter().product::<usize>() || err > 1e-5 {
                    failures.push(format!("{what}: pooled embedding differs by {err:.2e} (relative)"));
                }
            }
            None => assert!(ours.pooled.is_empty(), "{what}: no pooled embedding for SD 1.x"),
        }
    }
    eprintln!("{} prompts, worst relative error {worst:.2e}", manifest.cases.len());
    assert!(failures.is_empty(), "{} of {} prompts differ:\n{}", failures.len(), manifest.cases.len(), failures.join("\n"));
}

#[derive(Deserialize)]
struct Manifest {
    cases: Vec<crate::pipeline::Case>,
}

#[test]
fn weighted_long_and_break_prompts_give_the_reference_images() {
    let manifest: Manifest = serde_json::from_str(&std::fs::read_to_string(reference("pipelines/manifest.json")).expect("manifest.json")).expect("parses");
    for model in ["tiny-sd15", "tiny-sdxl"] {
        let cases: Vec<_> = manifest.cases.iter().filter(|c| c.model == model).collect();
        assert!(cases.len() >= 3, "weighted, long and BREAK prompts on {model}");
        assert!(cases.iter().any(|c| c.uncond_chunks != c.cond_chunks), "{model}: sides of different lengths (two UNet calls a step)");
    }
    let mut cache = HashMap::new();
    let mut failures = Vec::new();
    for case in &manifest.cases {
        let request = crate::pipeline::request(case);
        let pipeline = pipeline(&mut cache, &case.model);
        let params = resolve(&request, pipeline.model()).expect("reference request is valid");
        let (images, _) = pipeline.generate(&params, &mut NoObserver).expect("generates");
        let calls_per_step = if case.uncond_chunks == case.cond_chunks { 1 } else { 2 };
        for (ours, file) in images.iter().zip(&case.images) {
            let theirs = read_png(&reference("pipelines").join(file));
            let diff = max_pixel_diff(&ours.image, &theirs);
            eprintln!("{:48} {} UNet call(s) a step, max diff {diff}", case.name, calls_per_step);
            if diff > 2 {
                failures.push(format!("{} ({file}): max pixel difference {diff}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "images differ from the reference:\n{}", failures.join("\n"));
}

/// A prompt of 3 chunks with weights: every part of the AUTOMATIC1111 reading matters to it.
fn long_weighted_prompt() -> String {
    let filler = "red blue green cat dog, house tree river mountain sky, cloud sun moon star bird, ".repeat(8);
    format!("a (photo:1.3) of an [astronaut] riding a ((horse)) on mars, {filler}(sharp focus:1.2)")
}

async fn png(http: &reqwest::Client, url: String, token: &str) -> darkroom_worker::pipeline::RgbImage {
    let r = http.get(url).bearer_auth(token).send().await.expect("GET image");
    assert_eq!(r.status(), 200);
    let img = image::load_from_memory(&r.bytes().await.expect("bytes")).expect("an image").to_rgb8();
    darkroom_worker::pipeline::RgbImage { width: img.width() as usize, height: img.height() as usize, pixels: img.into_raw() }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_a1111_dialect_always_and_the_native_api_on_request_read_a1111_syntax() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let token = env.tenant_with_token("acme");
    let _worker = Worker::start(&env, &[]);
    let http = reqwest::Client::new();
    let prompt = long_weighted_prompt();
    let native = |syntax: Option<&str>| {
        let mut body = json!({"model": "tiny", "prompt": prompt, "negative_prompt": "(blurry:1.3)", "width": 64, "height": 64,
            "steps": 4, "seed": 42, "guidance_scale": 7.0, "sampler": "Euler"});
        if let Some(s) = syntax {
            body["prompt_syntax"] = json!(s);
        }
        http.post(api.url("/v1/jobs")).bearer_auth(&token).header("prefer", "wait=60").json(&body).send()
    };
    let image_of = |job: Value| {
        assert_eq!(job["status"], "succeeded", "{job:#}");
        png(&http, api.url(job["images"][0]["url"].as_str().expect("image url")), &token)
    };
    let a1111_job: Value = native(Some("a1111")).await.expect("POST").json().await.expect("job");
    let a1111 = image_of(a1111_job.clone()).await;
    let plain = image_of(native(None).await.expect("POST").json().await.expect("job")).await;
    assert!(max_pixel_diff(&a1111, &plain) > 8, "weights and the words past 75 tokens change the image");
    assert_eq!(a1111_job["request"]["prompt_syntax"], "a1111", "the job records how its prompt was read: {a1111_job:#}");

    // What the pipeline makes of it directly, and what the A1111 dialect makes of the same request.
    let request = GenerationRequest {
        negative_prompt: Some("(blurry:1.3)".into()),
        width: Some(64),
        height: Some(64),
        steps: 4,
        seed: Some(42),
        guidance_scale: 7.0,
        prompt_syntax: Some(PromptSyntax::A1111),
        ..GenerationRequest::new("tiny-sd15", prompt.clone())
    };
    let mut pipeline = Pipeline::load(runtime(), &model_dir("tiny-sd15")).expect("loads");
    let params = resolve(&request, pipeline.model()).expect("valid");
    let (direct, _) = pipeline.generate(&params, &mut NoObserver).expect("generates");
    assert!(max_pixel_diff(&a1111, &direct[0].image) <= 1);
    let r = http
        .post(api.url("/sdapi/v1/txt2img"))
        .basic_auth("admin", Some(&token))
        .json(&json!({"prompt": prompt, "negative_prompt": "(blurry:1.3)", "width": 64, "height": 64, "steps": 4, "seed": 42,
            "cfg_scale": 7.0, "sampler_name": "Euler"}))
        .send()
        .await
        .expect("txt2img");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("JSON");
    let b64 = body["images"][0].as_str().expect("an image");
    let img = image::load_from_memory(&base64::engine::general_purpose::STANDARD.decode(b64).expect("base64")).expect("png").to_rgb8();
    let from_a1111 = darkroom_worker::pipeline::RgbImage { width: 64, height: 64, pixels: img.into_raw() };
    assert!(max_pixel_diff(&a1111, &from_a1111) <= 1, "the A1111 dialect reads prompts as a1111");

    // A weight that is not a number: a 422 naming the prompt, in each dialect's shape; read
    // plainly, the same text is just text.
    let bad = json!({"model": "tiny", "prompt": "a (cat:1.2.3)", "prompt_syntax": "a1111", "width": 64, "height": 64, "steps": 1});
    let r = http.post(api.url("/v1/jobs")).bearer_auth(&token).json(&bad).send().await.expect("POST");
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.expect("JSON");
    assert_eq!(e["error"]["field"], "prompt", "{e:#}");
    assert!(e["error"]["message"].as_str().unwrap_or_default().contains("1.2.3"), "{e:#}");
    let plain_bad = json!({"model": "tiny", "prompt": "a (cat:1.2.3)", "width": 64, "height": 64, "steps": 1});
    assert_eq!(http.post(api.url("/v1/jobs")).bearer_auth(&token).json(&plain_bad).send().await.expect("POST").status(), 202);
    let r = http
        .post(api.url("/sdapi/v1/txt2img"))
        .basic_auth("admin", Some(&token))
        .json(&json!({"prompt": "a (cat:1.2.3)", "steps": 1}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.expect("JSON");
    assert!(e.to_string().contains("prompt") && e.to_string().contains("1.2.3"), "{e:#}");
    let unknown = json!({"model": "tiny", "prompt": "a cat", "prompt_syntax": "comfy"});
    let r = http.post(api.url("/v1/jobs")).bearer_auth(&token).json(&unknown).send().await.expect("POST");
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.expect("JSON");
    assert_eq!(e["error"]["field"], "prompt_syntax", "{e:#}");
}

/// A request only a worker can refuse (a prompt longer than a fixed-length UNet export takes:
/// no fixture has one, so the test plays the worker through the store) fails `invalid_request`
/// with the field recorded, and every blocking dialect answers its own 422 (HF's 400) naming
/// that field; the native job shows it as `error_field`.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_worker_refuses_is_the_dialects_invalid_request_naming_the_field() {
    use darkroom_shared::job::{ErrorType, JobStatus};
    use std::time::Duration;

    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    env.register_tiny_model().await;
    let api = ApiServer::start(&env, &[]);
    let store = env.store().await;
    let http = reqwest::Client::new();
    let message = "prompt: this model's UNet takes exactly 77 tokens, and the prompt needs 154";

    // Play the worker: claim the newest queued job and fail it as the worker does.
    let refuse = |prompt: &'static str| {
        let store = store.clone();
        async move {
            for _ in 0..200 {
                let row: Option<(uuid::Uuid,)> = sqlx::query_as("SELECT id FROM jobs WHERE status = 'queued' AND request->>'prompt' = $1")
                    .bind(prompt)
                    .fetch_optional(store.pool())
                    .await
                    .expect("jobs");
                if let Some((id,)) = row {
                    let claim = store.claim(id, uuid::Uuid::now_v7(), Duration::from_secs(30)).await.expect("claim").expect("queued");
                    let status = store.fail(id, claim.lease, ErrorType::InvalidRequest, Some("prompt"), message, false, 3).await.expect("fail");
                    assert_eq!(status, Some(JobStatus::Failed));
                    return id;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no queued job for {prompt:?}");
        }
    };

    // AUTOMATIC1111: its 422, `loc` naming the field.
    let call = http.post(api.url("/sdapi/v1/txt2img")).basic_auth("me", Some(&token)).json(&json!({"prompt": "a1111 refused", "steps": 2})).send();
    let (answer, _) = tokio::join!(call, refuse("a1111 refused"));
    let answer = answer.expect("answer");
    assert_eq!(answer.status(), 422);
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "prompt"]), "{body}");
    assert_eq!(body["detail"][0]["msg"], "this model's UNet takes exactly 77 tokens, and the prompt needs 154", "{body}");

    // HF serverless: its 400 with the message.
    let call = http.post(api.url("/models/tiny")).bearer_auth(&token).json(&json!({"inputs": "hf refused"})).send();
    let (answer, _) = tokio::join!(call, refuse("hf refused"));
    let answer = answer.expect("answer");
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.expect("json");
    assert!(body["error"].as_str().unwrap_or("").contains("77 tokens"), "{body}");

    // The native API: the job failed, its field and type recorded.
    let submitted: Value = http
        .post(api.url("/v1/jobs"))
        .bearer_auth(&token)
        .json(&json!({"model": "tiny", "prompt": "native refused", "width": 64, "height": 64, "steps": 2}))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json");
    let id = refuse("native refused").await;
    assert_eq!(submitted["id"], id.to_string());
    let job: Value = http.get(api.url(&format!("/v1/jobs/{id}"))).bearer_auth(&token).send().await.expect("job").json().await.expect("json");
    assert_eq!(
        (job["status"].as_str(), job["error_type"].as_str(), job["error_field"].as_str()),
        (Some("failed"), Some("invalid_request"), Some("prompt")),
        "{job}"
    );
}
