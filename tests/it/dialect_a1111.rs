//! The AUTOMATIC1111 dialect (`/sdapi/v1/*`) end to end: the real API and workers on the tiny
//! models. Seed 004's example requests are replayed as written (only the URL and the
//! credentials differ); the rest checks A1111's defaults, seeds, samplers, per-tenant options,
//! progress and interrupt isolation, and A1111's error shapes.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::helpers::{model_dir, worker_bin, ApiServer, ServiceEnv};
use crate::workers::Worker;

/// A tenant speaking A1111's API, with HTTP Basic (the token as the password).
struct Sd {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Sd {
    fn new(api: &ApiServer, token: &str) -> Sd {
        Sd { http: reqwest::Client::new(), base: api.url("/sdapi/v1"), token: token.to_string() }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).basic_auth("admin", Some(&self.token)).send().await.expect("GET");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.http.post(format!("{}{path}", self.base)).basic_auth("admin", Some(&self.token)).json(body).send().await.expect("POST");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// txt2img or img2img that must succeed: the answer and its parsed `info`.
    async fn generate(&self, path: &str, body: Value) -> (Value, Value) {
        let (status, r) = self.post(path, &body).await;
        assert_eq!(status, 200, "{path} answered {status}: {r}");
        let info: Value = serde_json::from_str(r["info"].as_str().expect("info is a JSON string")).expect("info parses");
        (r, info)
    }
}

fn decode(b64: &Value) -> image::DynamicImage {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.as_str().expect("base64 string")).expect("base64");
    image::load_from_memory(&bytes).expect("an image")
}

fn png_b64(w: u32, h: u32) -> String {
    let mut buf = Vec::new();
    image::RgbImage::from_pixel(w, h, image::Rgb([200, 40, 90])).write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png).unwrap();
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// A worker serving the tiny SDXL model as `tiny-xl`, killed on drop.
struct XlWorker(Child);

impl XlWorker {
    async fn start(env: &ServiceEnv, sd: &Sd) -> XlWorker {
        let model = format!("tiny-xl={}", model_dir("tiny-sdxl").display());
        let child = Command::new(worker_bin())
            .args(["run", "--ep", "cpu", "--threads", "1", "--model", &model])
            .envs(env.vars())
            .env("DARKROOM_HEARTBEAT_SECS", "0.5")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("darkroom-worker run starts");
        let worker = XlWorker(child);
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, models) = sd.get("/sd-models").await;
            if models.as_array().is_some_and(|m| m.iter().any(|m| m["model_name"] == "tiny-xl")) {
                return worker;
            }
            assert!(Instant::now() < until, "the tiny-xl worker never registered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for XlWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Seed 004's requests as written: txt2img at 512x512 with a legacy sampler name, the model
/// list, and switching the model through options.
#[tokio::test(flavor = "multi_thread")]
async fn seed_004_examples_replayed() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let token = env.tenant_with_token("lagrange");
    let _worker = Worker::start(&env, &[]);
    let sd = Sd::new(&api, &token);

    // Step 3-5: the payload exactly as in the doc, with Basic credentials built by hand.
    let payload = json!({
        "prompt": "apple", "negative_prompt": "red", "sampler_name": "DPM++ 2M Karras", "seed": 985454925,
        "cfg_scale": 7, "steps": 20, "width": 512, "height": 512,
    });
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("admin:{token}"));
    let r = sd
        .http
        .post(format!("{}/txt2img", sd.base))
        .header("Authorization", format!("Basic {credentials}"))
        .header("Content-Type", "application/json")
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    let image = decode(&r["images"][0]);
    assert_eq!((image.width(), image.height()), (512, 512));
    assert!(!r["images"][0].as_str().unwrap().starts_with("data:"));
    assert_eq!(r["parameters"]["sampler_name"], "DPM++ 2M Karras");
    assert_eq!(r["parameters"]["n_iter"], 1, "defaults are echoed");
    let info: Value = serde_json::from_str(r["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["seed"], 985454925);
    assert_eq!(info["all_seeds"], json!([985454925]));
    assert_eq!((info["sampler_name"].as_str(), info["extra_generation_params"]["Schedule type"].as_str()), (Some("DPM++ 2M"), Some("Karras")));
    assert_eq!(info["sd_model_name"], "tiny");
    assert!(info["infotexts"][0]
        .as_str()
        .unwrap()
        .starts_with("apple\nNegative prompt: red\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 985454925"));

    // The job is an ordinary job of the tenant.
    let job: Value =
        sd.http.get(api.url(&format!("/v1/jobs/{}", info["job_id"].as_str().unwrap()))).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (job["status"].as_str(), job["request"]["sampler"].as_str(), job["request"]["steps"].as_i64()),
        (Some("succeeded"), Some("DPM++ 2M Karras"), Some(20))
    );

    // Additional notes 1 and 2: list the models, switch to one by its title.
    let (status, models) = sd.get("/sd-models").await;
    assert_eq!(status, 200);
    let first = &models[0];
    for key in ["title", "model_name", "hash", "sha256", "filename", "config"] {
        assert!(first.get(key).is_some(), "sd-models entries have {key}: {first}");
    }
    let (status, answer) = sd.post("/options", &json!({"sd_model_checkpoint": first["title"]})).await;
    assert_eq!((status, answer), (200, Value::Null));
}

/// A1111's defaults and fields on the tiny model: legacy sampler names, seed -1, batch_size ×
/// n_iter with seed + i, the scheduler field, send_images false.
#[tokio::test(flavor = "multi_thread")]
async fn txt2img_fields_seeds_and_samplers() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let sd = Sd::new(&api, &env.tenant_with_token("acme"));
    let _worker = Worker::start(&env, &[]);
    let small = |extra: Value| {
        let mut body = json!({"prompt": "a cat", "width": 64, "height": 64, "steps": 3});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };

