//! The Hugging Face dialects end to end, with the real API and a real worker on the tiny model
//! (`tiny`): the endpoint handler (`POST /`, seeds 000/001) and the serverless text-to-image API
//! (`POST /models/{id}`, seed 002) with its cache, wait-for-model and `Accept` formats, and
//! `GET /status/{id}` with the load estimates workers record.
use std::time::Duration;

use base64::Engine as _;
use darkroom_shared::family::Family;
use darkroom_shared::store::{ModelEntry, ModelLoad, WorkerStart};
use reqwest::{Client, Response};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{ApiServer, ServiceEnv};
use crate::workers::Worker;

/// A tenant's client of one server.
pub struct Caller {
    pub http: Client,
    pub base: String,
    pub token: String,
}

impl Caller {
    pub fn new(api: &ApiServer, token: &str) -> Caller {
        Caller { http: Client::builder().timeout(Duration::from_secs(240)).build().expect("client"), base: api.base.clone(), token: token.to_string() }
    }

    pub async fn post(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Response {
        let mut req = self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("the API answers")
    }

    pub async fn json(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.post(path, body, &[]).await;
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.expect("GET");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The tenant's newest job, as the native API shows it.
    pub async fn newest_job(&self) -> Value {
        let (status, list) = self.get("/v1/jobs?limit=1").await;
        assert_eq!(status, 200, "{list}");
        list["data"][0].clone()
    }
}

/// The number of job rows in the test's database.
pub async fn job_count(env: &ServiceEnv) -> i64 {
    let store = env.store().await;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM jobs").fetch_one(store.pool()).await.expect("count jobs");
    n
}

fn decode_png(b64: &str) -> image::DynamicImage {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    image::load_from_memory(&bytes).expect("an image")
}

#[tokio::test(flavor = "multi_thread")]
async fn hf_endpoint_seed_examples_errors_and_default_model() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let token = env.tenant_with_token("acme");
    let _worker = Worker::start(&env, &[]);
    let c = Caller::new(&api, &token);

    // Seed 000 (the catalog holds one model: it is the default), at 128x128 instead of 512x512
    // so that it stays quick on one CPU thread while the other tests run.
    let (status, body) = c
        .json("/", json!({"inputs": "Positve prompt", "negative_prompt": "Negative prompt goes here", "height": 128, "width": 128, "guidance_scale": 7.5}))
        .await;
    assert_eq!(status, 200, "{body}");
    let img = decode_png(body["image"].as_str().expect("image"));
    assert_eq!((img.width(), img.height()), (128, 128));
    let job = c.newest_job().await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["request"]["steps"], 25, "the handler's default steps");
    assert_eq!(job["request"]["negative_prompt"], "Negative prompt goes here");

