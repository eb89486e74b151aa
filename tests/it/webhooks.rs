//! Signed webhooks, end to end: the real API and worker, and a receiver in Python that verifies
//! every delivery with PyPI's `standardwebhooks` (tests/webhooks/receiver.py, set up by
//! tools/webhook-receiver.sh). Refusals at submission (private destinations, no secret, bad
//! URLs), delivery of `started` and `completed` with retries (500s, timeouts, `Retry-After`),
//! an API killed mid-delivery whose deliveries another replica finishes under the same
//! `webhook-id`, 410 stopping retries, and secret rotation.
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{ApiServer, ServiceEnv};
use crate::workers::Worker;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository root").to_path_buf()
}

/// Set up the receiver's virtual environment once per test run. `None` (the test is skipped)
/// only when there is no Python at all.
fn receiver_ready() -> Option<()> {
    static READY: OnceLock<bool> = OnceLock::new();
    let ready = *READY.get_or_init(|| {
        if Command::new("python3").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
            eprintln!("SKIPPED: python3 is not installed, so the webhook receiver (tests/webhooks/receiver.py) cannot run");
            return false;
        }
        let out = Command::new(repo_root().join("tools/webhook-receiver.sh")).arg("--setup-only").output().expect("tools/webhook-receiver.sh runs");
        assert!(out.status.success(), "setting up the webhook receiver failed:\n{}", String::from_utf8_lossy(&out.stderr));
        true
    });
    ready.then_some(())
}

/// The Python receiver, killed on drop.
struct Receiver {
    child: Child,
    port: u16,
    http: Client,
}

