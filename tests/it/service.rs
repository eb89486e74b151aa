//! The job service end to end: the real API and real workers running the tiny model, over real
//! Postgres and Redis. Workers die, stall, get stopped; Redis loses its data; tenants compete.
use std::time::{Duration, Instant};

use base64::Engine as _;
use darkroom_shared::job::ErrorType;
use darkroom_shared::request::GenerationRequest;
use darkroom_worker::pipeline::{NoObserver, Pipeline};
use serde_json::{json, Value};

use crate::helpers::{max_pixel_diff, model_dir, runtime, ApiServer, ServiceEnv};
use crate::workers::{OwnRedis, Worker};

/// A tenant's view of the API (also used by `deadline.rs`).
pub(crate) struct Client {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl Client {
    pub(crate) fn new(api: &ApiServer, token: &str) -> Client {
        Client { http: reqwest::Client::new(), api: api.base.clone(), token: token.to_string() }
    }

    pub(crate) async fn submit(&self, body: Value) -> Value {
        let r = self.http.post(format!("{}/v1/jobs", self.api)).bearer_auth(&self.token).json(&body).send().await.expect("POST /v1/jobs");
        assert_eq!(r.status(), 202, "submit answered {}", r.status());
        r.json().await.expect("job JSON")
    }

    pub(crate) async fn job(&self, id: &str) -> Value {
        let r = self.http.get(format!("{}/v1/jobs/{id}", self.api)).bearer_auth(&self.token).send().await.expect("GET job");
        assert_eq!(r.status(), 200);
        r.json().await.expect("job JSON")
    }

    async fn cancel(&self, id: &str) -> Value {
        let r = self.http.post(format!("{}/v1/jobs/{id}/cancel", self.api)).bearer_auth(&self.token).send().await.expect("cancel");
        assert_eq!(r.status(), 200);
        r.json().await.expect("job JSON")
    }

