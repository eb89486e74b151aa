//! `GET /v1/jobs/{id}/events` end to end: two API replicas (the stream opened on the one that
//! did not take the submission), the real worker, resuming with `Last-Event-ID`, queue positions,
//! cancellation, keep-alive comments and the stream's errors.
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{ApiServer, ServiceEnv};
use crate::service::{id, request, Client};
use crate::workers::Worker;

/// One block of a Server-Sent Events stream: an event, or a comment (`event` empty).
#[derive(Clone, Debug)]
pub(crate) struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
    pub comment: bool,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event {} data is not JSON ({e}): {}", self.event, self.data))
    }

    pub fn id_number(&self) -> i64 {
        self.id.as_deref().and_then(|i| i.parse().ok()).unwrap_or_else(|| panic!("event {} has no numeric id: {:?}", self.event, self.id))
    }
}

/// A minimal SSE reader over a streaming response (the format of the HTML standard's
/// "event stream interpretation": `field: value` lines, blocks ended by a blank line).
pub(crate) struct SseStream {
    response: reqwest::Response,
    buffer: String,
    ended: bool,
}

impl SseStream {
    /// Open `path` on `base` with `token`, resuming after `last_event_id` when given.
    pub async fn open(base: &str, path: &str, token: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(token).header("accept", "text/event-stream");
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        request.send().await.expect("GET events")
    }

    pub fn new(response: reqwest::Response) -> SseStream {
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(content_type.starts_with("text/event-stream"), "content-type {content_type}");
        SseStream { response, buffer: String::new(), ended: false }
    }

    /// The next block (comments included), or None once the server ended the stream. Panics
    /// after `timeout` without one.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            if self.ended {
                assert!(self.buffer.trim().is_empty(), "the stream ended mid-event: {:?}", self.buffer);
                return None;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => panic!("no event within {timeout:?}; buffered: {:?}", self.buffer),
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n")),
                Ok(Ok(None)) => self.ended = true,
                Ok(Err(e)) => panic!("the stream failed: {e}"),
            }
        }
    }

    /// The next event, skipping comments.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        loop {
            match self.next(timeout).await {
                Some(e) if e.comment => continue,
                other => return other,
            }
        }
    }

    /// Every event until the stream ends (within `timeout` in all).
    pub async fn collect(&mut self, timeout: Duration) -> Vec<SseEvent> {
        let end = Instant::now() + timeout;
        let mut events = Vec::new();
        while let Some(e) = self.next_event(end.saturating_duration_since(Instant::now())).await {
            events.push(e);
        }
        events
    }
}

fn parse_block(block: &str) -> SseEvent {
    let mut event = SseEvent { id: None, event: String::new(), data: String::new(), comment: false };
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines().filter(|l| !l.is_empty()) {
        if line.starts_with(':') {
            event.comment = true;
            continue;
        }
        let (field, value) = line.split_once(':').map(|(f, v)| (f, v.strip_prefix(' ').unwrap_or(v))).unwrap_or((line, ""));
        match field {
            "id" => event.id = Some(value.to_string()),
            "event" => event.event = value.to_string(),
            "data" => data.push(value),
            _ => {}
        }
    }
    event.data = data.join("\n");
    if !data.is_empty() || event.id.is_some() {
        event.comment = false;
    }
    event
}

