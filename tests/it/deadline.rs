//! The deadline per job (`worker/src/deadline.rs`), end to end with the real API and workers: a
//! job past its deadline is stopped between steps and ends `failed`, `deadline_exceeded`, not
//! retried; a worker whose pipeline call hangs (made to, with the test-only hook
//! `DARKROOM_TEST_HANG_AT_STEP`) fails the job, marks itself stopped and exits with status 3.
use std::time::Duration;

use darkroom_worker::deadline::{EXIT_HUNG, TEST_HANG_ENV};
use serde_json::json;

use crate::helpers::{ApiServer, ServiceEnv};
use crate::service::{id, image_rows, request, Client};
use crate::workers::Worker;

#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_its_deadline_fails_between_steps_and_is_not_retried() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[("DARKROOM_RECOVERY_SECS", "0.3")]);
    let client = Client::new(&api, &env.tenant_with_token("acme"));
    let mut worker = Worker::start(&env, &[("DARKROOM_JOB_DEADLINE_SECS", "0.5"), ("DARKROOM_JOB_DEADLINE_SECS_PER_COST", "0")]);
    // 8 images of 150 steps at 128x128: many seconds of work on any machine, for a 0.5 s limit.
    let mut body = request(150, 1);
    (body["num_images"], body["width"], body["height"]) = (json!(8), json!(128), json!(128));
    let job = client.submit(body).await;

    let done = client.finished(&id(&job), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done:#}\n{}", worker.log());
    assert_eq!(done["error_type"], "deadline_exceeded", "{done:#}");
    assert_eq!(done["attempts"], 1, "{done:#}");
    let error = done["error"].as_str().unwrap_or_default();
    assert!(error.contains("limit of 0.5 s") && error.contains("fewer steps"), "the message says the limit and what to do: {error}");
    assert!(done["progress"]["step"].as_i64() < Some(8 * 150), "stopped before its end: {done:#}");
    assert_eq!(image_rows(&env, &id(&job)).await, 0);

    // Not retried: recovery passes (every 0.3 s) leave it failed, on its one delivery.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = client.job(&id(&job)).await;
    assert_eq!((&later["status"], &later["attempts"], &later["finished_at"]), (&done["status"], &done["attempts"], &done["finished_at"]));
    assert!(worker.wait_exit(Duration::ZERO).is_none(), "a job past its deadline does not stop the worker");
    assert!(worker.log().contains("past its deadline"), "{}", worker.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_hung_past_the_deadline_fails_the_job_and_exits_for_its_supervisor() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[("DARKROOM_RECOVERY_SECS", "0.3")]);
    let client = Client::new(&api, &env.tenant_with_token("acme"));
    // The pipeline thread blocks forever after step 1 (well within the 2 s deadline). The lease
    // is long: left to its lease, the job would stay running for the whole test.
    let mut hung = Worker::start(
        &env,
        &[
            (TEST_HANG_ENV, "1"),
            ("DARKROOM_JOB_DEADLINE_SECS", "2"),
            ("DARKROOM_JOB_DEADLINE_SECS_PER_COST", "0"),
            ("DARKROOM_JOB_HANG_GRACE_SECS", "1"),
            ("DARKROOM_LEASE_SECS", "120"),
        ],
    );
    let job = client.submit(request(20, 3)).await;

    let status = hung.wait_exit(Duration::from_secs(60)).unwrap_or_else(|| panic!("the hung worker did not exit:\n{}", hung.log()));
    assert_eq!(status.code(), Some(EXIT_HUNG), "{}", hung.log());
    let log = hung.log();
    assert!(log.contains(&id(&job)) && log.contains("hung"), "the worker names the job it gave up: {log}");

    // It failed the job before exiting: no wait for the lease, no second run.
    let done = client.job(&id(&job)).await;
    assert_eq!(done["status"], "failed", "{done:#}");
    assert_eq!(done["error_type"], "deadline_exceeded", "{done:#}");
    assert_eq!(done["attempts"], 1);
    assert!(done["progress"]["step"].as_i64() <= Some(1), "it hung after step 1: {done:#}");
    assert!(done["error"].as_str().unwrap_or_default().contains("limit of 2.0 s"), "{done:#}");
    // And marked itself stopped (it is the only worker so far).
    let store = env.store().await;
    let (stopped,): (i64,) = sqlx::query_as("SELECT count(*) FROM workers WHERE stopped_at IS NOT NULL").fetch_one(store.pool()).await.expect("workers");
    assert_eq!(stopped, 1);

    // A fresh worker (what the supervisor starts) serves the next job; the failed one stays so.
    let _fresh = Worker::start(&env, &[]);
    let next = client.submit(request(3, 4)).await;
    let finished = client.finished(&id(&next), Duration::from_secs(60)).await;
    assert_eq!(finished["status"], "succeeded", "{finished:#}");
    let first = client.job(&id(&job)).await;
    assert_eq!((&first["status"], &first["attempts"]), (&json!("failed"), &json!(1)));
}