    // seed -1 is resolved and reported; 2 × 2 images use seed + i.
    let (r, info) = sd.generate("/txt2img", small(json!({"seed": -1, "batch_size": 2, "n_iter": 2, "sampler_index": "k_lms_ka"}))).await;
    assert_eq!(r["images"].as_array().unwrap().len(), 4);
    let seed = info["seed"].as_u64().unwrap();
    assert!(seed < 4_294_967_294);
    assert_eq!(info["all_seeds"], json!([seed, seed + 1, seed + 2, seed + 3]));
    assert_eq!(info["infotexts"].as_array().unwrap().len(), 4);
    assert_eq!((info["sampler_name"].as_str(), info["batch_size"].as_i64()), (Some("LMS"), Some(2)));
    assert_eq!(info["extra_generation_params"]["Schedule type"], "Karras");
    assert_eq!(r["parameters"]["seed"], -1, "parameters echo the request");
    assert_eq!((r["parameters"]["steps"].as_i64(), r["parameters"]["cfg_scale"].as_f64()), (Some(3), Some(7.0)));

    // The scheduler field, and webuiapi's defaults (sampler "Euler a", scheduler "automatic").
    let (_, info) = sd.generate("/txt2img", small(json!({"sampler_name": "Euler", "scheduler": "karras", "seed": 5}))).await;
    assert!(info["infotexts"][0].as_str().unwrap().contains("Sampler: Euler Karras"), "{info}");
    let (_, info) = sd.generate("/txt2img", small(json!({"sampler_name": "Euler a", "scheduler": "automatic", "sampler_index": "Euler a"}))).await;
    assert_eq!(info["sampler_name"], "Euler a");

    // send_images false: no images, the info all the same.
    let (r, info) = sd.generate("/txt2img", small(json!({"send_images": false, "seed": 11}))).await;
    assert_eq!(r["images"], json!([]));
    assert_eq!(info["seed"], 11);
    // A1111's defaults: steps 50, cfg 7, sampler Euler.
    let (_, info) = sd.generate("/txt2img", json!({"width": 64, "height": 64})).await;
    assert_eq!((info["steps"].as_i64(), info["cfg_scale"].as_f64(), info["sampler_name"].as_str()), (Some(50), Some(7.0), Some("Euler")));
}