    // Seed 001 (with inference_steps), at a smaller size to keep the test quick.
    let (status, body) = c
        .json("/", json!({"inputs": "Positve prompt", "negative_prompt": "Negative prompt goes here", "height": 64, "width": 64, "guidance_scale": 7.5, "inference_steps": 50}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(c.newest_job().await["request"]["steps"], 50);

    // The `parameters` form, seeded: the same seed gives the same image.
    let form = json!({"inputs": "a lighthouse", "parameters": {"height": 64, "width": 64, "num_inference_steps": 3, "seed": 7}});
    let (_, a) = c.json("/", form.clone()).await;
    let (_, b) = c.json("/", form).await;
    assert_eq!(a["image"], b["image"]);
    assert_eq!(c.newest_job().await["request"]["seed"], 7);

    // Errors: {"error": "..."} naming this dialect's fields.
    let (status, body) = c.json("/", json!({"s": "Positve prompt"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains('s'), "{body}");
    let (status, body) = c.json("/", json!({"inputs": "p", "inference_steps": 0, "width": 64, "height": 64})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().starts_with("inference_steps must be"), "{body}");
    let (status, body) = c.json("/", json!({"inputs": "p", "width": 65})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("width"), "{body}");
    let bad = Caller::new(&api, "drk_nope");
    let (status, body) = bad.json("/", json!({"inputs": "p"})).await;
    assert_eq!((status, body["error"].is_string()), (401, true), "{body}");

    // Two models and no --default-model: a 400 that says to set it; with it set, that model.
    let store = env.store().await;
    let other = ModelEntry { id: "other".into(), family: Family::Sd, native_size: 64, size_multiple: 8, img2img: true, sha256: None, path: None };
    store.register_worker(Uuid::new_v4(), "test", &[other]).await.expect("catalog");
    let (status, body) = c.json("/", json!({"inputs": "p"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--default-model"), "{body}");
    let api2 = ApiServer::start(&env, &[("DARKROOM_DEFAULT_MODEL", "tiny")]);
    let c2 = Caller::new(&api2, &token);
    let (status, body) = c2.json("/", json!({"inputs": "p", "width": 64, "height": 64, "inference_steps": 2})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(c2.newest_job().await["model"], "tiny");
}

#[tokio::test(flavor = "multi_thread")]
async fn hf_serverless_seed_example_formats_and_parameters() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let c = Caller::new(&api, &env.tenant_with_token("acme"));
    let _worker = Worker::start(&env, &[]);

    // Seed 002's example as written: raw bytes, JPEG by default, HF's defaults.
    let r = c.post("/models/tiny", json!({"inputs": "Astronaut riding a horse"}), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.headers()["x-compute-images"], "1");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(image::guess_format(&bytes).unwrap(), image::ImageFormat::Jpeg);
    let job = c.newest_job().await;
    assert_eq!((job["request"]["steps"].as_u64(), job["request"]["sampler"].as_str()), (Some(20), Some("Euler a")));

    for (accept, mime, format) in [
        ("image/png", "image/png", image::ImageFormat::Png),
        ("image/webp", "image/webp", image::ImageFormat::WebP),
        ("*/*", "image/jpeg", image::ImageFormat::Jpeg),
        ("text/html, image/png;q=0.9", "image/png", image::ImageFormat::Png),
    ] {
        let r = c.post("/models/tiny", json!({"inputs": "a cat", "parameters": {"num_inference_steps": 2}}), &[("accept", accept)]).await;
        assert_eq!(r.status(), 200, "{accept}");
        assert_eq!(r.headers()["content-type"], mime);
        assert_eq!(image::guess_format(&r.bytes().await.unwrap()).unwrap(), format);
    }
    let r = c.post("/models/tiny", json!({"inputs": "a cat"}), &[("accept", "image/tiff")]).await;
    assert_eq!(r.status(), 406);

    // Every parameter, in both spellings of the size and the negative prompt.
    let body = json!({"inputs": "a cat", "parameters": {"guidance_scale": 6.0, "negative_prompt": ["blurry", "dark"], "num_inference_steps": 3,
        "target_size": {"width": 128, "height": 64}, "scheduler": "DPMSolverMultistepScheduler", "seed": 5}});
    let r = c.post("/models/tiny", body, &[("accept", "image/png")]).await;
    if r.status() != 200 {
        panic!("{}", r.text().await.unwrap_or_default());
    }
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (128, 64));
    let job = c.newest_job().await;
    let req = &job["request"];
    assert_eq!((req["sampler"].as_str(), req["seed"].as_u64(), req["negative_prompt"].as_str()), (Some("DPM++ 2M"), Some(5), Some("blurry, dark")));
    assert_eq!(req["guidance_scale"], 6.0);
    let r = c
        .post("/models/tiny", json!({"inputs": "a cat", "parameters": {"width": 64, "height": 128, "num_inference_steps": 2, "negative_prompt": "x"}}), &[])
        .await;
    assert_eq!(r.status(), 200);

    // Errors.
    let (status, body) = c.json("/models/acme/nope", json!({"inputs": "a cat"})).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("Model acme/nope does not exist")));
    let (status, body) = c.json("/models/tiny", json!({"inputs": "a cat", "parameters": {"scheduler": "PNDMScheduler"}})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("PNDMScheduler"), "{body}");
    let (status, body) = c.json("/models/tiny", json!({"inputs": "a cat", "parameters": {"num_inference_steps": 500}})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().starts_with("parameters.num_inference_steps must be"), "{body}");
    let (status, body) = c.json("/models/tiny", json!({"inputs": "a cat", "parameters": {"num_images": 2}})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("num_images"), "{body}");
    let (status, _) = Caller::new(&api, "drk_nope").json("/models/tiny", json!({"inputs": "a cat"})).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn hf_serverless_cache_is_per_tenant_and_can_be_bypassed() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let acme = Caller::new(&api, &env.tenant_with_token("acme"));
    let globex = Caller::new(&api, &env.tenant_with_token("globex"));
    let _worker = Worker::start(&env, &[]);
    let body = json!({"inputs": "Astronaut riding a horse", "parameters": {"num_inference_steps": 3}});

    let first = acme.post("/models/tiny", body.clone(), &[]).await;
    assert_eq!(first.headers()["x-compute-type"], "darkroom");
    let job = first.headers()["x-darkroom-job"].to_str().unwrap().to_string();
    let first = first.bytes().await.unwrap();
    let jobs = job_count(&env).await;

    // Identical request, no seed: the stored image, no new job.
    let again = acme.post("/models/tiny", body.clone(), &[]).await;
    assert_eq!(again.headers()["x-compute-type"], "cache");
    assert_eq!(again.headers()["x-darkroom-job"].to_str().unwrap(), job);
    assert_eq!(again.bytes().await.unwrap(), first);
    assert_eq!(job_count(&env).await, jobs);
    // The job is a normal job of its tenant, and only of its tenant.
    assert_eq!(acme.get(&format!("/v1/jobs/{job}")).await.0, 200);
    assert_eq!(globex.get(&format!("/v1/jobs/{job}")).await.0, 404);

    // Another tenant's identical request is computed afresh.
    let theirs = globex.post("/models/tiny", body.clone(), &[]).await;
    assert_eq!(theirs.headers()["x-compute-type"], "darkroom");
    assert_eq!(job_count(&env).await, jobs + 1);

    // x-use-cache: false (and options.use_cache: false): a new job with a new random seed.
    let fresh = acme.post("/models/tiny", body.clone(), &[("x-use-cache", "false")]).await;
    assert_eq!(fresh.headers()["x-compute-type"], "darkroom");
    assert_ne!(fresh.bytes().await.unwrap(), first);
    let mut with_option = body.clone();
    with_option["options"] = json!({"use_cache": false});
    let fresh = acme.post("/models/tiny", with_option, &[]).await;
    assert_eq!(fresh.headers()["x-compute-type"], "darkroom");
    assert_eq!(job_count(&env).await, jobs + 3);

    // Seeded requests are keyed with their seed.
    let mut seeded = body.clone();
    seeded["parameters"]["seed"] = json!(11);
    let a = acme.post("/models/tiny", seeded.clone(), &[]).await.bytes().await.unwrap();
    let b = acme.post("/models/tiny", seeded.clone(), &[]).await;
    assert_eq!(b.headers()["x-compute-type"], "cache");
    assert_eq!(b.bytes().await.unwrap(), a);
    seeded["parameters"]["seed"] = json!(12);
    let c = acme.post("/models/tiny", seeded, &[]).await;
    assert_eq!(c.headers()["x-compute-type"], "darkroom");
    assert_ne!(c.bytes().await.unwrap(), a);
    // A different Accept is a different request (another encoding).
    let png = acme.post("/models/tiny", body, &[("accept", "image/png")]).await;
    assert_eq!(png.headers()["x-compute-type"], "darkroom");
}

#[tokio::test(flavor = "multi_thread")]
async fn hf_serverless_wait_for_model() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let c = Caller::new(&api, &env.tenant_with_token("acme"));
    // The model is in the catalog but no worker serving it is live.
    let store = env.store().await;
    let entry = ModelEntry { id: "tiny".into(), family: Family::Sd, native_size: 64, size_multiple: 8, img2img: true, sha256: None, path: None };
    let gone = Uuid::new_v4();
    store.register_worker(gone, "test", &[entry]).await.expect("catalog");
    store.worker_stopped(gone).await.expect("stopped");

    let body = json!({"inputs": "Astronaut riding a horse", "parameters": {"num_inference_steps": 2}});
    let (status, answer) = c.json("/models/tiny", body.clone()).await;
    assert_eq!(status, 503);
    assert_eq!(answer["error"], "Model tiny is currently loading");
    assert!(answer["estimated_time"].as_f64().unwrap() > 0.0);
    assert_eq!(job_count(&env).await, 0, "a 503 queues nothing");

    // With x-wait-for-model the request waits for a worker to come.
    let waiting = {
        let c = Caller { http: c.http.clone(), base: c.base.clone(), token: c.token.clone() };
        let body = body.clone();
        tokio::spawn(async move { c.post("/models/tiny", body, &[("x-wait-for-model", "true")]).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // (Blocking this runtime thread is fine: the waiting request runs on another.)
    let _worker = Worker::start(&env, &[]);
    let r = waiting.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    // options.wait_for_model works the same (the worker is live now anyway).
    let mut with_option = body;
    with_option["options"] = json!({"wait_for_model": true, "use_cache": false});
    assert_eq!(c.post("/models/tiny", with_option, &[]).await.status(), 200);
}

/// The recorded start-ups of `model`: (load_secs, ready_secs, provider), newest first.
async fn recorded_loads(env: &ServiceEnv, model: &str) -> Vec<(f64, f64, Option<String>)> {
    let store = env.store().await;
    sqlx::query_as("SELECT load_secs, ready_secs, provider FROM model_loads WHERE model = $1 ORDER BY id DESC")
        .bind(model)
        .fetch_all(store.pool())
        .await
        .expect("model_loads")
}

/// A start-up of worker `worker` serving `model` on `provider`, recorded as a worker records its own.
async fn record_start(env: &ServiceEnv, worker: Uuid, model: &str, ready_secs: f64, provider: &str) {
    let start = WorkerStart {
        worker,
        ready: Duration::from_secs_f64(ready_secs),
        provider: Some(provider.into()),
        models: vec![ModelLoad { model: model.into(), load: Duration::from_secs_f64(ready_secs / 2.0) }],
    };
    env.store().await.record_worker_start(&start).await.expect("recorded");
}

/// The 503 of a model with no live worker: its `estimated_time` and `Retry-After`.
async fn loading_estimate(c: &Caller, path: &str) -> (f64, String) {
    let r = c.post(path, json!({"inputs": "a cat", "parameters": {"num_inference_steps": 2}}), &[]).await;
    assert_eq!(r.status(), 503);
    let retry_after = r.headers()["retry-after"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().ends_with("is currently loading"), "{body}");
    (body["estimated_time"].as_f64().expect("estimated_time"), retry_after)
}

#[tokio::test(flavor = "multi_thread")]
async fn hf_status_and_estimated_time_from_recorded_loads() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[("DARKROOM_MODEL_ALIASES", "org/tiny-alias=tiny")]);
    let c = Caller::new(&api, &env.tenant_with_token("acme"));
    let expect = |loaded: bool, compute: &str| json!({"loaded": loaded, "state": if loaded { "Loaded" } else { "Loadable" }, "compute_type": compute, "framework": "diffusers"});

    // Unknown models are 404s in the dialect's shape; the token is checked first.
    assert_eq!(c.get("/status/tiny").await, (404, json!({"error": "Model tiny does not exist"})));
    assert_eq!(c.get("/status/acme/nope").await, (404, json!({"error": "Model acme/nope does not exist"})));
    let (status, body) = Caller::new(&api, "drk_nope").get("/status/tiny").await;
    assert_eq!((status, body["error"].is_string()), (401, true), "{body}");
    let r = c.http.get(api.url("/status/tiny")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // In the catalog, no live worker, no start-up ever recorded: Loadable, the documented
    // compute type, and the 503 says the default estimate.
    let store = env.store().await;
    let entry = ModelEntry { id: "tiny".into(), family: Family::Sd, native_size: 64, size_multiple: 16, img2img: true, sha256: None, path: None };
    let gone = Uuid::new_v4();
    store.register_worker(gone, "test", &[entry]).await.expect("catalog");
    store.worker_stopped(gone).await.expect("stopped");
    assert_eq!(c.get("/status/tiny").await, (200, expect(false, "gpu")));
    assert_eq!(loading_estimate(&c, "/models/tiny").await, (20.0, "20".to_string()));

    // A real worker records its start-up once it is ready, and the model is Loaded on the CPU,
    // by its id and by an alias with a slash.
    let mut worker = Worker::start(&env, &[]);
    let loads = recorded_loads(&env, "tiny").await;
    assert_eq!(loads.len(), 1, "{loads:?}");
    let (load, ready, provider) = loads[0].clone();
    assert!(load > 0.0 && load <= ready && ready < 60.0, "load {load} s, ready {ready} s");
    assert_eq!(provider.as_deref(), Some("cpu"));
    assert_eq!(c.get("/status/tiny").await, (200, expect(true, "cpu")));
    assert_eq!(c.get("/status/org/tiny-alias").await, (200, expect(true, "cpu")));

    // Once it stops, Loadable, still on the CPU (the last known), and a 503 says how long the
    // worker took to be ready.
    worker.signal("TERM");
    assert!(worker.wait_exit(Duration::from_secs(30)).is_some(), "the worker exits on SIGTERM");
    assert_eq!(c.get("/status/tiny").await, (200, expect(false, "cpu")));
    let (estimate, retry_after) = loading_estimate(&c, "/models/tiny").await;
    assert!((estimate - ready).abs() < 1e-6, "estimated_time {estimate} is the one recorded start-up, {ready}");
    assert_eq!(retry_after, (ready.ceil() as u64).to_string());
    assert_eq!(loading_estimate(&c, "/models/org/tiny-alias").await.0, estimate);

    // The median of the newest five: one very slow start does not move it.
    for secs in [70.0, 10_000.0, 90.0, 80.0] {
        record_start(&env, Uuid::new_v4(), "tiny", secs, "cpu").await;
    }
    assert_eq!(loading_estimate(&c, "/models/tiny").await, (80.0, "80".to_string()));
    // The window and the default are settings.
    let api2 = ApiServer::start(&env, &[("DARKROOM_LOAD_ESTIMATE_WINDOW", "2"), ("DARKROOM_DEFAULT_LOAD_SECS", "42.5")]);
    let c2 = Caller { http: c.http.clone(), base: api2.base.clone(), token: c.token.clone() };
    assert_eq!(loading_estimate(&c2, "/models/tiny").await.0, 85.0, "the median of 80 and 90");
    let other = ModelEntry { id: "other".into(), family: Family::Sd, native_size: 64, size_multiple: 16, img2img: true, sha256: None, path: None };
    store.register_worker(gone, "test", &[other]).await.expect("catalog");
    store.worker_stopped(gone).await.expect("stopped");
    assert_eq!(loading_estimate(&c2, "/models/other").await, (42.5, "43".to_string()));

    // compute_type follows the live workers: gpu when any of them runs CUDA, even if a CPU
    // worker started after it.
    let tiny = || vec![ModelEntry { id: "tiny".into(), family: Family::Sd, native_size: 64, size_multiple: 16, img2img: true, sha256: None, path: None }];
    let (gpu, cpu) = (Uuid::new_v4(), Uuid::new_v4());
    store.register_worker(gpu, "test", &tiny()).await.expect("registered");
    record_start(&env, gpu, "tiny", 5.0, "cuda").await;
    store.register_worker(cpu, "test", &tiny()).await.expect("registered");
    record_start(&env, cpu, "tiny", 5.0, "cpu").await;
    assert_eq!(c.get("/status/tiny").await, (200, expect(true, "gpu")));
    store.worker_stopped(gpu).await.expect("stopped");
    assert_eq!(c.get("/status/tiny").await, (200, expect(true, "cpu")));
}
