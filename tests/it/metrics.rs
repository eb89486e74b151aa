//! Observability, end to end: the Prometheus series of the API and of a real tiny-model worker,
//! checked by value after real jobs; JSON logs; and the request id, from the request's header to
//! the API's log lines and the worker's log lines for its job.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use darkroom_shared::family::Family;
use darkroom_shared::store::ModelEntry;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{ApiServer, ServiceEnv};
use crate::workers::Worker;

/// Denoising steps of every job here.
const STEPS: u64 = 4;

/// One sample of a Prometheus text exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let samples = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(parse_sample).collect();
        Scrape { text, samples }
    }

    /// The sum of the samples named `name` whose labels include `labels` (0 when none).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples.iter().filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))).map(|s| s.value).sum()
    }

    /// Whether any sample is named `name` with `labels`.
    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
    }

    /// Every label name of our series must be one of the bounded ones: no tenant, no job.
    fn assert_bounded_labels(&self, secrets: &[&str]) {
        for s in self.samples.iter().filter(|s| s.name.starts_with("darkroom_")) {
            for key in s.labels.keys() {
                assert!(["model", "status", "route", "le", "quantile"].contains(&key.as_str()), "unexpected label {key} on {s:?}");
            }
        }
        for secret in secrets {
            assert!(!self.text.contains(secret), "the exposition mentions {secret:?}:\n{}", self.text);
        }
    }
}

/// `name{k="v",...} value`: label values as our series write them (escapes undone).
fn parse_sample(line: &str) -> Sample {
    let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {line}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("a sample value: {line}")),
    };
    let Some((name, rest)) = head.split_once('{') else {
        return Sample { name: head.to_string(), labels: BTreeMap::new(), value };
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.trim_end_matches('}').chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "a quoted label value: {line}");
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => v.push(chars.next().unwrap_or('\\')),
                '"' => break,
                c => v.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), v);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Sample { name: name.to_string(), labels, value }
}