#[tokio::test(flavor = "multi_thread")]
async fn img2img_with_and_without_an_init_image() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let sd = Sd::new(&api, &env.tenant_with_token("acme"));
    let _worker = Worker::start(&env, &[]);
    let body = json!({"prompt": "a painting", "init_images": [format!("data:image/png;base64,{}", png_b64(64, 64))],
        "denoising_strength": 0.5, "width": 64, "height": 64, "steps": 4, "seed": 3});
    let (r, info) = sd.generate("/img2img", body.clone()).await;
    assert_eq!(decode(&r["images"][0]).width(), 64);
    assert_eq!(info["denoising_strength"].as_f64(), Some(0.5));
    assert!(info["infotexts"][0].as_str().unwrap().ends_with("Denoising strength: 0.5"));
    assert_eq!(r["parameters"]["init_images"], Value::Null, "init images are not echoed");
    // Plain base64 works too; include_init_images echoes it (read back from the store).
    let mut plain = body.clone();
    let image = png_b64(64, 64);
    plain["init_images"] = json!([image]);
    plain["include_init_images"] = json!(true);
    let (r, _) = sd.generate("/img2img", plain).await;
    assert_eq!(r["parameters"]["init_images"], json!([image]));
    // txt2img has no init image: one given there is refused, not ignored.
    let (status, e) = sd.post("/txt2img", &json!({"prompt": "p", "init_images": [image]})).await;
    assert_eq!((status, e["detail"][0]["loc"].clone()), (422, json!(["body", "init_images"])), "{e}");
    let (status, e) = sd.post("/img2img", &json!({"prompt": "p", "init_images": "not a list"})).await;
    assert_eq!((status, e["detail"][0]["loc"].clone()), (422, json!(["body", "init_images"])), "{e}");

    let mut none = body.clone();
    none.as_object_mut().unwrap().remove("init_images");
    let (status, e) = sd.post("/img2img", &none).await;
    assert_eq!((status, e), (404, json!({"error": "HTTPException", "detail": "Init image not found", "body": "", "errors": ""})));
    let mut bad = body;
    bad["init_images"] = json!(["not an image"]);
    let (status, e) = sd.post("/img2img", &bad).await;
    assert_eq!((status, e["detail"][0]["loc"].clone()), (422, json!(["body", "init_images"])));
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_have_a1111_shapes() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let token = env.tenant_with_token("acme");
    let sd = Sd::new(&api, &token);
    let (s, e) = sd.post("/txt2img", &json!({})).await;
    assert_eq!((s, e["error"].as_str()), (503, Some("HTTPException")), "no model registered yet: {e}");
    let _worker = Worker::start(&env, &[]);

    // 401 with a Basic challenge, for no credentials and for a wrong token; Bearer works too.
    for auth in [None, Some("drk_wrong")] {
        let mut req = sd.http.get(format!("{}/sd-models", sd.base));
        if let Some(t) = auth {
            req = req.basic_auth("admin", Some(t));
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Basic");
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"detail": "Incorrect username or password"}));
    }
    let r = sd.http.get(format!("{}/sd-models", sd.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let loc = |v: &Value| v["detail"][0]["loc"].clone();
    let (s, e) = sd.post("/txt2img", &json!({"steps": 0})).await;
    assert_eq!((s, loc(&e)), (422, json!(["body", "steps"])));
    assert!(e["detail"][0]["msg"].as_str().unwrap().starts_with("steps must be"), "{e}");
    let (s, e) = sd.post("/txt2img", &json!({"cfg_scale": "high"})).await;
    assert_eq!((s, loc(&e)), (422, json!(["body", "cfg_scale"])));
    let (s, e) = sd.post("/txt2img", &json!({"cfg_scale": 31})).await;
    assert_eq!((s, loc(&e)), (422, json!(["body", "cfg_scale"])));
    let (s, e) = sd.post("/txt2img", &json!({"batch_size": 4, "n_iter": 3})).await;
    assert_eq!((s, loc(&e)), (422, json!(["body", "batch_size"])));
    for field in ["enable_hr", "restore_faces", "tiling"] {
        let (s, e) = sd.post("/txt2img", &json!({ field: true })).await;
        assert_eq!((s, loc(&e)), (422, json!(["body", field])));
    }
    let (s, e) = sd.post("/txt2img", &json!({"alwayson_scripts": {"ControlNet": {"args": []}}})).await;
    assert_eq!((s, loc(&e)), (422, json!(["body", "alwayson_scripts"])));
    let (s, e) = sd.post("/txt2img", &json!({"subseed_strength": 0.3})).await;
    assert_eq!((s, loc(&e)), (422, json!(["body", "subseed_strength"])));
    // Harmless fields are accepted (checked up to validation, to keep this test quick).
    let (s, e) = sd.post("/txt2img", &json!({"save_images": true, "do_not_save_grid": true, "steps": 0})).await;
    assert_eq!((s, loc(&e)), (422, json!(["body", "steps"])));
    let (s, e) = sd.post("/txt2img", &json!({"sampler_name": "DPM++ SDE Karras"})).await;
    assert_eq!((s, e), (400, json!({"error": "HTTPException", "detail": "Sampler not found", "body": "", "errors": ""})));
    let (s, e) = sd.post("/txt2img", &json!({"sampler_name": "Euler a", "scheduler": "karras"})).await;
    assert_eq!((s, loc(&e)), (422, json!(["body", "scheduler"])));
    let (s, e) = sd.post("/options", &json!({"sd_model_checkpoint": "nope.safetensors [123]"})).await;
    assert_eq!((s, e["error"].as_str(), e["errors"].as_str()), (400, Some("RuntimeError"), Some("model 'nope.safetensors [123]' not found")));
    let (s, e) = sd.get("/no-such-route").await;
    assert_eq!((s, e), (404, json!({"detail": "Not Found"})));
}

/// Options are per tenant: one tenant's checkpoint never changes another's, and
/// override_settings switches the model for one request.
#[tokio::test(flavor = "multi_thread")]
async fn options_are_per_tenant_and_override_settings_switch_the_model() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let a = Sd::new(&api, &env.tenant_with_token("a"));
    let b = Sd::new(&api, &env.tenant_with_token("b"));
    let _worker = Worker::start(&env, &[]);
    let _xl = XlWorker::start(&env, &a).await;
    let small = json!({"prompt": "p", "width": 64, "height": 64, "steps": 2, "seed": 1});

    let (tiny, xl) = (title_of(&a, "tiny").await, title_of(&a, "tiny-xl").await);

    // With no choice: the catalog's first model, reported by its title (`name [hash]`).
    assert_eq!(a.get("/options").await.1["sd_model_checkpoint"], tiny.as_str());
    let (s, _) = a.post("/options", &json!({"sd_model_checkpoint": "tiny-xl", "samples_format": "webp", "my_option": 3})).await;
    assert_eq!(s, 200);
    let (_, opts) = a.get("/options").await;
    assert_eq!((opts["sd_model_checkpoint"].as_str(), opts["my_option"].as_i64()), (Some(xl.as_str()), Some(3)));
    let (_, opts) = b.get("/options").await;
    assert_eq!((opts["sd_model_checkpoint"].as_str(), opts.get("my_option")), (Some(tiny.as_str()), None));

    let (r, info) = a.generate("/txt2img", small.clone()).await;
    assert_eq!(info["sd_model_name"], "tiny-xl");
    let bytes = base64::engine::general_purpose::STANDARD.decode(r["images"][0].as_str().unwrap()).unwrap();
    assert_eq!(image::guess_format(&bytes).unwrap(), image::ImageFormat::WebP, "the tenant's samples_format");
    let (_, info) = b.generate("/txt2img", small.clone()).await;
    assert_eq!(info["sd_model_name"], "tiny");
    let mut over = small.clone();
    over["override_settings"] = json!({"sd_model_checkpoint": "tiny", "samples_format": "png"});
    let (_, info) = a.generate("/txt2img", over).await;
    assert_eq!(info["sd_model_name"], "tiny");
    assert_eq!(a.get("/options").await.1["sd_model_checkpoint"], xl.as_str(), "an override does not persist");
}

