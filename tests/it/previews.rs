//! Live previews end to end (the real API, a real worker on the tiny SD 1.5 model, Postgres): a
//! job with `preview_every` records `preview` events in `job_events` (PNGs of one pixel per
//! latent pixel), a job without it none; AUTOMATIC1111's `progress` shows the running job's
//! newest preview as `current_image` (unless `skip_current_image`), and txt2img asks for
//! previews as the tenant's A1111 options say.
use std::time::{Duration, Instant};

use base64::Engine as _;
use darkroom_shared::store::Preview;
use darkroom_worker::deadline::TEST_HANG_ENV;
use serde_json::{json, Value};
use sqlx::types::Json;

use crate::helpers::{ApiServer, ServiceEnv};
use crate::service::{id, request, Client};
use crate::workers::Worker;

/// A job's recorded previews, oldest first.
async fn previews(env: &ServiceEnv, job: &str) -> Vec<Preview> {
    let job: uuid::Uuid = job.parse().expect("a job id");
    let rows: Vec<(Json<Preview>,)> = sqlx::query_as("SELECT data FROM job_events WHERE job_id = $1 AND kind = 'preview' ORDER BY id")
        .bind(job)
        .fetch_all(env.store().await.pool())
        .await
        .expect("job_events");
    rows.into_iter().map(|(Json(p),)| p).collect()
}

/// A preview's image, checked to be a PNG of its stated size.
fn decode(p: &Preview) -> image::RgbImage {
    let bytes = base64::engine::general_purpose::STANDARD.decode(&p.image).expect("base64");
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).expect("a PNG").to_rgb8();
    assert_eq!(img.dimensions(), (p.width, p.height), "the PNG has the preview's stated size");
    img
}

#[tokio::test(flavor = "multi_thread")]
async fn previews_are_recorded_as_pngs_of_the_latent_size_and_only_when_asked() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let client = Client::new(&api, &env.tenant_with_token("acme"));
    let worker = Worker::start(&env, &[]);

    // 128×64 pixels: 16×8 latents.
    let mut body = request(6, 1);
    (body["width"], body["preview_every"]) = (json!(128), json!(2));
    let job = client.submit(body).await;
    assert_eq!(job["request"]["preview_every"], 2);
    let done = client.finished(&id(&job), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}\n{}", worker.log());
    // When a job ends, only its newest preview is kept (the job_events migration): the one
    // made after the last step, recorded before the job completed.
    let kept = previews(&env, &id(&job)).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!((kept[0].step, kept[0].total, kept[0].width, kept[0].height), (6, 6, 16, 8));
    let img = decode(&kept[0]);
    assert!(img.pixels().any(|p| p.0 != img.get_pixel(0, 0).0), "a preview of a generated image is not one flat colour");

    // preview_every 0 is off, stored as absent; and absent is off.
    for extra in [json!({"preview_every": 0}), json!({})] {
        let mut body = request(4, 2);
        body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        let job = client.submit(body).await;
        assert!(job["request"].get("preview_every").is_none(), "{job:#}");
        let done = client.finished(&id(&job), Duration::from_secs(60)).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        assert_eq!(previews(&env, &id(&job)).await, vec![], "no previews unless asked");
    }
}

/// A tenant speaking A1111's API (HTTP Basic, the token as the password).
struct Sd {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Sd {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}/sdapi/v1{path}", self.base)).basic_auth("me", Some(&self.token)).send().await.expect("GET");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.http.post(format!("{}/sdapi/v1{path}", self.base)).basic_auth("me", Some(&self.token)).json(body).send().await.expect("POST");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Start a txt2img (it blocks until its job ends) and wait until `/progress` shows its job;
    /// the job's id.
    async fn txt2img_in_background(self: &std::sync::Arc<Self>, body: Value) -> String {
        let sd = self.clone();
        tokio::spawn(async move { sd.post("/txt2img", &body).await });
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, p) = self.get("/progress").await;
            if let Some(job) = p["state"]["job"].as_str().filter(|j| !j.is_empty()) {
                return job.to_string();
            }
            assert!(Instant::now() < until, "the txt2img job never appeared: {p}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a1111_progress_shows_the_running_jobs_newest_preview() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    // The pipeline blocks after step 4 (test-only hook), so the job stays running mid-way.
    let _worker = Worker::start(&env, &[(TEST_HANG_ENV, "4"), ("DARKROOM_JOB_DEADLINE_SECS", "600"), ("DARKROOM_LEASE_SECS", "120")]);
    let sd = |tenant: &str| {
        let token = env.tenant_with_token(tenant);
        std::sync::Arc::new(Sd { http: reqwest::Client::new(), base: api.base.clone(), token })
    };
    let a = sd("a");
    assert_eq!(a.post("/options", &json!({"show_progress_every_n_steps": 2})).await, (200, Value::Null));
    let (_, options) = a.get("/options").await;
    assert_eq!((&options["show_progress_every_n_steps"], &options["live_previews_enable"]), (&json!(2), &json!(true)));
    let (status, e) = a.post("/options", &json!({"show_progress_every_n_steps": "often"})).await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["detail"][0]["loc"], json!(["body", "show_progress_every_n_steps"]), "{e}");

