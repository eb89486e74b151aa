//! Multi-tenancy: rate limits shared by API replicas, quotas in every dialect, running caps and
//! GPU time shared by cost, with the real API, real workers and the tiny model.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use darkroom_shared::family::Family;
use darkroom_shared::store::ModelEntry;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{ApiServer, ServiceEnv};
use crate::workers::Worker;

/// A tenant's client of one API server.
struct Tenant {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Tenant {
    fn new(api: &ApiServer, token: &str) -> Tenant {
        Tenant { http: reqwest::Client::new(), base: api.base.clone(), token: token.to_string() }
    }

    /// POST `body` to `path`: status, headers, JSON body.
    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.timeout(Duration::from_secs(60)).send().await.expect("the API answers");
        let (status, headers) = (r.status(), r.headers().clone());
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }

    async fn submit(&self, body: &Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.post("/v1/jobs", &[], body).await
    }

    async fn cancel_all(&self, ids: &[String]) {
        for id in ids {
            let _ = self.http.post(format!("{}/v1/jobs/{id}/cancel", self.base)).bearer_auth(&self.token).send().await;
        }
    }
}

fn job(images: u32, steps: u32, seed: u64) -> Value {
    json!({"model": "tiny", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": steps, "num_images": images, "seed": seed})
}

fn set_limits(env: &ServiceEnv, tenant: &str, args: &[&str]) {
    let mut all = vec!["tenant", "set", tenant];
    all.extend_from_slice(args);
    let o = env.admin(&all);
    assert!(o.status.success(), "tenant set: {}", String::from_utf8_lossy(&o.stderr));
}

/// A catalog entry for `tiny`, with no live worker: jobs stay queued.
async fn catalog_only(env: &ServiceEnv) {
    let store = env.store().await;
    let entry = ModelEntry { id: "tiny".into(), family: Family::Sd, native_size: 64, size_multiple: 8, img2img: true, sha256: None, path: None };
    store.register_worker(Uuid::new_v4(), "test", &[entry]).await.expect("catalog");
    sqlx::query("UPDATE workers SET stopped_at = now()").execute(store.pool()).await.expect("worker stopped");
}

/// One job's run as Postgres recorded it.
#[derive(Debug, sqlx::FromRow)]
struct Run {
    tenant: String,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

async fn runs(env: &ServiceEnv) -> Vec<Run> {
    let store = env.store().await;
    sqlx::query_as("SELECT t.name AS tenant, j.started_at, j.finished_at FROM jobs j JOIN tenants t ON t.id = j.tenant_id ORDER BY j.id")
        .fetch_all(store.pool())
        .await
        .expect("jobs")
}

/// Seconds of each tenant's running time inside [from, to].
fn gpu_time(runs: &[Run], from: DateTime<Utc>, to: DateTime<Utc>) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for r in runs {
        let (Some(s), Some(f)) = (r.started_at, r.finished_at) else { continue };
        let (s, f) = (s.max(from), f.min(to));
        if f > s {
            *out.entry(r.tenant.clone()).or_insert(0.0) += (f - s).num_microseconds().unwrap_or(0) as f64 / 1e6;
        }
    }
    out
}

/// Tenant `heavy` queues 30 jobs of 8 images, then `light` 15 of 1 image, then one worker
/// starts: every light job ends before the heavy tenant's 10th, and while both have work the GPU
/// time splits as their weights (within 20 %).
async fn heavy_and_light(weights: Option<(&str, &str)>, expected_ratio: f64) -> f64 {
    // Timing measurements: one at a time, so the two do not slow each other unevenly.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[("DARKROOM_DEFAULT_MAX_QUEUED", "0")]);
    let heavy = Tenant::new(&api, &env.tenant_with_token("heavy"));
    let light = Tenant::new(&api, &env.tenant_with_token("light"));
    if let Some((h, l)) = weights {
        set_limits(&env, "heavy", &["--weight", h]);
        set_limits(&env, "light", &["--weight", l]);
    }
    catalog_only(&env).await;
    let mut heavy_ids = Vec::new();
    for seed in 0..30 {
        let (status, _, j) = heavy.submit(&job(8, 20, seed)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{j}");
        heavy_ids.push(j["id"].as_str().expect("id").to_string());
    }
    let mut light_ids = Vec::new();
    for seed in 0..15 {
        let (status, _, j) = light.submit(&job(1, 20, seed)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{j}");
        light_ids.push(j["id"].as_str().expect("id").to_string());
    }
    let _worker = Worker::start(&env, &[]);
    let until = Instant::now() + Duration::from_secs(240);
    loop {
        let done = runs(&env).await.into_iter().filter(|r| r.tenant == "light" && r.finished_at.is_some()).count();
        if done == light_ids.len() {
            break;
        }
        assert!(Instant::now() < until, "the light tenant's jobs did not all finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    heavy.cancel_all(&heavy_ids).await;

    let all = runs(&env).await;
    let heavy_runs: Vec<&Run> = all.iter().filter(|r| r.tenant == "heavy").collect();
    let light_runs: Vec<&Run> = all.iter().filter(|r| r.tenant == "light").collect();
    let last_light = light_runs.iter().filter_map(|r| r.finished_at).max().expect("light finished");
    if let Some(tenth) = heavy_runs.get(9).and_then(|r| r.finished_at) {
        assert!(last_light < tenth, "every light job ends before the heavy tenant's 10th");
    }
    // The contended period: from the first job's start to the light tenant's last job's end.
    let from = all.iter().filter_map(|r| r.started_at).min().expect("started jobs");
    let time = gpu_time(&all, from, last_light);
    let (h, l) = (time.get("heavy").copied().unwrap_or(0.0), time.get("light").copied().unwrap_or(0.0));
    let ratio = h / l;
    eprintln!("GPU time while contended: heavy {h:.2} s, light {l:.2} s, ratio {ratio:.2} (expected {expected_ratio})");
    ratio
}

/// Seconds on a shared 2-core machine are noisy: the split must land within 20 % of the weights
/// in one of three runs (a broken scheduler misses by far more in every run: 0.5 or 8).
async fn split_within_20_percent(weights: Option<(&str, &str)>, expected_ratio: f64) {
    let mut ratios = Vec::new();
    for _ in 0..3 {
        let ratio = heavy_and_light(weights, expected_ratio).await;
        if (ratio / expected_ratio - 1.0).abs() <= 0.2 {
            return;
        }
        ratios.push(ratio);
    }
    panic!("heavy/light GPU time {ratios:?} in three runs, expected {expected_ratio} ± 20 %");
}

#[tokio::test(flavor = "multi_thread")]
async fn gpu_time_is_shared_by_cost_between_a_heavy_and_a_light_tenant() {
    split_within_20_percent(None, 1.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gpu_time_is_shared_by_weight() {
    split_within_20_percent(Some(("3", "1")), 3.0).await;
}

/// Rate 10 a minute with a burst of 5, over two API processes: a burst of 20 gives 5 accepted
/// and 15 refused with `Retry-After` and the RateLimit headers; after the wait, accepted again.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_shared_by_api_replicas() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    catalog_only(&env).await;
    set_limits(&env, "acme", &["--rate", "10", "--burst", "5"]);
    let (one, two) = (ApiServer::start(&env, &[]), ApiServer::start(&env, &[]));
    let clients = [Tenant::new(&one, &token), Tenant::new(&two, &token)];
    let (mut accepted, mut refused) = (0, Vec::new());
    for i in 0..20 {
        let (status, headers, body) = clients[i % 2].submit(&job(1, 1, i as u64)).await;
        match status {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["error"]["type"], "rate_limited", "{body}");
                let retry: u64 = headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
                assert!((1..=6).contains(&retry), "Retry-After {retry}");
                let policy = headers.get("ratelimit-policy").and_then(|v| v.to_str().ok()).unwrap_or("");
                assert!(policy.contains("q=10") && policy.contains("w=60"), "RateLimit-Policy {policy:?}");
                assert!(headers.get("ratelimit").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("r=0")), "RateLimit");
                refused.push(retry);
            }
            other => panic!("submission {i}: {other} {body}"),
        }
    }
    assert_eq!((accepted, refused.len()), (5, 15), "one budget across both replicas");
    // Each dialect refuses in its own shape.
    let (s, _, b) = clients[0].post("/sdapi/v1/txt2img", &[], &json!({"prompt": "p", "width": 64, "height": 64})).await;
    assert_eq!((s, b["error"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("HTTPException")), "{b}");
    let (s, _, b) = clients[1].post("/v1/image/generation", &[], &json!({"model_name": "tiny", "prompt": "p"})).await;
    assert_eq!((s, b["type"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limit_error")), "{b}");
    let (s, _, b) = clients[0].post("/", &[], &json!({"inputs": "p"})).await;
    assert!(s == StatusCode::TOO_MANY_REQUESTS && b["error"].is_string(), "{s} {b}");
    let (s, _, b) = clients[1].post("/models/tiny", &[("x-wait-for-model", "true")], &json!({"inputs": "p"})).await;
    assert!(s == StatusCode::TOO_MANY_REQUESTS && b["error"].is_string(), "{s} {b}");

    let wait = *refused.last().expect("refused");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (status, _, body) = clients[1].submit(&job(1, 1, 99)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "accepted after Retry-After: {body}");
}

/// `--max-running 1`, two workers: never two of the capped tenant's jobs at once, while the
/// other tenant's jobs use the second worker.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_cap_holds_across_workers_and_leaves_them_to_others() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let capped = Tenant::new(&api, &env.tenant_with_token("capped"));
    let other = Tenant::new(&api, &env.tenant_with_token("other"));
    set_limits(&env, "capped", &["--max-running", "1"]);
    let _workers = [Worker::start(&env, &[]), Worker::start(&env, &[])];
    for seed in 0..6 {
        assert_eq!(capped.submit(&job(1, 20, seed)).await.0, StatusCode::ACCEPTED);
        assert_eq!(other.submit(&job(1, 20, seed)).await.0, StatusCode::ACCEPTED);
    }
    let until = Instant::now() + Duration::from_secs(180);
    while runs(&env).await.iter().any(|r| r.finished_at.is_none()) {
        assert!(Instant::now() < until, "the jobs did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = runs(&env).await;
    let span = |r: &Run| (r.started_at.expect("started"), r.finished_at.expect("finished"));
    let mut capped_runs: Vec<_> = all.iter().filter(|r| r.tenant == "capped").map(span).collect();
    capped_runs.sort();
    for pair in capped_runs.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "two capped jobs overlapped: {pair:?}");
    }
    let overlapping = all.iter().filter(|r| r.tenant == "other").map(span).filter(|(s, f)| capped_runs.iter().any(|(cs, cf)| s < cf && cs < f)).count();
    assert!(overlapping >= 2, "the other tenant used the second worker meanwhile ({overlapping} of its jobs overlapped)");
}

/// `--max-queued 2`: the third unfinished job is refused with 429 `quota_exceeded` naming the
/// limit and its value, in every dialect's shape.
#[tokio::test(flavor = "multi_thread")]
async fn the_queued_quota_is_refused_in_every_dialect() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    catalog_only(&env).await;
    set_limits(&env, "acme", &["--max-queued", "2"]);
    let api = ApiServer::start(&env, &[]);
    let t = Tenant::new(&api, &token);
    for seed in 0..2 {
        assert_eq!(t.submit(&job(1, 1, seed)).await.0, StatusCode::ACCEPTED);
    }
    let (s, h, b) = t.submit(&job(1, 1, 3)).await;
    assert_eq!((s, b["error"]["type"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded")), "{b}");
    let message = b["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("max_queued") && message.contains('2'), "{message}");
    assert!(h.get("retry-after").is_some(), "Retry-After");
    let (s, _, b) = t.post("/sdapi/v1/txt2img", &[], &json!({"prompt": "p", "width": 64, "height": 64})).await;
    assert_eq!((s, b["error"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("HTTPException")), "{b}");
    assert!(b["detail"].as_str().is_some_and(|d| d.contains("max_queued")), "{b}");
    let (s, _, b) = t.post("/v1/image/generation", &[], &json!({"model_name": "tiny", "prompt": "p"})).await;
    assert_eq!((s, b["type"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limit_error")), "{b}");
    assert!(b["message"].as_str().is_some_and(|d| d.contains("max_queued")), "{b}");
    let (s, _, b) = t.post("/", &[], &json!({"inputs": "p"})).await;
    assert!(s == StatusCode::TOO_MANY_REQUESTS && b["error"].as_str().is_some_and(|e| e.contains("max_queued")), "{s} {b}");
    let (s, _, b) = t.post("/models/tiny", &[("x-wait-for-model", "true")], &json!({"inputs": "p"})).await;
    assert!(s == StatusCode::TOO_MANY_REQUESTS && b["error"].as_str().is_some_and(|e| e.contains("max_queued")), "{s} {b}");
    // A changed limit takes effect at once, without a restart.
    set_limits(&env, "acme", &["--max-queued", "3"]);
    assert_eq!(t.submit(&job(1, 1, 4)).await.0, StatusCode::ACCEPTED);
}