/// A model's title in `sd-models`.
async fn title_of(sd: &Sd, name: &str) -> String {
    let (_, models) = sd.get("/sd-models").await;
    let m = models.as_array().and_then(|m| m.iter().find(|m| m["model_name"] == name)).unwrap_or_else(|| panic!("{name} in {models}"));
    m["title"].as_str().expect("a title").to_string()
}

/// The sha256 of `files` (in order, as one stream), computed here and not by the worker's code.
fn sha256_of(files: &[std::path::PathBuf]) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for f in files {
        hasher.update(std::fs::read(f).expect("model file"));
    }
    hex::encode(hasher.finalize())
}

/// `sd-models` shows each model's identity: `sha256` the UNet's weights (graph, then its
/// external data), `hash` its first 10 digits, `title` `name [hash]`, `filename` the directory
/// the worker loaded. A checkpoint is then found by title, hash (short or full) or name, in
/// override_settings and options; an unknown hash is A1111's RuntimeError.
#[tokio::test(flavor = "multi_thread")]
async fn sd_models_identify_checkpoints_by_the_unet_hash() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let sd = Sd::new(&api, &env.tenant_with_token("acme"));
    let _worker = Worker::start(&env, &[]);
    let _xl = XlWorker::start(&env, &sd).await;

    let (status, models) = sd.get("/sd-models").await;
    assert_eq!(status, 200);
    let entry = |name: &str| models.as_array().and_then(|m| m.iter().find(|m| m["model_name"] == name)).cloned().expect("listed");
    let sd15 = model_dir("tiny-sd15");
    let sdxl = model_dir("tiny-sdxl");
    for (name, dir, files) in [
        ("tiny", &sd15, vec![sd15.join("unet/model.onnx")]),
        // tiny-sdxl keeps its UNet weights in Optimum's external data file.
        ("tiny-xl", &sdxl, vec![sdxl.join("unet/model.onnx"), sdxl.join("unet/model.onnx_data")]),
    ] {
        let m = entry(name);
        let sha256 = sha256_of(&files);
        let hash = &sha256[..10];
        assert_eq!(m["sha256"].as_str(), Some(sha256.as_str()), "{m}");
        assert_eq!(m["hash"].as_str(), Some(hash), "{m}");
        assert_eq!(m["title"], format!("{name} [{hash}]"));
        assert_eq!((m["model_name"].as_str(), m["config"].is_null()), (Some(name), true));
        let filename = std::path::PathBuf::from(m["filename"].as_str().expect("filename"));
        assert!(filename.is_absolute(), "{m}");
        assert_eq!(filename.canonicalize().ok(), dir.canonicalize().ok(), "{m}");
    }
    assert_ne!(entry("tiny")["sha256"], entry("tiny-xl")["sha256"]);

    // override_settings.sd_model_checkpoint as the title, the short hash, the full sha256 and
    // the name: each runs on that model (the tenant's default would be the other one).
    let (s, _) = sd.post("/options", &json!({"sd_model_checkpoint": "tiny"})).await;
    assert_eq!(s, 200);
    let xl = entry("tiny-xl");
    let small = json!({"prompt": "p", "width": 64, "height": 64, "steps": 1, "seed": 1});
    for wanted in [&xl["title"], &xl["hash"], &xl["sha256"], &json!("tiny-xl"), &json!(format!("tiny-xl [{}]", "0".repeat(10)))] {
        let mut body = small.clone();
        body["override_settings"] = json!({ "sd_model_checkpoint": wanted });
        let (r, info) = sd.generate("/txt2img", body).await;
        assert_eq!(info["sd_model_name"], "tiny-xl", "override_settings.sd_model_checkpoint = {wanted}");
        // The infotext names the model by hash and name, as A1111's does, in `info` and in the PNG.
        assert_eq!(info["sd_model_hash"], xl["hash"]);
        let text = format!("Model hash: {}, Model: tiny-xl", xl["hash"].as_str().unwrap_or_default());
        assert!(info["infotexts"][0].as_str().unwrap_or_default().contains(&text), "{info:#}");
        let png = base64::engine::general_purpose::STANDARD.decode(r["images"][0].as_str().unwrap_or_default()).expect("base64");
        assert!(String::from_utf8_lossy(&png).contains(&text), "the PNG's parameters chunk carries the model hash");
    }

    // Options take the same forms and report the title and the full sha256.
    for wanted in [&xl["hash"], &xl["sha256"], &xl["title"]] {
        let (s, _) = sd.post("/options", &json!({"sd_model_checkpoint": "tiny"})).await;
        assert_eq!(s, 200);
        let (s, _) = sd.post("/options", &json!({ "sd_model_checkpoint": wanted })).await;
        assert_eq!(s, 200, "{wanted}");
        let (_, opts) = sd.get("/options").await;
        assert_eq!((&opts["sd_model_checkpoint"], &opts["sd_checkpoint_hash"]), (&xl["title"], &xl["sha256"]), "{wanted}");
    }

    // An unknown hash is A1111's RuntimeError, in override_settings and in options.
    let mut body = small.clone();
    body["override_settings"] = json!({"sd_model_checkpoint": "0123456789"});
    let (s, e) = sd.post("/txt2img", &body).await;
    assert_eq!((s, e["error"].as_str(), e["errors"].as_str()), (400, Some("RuntimeError"), Some("model '0123456789' not found")), "{e}");
    let (s, e) = sd.post("/options", &json!({"sd_model_checkpoint": "0".repeat(64)})).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("RuntimeError")), "{e}");
}