fn kinds(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_streams_from_another_replica_and_resumes_after_last_event_id() {
    let env = ServiceEnv::new();
    let submitter = ApiServer::start(&env, &[]);
    let follower = ApiServer::start(&env, &[]);
    let token = env.tenant_with_token("watcher");
    let client = Client::new(&submitter, &token);

    // The stream is open before a worker exists, so it sees the job's whole life.
    env.register_tiny_model().await;
    let job = client.submit(request(8, 7)).await;
    let path = format!("/v1/jobs/{}/events", id(&job));
    let mut stream = SseStream::new(SseStream::open(&follower.base, &path, &token, None).await);
    let first = stream.next_event(Duration::from_secs(10)).await.expect("the job");
    assert_eq!(first.json()["status"], "queued", "{first:?}");
    let _worker = Worker::start(&env, &[]);
    let mut events = vec![first];
    events.extend(stream.collect(Duration::from_secs(120)).await);
    let names = kinds(&events);

    // The job first, then its life, then one terminal event with the whole job; nothing after.
    assert_eq!(names[0], "job", "{names:?}");
    assert_eq!(events[0].json()["id"], job["id"]);
    assert_eq!(*names.last().unwrap(), "succeeded", "{names:?}");
    let last = events.last().unwrap().json();
    assert_eq!(last["status"], "succeeded");
    assert_eq!(last["images"].as_array().map(Vec::len), Some(1), "{last:#}");
    assert_eq!(last["progress"]["step"], 8);
    assert_eq!(names.iter().filter(|n| ["succeeded", "failed", "canceled"].contains(n)).count(), 1);
    let started = names.iter().position(|n| *n == "started").unwrap_or_else(|| panic!("no started event: {names:?}"));
    assert_eq!(events[started].json()["attempt"], 1);
    let progress: Vec<Value> = events.iter().filter(|e| e.event == "progress").map(SseEvent::json).collect();
    assert!(!progress.is_empty(), "{names:?}");
    assert!(names.iter().rposition(|n| *n == "progress").unwrap() > started);
    let steps: Vec<i64> = progress.iter().map(|p| p["step"].as_i64().unwrap()).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "steps go up: {steps:?}");
    assert_eq!(*steps.last().unwrap(), 8);
    for p in &progress {
        assert_eq!(p["total"], 8);
        if p["step"].as_i64() > Some(0) {
            let eta = p["eta"].as_f64().unwrap_or_else(|| panic!("an ETA once a step is done: {p}"));
            assert!(eta >= 0.0, "{p}");
        }
    }
    assert_eq!(progress.last().unwrap()["eta"].as_f64(), Some(0.0));
    let ids: Vec<i64> = events.iter().map(SseEvent::id_number).collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "ids never go down: {ids:?}");

    // Resuming after `started` gets exactly the recorded events that came after it.
    let after = events[started].id.clone().unwrap();
    let mut resumed = SseStream::new(SseStream::open(&follower.base, &path, &token, Some(&after)).await);
    let rest = resumed.collect(Duration::from_secs(30)).await;
    let expected: Vec<(i64, &str)> = events.iter().filter(|e| e.id_number() > events[started].id_number()).map(|e| (e.id_number(), e.event.as_str())).collect();
    let got: Vec<(i64, &str)> = rest.iter().map(|e| (e.id_number(), e.event.as_str())).collect();
    assert_eq!(got, expected);
    assert_eq!(rest.last().unwrap().json()["status"], "succeeded");

    // Resuming after the end: nothing more will come (204 stops browsers' EventSource).
    let end = events.last().unwrap().id.clone().unwrap();
    let r = SseStream::open(&submitter.base, &path, &token, Some(&end)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // A new stream on a finished job: the job, then its end.
    let mut again = SseStream::new(SseStream::open(&submitter.base, &path, &token, None).await);
    let replay = again.collect(Duration::from_secs(10)).await;
    assert_eq!(kinds(&replay), ["job", "succeeded"]);
    assert_eq!(replay[1].id, events.last().unwrap().id);
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_positions_keep_alives_and_cancellation_are_streamed() {
    let env = ServiceEnv::new();
    env.register_tiny_model().await;
    let submitter = ApiServer::start(&env, &[]);
    let follower = ApiServer::start(&env, &[("DARKROOM_EVENT_KEEPALIVE_SECS", "0.5")]);
    let token = env.tenant_with_token("queued");
    let client = Client::new(&submitter, &token);

    // No worker: the jobs stay queued.
    let mut jobs = Vec::new();
    for seed in 0..3 {
        jobs.push(id(&client.submit(request(4, seed)).await));
    }
    let path = format!("/v1/jobs/{}/events", jobs[2]);
    let mut stream = SseStream::new(SseStream::open(&follower.base, &path, &token, None).await);
    let first = stream.next_event(Duration::from_secs(10)).await.expect("the job");
    assert_eq!(first.event, "job");
    assert_eq!(first.json()["status"], "queued");
    assert_eq!(first.json()["queue_position"], 2);

    // Idle: keep-alive comments.
    let comment = stream.next(Duration::from_secs(5)).await.expect("a keep-alive");
    assert!(comment.comment, "expected a comment, got {comment:?}");

    // Older jobs leave the queue: the position is streamed as it changes.
    let http = reqwest::Client::new();
    for (old, position) in [(0, 1), (1, 0)] {
        let r = http.post(submitter.url(&format!("/v1/jobs/{}/cancel", jobs[old]))).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let e = stream.next_event(Duration::from_secs(10)).await.expect("a position");
        assert_eq!(e.event, "queued", "{e:?}");
        assert_eq!(e.json()["position"], position);
        assert!(e.id.is_some());
    }

    // Canceled while queued: the terminal event carries the job, and the stream ends.
    let r = http.post(submitter.url(&format!("/v1/jobs/{}/cancel", jobs[2]))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let end = stream.next_event(Duration::from_secs(10)).await.expect("the end");
    assert_eq!(end.event, "canceled");
    assert_eq!(end.json()["status"], "canceled");
    assert_eq!(end.json()["id"].as_str(), Some(jobs[2].as_str()));
    assert!(stream.next_event(Duration::from_secs(10)).await.is_none(), "the stream ends after the terminal event");
}

#[tokio::test(flavor = "multi_thread")]
async fn event_streams_refuse_what_they_should() {
    let env = ServiceEnv::new();
    env.register_tiny_model().await;
    let api = ApiServer::start(&env, &[("DARKROOM_MAX_EVENT_STREAMS", "1")]);
    let token = env.tenant_with_token("owner");
    let other = env.tenant_with_token("other");
    let job = id(&Client::new(&api, &token).submit(request(4, 1)).await);
    let path = format!("/v1/jobs/{job}/events");

    // Another tenant's job, or no job: 404.
    let r = SseStream::open(&api.base, &path, &other, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = SseStream::open(&api.base, "/v1/jobs/not-a-job/events", &token, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A Last-Event-ID this API never sent: 422 naming it.
    let r = SseStream::open(&api.base, &path, &token, Some("abc")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("Last-Event-ID"), "{body}");

    // Over --max-event-streams: 429 with Retry-After; the place comes back when a stream closes.
    let mut open = SseStream::new(SseStream::open(&api.base, &path, &token, None).await);
    assert_eq!(open.next_event(Duration::from_secs(10)).await.expect("the job").event, "job");
    let r = SseStream::open(&api.base, &path, &token, None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("max_event_streams"));
    // Another tenant has places of its own.
    let r = SseStream::open(&api.base, &path, &other, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    drop(open);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let r = SseStream::open(&api.base, &path, &token, None).await;
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < end, "the stream's place never came back: {}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