async fn scrape(http: &Client, url: &str) -> Scrape {
    let r = http.get(url).send().await.unwrap_or_else(|e| panic!("{url} answers: {e}"));
    assert_eq!(r.status(), StatusCode::OK, "{url}");
    let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(content_type.starts_with("text/plain"), "{url}: content type {content_type}");
    Scrape::parse(r.text().await.expect("a text body"))
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The tiny model in the catalog with no live worker (its registering worker is stopped).
async fn catalog_without_workers(env: &ServiceEnv) {
    let store = env.store().await;
    let worker = Uuid::new_v4();
    let entry = ModelEntry { id: "tiny".into(), family: Family::Sd, native_size: 64, size_multiple: 16, img2img: true, sha256: None, path: None };
    store.register_worker(worker, "test", &[entry]).await.expect("catalog");
    store.worker_stopped(worker).await.expect("worker stopped");
}

fn job_body() -> Value {
    json!({"model": "tiny", "prompt": "a lighthouse", "steps": STEPS, "width": 64, "height": 64, "num_images": 1, "seed": 7})
}

/// Poll `GET /v1/jobs/{id}` until the job ends; its final view and how many GETs it took.
async fn wait_done(http: &Client, server: &ApiServer, token: &str, id: &str) -> (Value, u64) {
    let until = Instant::now() + Duration::from_secs(120);
    let mut gets = 0;
    loop {
        let r = http.get(server.url(&format!("/v1/jobs/{id}"))).bearer_auth(token).send().await.expect("the API answers");
        assert_eq!(r.status(), StatusCode::OK);
        gets += 1;
        let job: Value = r.json().await.expect("a job");
        if ["succeeded", "failed", "canceled"].contains(&job["status"].as_str().unwrap_or_default()) {
            return (job, gets);
        }
        assert!(Instant::now() < until, "job {id} did not end: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Queue gauges with no worker, a cancel counted by the API, then real jobs through a real
/// worker: every count checked by its value on the process that exports it.
#[tokio::test]
async fn metrics_count_real_jobs_by_value() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("metrics-tenant");
    catalog_without_workers(&env).await;
    let server = ApiServer::start(&env, &[("DARKROOM_METRICS_REFRESH_SECS", "0.05")]);
    let http = Client::new();
    let api_metrics = server.url("/metrics");

    // Nothing yet: the model is known, with zeros.
    let before = scrape(&http, &api_metrics).await;
    for gauge in ["darkroom_queue_depth", "darkroom_jobs_running", "darkroom_workers"] {
        assert!(before.has(gauge, &[("model", "tiny")]), "{gauge}{{model=\"tiny\"}} is exported:\n{}", before.text);
        assert_eq!(before.value(gauge, &[("model", "tiny")]), 0.0, "{gauge}");
    }

    // Three jobs with no worker: all queued.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = http.post(server.url("/v1/jobs")).bearer_auth(&token).json(&job_body()).send().await.expect("the API answers");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let job: Value = r.json().await.expect("a job");
        ids.push(job["id"].as_str().expect("an id").to_string());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let queued = scrape(&http, &api_metrics).await;
    assert_eq!(queued.value("darkroom_queue_depth", &[("model", "tiny")]), 3.0, "{}", queued.text);
    assert_eq!(queued.value("darkroom_jobs_running", &[("model", "tiny")]), 0.0);
    assert_eq!(queued.value("darkroom_workers", &[("model", "tiny")]), 0.0);
    assert_eq!(queued.value("darkroom_http_requests_total", &[("route", "/v1/jobs"), ("status", "202")]), 3.0, "{}", queued.text);
    assert_eq!(queued.value("darkroom_http_request_duration_seconds_count", &[("route", "/v1/jobs")]), 3.0);

    // A queued job canceled: the API ended it, so the API counts it, once.
    let r = http.post(server.url(&format!("/v1/jobs/{}/cancel", ids[0]))).bearer_auth(&token).send().await.expect("the API answers");
    assert_eq!(r.status(), StatusCode::OK);
    let r = http.post(server.url(&format!("/v1/jobs/{}/cancel", ids[0]))).bearer_auth(&token).send().await.expect("the API answers");
    assert_eq!(r.status(), StatusCode::OK, "canceling again is answered, and not counted again");
    // An unknown path is counted under one bounded route label.
    let r = http.get(server.url(&format!("/no/such/{}", Uuid::new_v4()))).send().await.expect("the API answers");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let canceled = scrape(&http, &api_metrics).await;
    assert_eq!(canceled.value("darkroom_jobs_total", &[("model", "tiny"), ("status", "canceled")]), 1.0, "{}", canceled.text);
    assert_eq!(canceled.value("darkroom_job_duration_seconds_count", &[("model", "tiny")]), 1.0);
    assert_eq!(canceled.value("darkroom_job_wait_seconds_count", &[("model", "tiny")]), 0.0, "a job that never started has no wait");
    assert_eq!(canceled.value("darkroom_queue_depth", &[("model", "tiny")]), 2.0);
    assert_eq!(canceled.value("darkroom_http_requests_total", &[("route", "/v1/jobs/{id}/cancel"), ("status", "200")]), 2.0);
    assert_eq!(canceled.value("darkroom_http_requests_total", &[("route", "unmatched"), ("status", "404")]), 1.0, "{}", canceled.text);

    // A real worker runs the two others.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let worker = Worker::start(&env, &[("DARKROOM_METRICS_LISTEN", listen.as_str())]);
    let worker_metrics = format!("http://{listen}/metrics");
    let idle = scrape(&http, &worker_metrics).await;
    let succeeded_before = idle.value("darkroom_jobs_total", &[("model", "tiny"), ("status", "succeeded")]);
    let steps_before = idle.value("darkroom_unet_step_seconds_count", &[("model", "tiny")]);
    let mut gets = 0;
    for id in &ids[1..] {
        let (job, n) = wait_done(&http, &server, &token, id).await;
        assert_eq!(job["status"], "succeeded", "{job}\n{}", worker.log());
        gets += n;
    }

    let w = scrape(&http, &worker_metrics).await;
    assert_eq!(w.value("darkroom_jobs_total", &[("model", "tiny"), ("status", "succeeded")]) - succeeded_before, 2.0, "{}", w.text);
    assert_eq!(w.value("darkroom_jobs_total", &[("status", "failed")]), 0.0);
    assert_eq!(w.value("darkroom_unet_step_seconds_count", &[("model", "tiny")]) - steps_before, (2 * STEPS) as f64, "{}", w.text);
    assert_eq!(w.value("darkroom_unet_step_seconds_bucket", &[("model", "tiny"), ("le", "+Inf")]), (2 * STEPS) as f64);
    let step_sum = w.value("darkroom_unet_step_seconds_sum", &[("model", "tiny")]);
    assert!(step_sum > 0.0, "steps take time: {step_sum}");
    for h in ["darkroom_job_compute_seconds", "darkroom_job_wait_seconds", "darkroom_job_duration_seconds"] {
        assert_eq!(w.value(&format!("{h}_count"), &[("model", "tiny")]), 2.0, "{h}:\n{}", w.text);
    }
    let compute = w.value("darkroom_job_compute_seconds_sum", &[("model", "tiny")]);
    let duration = w.value("darkroom_job_duration_seconds_sum", &[("model", "tiny")]);
    assert!(compute >= step_sum && duration >= compute, "steps {step_sum} ≤ compute {compute} ≤ duration {duration}");
    // Buckets are cumulative and cover jobs of seconds to minutes.
    assert!(w.has("darkroom_job_duration_seconds_bucket", &[("le", "1800")]), "{}", w.text);
    assert!(w.has("darkroom_unet_step_seconds_bucket", &[("le", "0.001")]), "{}", w.text);

    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = scrape(&http, &api_metrics).await;
    assert_eq!(after.value("darkroom_queue_depth", &[("model", "tiny")]), 0.0, "{}", after.text);
    assert_eq!(after.value("darkroom_jobs_running", &[("model", "tiny")]), 0.0);
    assert_eq!(after.value("darkroom_workers", &[("model", "tiny")]), 1.0, "the real worker is live");
    assert_eq!(after.value("darkroom_jobs_total", &[("status", "succeeded")]), 0.0, "the worker ended them: the API does not count them");
    assert_eq!(after.value("darkroom_jobs_total", &[("model", "tiny"), ("status", "canceled")]), 1.0);
    assert_eq!(after.value("darkroom_http_requests_total", &[("route", "/v1/jobs/{id}"), ("status", "200")]), gets as f64, "{}", after.text);

    let secrets = [token.as_str(), "metrics-tenant", ids[0].as_str(), ids[1].as_str(), ids[2].as_str()];
    after.assert_bounded_labels(&secrets);
    w.assert_bounded_labels(&secrets);
}

/// A running job shows in `darkroom_jobs_running`, and several API replicas export the same
/// gauges (they read Postgres), so `max()` across replicas is the true value.
#[tokio::test]
async fn running_gauge_and_replicas_agree() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("replicas");
    catalog_without_workers(&env).await;
    let a = ApiServer::start(&env, &[("DARKROOM_METRICS_REFRESH_SECS", "0.05")]);
    let b = ApiServer::start(&env, &[("DARKROOM_METRICS_REFRESH_SECS", "0.05")]);
    let http = Client::new();
    // A worker stopped after the first step of every job (TEST ONLY hang): its job stays running.
    let _worker = Worker::start(&env, &[("DARKROOM_TEST_HANG_AT_STEP", "1")]);
    for _ in 0..3 {
        let r = http.post(a.url("/v1/jobs")).bearer_auth(&token).json(&job_body()).send().await.expect("the API answers");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (sa, sb) = (scrape(&http, &a.url("/metrics")).await, scrape(&http, &b.url("/metrics")).await);
        let gauges = |s: &Scrape| ["darkroom_queue_depth", "darkroom_jobs_running", "darkroom_workers"].map(|g| s.value(g, &[("model", "tiny")]));
        if gauges(&sa) == [2.0, 1.0, 1.0] && gauges(&sb) == [2.0, 1.0, 1.0] {
            break;
        }
        assert!(Instant::now() < until, "expected 2 queued, 1 running, 1 worker on both replicas:\n{:?}\n{:?}", gauges(&sa), gauges(&sb));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lines of a JSON log, each parsed (lines that are not JSON objects fail the test).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))).collect()
}