/// progress shows the caller's own job only; interrupt stops only the caller's running job, and
/// the interrupted txt2img answers 200 without images.
#[tokio::test(flavor = "multi_thread")]
async fn progress_and_interrupt_are_per_tenant() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let a = Sd::new(&api, &env.tenant_with_token("a"));
    let b = Sd::new(&api, &env.tenant_with_token("b"));
    let _worker = Worker::start(&env, &[]);

    // Long enough (150 steps at 192×192, seconds even on a quiet machine) to be caught running.
    let long = json!({"prompt": "p", "width": 192, "height": 192, "steps": 150, "seed": 1});
    let a2 = Sd { http: a.http.clone(), base: a.base.clone(), token: a.token.clone() };
    let task = tokio::spawn(async move { a2.post("/txt2img", &long).await });
    let until = Instant::now() + Duration::from_secs(60);
    let progress = loop {
        let (_, p) = a.get("/progress").await;
        if p["state"]["sampling_step"].as_i64() >= Some(1) {
            break p;
        }
        assert!(Instant::now() < until, "the job never ran: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((progress["state"]["sampling_steps"].as_i64(), progress["state"]["job_count"].as_i64()), (Some(150), Some(1)));
    assert!(progress["progress"].as_f64().unwrap() > 0.0);
    let job = progress["state"]["job"].as_str().unwrap().to_string();

    // B sees nothing of A's job, and B's interrupt does not stop it.
    let (_, pb) = b.get("/progress").await;
    assert_eq!((pb["state"]["job"].as_str(), pb["state"]["job_count"].as_i64(), pb["progress"].as_f64()), (Some(""), Some(0), Some(0.0)));
    assert_eq!(b.post("/interrupt", &json!({})).await, (200, json!({})));
    assert_eq!(b.post("/skip", &json!({})).await.0, 200);
    let step = progress["state"]["sampling_step"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, p) = a.get("/progress").await;
    assert_eq!(p["state"]["job"].as_str(), Some(job.as_str()), "still running after B's interrupt");
    assert!(p["state"]["sampling_step"].as_i64().unwrap() > step);
    assert_eq!(p["state"]["interrupted"], false);

    // A's interrupt stops it: the blocked txt2img answers 200 with no images.
    assert_eq!(a.post("/interrupt", &json!({})).await, (200, json!({})));
    let (status, r) = tokio::time::timeout(Duration::from_secs(30), task).await.expect("txt2img returns").expect("task");
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["images"], json!([]));
    let info: Value = serde_json::from_str(r["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["status"], "canceled");
    assert_eq!(a.get("/progress").await.1["state"]["job_count"], 0);
}

/// A tenant's options are bounded (`--max-options-keys`, `--max-options-bytes`): a change past
/// either is A1111's 422, and nothing of it is kept.
#[tokio::test]
async fn options_are_bounded_per_tenant() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    env.register_tiny_model().await;
    let api = ApiServer::start(&env, &[("DARKROOM_MAX_OPTIONS_KEYS", "4"), ("DARKROOM_MAX_OPTIONS_BYTES", "200")]);
    let http = reqwest::Client::new();
    let post = |body: Value| http.post(api.url("/sdapi/v1/options")).basic_auth("me", Some(&token)).json(&body).send();
    let r = post(json!({"a": 1, "b": 2})).await.expect("answer");
    assert_eq!(r.status(), 200);
    let r = post(json!({"c": 1, "d": 2, "e": 3})).await.expect("answer");
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["detail"][0]["loc"], json!(["body", "options"]), "{e}");
    let r = post(json!({"c": "x".repeat(300)})).await.expect("answer");
    assert_eq!(r.status(), 422, "too many bytes");
    let options: Value = http.get(api.url("/sdapi/v1/options")).basic_auth("me", Some(&token)).send().await.expect("answer").json().await.expect("json");
    assert!(options.get("c").is_none() && options["a"] == 1, "a refused change keeps nothing: {options}");
}

