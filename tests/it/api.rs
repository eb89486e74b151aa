//! The job service's HTTP API and administration CLI, end to end: the real `darkroom-api`
//! binary against a fresh database and Redis prefix per test. Workers are simulated through
//! the store and the queue (the real worker is tested in its own module).
use std::time::{Duration, Instant};

use base64::Engine as _;
use darkroom_shared::family::Family;
use darkroom_shared::job::NewImage;
use darkroom_shared::store::ModelEntry;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{ApiServer, ServiceEnv, TcpProxy, REDIS_URL};

/// A server with a tenant `acme` (its token in `token`) and two catalog entries: `tiny` (sd,
/// native 64, img2img) and `big` (sdxl, native 1024, no img2img).
struct Service {
    server: ApiServer,
    env: ServiceEnv,
    token: String,
    http: Client,
}

impl Service {
    async fn start(extra: &[(&str, &str)]) -> Service {
        let env = ServiceEnv::new();
        let token = env.tenant_with_token("acme");
        register_models(&env).await;
        let server = ApiServer::start(&env, extra);
        Service { server, env, token, http: Client::new() }
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.server.url(path)).bearer_auth(&self.token)
    }

    fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(self.server.url(path)).bearer_auth(&self.token)
    }

    async fn submit(&self, body: Value) -> (StatusCode, Value) {
        call(self.post("/v1/jobs").json(&body)).await
    }
}

async fn register_models(env: &ServiceEnv) {
    let models = [
        ModelEntry { id: "tiny".into(), family: Family::Sd, native_size: 64, size_multiple: 8, img2img: true, sha256: None, path: None },
        ModelEntry { id: "big".into(), family: Family::Sdxl, native_size: 1024, size_multiple: 8, img2img: false, sha256: None, path: None },
    ];
    let store = env.store().await;
    store.register_worker(Uuid::new_v4(), "test", &models).await.expect("catalog");
    // Not live: only the catalog entries matter here.
    sqlx::query("UPDATE workers SET stopped_at = now()").execute(store.pool()).await.expect("worker stopped");
}

/// Send a request; its status and JSON body (Null when the body is not JSON).
async fn call(req: RequestBuilder) -> (StatusCode, Value) {
    let r = req.send().await.expect("the API answers");
    let status = r.status();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).expect("PNG encodes");
    out
}

/// A black PNG: tiny however large it claims to be.
fn blank_png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::new(width, height).write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).expect("PNG encodes");
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn id_of(job: &Value) -> Uuid {
    job["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a job id in {job}"))
}