impl Receiver {
    fn start() -> Receiver {
        let mut child = Command::new(repo_root().join("tools/webhook-receiver.sh"))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the webhook receiver starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("the receiver prints its port");
        let port = line.trim().strip_prefix("listening on ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("receiver said {line:?}"));
        Receiver { child, port, http: Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn set_secrets(&self, secrets: &[&str]) {
        let r = self.http.post(self.url("/_secrets")).json(&json!({ "secrets": secrets })).send().await.expect("receiver answers");
        assert!(r.status().is_success());
    }

    async fn deliveries(&self) -> Vec<Value> {
        self.http.get(self.url("/_deliveries")).send().await.expect("receiver answers").json().await.expect("JSON")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Create the tenant's webhook secret (or rotate it) with the CLI; the secret.
fn webhook_secret(env: &ServiceEnv, tenant: &str) -> (String, String) {
    let o = env.admin(&["tenant", "webhook-secret", tenant]);
    assert!(o.status.success(), "tenant webhook-secret: {}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let secret = stdout.lines().last().expect("a secret line").trim().to_string();
    let key = secret.strip_prefix("whsec_").and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok()).expect("whsec_ + base64");
    assert!(key.len() >= 24, "{secret}");
    (secret, stdout)
}

/// Settings for fast retries on a loopback receiver.
const FAST: &[(&str, &str)] = &[
    ("DARKROOM_WEBHOOK_ALLOW_PRIVATE", "true"),
    ("DARKROOM_WEBHOOK_BACKOFF_BASE_SECS", "0.3"),
    ("DARKROOM_WEBHOOK_BACKOFF_CAP_SECS", "1"),
    ("DARKROOM_WEBHOOK_TIMEOUT_SECS", "1.5"),
    ("DARKROOM_WEBHOOK_LEASE_SECS", "3"),
    ("DARKROOM_WEBHOOK_POLL_SECS", "0.2"),
    ("DARKROOM_WEBHOOK_MAX_ATTEMPTS", "8"),
];

async fn submit(http: &Client, api: &ApiServer, token: &str, body: Value) -> (StatusCode, Value) {
    let r = http.post(api.url("/v1/jobs")).bearer_auth(token).json(&body).send().await.expect("the API answers");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn job(hook: &str, events: Option<Value>) -> Value {
    let mut body = json!({"model": "tiny", "prompt": "a red apple", "steps": 2, "width": 64, "height": 64, "seed": 1, "webhook": hook});
    if let Some(events) = events {
        body["webhook_events"] = events;
    }
    body
}

/// Wait (up to `limit`) until `done` holds for the receiver's deliveries; them.
async fn wait_deliveries(receiver: &Receiver, limit: Duration, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let until = Instant::now() + limit;
    loop {
        let d = receiver.deliveries().await;
        if done(&d) {
            return d;
        }
        assert!(Instant::now() < until, "{what}: timed out; received:\n{}", serde_json::to_string_pretty(&d).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The deliveries' bodies, by (job id, event type), with what every check needs: each
/// (job, event) has one webhook-id, every request of a webhook-id carries the same body, and
/// every signature verified.
fn by_job_event(deliveries: &[Value]) -> BTreeMap<(String, String), Vec<&Value>> {
    let mut out: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for d in deliveries {
        assert_eq!(d["content_type"], "application/json", "{d}");
        assert!(!d["verified"].as_array().expect("verified").is_empty(), "a delivery whose signature no secret verifies: {d}");
        let body: Value = serde_json::from_str(d["body"].as_str().expect("body")).expect("JSON body");
        let key = (body["data"]["id"].as_str().expect("data.id").to_string(), body["type"].as_str().expect("type").to_string());
        out.entry(key).or_default().push(d);
    }
    for ((job, event), ds) in &out {
        let ids: BTreeSet<&str> = ds.iter().map(|d| d["webhook_id"].as_str().unwrap_or("")).collect();
        assert_eq!(ids.len(), 1, "{job} {event}: several webhook-ids: {ids:?}");
        let bodies: BTreeSet<&str> = ds.iter().map(|d| d["body"].as_str().unwrap_or("")).collect();
        assert_eq!(bodies.len(), 1, "{job} {event}: the retries sent different bodies");
    }
    out
}

fn delivered(ds: &[&Value]) -> bool {
    ds.iter().any(|d| d["status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
}

#[tokio::test]
async fn webhooks_are_refused_at_submission_when_they_cannot_be_sent_safely() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    env.register_tiny_model().await;
    let api = ApiServer::start(&env, &[]);
    let http = Client::new();
    let refused = |status: StatusCode, body: &Value, field: &str, what: &str| {
        assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{what}: {body}");
    };

    // A public IP literal needs no DNS: without a secret it is still refused, saying how to get one.
    let public = "https://93.184.215.14/hooks/darkroom";
    let (status, body) = submit(&http, &api, &token, job(public, None)).await;
    refused(status, &body, "webhook", "no secret");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("darkroom-api tenant webhook-secret acme"), "{body}");

    let (_, out) = webhook_secret(&env, "acme");
    assert!(out.contains("created the webhook secret of tenant acme"), "{out}");
    let (status, body) = submit(&http, &api, &token, job(public, None)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["request"]["webhook"], public);
    assert_eq!(body["request"]["webhook_events"], json!(["completed"]));

    for private in [
        "http://127.0.0.1:9/h",
        "http://localhost:9/h",
        "http://[::1]/h",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/h",
        "http://100.64.1.1/h",
        "http://[::ffff:192.168.1.1]/h",
        "http://[fd00::1]/h",
        "http://0.0.0.0/h",
    ] {
        let (status, body) = submit(&http, &api, &token, job(private, None)).await;
        refused(status, &body, "webhook", private);
        assert!(body["error"]["message"].as_str().unwrap_or("").contains("private"), "{private}: {body}");
    }
    let long = format!("https://93.184.215.14/{}", "a".repeat(2048));
    for bad in ["ftp://93.184.215.14/h", "https://user:secret@93.184.215.14/h", "not a url", long.as_str()] {
        let (status, body) = submit(&http, &api, &token, job(bad, None)).await;
        refused(status, &body, "webhook", bad);
    }
    let (status, body) = submit(&http, &api, &token, job(public, Some(json!([])))).await;
    refused(status, &body, "webhook_events", "no events");
    let (status, body) = submit(&http, &api, &token, job(public, Some(json!(["finished"])))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["field"].as_str().unwrap_or("").starts_with("webhook_events"), "{body}");
    let mut no_hook = job(public, Some(json!(["started"])));
    no_hook.as_object_mut().expect("object").remove("webhook");
    let (status, body) = submit(&http, &api, &token, no_hook).await;
    refused(status, &body, "webhook_events", "events without a webhook");

    let o = env.admin(&["tenant", "webhook-secret", "nobody"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no tenant named"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Every job's webhooks arrive, verified, with one `webhook-id` per (job, event), through 500s,
/// timeouts, `Retry-After` and an API killed (SIGKILL) while deliveries are in flight, which a
/// second replica finishes after their lease.
#[tokio::test]
async fn webhooks_arrive_once_per_event_across_retries_and_a_killed_api() {
    if receiver_ready().is_none() {
        return;
    }
    let receiver = Receiver::start();
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    let (secret, _) = webhook_secret(&env, "acme");
    receiver.set_secrets(&[&secret]).await;
    let _worker = Worker::start(&env, &[]);
    let mut first = ApiServer::start(&env, FAST);
    let http = Client::new();

    let cases = [
        ("/hook/ok/both", Some(json!(["started", "completed"]))),
        ("/hook/fail-2/a", None),
        ("/hook/retry-after-1/a", None),
        ("/hook/retry-date-1/a", None),
        ("/hook/slow-3/a", Some(json!(["completed", "started"]))),
        ("/hook/hold-1/a", None),
        ("/hook/hold-1/b", Some(json!(["started"]))),
        ("/hook/ok/c", None),
    ];
    let mut expected = BTreeSet::new();
    let mut holds = BTreeSet::new();
    for (path, events) in &cases {
        let (status, body) = submit(&http, &first, &token, job(&receiver.url(path), events.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let id = body["id"].as_str().expect("job id").to_string();
        let names = events.clone().unwrap_or(json!(["completed"]));
        for e in names.as_array().expect("events") {
            expected.insert((id.clone(), format!("job.{}", e.as_str().expect("event"))));
        }
        if path.starts_with("/hook/hold") {
            holds.insert(id);
        }
    }

    // Kill the API while the receiver holds a delivery it has not answered yet.
    wait_deliveries(&receiver, Duration::from_secs(60), "a held delivery", |d| {
        d.iter().any(|d| d["path"].as_str().unwrap_or("").starts_with("/hook/hold") && d["status"].is_null())
    })
    .await;
    let killed = Command::new("kill").args(["-KILL", &first.pid().to_string()]).status().expect("kill runs");
    assert!(killed.success());
    assert!(first.wait_exit(Duration::from_secs(10)).is_some(), "the API did not die");
    let second = ApiServer::start(&env, FAST);

    let store = env.store().await;
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let (pending,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM webhook_deliveries WHERE state <> 'delivered'").fetch_one(store.pool()).await.expect("outbox");
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM webhook_deliveries").fetch_one(store.pool()).await.expect("outbox");
        if pending == 0 && rows as usize == expected.len() {
            break;
        }
        assert!(Instant::now() < until, "deliveries unfinished: {pending} of {rows}\nfirst API:\n{}\nsecond API:\n{}", first.log(), second.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let deliveries = receiver.deliveries().await;
    let got = by_job_event(&deliveries);
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), expected, "the (job, event) pairs delivered");
    for ((job, event), ds) in &got {
        assert!(delivered(ds), "{job} {event} was never answered 2xx: {ds:?}");
        let body: Value = serde_json::from_str(ds[0]["body"].as_str().unwrap_or("")).expect("JSON");
        assert!(body["timestamp"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).is_some(), "{body}");
        let path = ds[0]["path"].as_str().unwrap_or("");
        match event.as_str() {
            "job.started" => assert_eq!(body["data"]["status"], "running", "{body}"),
            _ => {
                assert_eq!(body["data"]["status"], "succeeded", "{body}");
                assert_eq!(body["data"]["images"].as_array().map(Vec::len), Some(1), "{body}");
            }
        }
        assert_eq!(body["data"]["request"]["webhook"].as_str().map(|u| u.ends_with(path)), Some(true), "{body}");
        // Each retried case needed more than one request, under its one webhook-id.
        let retried = ["/hook/fail-2", "/hook/retry-after", "/hook/retry-date", "/hook/slow-3"].iter().any(|p| path.starts_with(p));
        if retried {
            assert!(ds.len() >= 2, "{path} {event}: one request only");
        }
    }
    // At least one held delivery was cut by the kill and sent again by the second API.
    let resent: Vec<_> = got.iter().filter(|((job, _), ds)| holds.contains(job) && ds.len() >= 2).collect();
    assert!(!resent.is_empty(), "no held delivery was sent again after the kill");
    assert!(second.log().contains("webhook delivered"), "{}", second.log());
    // A Retry-After of 1 s was honoured: the retry came no sooner.
    for ((_, _), ds) in got.iter().filter(|(_, ds)| ds[0]["path"].as_str().unwrap_or("").starts_with("/hook/retry-after")) {
        let gap = ds[1]["received_at"].as_f64().unwrap_or(0.0) - ds[0]["received_at"].as_f64().unwrap_or(0.0);
        assert!(gap >= 0.9, "retried {gap:.2} s after a Retry-After of 1 s");
    }
}

/// A 410 stops a delivery at once; a rotated secret keeps signing beside the new one.
#[tokio::test]
async fn gone_stops_retries_and_rotation_signs_with_both_secrets() {
    if receiver_ready().is_none() {
        return;
    }
    let receiver = Receiver::start();
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    env.register_tiny_model().await;
    let (old, _) = webhook_secret(&env, "acme");
    let (new, out) = webhook_secret(&env, "acme");
    assert!(out.contains("rotated the webhook secret of tenant acme"), "{out}");
    assert_ne!(old, new);
    receiver.set_secrets(&[&old, &new]).await;
    let api = ApiServer::start(&env, FAST);
    let http = Client::new();

    // No worker: canceling the queued jobs completes them.
    let mut ids = Vec::new();
    for path in ["/hook/gone/a", "/hook/ok/rotated"] {
        let (status, body) = submit(&http, &api, &token, job(&receiver.url(path), None)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let id = body["id"].as_str().expect("id").to_string();
        let r = http.post(api.url(&format!("/v1/jobs/{id}/cancel"))).bearer_auth(&token).send().await.expect("cancel");
        assert!(r.status().is_success());
        ids.push(id);
    }
    wait_deliveries(&receiver, Duration::from_secs(30), "both deliveries", |d| d.len() >= 2 && d.iter().all(|d| !d["status"].is_null())).await;
    // Several backoff periods later, the 410 was not retried.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deliveries = receiver.deliveries().await;
    let got = by_job_event(&deliveries);
    let gone = &got[&(ids[0].clone(), "job.completed".to_string())];
    assert_eq!(gone.len(), 1, "a 410 was retried: {gone:?}");
    let ok = &got[&(ids[1].clone(), "job.completed".to_string())];
    assert_eq!(ok.len(), 1);
    // Two signatures, one per secret, and each secret verifies.
    assert_eq!(ok[0]["signature"].as_str().unwrap_or("").split(' ').count(), 2, "{}", ok[0]);
    assert_eq!(ok[0]["verified"], json!([0, 1]));
    let body: Value = serde_json::from_str(ok[0]["body"].as_str().unwrap_or("")).expect("JSON");
    assert_eq!((body["type"].as_str(), body["data"]["status"].as_str()), (Some("job.completed"), Some("canceled")));

    let store = env.store().await;
    let rows: Vec<(String, String, Option<i32>, i32)> =
        sqlx::query_as("SELECT url, state, last_status, attempts FROM webhook_deliveries ORDER BY id").fetch_all(store.pool()).await.expect("outbox");
    assert_eq!(rows.iter().map(|r| (r.1.as_str(), r.2, r.3)).collect::<Vec<_>>(), [("dead", Some(410), 1), ("delivered", Some(200), 1)], "{rows:?}");

    let metrics = http.get(api.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    for outcome in ["gone", "delivered"] {
        let line = format!("darkroom_webhook_attempts_total{{outcome=\"{outcome}\"}} 1");
        assert!(metrics.contains(&line), "no {line:?} in:\n{metrics}");
    }

    // Once the previous secret's day is over, only the new one signs.
    sqlx::query("UPDATE tenants SET webhook_secret_previous_until = now() - interval '1 second'").execute(store.pool()).await.expect("expire");
    let (status, body) = submit(&http, &api, &token, job(&receiver.url("/hook/ok/later"), None)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    http.post(api.url(&format!("/v1/jobs/{id}/cancel"))).bearer_auth(&token).send().await.expect("cancel");
    let d = wait_deliveries(&receiver, Duration::from_secs(30), "the third delivery", |d| d.len() >= 3 && !d[2]["status"].is_null()).await;
    assert_eq!(d[2]["signature"].as_str().unwrap_or("").split(' ').count(), 1, "{}", d[2]);
    assert_eq!(d[2]["verified"], json!([1]));
}