/// The value of `field` in the line's spans (any of them).
fn span_field<'a>(line: &'a Value, field: &str) -> Option<&'a str> {
    line["spans"].as_array()?.iter().find_map(|s| s[field].as_str())
}

/// `--log-format json` on both binaries, and `x-request-id`: echoed (or generated), in the
/// API's lines for the request and in every worker line about the job it submitted.
#[tokio::test]
async fn request_id_reaches_the_logs_of_the_request_and_its_job() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("traced");
    let json_logs = [("DARKROOM_LOG_FORMAT", "json")];
    let server = ApiServer::start(&env, &json_logs);
    let worker = Worker::start(&env, &json_logs);
    let http = Client::new();

    let request_id = format!("trace-{}", Uuid::new_v4().simple());
    let r = http
        .post(server.url("/v1/jobs"))
        .bearer_auth(&token)
        .header("x-request-id", &request_id)
        .header("prefer", "wait=60")
        .json(&job_body())
        .send()
        .await
        .expect("the API answers");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some(request_id.as_str()), "the id is echoed");
    let job: Value = r.json().await.expect("a job");
    assert_eq!(job["status"], "succeeded", "{job}\n{}", worker.log());
    let job_id = job["id"].as_str().expect("an id").to_string();

    // The API: the request's lines (at least its response line) carry the id in its span.
    let deadline = Instant::now() + Duration::from_secs(10);
    let api_lines = loop {
        let lines = json_lines(&server.log());
        let ours: Vec<Value> = lines.into_iter().filter(|l| span_field(l, "request_id") == Some(request_id.as_str())).collect();
        if ours.iter().any(|l| l["message"] == "finished processing request") || Instant::now() > deadline {
            break ours;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let response_line = api_lines
        .iter()
        .find(|l| l["message"] == "finished processing request")
        .unwrap_or_else(|| panic!("no response line for {request_id}:\n{}", server.log()));
    assert_eq!(response_line["span"]["uri"], "/v1/jobs");
    assert_eq!(response_line["span"]["method"], "POST");
    assert!(response_line["timestamp"].is_string() && response_line["level"] == "INFO", "{response_line}");

    // The worker: every line about the job carries the request id, from the claim to the end.
    let worker_lines = json_lines(&worker.log());
    let about_job: Vec<&Value> =
        worker_lines.iter().filter(|l| span_field(l, "job") == Some(job_id.as_str()) || l["job"].as_str() == Some(job_id.as_str())).collect();
    assert!(about_job.iter().any(|l| l["message"] == "running job"), "{}", worker.log());
    assert!(about_job.iter().any(|l| l["message"] == "job succeeded"), "{}", worker.log());
    for line in &about_job {
        assert_eq!(span_field(line, "request_id"), Some(request_id.as_str()), "a worker line about the job without its request id: {line}");
    }
    // And the id is stored with the job.
    let stored: (Option<String>,) =
        sqlx::query_as("SELECT request_id FROM jobs WHERE id = $1::uuid").bind(&job_id).fetch_one(env.store().await.pool()).await.expect("the job's row");
    assert_eq!(stored.0.as_deref(), Some(request_id.as_str()));

    // No id, or one that is too long or has characters outside the allowed set: a fresh one.
    for given in [None, Some("x".repeat(129)), Some("has spaces".to_string()), Some("quote\"d".to_string())] {
        let mut req = http.get(server.url("/v1/models")).bearer_auth(&token);
        if let Some(g) = &given {
            req = req.header("x-request-id", g.as_str());
        }
        let r = req.send().await.expect("the API answers");
        assert_eq!(r.status(), StatusCode::OK, "a bad request id is replaced, not refused");
        let echoed = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).expect("an x-request-id").to_string();
        assert!(echoed.parse::<Uuid>().is_ok(), "a generated id, got {echoed:?} for {given:?}");
        assert_ne!(Some(echoed), given);
    }
    // The longest accepted id is kept, also on answers that are errors.
    let longest = "a".repeat(128);
    let r = http.get(server.url("/v1/jobs/not-a-uuid")).bearer_auth(&token).header("x-request-id", &longest).send().await.expect("the API answers");
    assert!(r.status().is_client_error());
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some(longest.as_str()));
}