    let job = a.txt2img_in_background(json!({"prompt": "a red apple", "width": 128, "height": 64, "steps": 10, "seed": 3})).await;
    let native = Client::new(&api, &a.token);
    assert_eq!(native.job(&job).await["request"]["preview_every"], 2, "the tenant's option asked for a preview every 2 steps");

    // The preview after step 4 is the newest (step 2's may have been replaced before it was stored).
    let until = Instant::now() + Duration::from_secs(60);
    let recorded = loop {
        let recorded = previews(&env, &job).await;
        if recorded.last().is_some_and(|p| p.step == 4) {
            break recorded;
        }
        assert!(Instant::now() < until, "no preview of step 4: {recorded:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for p in &recorded {
        assert!([2, 4].contains(&p.step) && p.total == 10, "{p:?}");
        assert_eq!((p.width, p.height), (16, 8));
        decode(p);
    }
    let newest = recorded.last().expect("one preview");

    // current_image: the newest preview, as A1111 sends it (base64 PNG, no data: prefix).
    let (status, p) = a.get("/progress").await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["state"]["job"], job.as_str());
    assert_eq!(p["current_image"].as_str(), Some(newest.image.as_str()), "{p}");
    assert_eq!(a.get("/progress?skip_current_image=false").await.1["current_image"].as_str(), Some(newest.image.as_str()));
    let (status, skipped) = a.get("/progress?skip_current_image=true").await;
    assert_eq!(status, 200);
    assert_eq!((&skipped["current_image"], &skipped["state"]["job"]), (&Value::Null, &json!(job)), "{skipped}");
    let (status, e) = a.get("/progress?skip_current_image=maybe").await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["detail"][0]["loc"], json!(["body", "skip_current_image"]), "{e}");

    // Another tenant sees no image of A's job.
    let b = sd("b");
    let (_, pb) = b.get("/progress").await;
    assert_eq!((&pb["current_image"], &pb["state"]["job"]), (&Value::Null, &json!("")), "{pb}");

    // A1111's defaults (previews on, every 10 steps) and its switches, read from the queued
    // jobs' stored requests (the one worker is held by A's job).
    for (tenant, options, body, want) in [
        ("c", json!({}), json!({"prompt": "p", "steps": 20}), json!(10)),
        ("d", json!({}), json!({"prompt": "p", "steps": 8}), Value::Null),
        ("e", json!({"live_previews_enable": false}), json!({"prompt": "p", "steps": 20}), Value::Null),
        ("f", json!({"show_progress_every_n_steps": -1}), json!({"prompt": "p", "steps": 20}), Value::Null),
        ("g", json!({}), json!({"prompt": "p", "steps": 20, "override_settings": {"show_progress_every_n_steps": 0}}), json!(1)),
    ] {
        let t = sd(tenant);
        assert_eq!(t.post("/options", &options).await.0, 200);
        let queued = t.txt2img_in_background(body.clone()).await;
        let stored = Client::new(&api, &t.token).job(&queued).await;
        assert_eq!(stored["request"].get("preview_every").cloned().unwrap_or(Value::Null), want, "{tenant}: {options} {body}");
        // Nothing ran: no image.
        assert_eq!(t.get("/progress").await.1["current_image"], Value::Null);
    }
}