/// Take the next delivery of `model` from Redis and claim it as a worker would.
async fn take_job(env: &ServiceEnv, model: &str) -> darkroom_shared::job::Claim {
    let queue = env.queue().await;
    let store = env.store().await;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(d) = queue.dequeue(&[model.to_string()], Duration::from_secs(30)).await.expect("dequeue") {
            queue.ack(&d, true).await.expect("ack");
            if let Some(claim) = store.claim(d.job, Uuid::new_v4(), Duration::from_secs(30)).await.expect("claim") {
                return claim;
            }
        }
        assert!(Instant::now() < until, "no job was delivered for {model}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn admin_cli_manages_tenants_and_tokens() {
    let env = ServiceEnv::new();
    let o = env.admin(&["migrate"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("up to date"));

    assert!(env.admin(&["tenant", "create", "acme"]).status.success());
    let dup = env.admin(&["tenant", "create", "acme"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"), "{}", String::from_utf8_lossy(&dup.stderr));

    let o = env.admin(&["token", "issue", "acme"]);
    assert!(o.status.success());
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let token = *lines.last().expect("token line");
    assert!(token.starts_with("drk_") && token.len() == 47 && !token.contains(' '), "{token:?}");
    assert_eq!(stdout.matches(token).count(), 1, "the token is printed once: {stdout}");

    let o = env.admin(&["token", "issue", "nobody"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no tenant named \"nobody\""));

    let list = String::from_utf8_lossy(&env.admin(&["tenant", "list"]).stdout).to_string();
    let row = list.lines().find(|l| l.starts_with("acme")).unwrap_or_else(|| panic!("{list}"));
    assert!(row.trim_end().ends_with(" 1"), "one active token: {row}");

    assert!(!env.admin(&["token", "revoke", "drk_"]).status.success(), "a too-short prefix is refused");
    let o = env.admin(&["token", "revoke", &token[..12]]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list = String::from_utf8_lossy(&env.admin(&["tenant", "list"]).stdout).to_string();
    assert!(list.lines().any(|l| l.starts_with("acme") && l.trim_end().ends_with(" 0")), "{list}");

    assert!(!env.admin(&[]).status.success(), "a subcommand is required");
    assert!(!env.admin(&["tenant", "rename"]).status.success());
}

#[tokio::test]
async fn requests_need_a_valid_unrevoked_token() {
    let s = Service::start(&[]).await;
    let url = s.server.url("/v1/jobs");
    let cases: Vec<(&str, RequestBuilder)> = vec![
        ("missing", s.http.get(&url)),
        ("unknown", s.http.get(&url).bearer_auth(format!("drk_{}", "A".repeat(43)))),
        ("not ours", s.http.get(&url).bearer_auth("sk-something")),
        ("other scheme", s.http.get(&url).header("Authorization", "Token abc")),
        ("empty bearer", s.http.get(&url).header("Authorization", "Bearer ")),
    ];
    for (what, req) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        let challenge = r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "unauthorized", "{what}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Every /v1 route needs a token.
    for path in ["/v1/models", &format!("/v1/jobs/{}", Uuid::now_v7())] {
        assert_eq!(s.http.get(s.server.url(path)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(s.http.post(&url).json(&json!({"model": "tiny", "prompt": "p"})).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    assert_eq!(s.get("/v1/jobs").send().await.unwrap().status(), StatusCode::OK);
    // HTTP Basic with the token as the password works too.
    assert_eq!(s.http.get(&url).basic_auth("anyone", Some(&s.token)).send().await.unwrap().status(), StatusCode::OK);

    // A revoked token stops working at once.
    let second = s.env.issue_token("acme");
    assert_eq!(s.http.get(&url).bearer_auth(&second).send().await.unwrap().status(), StatusCode::OK);
    assert!(s.env.admin(&["token", "revoke", &second[..12]]).status.success());
    let (status, body) = call(s.http.get(&url).bearer_auth(&second)).await;
    assert_eq!((status, body["error"]["type"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    assert_eq!(s.get("/v1/jobs").send().await.unwrap().status(), StatusCode::OK, "the other token still works");
    assert!(!s.server.log().contains(&s.token), "tokens are never logged");
}

#[tokio::test]
async fn tenants_only_see_their_own_jobs() {
    let s = Service::start(&[]).await;
    let other = s.env.tenant_with_token("globex");
    let (status, job) = s.submit(json!({"model": "tiny", "prompt": "mine"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = id_of(&job);

    let as_other = |req: RequestBuilder| req.bearer_auth(&other);
    for (what, req) in [
        ("get", s.http.get(s.server.url(&format!("/v1/jobs/{id}")))),
        ("cancel", s.http.post(s.server.url(&format!("/v1/jobs/{id}/cancel")))),
        ("image", s.http.get(s.server.url(&format!("/v1/jobs/{id}/images/0")))),
    ] {
        let (status, body) = call(as_other(req)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {body}");
        assert_eq!(body["error"]["type"], "not_found");
    }
    let (_, theirs) = call(as_other(s.http.get(s.server.url("/v1/jobs")))).await;
    assert_eq!(theirs["data"], json!([]), "{theirs}");
    let (_, mine) = call(s.get("/v1/jobs")).await;
    assert_eq!(mine["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(id_of(&mine["data"][0]), id);
    // The other tenant's cancel changed nothing.
    let (_, job) = call(s.get(&format!("/v1/jobs/{id}"))).await;
    assert_eq!(job["status"], "queued");
}

#[tokio::test]
async fn bad_inputs_are_4xx_naming_the_field() {
    let s = Service::start(&[("DARKROOM_MAX_BODY_BYTES", "65536")]).await;
    let mut truncated = png(64, 64);
    truncated.truncate(60);
    let ok_image = format!("data:image/png;base64,{}", b64(&png(16, 16)));
    let base = json!({"model": "tiny", "prompt": "p"});
    let with = |extra: Value| {
        let mut v = base.clone();
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        v
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"model": "nope", "prompt": "p"}), "model", "tiny"),
        (with(json!({"width": 65})), "width", "multiple of 8"),
        (with(json!({"width": 1032})), "width", "1024"),
        (json!({"model": "big", "prompt": "p", "height": 2056}), "height", "2048"),
        (with(json!({"height": 32})), "height", "64"),
        (with(json!({"steps": 0})), "steps", "1 to 150"),
        (with(json!({"steps": 151})), "steps", "1 to 150"),
        (with(json!({"guidance_scale": 30.5})), "guidance_scale", "0 to 30"),
        (with(json!({"guidance_scale": -1})), "guidance_scale", "0 to 30"),
        (with(json!({"num_images": 0})), "num_images", "1 to 8"),
        (with(json!({"num_images": 9})), "num_images", "1 to 8"),
        (with(json!({"prompt": "x".repeat(4001)})), "prompt", "4000"),
        (with(json!({"negative_prompt": "y".repeat(4001)})), "negative_prompt", "4000"),
        (with(json!({"seed": 9223372036854775808u64})), "seed", "9223372036854775807"),
        (with(json!({"seed": -1})), "seed", "u64"),
        (with(json!({"sampler": "Euler b"})), "sampler", "DPM++ 2M Karras"),
        (with(json!({"strength": 0.5})), "strength", "init_image"),
        (with(json!({"init_image": ok_image, "strength": 0})), "strength", "greater than 0"),
        (with(json!({"init_image": ok_image, "strength": 1.5})), "strength", "at most 1"),
        (with(json!({"init_image": "%%% not base64"})), "init_image", "base64"),
        (with(json!({"init_image": b64(b"hello, world")})), "init_image", "PNG, JPEG or WebP"),
        (with(json!({"init_image": b64(&blank_png(5000, 8))})), "init_image", "at most 4096x4096"),
        (with(json!({"init_image": b64(&blank_png(200, 200))})), "init_image", "65536"),
        (with(json!({"init_image": b64(&truncated)})), "init_image", "decodable"),
        (json!({"model": "big", "prompt": "p", "init_image": ok_image}), "init_image", "not supported"),
        (with(json!({"output_format": "gif"})), "output_format", "png"),
        (with(json!({"preview_every": 26})), "preview_every", "0 (off) to steps (25)"),
        (with(json!({"steps": 4, "preview_every": 5})), "preview_every", "steps (4)"),
        (with(json!({"preview_every": -1})), "preview_every", "u32"),
        (with(json!({"preview_every": "often"})), "preview_every", "invalid type"),
        (with(json!({"cfg_scale": 7})), "cfg_scale", "unknown field"),
        (with(json!({"steps": "many"})), "steps", "invalid type"),
        (json!({"model": "tiny"}), "prompt", "missing field"),
        (json!({"model": "tiny", "prompt": 5}), "prompt", "invalid type"),
    ];
    for (body, field, needle) in cases {
        let (status, err) = s.submit(body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_eq!(err["error"]["type"], "invalid_request", "{err}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
        let message = err["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{field}: {message:?} should mention {needle:?}");
    }

    // Closed sets come with the valid values.
    let (_, err) = s.submit(json!({"model": "nope", "prompt": "p"})).await;
    assert_eq!(err["error"]["allowed"], json!(["big", "tiny"]));
    let (_, err) = s.submit(with(json!({"sampler": "nope"}))).await;
    let allowed: Vec<&str> = err["error"]["allowed"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert!(allowed.contains(&"Euler a") && allowed.contains(&"DDIM"), "{err}");

    // Bodies that are not JSON, too large, or not declared as JSON.
    for raw in ["{", "", "{\"model\": \"tiny\", \"prompt\": \"p\"} extra", "{\"model\": tiny}"] {
        let (status, err) = call(s.post("/v1/jobs").header("content-type", "application/json").body(raw)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw:?}: {err}");
        assert_eq!(err["error"]["type"], "malformed_request");
    }
    let (status, err) = s.submit(with(json!({"prompt": "z".repeat(70_000)}))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(err["error"]["type"], "payload_too_large");
    assert!(err["error"]["message"].as_str().unwrap_or("").contains("65536"), "{err}");
    let (status, err) = call(s.post("/v1/jobs").header("content-type", "text/plain").body(base.to_string())).await;
    assert_eq!((status, err["error"]["type"].as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type")));

    // Bad query parameters and ids.
    for (query, field) in [("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"), ("before=nope", "before")] {
        let (status, err) = call(s.get(&format!("/v1/jobs?{query}"))).await;
        assert_eq!((status, err["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{query}: {err}");
    }
    for req in [s.get("/v1/jobs/not-a-uuid"), s.get("/v1/jobs/not-a-uuid/images/0"), s.get("/v1/nothing"), s.post("/v1/jobs/not-a-uuid/cancel")] {
        let (status, err) = call(req).await;
        assert_eq!((status, err["error"]["type"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{err}");
    }
    let (status, err) = call(s.http.delete(s.server.url("/v1/jobs")).bearer_auth(&s.token)).await;
    assert_eq!((status, err["error"]["type"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));

    // Nothing above was stored; a good img2img request is.
    let (_, list) = call(s.get("/v1/jobs")).await;
    assert_eq!(list["data"], json!([]));
    let (status, job) = s.submit(with(json!({"init_image": ok_image, "strength": 0.5, "model": "tiny"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["request"]["strength"], 0.5);
    assert!(job["request"].get("init_image").is_none(), "the init image is not echoed");
    // It is stored apart from the request, for the worker alone (listing never loads it).
    let store = s.env.store().await;
    let id = id_of(&job);
    let (request,): (Value,) = sqlx::query_as("SELECT request FROM jobs WHERE id = $1").bind(id).fetch_one(store.pool()).await.unwrap();
    assert!(request.get("init_image").is_none(), "{request}");
    assert_eq!(store.init_image(id).await.unwrap().as_deref(), Some(ok_image.as_str()));
    assert!(!s.server.log().contains("panicked"));
}

#[tokio::test]
async fn submitted_jobs_are_queued_with_a_position_and_cancel_at_once() {
    let s = Service::start(&[]).await;
    let r = s.post("/v1/jobs").json(&json!({"model": "tiny", "prompt": "a cat"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
    let first: Value = r.json().await.unwrap();
    let a = id_of(&first);
    assert_eq!(location, Some(format!("/v1/jobs/{a}")));
    assert_eq!(first["status"], "queued");
    assert_eq!(first["links"]["self"], format!("/v1/jobs/{a}"));
    assert_eq!(first["links"]["cancel"], format!("/v1/jobs/{a}/cancel"));
    assert_eq!((first["request"]["width"].as_u64(), first["request"]["height"].as_u64()), (Some(64), Some(64)), "native size");
    assert_eq!((first["request"]["steps"].as_u64(), first["request"]["sampler"].as_str()), (Some(25), Some("Euler")));
    let seed = first["request"]["seed"].as_u64().expect("the seed is resolved");
    assert!(seed < 4_294_967_294);

    let (_, second) = s.submit(json!({"model": "tiny", "prompt": "a dog", "seed": 12345, "sampler": "k_dpmpp_2m_ka"})).await;
    let b = id_of(&second);
    assert_eq!((second["request"]["seed"].as_u64(), second["request"]["sampler"].as_str()), (Some(12345), Some("DPM++ 2M Karras")));

    let (status, job) = call(s.get(&format!("/v1/jobs/{a}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((job["status"].as_str(), job["queue_position"].as_i64()), (Some("queued"), Some(0)), "{job}");
    assert_eq!(job["progress"], json!({"step": 0, "total": 0}));
    assert_eq!(job["attempts"], 0);
    assert!(job["created_at"].as_str().is_some_and(|t| t.contains('T') && t.ends_with('Z')), "RFC 3339: {job}");
    assert!(job["started_at"].is_null() && job["finished_at"].is_null() && job["error"].is_null());
    assert_eq!(job["images"], json!([]));
    let (_, job) = call(s.get(&format!("/v1/jobs/{b}"))).await;
    assert_eq!(job["queue_position"], 1);
    assert_eq!(s.env.queue().await.depth("tiny").await.unwrap(), 2, "both are in Redis");

    let (status, canceled) = call(s.post(&format!("/v1/jobs/{a}/cancel"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    assert!(canceled["finished_at"].is_string() && canceled["queue_position"].is_null());
    let (_, job) = call(s.get(&format!("/v1/jobs/{b}"))).await;
    assert_eq!(job["queue_position"], 0, "the canceled job no longer counts");
    let (status, again) = call(s.post(&format!("/v1/jobs/{a}/cancel"))).await;
    assert_eq!((status, again["status"].as_str()), (StatusCode::OK, Some("canceled")));
    let (status, _) = call(s.get(&format!("/v1/jobs/{a}/images/0"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(s.get(&format!("/v1/jobs/{}", Uuid::now_v7()))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn job_lists_are_newest_first_and_paginated() {
    let s = Service::start(&[]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, job) = s.submit(json!({"model": "tiny", "prompt": format!("job {i}")})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(id_of(&job));
    }
    ids.reverse();
    let (_, all) = call(s.get("/v1/jobs")).await;
    let listed: Vec<Uuid> = all["data"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(listed, ids, "newest first");
    assert!(all["next"].is_null());

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs?limit=2&before={c}"),
            None => "/v1/jobs?limit=2".to_string(),
        };
        let (status, page) = call(s.get(&path)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(id_of));
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(next, data.last().map(id_of).unwrap().to_string());
                cursor = Some(next.to_string());
            }
            None => break,
        }
    }
    assert_eq!((seen, pages), (ids, 3));
}

#[tokio::test]
async fn health_readiness_and_the_model_catalog() {
    let s = Service::start(&[]).await;
    let (status, body) = call(s.http.get(s.server.url("/healthz"))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = call(s.http.get(s.server.url("/readyz"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}));

    let (status, models) = call(s.get("/v1/models")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        models,
        json!({"data": [
            {"id": "big", "family": "sdxl", "native_size": 1024, "size_multiple": 8, "img2img": false, "live_workers": 0},
            {"id": "tiny", "family": "sd", "native_size": 64, "size_multiple": 8, "img2img": true, "live_workers": 0},
        ]})
    );
    let store = s.env.store().await;
    let worker = Uuid::new_v4();
    let entry = ModelEntry { id: "tiny".into(), family: Family::Sd, native_size: 64, size_multiple: 8, img2img: true, sha256: None, path: None };
    store.register_worker(worker, "gpu-1", &[entry]).await.unwrap();
    let (_, models) = call(s.get("/v1/models")).await;
    assert_eq!(models["data"][1]["live_workers"], 1, "{models}");
    store.worker_stopped(worker).await.unwrap();
    let (_, models) = call(s.get("/v1/models")).await;
    assert_eq!(models["data"][1]["live_workers"], 0, "{models}");
}

#[tokio::test]
async fn prefer_wait_answers_202_when_time_is_up() {
    let s = Service::start(&[]).await;
    let started = Instant::now();
    let (status, job) = call(s.post("/v1/jobs").header("Prefer", "wait=1").json(&json!({"model": "tiny", "prompt": "p"}))).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["status"], "queued");
    assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn prefer_wait_answers_200_with_the_images_when_a_worker_finishes() {
    let s = Service::start(&[]).await;
    let request = s.post("/v1/jobs").header("Prefer", "wait").json(&json!({"model": "tiny", "prompt": "p", "seed": 77, "num_images": 2}));
    let waiting = tokio::spawn(async move { call(request).await });

    // A simulated worker: take the job from Redis, report progress, then finish it.
    let claim = take_job(&s.env, "tiny").await;
    assert_eq!(claim.request.seed, Some(77));
    let store = s.env.store().await;
    store.progress(claim.job_id, claim.lease, 3, 25).await.unwrap();
    let (_, running) = call(s.get(&format!("/v1/jobs/{}", claim.job_id))).await;
    assert_eq!((running["status"].as_str(), running["attempts"].as_i64()), (Some("running"), Some(1)), "{running}");
    assert_eq!(running["progress"], json!({"step": 3, "total": 25}));
    assert!(running["started_at"].is_string() && running["queue_position"].is_null());
    assert!(!waiting.is_finished(), "still waiting while the job runs");

    let images: Vec<NewImage> = (0..2)
        .map(|i| NewImage { idx: i, seed: 77 + i as u64, format: "png".into(), width: 64, height: 64 + 8 * i as u32, bytes: png(64, 64 + 8 * i as u32) })
        .collect();
    let finished_at = Instant::now();
    assert!(store.complete(claim.job_id, claim.lease, &images).await.unwrap());
    let (status, job) = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the waiter is woken").unwrap();
    assert!(finished_at.elapsed() < Duration::from_secs(2), "woken promptly: {:?}", finished_at.elapsed());
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "succeeded");
    assert!(job["finished_at"].is_string());
    for (i, image) in images.iter().enumerate() {
        let shown = &job["images"][i];
        assert_eq!(shown["index"], i);
        assert_eq!(shown["seed"], 77 + i as u64);
        assert_eq!(shown["content_type"], "image/png");
        assert_eq!((shown["width"].as_u64(), shown["height"].as_u64()), (Some(64), Some(64 + 8 * i as u64)));
        let bytes = base64::engine::general_purpose::STANDARD.decode(shown["b64_json"].as_str().expect("inline image")).unwrap();
        assert_eq!(bytes, image.bytes);
        let url = shown["url"].as_str().unwrap();
        assert_eq!(url, format!("/v1/jobs/{}/images/{i}", claim.job_id));
        let r = s.get(url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("image/png"));
        assert_eq!(r.bytes().await.unwrap().to_vec(), image.bytes);
    }
    let (status, _) = call(s.get(&format!("/v1/jobs/{}/images/2", claim.job_id))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // GET shows links, not bytes.
    let (_, shown) = call(s.get(&format!("/v1/jobs/{}", claim.job_id))).await;
    assert!(shown["images"][0].get("b64_json").is_none() && shown["images"][0]["url"].is_string(), "{shown}");
}

#[tokio::test]
async fn a_waiter_sees_a_cancel() {
    let s = Service::start(&[]).await;
    let (_, job) = s.submit(json!({"model": "tiny", "prompt": "first"})).await;
    let request = s.post("/v1/jobs").header("Prefer", "wait=30").json(&json!({"model": "tiny", "prompt": "second"}));
    let waiting = tokio::spawn(async move { call(request).await });
    // Find the waiting job (the newest), then cancel it.
    let until = Instant::now() + Duration::from_secs(10);
    let second = loop {
        let (_, list) = call(s.get("/v1/jobs")).await;
        if list["data"].as_array().map(Vec::len) == Some(2) {
            break id_of(&list["data"][0]);
        }
        assert!(Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(second, id_of(&job));
    let (status, _) = call(s.post(&format!("/v1/jobs/{second}/cancel"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, done) = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken by the cancel").unwrap();
    assert_eq!((status, done["status"].as_str()), (StatusCode::OK, Some("canceled")), "{done}");
}

#[tokio::test]
async fn sigterm_answers_waiters_and_exits() {
    let mut s = Service::start(&[]).await;
    let request = s.post("/v1/jobs").header("Prefer", "wait").json(&json!({"model": "tiny", "prompt": "p"}));
    let waiting = tokio::spawn(async move { call(request).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = std::process::Command::new("kill").args(["-TERM", &s.server.pid().to_string()]).status().expect("kill runs");
    assert!(killed.success());
    let (status, job) = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("answered at shutdown").unwrap();
    assert_eq!((status, job["status"].as_str()), (StatusCode::ACCEPTED, Some("queued")), "{job}");
    let exit = s.server.wait_exit(Duration::from_secs(10)).expect("the server exits");
    assert!(exit.success(), "{exit:?}\n{}", s.server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_accepted_while_redis_is_down_and_delivered_when_it_returns() {
    let proxy = TcpProxy::start(REDIS_URL.trim_start_matches("redis://")).await;
    let redis_via_proxy = format!("redis://127.0.0.1:{}", proxy.port);
    let s = Service::start(&[("REDIS_URL", &redis_via_proxy), ("DARKROOM_RECOVERY_SECS", "0.2")]).await;

    proxy.down();
    let (status, ready) = call(s.http.get(s.server.url("/readyz"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["checks"], json!({"postgres": "ok", "redis": "failed"}));

    let (status, job) = s.submit(json!({"model": "tiny", "prompt": "during the outage"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["status"], "queued");
    let queue = s.env.queue().await;
    assert_eq!(queue.depth("tiny").await.unwrap(), 0);

    proxy.up().await;
    let until = Instant::now() + Duration::from_secs(15);
    while queue.depth("tiny").await.unwrap() == 0 {
        assert!(Instant::now() < until, "the job reached Redis once it was back\n{}", s.server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.server.log().contains("could not enqueue"), "a warning is logged");
    let claim = take_job(&s.env, "tiny").await;
    assert_eq!(claim.job_id, id_of(&job));
    let (status, _) = call(s.http.get(s.server.url("/readyz"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn waiters_survive_the_loss_of_the_listener_connection() {
    let s = Service::start(&[]).await;
    let store = s.env.store().await;
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%darkroom_jobs%' AND pid <> pg_backend_pid()",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(killed, vec![(true,)], "the API's one LISTEN connection for jobs (webhook deliveries have their own)");
    let until = Instant::now() + Duration::from_secs(10);
    while !s.server.log().contains("job listener") {
        assert!(Instant::now() < until, "the listener noticed\n{}", s.server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let request = s.post("/v1/jobs").header("Prefer", "wait=30").json(&json!({"model": "tiny", "prompt": "p"}));
    let waiting = tokio::spawn(async move { call(request).await });
    let claim = take_job(&s.env, "tiny").await;
    let image = NewImage { idx: 0, seed: 1, format: "png".into(), width: 8, height: 8, bytes: png(8, 8) };
    assert!(store.complete(claim.job_id, claim.lease, &[image]).await.unwrap());
    let (status, job) = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken").unwrap();
    assert_eq!((status, job["status"].as_str()), (StatusCode::OK, Some("succeeded")));
    let listening: (i64,) = sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%darkroom_jobs%'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(listening.0, 1, "listening again");
}

/// A cancel that lands while a worker hands its job back (shutdown) ends the job `canceled`,
/// never queued forever: the interleaving is forced (claim, cancel, hand back).
#[tokio::test]
async fn a_cancel_racing_a_hand_back_ends_canceled() {
    let s = Service::start(&[]).await;
    let (status, job) = s.submit(json!({"model": "tiny", "prompt": "p"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let claim = take_job(&s.env, "tiny").await;
    let (status, canceling) = call(s.post(&format!("/v1/jobs/{}/cancel", claim.job_id))).await;
    assert_eq!((status, canceling["status"].as_str(), canceling["cancel_requested"].as_bool()), (StatusCode::OK, Some("running"), Some(true)));
    let store = s.env.store().await;
    let released = store.release(claim.job_id, claim.lease).await.expect("hand back");
    assert_eq!(released, Some(darkroom_shared::job::JobStatus::Canceled));
    let (_, after) = call(s.get(&format!("/v1/jobs/{}", id_of(&job)))).await;
    assert_eq!(after["status"], "canceled", "{after}");
    // A plain hand-back still queues the job again.
    let (_, second) = s.submit(json!({"model": "tiny", "prompt": "p"})).await;
    let claim = take_job(&s.env, "tiny").await;
    assert_eq!(claim.job_id, id_of(&second));
    assert_eq!(store.release(claim.job_id, claim.lease).await.expect("hand back"), Some(darkroom_shared::job::JobStatus::Queued));
}

/// Recovery requeues expired leases in small transactions that skip locked rows: a worker
/// frozen inside its completion transaction (holding its job's row) does not stall it.
#[tokio::test]
async fn recovery_skips_a_row_held_by_a_frozen_completion() {
    let env = ServiceEnv::new();
    let store = env.store().await;
    let tenant = store.create_tenant("acme").await.expect("tenant");
    let request = darkroom_shared::request::GenerationRequest::new("tiny", "p");
    let mut claims = Vec::new();
    for _ in 0..2 {
        let job = store.insert_job(tenant.id, &request).await.expect("job");
        claims.push(store.claim(job.id, Uuid::new_v4(), Duration::from_secs(30)).await.expect("claim").expect("claimed"));
    }
    sqlx::query("UPDATE jobs SET lease_expires_at = now() - interval '1 second'").execute(store.pool()).await.expect("expire");
    let mut frozen = store.pool().begin().await.expect("tx");
    sqlx::query("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE").bind(claims[0].job_id).execute(&mut *frozen).await.expect("lock");

    let requeued = tokio::time::timeout(Duration::from_secs(5), store.expire_leases(3)).await.expect("not stalled by the lock").expect("expire");
    assert_eq!(requeued.iter().map(|r| r.id).collect::<Vec<_>>(), vec![claims[1].job_id], "the unlocked job only");
    // (Dropping the transaction would roll it back lazily, possibly after the next pass.)
    frozen.rollback().await.expect("rollback");
    let requeued = store.expire_leases(3).await.expect("expire");
    assert_eq!(requeued.iter().map(|r| r.id).collect::<Vec<_>>(), vec![claims[0].job_id], "the other once its row is free");
}

/// A job over `--max-job-cost` is refused at submission with a 422 naming the limit, in every
/// dialect; one under it is accepted.
#[tokio::test]
async fn jobs_over_the_cost_ceiling_are_refused() {
    let s = Service::start(&[]).await;
    let huge = json!({"model": "big", "prompt": "p", "width": 2048, "height": 2048, "num_images": 8, "steps": 150});
    let (status, e) = s.submit(huge).await;
    assert_eq!((status, e["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("max_job_cost")), "{e}");
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("57600") && m.contains("4800")), "{e}");
    let a1111 = json!({"prompt": "p", "width": 2048, "height": 2048, "batch_size": 8, "steps": 150, "override_settings": {"sd_model_checkpoint": "big"}});
    let (status, e) = call(s.post("/sdapi/v1/txt2img").json(&a1111)).await;
    assert_eq!((status, e["detail"][0]["loc"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(["body", "max_job_cost"])), "{e}");
    let (status, e) = s.submit(json!({"model": "big", "prompt": "p", "width": 1024, "height": 1024, "num_images": 2, "steps": 30})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{e}");
}

/// `Idempotency-Key` on `POST /v1/jobs`: the same key and body give the same job (200, no
/// second job); the same key with another body is a 422 naming the header; keys are per tenant.
#[tokio::test]
async fn idempotency_keys_return_the_first_job() {
    let s = Service::start(&[]).await;
    let body = json!({"model": "tiny", "prompt": "p", "seed": 1});
    let keyed = |body: &Value, key: &str| s.post("/v1/jobs").header("Idempotency-Key", key).json(body);
    let (status, first) = call(keyed(&body, "order-42")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, again) = call(keyed(&body, "order-42")).await;
    assert_eq!((status, again["id"].clone()), (StatusCode::OK, first["id"].clone()), "{again}");
    let (status, e) = call(keyed(&json!({"model": "tiny", "prompt": "other"}), "order-42")).await;
    assert_eq!((status, e["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("Idempotency-Key")), "{e}");
    let (status, e) = call(keyed(&body, "")).await;
    assert_eq!((status, e["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("Idempotency-Key")), "{e}");
    let (_, list) = call(s.get("/v1/jobs")).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "one job: {list}");
    // Another tenant's key of the same name is its own.
    let other = s.env.tenant_with_token("other");
    let r = s.http.post(s.server.url("/v1/jobs")).bearer_auth(&other).header("Idempotency-Key", "order-42").json(&body);
    let (status, theirs) = call(r).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{theirs}");
    assert_ne!(theirs["id"], first["id"]);
}

/// `--max-waiting`: a tenant's requests waiting for their jobs are capped (429 naming the
/// limit); submissions that do not wait, and other tenants, are not affected.
#[tokio::test]
async fn waiting_requests_are_capped_per_tenant() {
    let s = Service::start(&[("DARKROOM_MAX_WAITING", "2")]).await;
    let body = json!({"model": "tiny", "prompt": "p"});
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let r = s.post("/v1/jobs").header("Prefer", "wait=4").json(&body);
            tokio::spawn(async move { call(r).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, e) = call(s.post("/v1/jobs").header("Prefer", "wait=4").json(&body)).await;
    assert_eq!((status, e["error"]["type"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded")), "{e}");
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("max_waiting")), "{e}");
    let (status, _) = s.submit(body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "a submission that does not wait");
    let other = s.env.tenant_with_token("other");
    let (status, _) = call(s.http.post(s.server.url("/v1/jobs")).bearer_auth(&other).header("Prefer", "wait=1").json(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "another tenant waits");
    for w in waiting {
        assert_eq!(w.await.expect("waiter").0, StatusCode::ACCEPTED);
    }
    let (status, _) = call(s.post("/v1/jobs").header("Prefer", "wait=1").json(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "places are given back");
}

/// `queue_position` counts only the caller's own queued jobs: another tenant's backlog is
/// neither revealed nor in the way (fair queuing interleaves tenants).
#[tokio::test]
async fn queue_positions_reveal_only_the_callers_own_line() {
    let s = Service::start(&[]).await;
    let other = s.env.tenant_with_token("other");
    for _ in 0..3 {
        let (status, _) = call(s.http.post(s.server.url("/v1/jobs")).bearer_auth(&other).json(&json!({"model": "tiny", "prompt": "p"}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (_, mine) = s.submit(json!({"model": "tiny", "prompt": "p"})).await;
    assert_eq!(mine["queue_position"], 0, "{mine}");
    let (_, second) = s.submit(json!({"model": "tiny", "prompt": "p"})).await;
    assert_eq!(second["queue_position"], 1, "{second}");
}

/// Retention: a finished job's images go after `--retention` (the image answers 410 with a JSON
/// error; the job stays, marked), job rows after `--job-retention`, stopped workers' rows after
/// `--worker-retention`.
#[tokio::test]
async fn retention_purges_images_then_jobs_then_old_workers() {
    let s = Service::start(&[("DARKROOM_RETENTION", "1s"), ("DARKROOM_JOB_RETENTION", "0"), ("DARKROOM_PURGE_EVERY_SECS", "0.3")]).await;
    let init_image = b64(&png(16, 16));
    let (_, job) = s.submit(json!({"model": "tiny", "prompt": "p", "init_image": init_image, "strength": 0.5})).await;
    let claim = take_job(&s.env, "tiny").await;
    assert_eq!(claim.request.init_image.as_deref(), Some(init_image.as_str()), "the worker gets the init image");
    let store = s.env.store().await;
    let image = NewImage { idx: 0, seed: 1, format: "png".into(), width: 8, height: 8, bytes: png(8, 8) };
    assert!(store.complete(claim.job_id, claim.lease, &[image]).await.unwrap());
    let url = format!("/v1/jobs/{}/images/0", id_of(&job));
    assert_eq!(s.get(&url).send().await.unwrap().status(), StatusCode::OK, "kept at first");
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = call(s.get(&url)).await;
        if status == StatusCode::GONE {
            assert_eq!(body["error"]["type"], "gone", "{body}");
            break;
        }
        assert!(Instant::now() < until, "the image was purged after its retention: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, view) = call(s.get(&format!("/v1/jobs/{}", id_of(&job)))).await;
    assert_eq!((status, view["status"].as_str(), view["images"].clone()), (StatusCode::OK, Some("succeeded"), json!([])), "{view}");
    assert!(view["images_purged_at"].is_string(), "{view}");
    let id = id_of(&job);
    assert_eq!(store.init_image(id).await.unwrap(), None, "the init image went with the images");
    let kinds: Vec<(String,)> = sqlx::query_as("SELECT kind FROM job_events WHERE job_id = $1 ORDER BY id").bind(id).fetch_all(store.pool()).await.unwrap();
    assert_eq!(kinds, [("succeeded".to_string(),)], "only the terminal event outlives the images");
    // Idempotency keys past their 24 hours, job rows and old workers' rows, as the purge pass
    // deletes them.
    let tenant: (uuid::Uuid,) = sqlx::query_as("SELECT tenant_id FROM jobs WHERE id = $1").bind(id).fetch_one(store.pool()).await.unwrap();
    for (key, age) in [("old", "25 hours"), ("fresh", "1 hour")] {
        sqlx::query("INSERT INTO idempotency_keys (tenant_id, key, request_hash, job_id, created_at) VALUES ($1, $2, '\\x00', $3, now() - $4::interval)")
            .bind(tenant.0)
            .bind(key)
            .bind(id)
            .bind(age)
            .execute(store.pool())
            .await
            .unwrap();
    }
    // (The API's own pass, every 0.3 s, may get there first.)
    assert!(store.purge_idempotency_keys().await.unwrap() <= 1);
    let keys: Vec<(String,)> = sqlx::query_as("SELECT key FROM idempotency_keys").fetch_all(store.pool()).await.unwrap();
    assert_eq!(keys, vec![("fresh".to_string(),)], "only the expired key is purged");
    assert_eq!(store.purge_jobs(Duration::from_millis(1)).await.unwrap(), 1);
    assert_eq!(call(s.get(&format!("/v1/jobs/{}", id_of(&job)))).await.0, StatusCode::NOT_FOUND);
    assert_eq!(store.prune_workers(Duration::from_millis(1)).await.unwrap(), 1, "the stopped catalog worker");
}