/// A blocking request whose client disconnects cancels its job (nobody can receive it).
#[tokio::test]
async fn a_client_that_disconnects_cancels_its_blocking_job() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    env.register_tiny_model().await;
    let api = ApiServer::start(&env, &[]);
    let http = reqwest::Client::new();
    let gone = http
        .post(api.url("/sdapi/v1/txt2img"))
        .basic_auth("me", Some(&token))
        .json(&json!({"prompt": "p", "width": 64, "height": 64}))
        .timeout(Duration::from_millis(800))
        .send()
        .await;
    assert!(gone.is_err(), "no worker: the request blocks until the client gives up");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let jobs: Value = http.get(api.url("/v1/jobs")).bearer_auth(&token).send().await.expect("list").json().await.expect("json");
        if jobs["data"][0]["status"] == "canceled" {
            break;
        }
        assert!(Instant::now() < until, "the job was canceled once its client went away: {jobs}\n{}", api.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two live workers serving one id with different UNets: the second warns, naming both hashes
/// and the first worker's host, and the catalog shows the latest registration's hash.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_worker_with_other_weights_for_an_id_is_a_warning() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let sd = Sd::new(&api, &env.tenant_with_token("acme"));
    let first = Worker::start(&env, &[]);
    let fp32 = sha256_of(&[model_dir("tiny-sd15").join("unet/model.onnx")]);
    let fp16 = sha256_of(&[model_dir("tiny-sd15-fp16").join("unet/model.onnx")]);
    assert_ne!(fp32, fp16);
    assert_eq!(title_of(&sd, "tiny").await, format!("tiny [{}]", &fp32[..10]));
    assert!(!first.log().contains("stands for different weights"), "{}", first.log());

    let second = Worker::serving(&env, &format!("tiny={}", model_dir("tiny-sd15-fp16").display()), &[]);
    let log = second.log();
    let warning = log.lines().find(|l| l.contains("stands for different weights")).unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains(&fp32) && warning.contains(&fp16), "{warning}");
    assert_eq!(title_of(&sd, "tiny").await, format!("tiny [{}]", &fp16[..10]), "the latest registration wins");
}