    /// Poll until `pred` holds for the job (or panic after `timeout`).
    pub(crate) async fn until(&self, id: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + timeout;
        loop {
            let job = self.job(id).await;
            if pred(&job) {
                return job;
            }
            assert!(Instant::now() < end, "job {id} never reached the expected state; last: {job:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn finished(&self, id: &str, timeout: Duration) -> Value {
        self.until(id, timeout, |j| ["succeeded", "failed", "canceled"].contains(&j["status"].as_str().unwrap_or(""))).await
    }
}

pub(crate) fn request(steps: u32, seed: u64) -> Value {
    json!({"model": "tiny", "prompt": "a photo of an astronaut riding a horse on mars", "width": 64, "height": 64, "steps": steps, "seed": seed})
}

pub(crate) fn id(job: &Value) -> String {
    job["id"].as_str().expect("job id").to_string()
}

/// Rows in the images table for a job: "exactly one result" means exactly num_images rows.
pub(crate) async fn image_rows(env: &ServiceEnv, job: &str) -> i64 {
    let store = env.store().await;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM images WHERE job_id = $1::uuid").bind(job).fetch_one(store.pool()).await.expect("count images");
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_poll_and_fetch_the_image_the_pipeline_makes() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let client = Client::new(&api, &env.tenant_with_token("acme"));
    let _worker = Worker::start(&env, &[]);

    let job = client.submit(request(4, 1234)).await;
    assert_eq!(job["status"], "queued");
    let done = client.finished(&id(&job), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["progress"]["step"], done["progress"]["total"]);
    assert!(done["started_at"].is_string() && done["finished_at"].is_string());
    let url = done["images"][0]["url"].as_str().expect("image link");
    let r = client.http.get(format!("{}{url}", client.api)).bearer_auth(&client.token).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    let png = image::load_from_memory(&r.bytes().await.unwrap()).unwrap().to_rgb8();

    // The same image as running the pipeline directly with the same settings.
    let mut pipeline = Pipeline::load(runtime(), &model_dir("tiny-sd15")).unwrap();
    let req: GenerationRequest = serde_json::from_value(request(4, 1234)).unwrap();
    let params = darkroom_worker::request::resolve(&req, pipeline.model()).unwrap();
    let (direct, _) = pipeline.generate(&params, &mut NoObserver).unwrap();
    let served = darkroom_worker::pipeline::RgbImage { width: 64, height: 64, pixels: png.into_raw() };
    assert!(max_pixel_diff(&served, &direct[0].image) <= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn prefer_wait_answers_with_the_finished_job_and_its_images() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let client = Client::new(&api, &env.tenant_with_token("acme"));
    let _worker = Worker::start(&env, &[]);
    let mut body = request(3, 9);
    body["num_images"] = json!(2);
    let r = client.http.post(format!("{}/v1/jobs", client.api)).bearer_auth(&client.token).header("Prefer", "wait=60").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["status"], "succeeded");
    let images = job["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!((images[0]["seed"].as_i64(), images[1]["seed"].as_i64()), (Some(9), Some(10)));
    let bytes = base64::engine::general_purpose::STANDARD.decode(images[1]["b64_json"].as_str().unwrap()).unwrap();
    assert!(image::load_from_memory(&bytes).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_running_job_at_its_next_step() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let client = Client::new(&api, &env.tenant_with_token("acme"));
    let _worker = Worker::start(&env, &[]);
    let job = client.submit(request(150, 1)).await;
    let running = client.until(&id(&job), Duration::from_secs(60), |j| j["status"] == "running" && j["progress"]["step"].as_i64() >= Some(1)).await;
    let asked = Instant::now();
    let after = client.cancel(&id(&running)).await;
    assert_eq!(after["cancel_requested"], true);
    let done = client.finished(&id(&job), Duration::from_secs(30)).await;
    assert_eq!(done["status"], "canceled", "{done:#}");
    assert!(asked.elapsed() < Duration::from_secs(10), "canceled promptly");
    assert!(done["progress"]["step"].as_i64() < Some(150));
    assert_eq!(image_rows(&env, &id(&job)).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_job_loses_it_to_another_worker_with_exactly_one_result() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[("DARKROOM_RECOVERY_SECS", "0.3")]);
    let client = Client::new(&api, &env.tenant_with_token("acme"));
    let doomed = Worker::start(&env, &[("DARKROOM_LEASE_SECS", "1.5")]);
    let job = client.submit(request(60, 5)).await;
    client.until(&id(&job), Duration::from_secs(60), |j| j["status"] == "running" && j["progress"]["step"].as_i64() >= Some(2)).await;
    doomed.signal("KILL");
    let _rescuer = Worker::start(&env, &[("DARKROOM_LEASE_SECS", "1.5")]);
    let done = client.finished(&id(&job), Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(image_rows(&env, &id(&job)).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_lost_its_lease_cannot_finish_the_job() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[("DARKROOM_RECOVERY_SECS", "0.3")]);
    let client = Client::new(&api, &env.tenant_with_token("acme"));
    let stalled = Worker::start(&env, &[("DARKROOM_LEASE_SECS", "1")]);
    let job = client.submit(request(40, 6)).await;
    client.until(&id(&job), Duration::from_secs(60), |j| j["status"] == "running" && j["progress"]["step"].as_i64() >= Some(1)).await;
    stalled.signal("STOP"); // frozen: no renewals, no progress
    let other = Worker::start(&env, &[("DARKROOM_LEASE_SECS", "5")]);
    let done = client.finished(&id(&job), Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    stalled.signal("CONT"); // wakes up believing it still runs the job
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = client.job(&id(&job)).await;
    assert_eq!(after["status"], "succeeded");
    assert_eq!(after["attempts"], 2);
    assert_eq!(after["finished_at"], done["finished_at"], "the late worker changed nothing");
    assert_eq!(image_rows(&env, &id(&job)).await, 1);
    drop(other);
}

/// The fence itself, at the store: a completion with a superseded lease writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn completion_is_fenced_by_the_lease() {
    let env = ServiceEnv::new();
    let store = env.store().await;
    let tenant = store.create_tenant("acme").await.unwrap();
    let req: GenerationRequest = serde_json::from_value(request(1, 1)).unwrap();
    let job = store.insert_job(tenant.id, &req).await.unwrap();
    let first = store.claim(job.id, uuid::Uuid::now_v7(), Duration::from_secs(30)).await.unwrap().expect("claimed");
    sqlx::query("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1").bind(job.id).execute(store.pool()).await.unwrap();
    let requeued = store.expire_leases(3).await.unwrap();
    assert_eq!(requeued.len(), 1);
    let second = store.claim(job.id, uuid::Uuid::now_v7(), Duration::from_secs(30)).await.unwrap().expect("claimed again");
    let image = |idx| darkroom_shared::job::NewImage { idx, seed: 1, format: "png".into(), width: 1, height: 1, bytes: vec![1, 2, 3] };
    assert!(!store.complete(job.id, first.lease, &[image(0)]).await.unwrap(), "the stale lease is refused");
    assert!(store.fail(job.id, first.lease, ErrorType::GenerationFailed, None, "late", true, 3).await.unwrap().is_none());
    assert!(store.complete(job.id, second.lease, &[image(0)]).await.unwrap());
    assert!(!store.complete(job.id, second.lease, &[image(0)]).await.unwrap(), "and only once");
    assert_eq!(store.images(job.id).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_job_is_lost_when_redis_loses_its_data() {
    let env = ServiceEnv::new();
    let redis = OwnRedis::start();
    let redis_url = redis.url();
    let vars = [("REDIS_URL", redis_url.as_str()), ("DARKROOM_RECOVERY_SECS", "0.3")];
    let api = ApiServer::start(&env, &vars);
    let client = Client::new(&api, &env.tenant_with_token("acme"));
    // A worker registers the model, then leaves: the jobs below wait in the queue.
    let mut first = Worker::start(&env, &vars);
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()));
    let mut ids = Vec::new();
    for seed in 0..4 {
        ids.push(id(&client.submit(request(2, seed)).await));
    }
    // FLUSHALL while the jobs wait
    let c = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = c.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    // ... and a restart without persistence
    for seed in 4..7 {
        ids.push(id(&client.submit(request(2, seed)).await));
    }
    let port = redis.stop();
    let _redis = OwnRedis::start_on(port);
    let _worker = Worker::start(&env, &vars);
    for job in &ids {
        let done = client.finished(job, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        assert_eq!(image_rows(&env, job).await, 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_tenant_is_not_stuck_behind_a_big_backlog() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let big = Client::new(&api, &env.tenant_with_token("big"));
    let small = Client::new(&api, &env.tenant_with_token("small"));
    let _worker = Worker::start(&env, &[]);
    let mut backlog = Vec::new();
    for seed in 0..50 {
        backlog.push(id(&big.submit(request(1, seed)).await));
    }
    let mine = id(&small.submit(request(1, 99)).await);
    let done = small.finished(&mine, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded");
    let store = env.store().await;
    // Jobs that started after the small tenant's job was submitted and before it started.
    let (started_before,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM jobs, (SELECT created_at, started_at FROM jobs WHERE id = $1::uuid) mine
         WHERE jobs.started_at > mine.created_at AND jobs.started_at < mine.started_at",
    )
    .bind(&mine)
    .fetch_one(store.pool())
    .await
    .unwrap();
    // Of the backlog queued before it, at most a couple ran first.
    assert!(started_before <= 3, "{started_before} of the big tenant's jobs started first");
    for job in backlog.iter().rev().take(3) {
        big.finished(job, Duration::from_secs(180)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_job_in_hand_then_exits() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let client = Client::new(&api, &env.tenant_with_token("acme"));
    let mut worker = Worker::start(&env, &[]);
    let models: Value = client.http.get(format!("{}/v1/models", client.api)).bearer_auth(&client.token).send().await.unwrap().json().await.unwrap();
    assert!(models.to_string().contains("\"live_workers\":1"), "{models}");
    let job = client.submit(request(30, 3)).await;
    client.until(&id(&job), Duration::from_secs(60), |j| j["status"] == "running").await;
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(60)).expect("the worker exits");
    assert!(status.success(), "{}", worker.log());
    let done = client.job(&id(&job)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let models: Value = client.http.get(format!("{}/v1/models", client.api)).bearer_auth(&client.token).send().await.unwrap().json().await.unwrap();
    assert!(models.to_string().contains("\"live_workers\":0"), "{models}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queued_job_whose_push_to_redis_was_lost_is_still_delivered() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let client = Client::new(&api, &env.tenant_with_token("acme"));
    let _worker = Worker::start(&env, &[]);
    // Recorded in Postgres, never pushed to Redis (an API that died between the two).
    let store = env.store().await;
    let tenant = store.tenant_by_name("acme").await.unwrap().expect("tenant");
    let req: GenerationRequest = serde_json::from_value(request(2, 3)).unwrap();
    let job = store.insert_job(tenant.id, &req).await.unwrap();
    let done = client.finished(&job.id.to_string(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
}

/// A job that fails on every delivery ends `failed` with its error after the configured number of
/// deliveries, whether the worker reports the failure or dies (its lease expires).
#[tokio::test(flavor = "multi_thread")]
async fn a_job_failing_on_every_delivery_ends_failed_after_max_attempts() {
    let env = ServiceEnv::new();
    let store = env.store().await;
    let tenant = store.create_tenant("acme").await.unwrap();
    let req: GenerationRequest = serde_json::from_value(request(1, 1)).unwrap();
    let worker = uuid::Uuid::now_v7();
    let ttl = Duration::from_secs(30);

    // Reported failures: retried while attempts remain.
    let job = store.insert_job(tenant.id, &req).await.unwrap();
    for attempt in 1..=3 {
        let claim = store.claim(job.id, worker, ttl).await.unwrap().expect("queued again");
        assert_eq!(claim.attempts, attempt);
        let status = store.fail(job.id, claim.lease, ErrorType::GenerationFailed, None, &format!("boom {attempt}"), true, 3).await.unwrap();
        let expected = if attempt < 3 { darkroom_shared::job::JobStatus::Queued } else { darkroom_shared::job::JobStatus::Failed };
        assert_eq!(status, Some(expected));
        if attempt < 3 {
            assert_eq!(store.job(tenant.id, job.id).await.unwrap().unwrap().error_type, None, "no error type while it is retried");
        }
    }
    let failed = store.job(tenant.id, job.id).await.unwrap().unwrap();
    assert_eq!((failed.status, failed.error.as_deref()), (darkroom_shared::job::JobStatus::Failed, Some("boom 3")));
    assert_eq!(failed.error_type.as_deref(), Some("generation_failed"));
    assert_eq!(failed.error_field, None);
    assert!(store.claim(job.id, worker, ttl).await.unwrap().is_none());

    // Dead workers: each expired lease is one delivery.
    let job = store.insert_job(tenant.id, &req).await.unwrap();
    for attempt in 1..=3 {
        store.claim(job.id, worker, ttl).await.unwrap().expect("queued again");
        sqlx::query("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1").bind(job.id).execute(store.pool()).await.unwrap();
        let expired = store.expire_leases(3).await.unwrap();
        let expected = if attempt < 3 { darkroom_shared::job::JobStatus::Queued } else { darkroom_shared::job::JobStatus::Failed };
        assert_eq!(expired.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(), vec![(job.id, expected)]);
    }
    let failed = store.job(tenant.id, job.id).await.unwrap().unwrap();
    assert_eq!(failed.status, darkroom_shared::job::JobStatus::Failed);
    assert!(failed.error.unwrap_or_default().contains("all 3 deliveries"));
    assert_eq!(failed.error_type.as_deref(), Some("lease_expired"));

    // A non-retryable failure (an invalid request) fails at once.
    let job = store.insert_job(tenant.id, &req).await.unwrap();
    let claim = store.claim(job.id, worker, ttl).await.unwrap().unwrap();
    assert_eq!(
        store.fail(job.id, claim.lease, ErrorType::InvalidRequest, Some("prompt"), "invalid", false, 3).await.unwrap(),
        Some(darkroom_shared::job::JobStatus::Failed)
    );
    let failed = store.job(tenant.id, job.id).await.unwrap().unwrap();
    assert_eq!((failed.error_type.as_deref(), failed.error_field.as_deref()), (Some("invalid_request"), Some("prompt")));
}

/// Postgres drops the worker's connections while it finishes a job: the worker keeps the images
/// and retries its fenced completion until Postgres answers again, so the job succeeds on its
/// first delivery instead of running again after its lease expires.
#[tokio::test(flavor = "multi_thread")]
async fn a_completion_during_a_postgres_outage_is_retried_not_lost() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let client = Client::new(&api, &env.tenant_with_token("acme"));
    let proxy = crate::helpers::TcpProxy::start(crate::helpers::POSTGRES.trim_start_matches("postgres://postgres@")).await;
    let via_proxy = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, env.database);
    let worker = Worker::start(&env, &[("DATABASE_URL", &via_proxy)]);
    let job = client.submit(request(60, 5)).await;
    client.until(&id(&job), Duration::from_secs(60), |j| j["status"] == "running").await;
    proxy.down();
    // The job finishes during the outage (60 steps of the tiny model take a few seconds), which
    // outlasts the pool's 10 s wait for a connection: the completion fails and is retried.
    tokio::time::sleep(Duration::from_secs(13)).await;
    proxy.up().await;
    let done = client.finished(&id(&job), Duration::from_secs(20)).await;
    assert_eq!((done["status"].as_str(), done["attempts"].as_i64()), (Some("succeeded"), Some(1)), "{done:#}\n{}", worker.log());
    assert!(worker.log().contains("retrying in"), "the worker retried its completion:\n{}", worker.log());
    assert_eq!(image_rows(&env, &id(&job)).await, 1);
}
