//! Generated bad input (proptest) against every route of every dialect, on the real API with a
//! real worker on the tiny model: bodies mutated from a valid one (fields dropped, added,
//! repeated, values replaced by wrong types, boundary and out-of-range numbers, NaN-like
//! values, control characters, very long strings), invalid and deceptive init images, raw
//! bodies (empty, not JSON, truncated, not UTF-8, too deep, over `--max-body-bytes`), wrong
//! Content-Types, odd Authorization headers, paths, queries, methods and headers. A sweep
//! first sends what every route must get whatever is drawn: each number of each valid body at
//! each edge (2^63, 2^64, 1e400, -0, "NaN", ...), each text with NUL and control characters or
//! too long, each image field with each broken or declared-huge image, bodies empty or over the
//! limit (with a length and chunked), and every route with every odd Authorization header.
//!
//! Every answer must be below 500; every error (401 included) must be JSON in its dialect's
//! error shape; neither the API nor the worker may panic. A request that gets no answer within
//! [`CLIENT_TIMEOUT`] (a valid one whose job is slow) counts as no answer, not as a failure.
//! The inputs are reproducible: the generator's seed is fixed (`DARKROOM_FUZZ_SEED` changes
//! it, `DARKROOM_FUZZ_CASES` the number of cases per group) and a failure prints the smallest
//! failing request proptest found.
mod inputs;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde_json::{json, Value};

use crate::helpers::{ApiServer, ServiceEnv, ROUTES};
use crate::workers::Worker;
use inputs::{Ctx, Probe};

/// How long a request may take before it counts as unanswered (a valid one waits for its job).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The body limit the server runs with: small, so that bodies over it are cheap to send.
const MAX_BODY: usize = 256 * 1024;
const DEFAULT_CASES: u32 = 96;
const DEFAULT_SEED: u64 = 0x00da_4c00_f022;

/// The error shapes, by dialect.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Native,
    HfEndpoint,
    HfServerless,
    Hyperbolic,
    A1111,
}

/// The dialect whose error shape a path answers in.
fn shape_of(path: &str) -> Shape {
    let path = path.split('?').next().unwrap_or("");
    if path.starts_with("/sdapi/v1/") {
        Shape::A1111
    } else if path == "/v1/image/generation" {
        Shape::Hyperbolic
    } else if path == "/" {
        Shape::HfEndpoint
    } else if path.starts_with("/models/") || path.starts_with("/status/") {
        Shape::HfServerless
    } else {
        Shape::Native
    }
}

fn is_str(v: &Value) -> bool {
    v.is_string()
}

/// Whether `body` is an error in `shape`'s form; the reason when not.
fn check_shape(shape: Shape, status: u16, body: &Value) -> Result<(), String> {
    let keys = |allowed: &[&str]| body.as_object().is_some_and(|m| m.keys().all(|k| allowed.contains(&k.as_str())));
    let ok = match shape {
        Shape::Native => {
            let e = &body["error"];
            keys(&["error"])
                && is_str(&e["type"])
                && is_str(&e["message"])
                && (e.get("field").is_none() || is_str(&e["field"]))
                && (e.get("allowed").is_none() || e["allowed"].as_array().is_some_and(|a| a.iter().all(is_str)))
        }
        Shape::HfEndpoint => keys(&["error"]) && is_str(&body["error"]),
        Shape::HfServerless => keys(&["error", "estimated_time"]) && is_str(&body["error"]),
        Shape::Hyperbolic => {
            keys(&["object", "message", "type", "param", "code"])
                && body["object"] == "error"
                && is_str(&body["message"])
                && is_str(&body["type"])
                && (body["param"].is_null() || is_str(&body["param"]))
                && body.get("code").is_some()
        }
        Shape::A1111 => {
            let detail = &body["detail"];
            if status == 401 {
                body == &json!({"detail": "Incorrect username or password"})
            } else if keys(&["detail"]) {
                // FastAPI: a message, or its validation errors.
                is_str(detail)
                    || detail.as_array().is_some_and(|items| {
                        !items.is_empty()
                            && items.iter().all(|i| i["loc"].as_array().is_some_and(|l| l.iter().all(is_str)) && is_str(&i["msg"]) && is_str(&i["type"]))
                    })
            } else {
                // A1111's exception middleware.
                keys(&["error", "detail", "body", "errors"]) && is_str(&body["error"]) && is_str(detail) && is_str(&body["errors"])
            }
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("not in the {shape:?} error shape"))
    }
}

/// What came back for a request.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// Send `probe`; `None` when no answer came within [`CLIENT_TIMEOUT`].
async fn send(http: &reqwest::Client, base: &str, probe: &Probe) -> Result<Option<Answer>, String> {
    if let (true, Some(body)) = (probe.chunked, &probe.body) {
        return match tokio::time::timeout(CLIENT_TIMEOUT, send_chunked(base, probe, body)).await {
            Ok(answer) => answer.map(Some),
            Err(_) => Ok(None),
        };
    }
    let method = reqwest::Method::from_bytes(probe.method.as_bytes()).map_err(|e| format!("bad method in the generator: {e}"))?;
    let mut req = http.request(method, format!("{base}{}", probe.path));
    for (name, value) in &probe.headers {
        let value = reqwest::header::HeaderValue::from_bytes(value).map_err(|e| format!("a header the generator should not make ({name}): {e}"))?;
        req = req.header(name.as_str(), value);
    }
    if let Some(body) = &probe.body {
        req = req.body(body.clone());
    }
    let response = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Ok(None),
        Err(e) => return Err(format!("no HTTP answer: {e:?}")),
    };
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    match response.bytes().await {
        Ok(body) => Ok(Some(Answer { status, headers, body: body.to_vec() })),
        Err(e) if e.is_timeout() => Ok(None),
        Err(e) => Err(format!("the answer's body could not be read: {e:?}")),
    }
}

/// Send `probe` over a connection of its own with its body in 16 KiB chunks (reqwest sends a
/// `Content-Length`), and read the answer until the server closes the connection.
async fn send_chunked(base: &str, probe: &Probe, body: &[u8]) -> Result<Answer, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let mut head = format!("{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n", probe.method, probe.path).into_bytes();
    for (name, value) in &probe.headers {
        head.extend_from_slice(format!("{name}: ").as_bytes());
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    // The server may answer (413) and stop reading before the body is all sent: keep reading.
    let mut sent = stream.write_all(&head).await;
    for chunk in body.chunks(16 * 1024) {
        if sent.is_err() {
            break;
        }
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        sent = stream.write_all(&framed).await;
    }
    if sent.is_ok() {
        let _ = stream.write_all(b"0\r\n\r\n").await;
    }
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw).await;
    if raw.is_empty() {
        return Err(format!("no HTTP answer (read: {read:?}, write: {sent:?})"));
    }
    parse_answer(&raw)
}

/// An HTTP/1.1 response as read from the wire (a chunked body is put together).
fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| format!("an incomplete answer: {}", inputs::shorten(raw, 300)))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut payload = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no status line: {head}"))?;
    let mut headers = reqwest::header::HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if let (Ok(n), Ok(v)) = (reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()), reqwest::header::HeaderValue::from_str(value.trim())) {
                headers.append(n, v);
            }
        }
    }
    if headers.get("transfer-encoding").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked")) {
        let mut body = Vec::new();
        let mut rest = &payload[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).map_err(|e| format!("a bad chunk size: {e}"))?;
            let start = eol + 2;
            if size == 0 || rest.len() < start + size {
                break;
            }
            body.extend_from_slice(&rest[start..start + size]);
            rest = &rest[(start + size + 2).min(rest.len())..];
        }
        payload = body;
    }
    Ok(Answer { status, headers, body: payload })
}

/// Check one answer: below 500, and an error is JSON in the path's dialect shape.
fn check(probe: &Probe, a: &Answer) -> Result<(), String> {
    let body = inputs::shorten(&a.body, 1500);
    if a.status >= 500 {
        return Err(format!("answered {}: {body}", a.status));
    }
    if a.status < 400 {
        return Ok(());
    }
    let content_type = a.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(format!("answered {} with Content-Type {content_type:?}, not JSON: {body}", a.status));
    }
    let value: Value = serde_json::from_slice(&a.body).map_err(|e| format!("answered {} with a body that is not JSON ({e}): {body}", a.status))?;
    check_shape(shape_of(&probe.path), a.status, &value).map_err(|why| format!("answered {} {why}: {body}", a.status))?;
    if a.status == 401 && !a.headers.contains_key("www-authenticate") {
        return Err(format!("answered 401 without WWW-Authenticate: {body}"));
    }
    Ok(())
}

/// One group of generated requests, named for the report.
struct Group {
    name: &'static str,
    strategy: BoxedStrategy<Probe>,
}

/// A valid request of a route that reads a body, and the JSON pointers of its init images.
struct Valid {
    path: &'static str,
    body: Value,
    images: &'static [&'static str],
}

/// The valid requests the bodies are mutated from, one per route that reads a body: small
/// (64x64, 2 steps) so that the jobs of those that stay valid finish quickly on the tiny model.
fn valid_requests() -> Vec<Valid> {
    let png = inputs::png_b64();
    let native = json!({"model": "tiny", "prompt": "a lighthouse", "negative_prompt": "fog", "width": 64, "height": 64, "steps": 2,
        "guidance_scale": 7.5, "sampler": "Euler", "seed": 7, "num_images": 1, "output_format": "png", "init_image": png, "strength": 0.5});
    let hf_endpoint = json!({"inputs": "a lighthouse", "negative_prompt": "fog", "height": 64, "width": 64, "guidance_scale": 7.5,
        "inference_steps": 2, "seed": 7, "parameters": {"negative_prompt": "fog", "height": 64, "width": 64, "guidance_scale": 7.5, "num_inference_steps": 2, "seed": 7}});
    let hf_serverless = json!({"inputs": "a lighthouse", "parameters": {"guidance_scale": 7.5, "negative_prompt": "fog", "num_inference_steps": 2,
        "target_size": {"width": 64, "height": 64}, "width": 64, "height": 64, "scheduler": "Euler a", "seed": 7},
        "options": {"use_cache": false, "wait_for_model": false}});
    let hyperbolic = json!({"model_name": "tiny", "prompt": "a lighthouse", "height": 64, "width": 64, "backend": "auto", "prompt_2": "a lighthouse",
        "negative_prompt": "fog", "negative_prompt_2": "fog", "image": png, "strength": 0.5, "seed": 7, "cfg_scale": 5, "sampler": "Euler",
        "steps": 2, "style_preset": "", "enable_refiner": false, "controlnet_name": "", "controlnet_image": "", "loras": {}});
    let txt2img = json!({"prompt": "a lighthouse", "negative_prompt": "fog", "styles": [], "seed": 7, "subseed_strength": 0, "sampler_name": "Euler",
        "scheduler": "automatic", "batch_size": 1, "n_iter": 1, "steps": 2, "cfg_scale": 7, "width": 64, "height": 64, "restore_faces": false,
        "tiling": false, "override_settings": {"sd_model_checkpoint": "tiny", "samples_format": "png"}, "enable_hr": false, "send_images": true,
        "alwayson_scripts": {}, "script_name": ""});
    let mut img2img = txt2img.clone();
    img2img["init_images"] = json!([png]);
    img2img["denoising_strength"] = json!(0.5);
    img2img["mask"] = json!("");
    img2img["include_init_images"] = json!(false);
    img2img.as_object_mut().map(|m| m.remove("enable_hr"));
    let options = json!({"samples_format": "png", "sd_model_checkpoint": "tiny", "jpeg_quality": 80, "CLIP_stop_at_last_layers": 1});
    vec![
        Valid { path: "/v1/jobs", body: native, images: &["/init_image"] },
        Valid { path: "/", body: hf_endpoint, images: &[] },
        Valid { path: "/models/tiny", body: hf_serverless, images: &[] },
        Valid { path: "/v1/image/generation", body: hyperbolic, images: &["/image", "/controlnet_image"] },
        Valid { path: "/sdapi/v1/txt2img", body: txt2img, images: &[] },
        Valid { path: "/sdapi/v1/img2img", body: img2img, images: &["/init_images/0", "/mask"] },
        Valid { path: "/sdapi/v1/options", body: options, images: &[] },
    ]
}

/// The groups of generated requests: one per route that reads a body, one for the native
/// job routes, one for A1111's other routes, one for every route with odd credentials.
fn groups(ctx: &Ctx) -> Vec<Group> {
    use inputs::*;
    let fixed = |s: &str| Just(s.to_string()).boxed();
    let [native, hf_endpoint, hf_serverless, hyperbolic, txt2img, img2img, options]: [Valid; 7] =
        valid_requests().try_into().unwrap_or_else(|_| panic!("seven valid requests"));
    let body = |v: Valid| json_body(v.body, v.images, MAX_BODY);

    let post = || fixed("POST");
    let job = job_segment(ctx);
    let a1111_gets = ["/sdapi/v1/sd-models", "/sdapi/v1/options", "/sdapi/v1/samplers", "/sdapi/v1/schedulers", "/sdapi/v1/progress", "/sdapi/v1/scripts"];
    vec![
        Group { name: "native: POST /v1/jobs", strategy: probe(post(), fixed("/v1/jobs"), body(native), auth(ctx)) },
        Group {
            name: "native: the job routes and GET /v1/models",
            strategy: prop_oneof![
                probe(fixed("GET"), list_query(ctx).prop_map(|q| format!("/v1/jobs{q}")).boxed(), stray_body(), auth(ctx)),
                probe(fixed("GET"), job.clone().prop_map(|j| format!("/v1/jobs/{j}")).boxed(), stray_body(), auth(ctx)),
                probe(post(), job.clone().prop_map(|j| format!("/v1/jobs/{j}/cancel")).boxed(), stray_body(), auth(ctx)),
                probe(fixed("GET"), (job, index_segment()).prop_map(|(j, i)| format!("/v1/jobs/{j}/images/{i}")).boxed(), stray_body(), auth(ctx)),
                probe(fixed("GET"), fixed("/v1/models"), stray_body(), auth(ctx)),
            ]
            .boxed(),
        },
        Group { name: "HF endpoint: POST /", strategy: probe(post(), fixed("/"), body(hf_endpoint), auth(ctx)) },
        Group {
            name: "HF serverless: POST /models/{id}",
            strategy: probe(post(), model_segment().prop_map(|m| format!("/models/{m}")).boxed(), body(hf_serverless), auth(ctx)),
        },
        Group { name: "Hyperbolic: POST /v1/image/generation", strategy: probe(post(), fixed("/v1/image/generation"), body(hyperbolic), auth(ctx)) },
        Group { name: "A1111: POST /sdapi/v1/txt2img", strategy: probe(post(), fixed("/sdapi/v1/txt2img"), body(txt2img), auth(ctx)) },
        Group { name: "A1111: POST /sdapi/v1/img2img", strategy: probe(post(), fixed("/sdapi/v1/img2img"), body(img2img), auth(ctx)) },
        Group {
            name: "A1111: options, the GET routes, interrupt and skip",
            strategy: prop_oneof![
                3 => probe(post(), fixed("/sdapi/v1/options"), body(options), auth(ctx)),
                2 => probe(fixed("GET"), select(a1111_gets.to_vec()).prop_map(str::to_string).boxed(), stray_body(), auth(ctx)),
                1 => probe(post(), select(vec!["/sdapi/v1/interrupt", "/sdapi/v1/skip"]).prop_map(str::to_string).boxed(), stray_body(), auth(ctx)),
                1 => probe(select(vec!["GET", "POST"]).prop_map(str::to_string).boxed(), regex("/sdapi/v1/[a-z%0-9-]{0,12}"), stray_body(), auth(ctx)),
            ]
            .boxed(),
        },
        Group { name: "every route: odd credentials and methods", strategy: every_route(ctx) },
    ]
}

/// Every route of [`ROUTES`] (with the real job in its path or not), odd credentials first,
/// sometimes with a method it does not take.
fn every_route(ctx: &Ctx) -> BoxedStrategy<Probe> {
    use inputs::*;
    let job = ctx.job.clone();
    let route = (select(ROUTES.to_vec()), any::<bool>()).prop_map(move |((method, path), real)| {
        let path = if real { path.replace("0190e0a4-0000-7000-8000-000000000000", &job) } else { path.to_string() };
        (method.to_string(), path)
    });
    let method = prop_oneof![4 => Just(None), 1 => select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]).prop_map(Some)];
    let credentials = prop_oneof![3 => odd_auth(ctx), 1 => auth(ctx)];
    (route, method, credentials, stray_body(), content_type())
        .prop_map(|((method, path), other, auth, body, content_type)| {
            let mut headers = Vec::new();
            if let Some(a) = auth {
                headers.push(("authorization".to_string(), a));
            }
            if let (Some(_), Some(ct)) = (&body, content_type) {
                headers.push(("content-type".to_string(), ct));
            }
            Probe { method: other.map(str::to_string).unwrap_or(method), path, headers, body, chunked: false }
        })
        .boxed()
}

/// The sweep: what every route gets, whatever the random groups draw. Every number, text and
/// image of every valid body at its edges ([`inputs::edge_bodies`]), bodies empty, not an
/// object, not declared JSON and over the limit (with a length and chunked), and every route
/// with every odd Authorization header.
fn edge_probes(ctx: &Ctx) -> Vec<Probe> {
    let bearer = ("authorization".to_string(), format!("Bearer {}", ctx.token).into_bytes());
    let post = |path: &str, content_type: Option<&str>, body: Vec<u8>, chunked: bool| {
        let mut headers = vec![bearer.clone()];
        headers.extend(content_type.map(|ct| ("content-type".to_string(), ct.as_bytes().to_vec())));
        Probe { method: "POST".into(), path: path.into(), headers, body: Some(body), chunked }
    };
    let json = Some("application/json");
    let mut out = Vec::new();
    for v in valid_requests() {
        for body in inputs::edge_bodies(&v.body, v.images) {
            out.push(post(v.path, json, body, false));
        }
        for raw in ["", " ", "{}", "[]", "null", "\"x\"", "{", "{\"a\":1} x", "\u{feff}{}"] {
            out.push(post(v.path, json, raw.as_bytes().to_vec(), false));
        }
        let valid = serde_json::to_vec(&v.body).unwrap_or_default();
        for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("")] {
            out.push(post(v.path, content_type, valid.clone(), false));
        }
        let mut over = valid.clone();
        over.resize(MAX_BODY + 1, b' ');
        out.push(post(v.path, json, over.clone(), false));
        out.push(post(v.path, json, over, true));
        out.push(post(v.path, json, valid, true));
    }
    for (method, path) in ROUTES {
        let path = path.replace("0190e0a4-0000-7000-8000-000000000000", &ctx.job);
        for auth in inputs::odd_auth_values(ctx) {
            let headers = auth.map(|a| ("authorization".to_string(), a)).into_iter().collect();
            out.push(Probe { method: method.to_string(), path: path.clone(), headers, body: None, chunked: false });
        }
    }
    out
}

/// Statuses seen in a group, and how many requests got no answer in time.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, u32>,
    unanswered: u32,
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Start the service with a worker, run every group, and report every group that failed with
/// its smallest failing request.
#[test]
fn every_route_answers_generated_bad_input_without_5xx_or_panic() {
    let setup = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    let other_token = env.tenant_with_token("globex");
    let revoked = env.issue_token("acme");
    let prefix: String = revoked.chars().take(12).collect();
    assert!(env.admin(&["token", "revoke", &prefix]).status.success(), "token revoke");
    // No rate limit, quota or cap on waiting requests: they would answer 429 to most requests.
    let max_body = MAX_BODY.to_string();
    let settings = [
        ("DARKROOM_MAX_BODY_BYTES", max_body.as_str()),
        ("DARKROOM_DEFAULT_RATE", "0"),
        ("DARKROOM_DEFAULT_MAX_QUEUED", "0"),
        ("DARKROOM_MAX_WAITING", "0"),
        ("RUST_LOG", "info,sqlx=warn,tower_http=warn"),
    ];
    let server = ApiServer::start(&env, &settings);
    let worker = Worker::start(&env, &[]);
    let http = reqwest::Client::builder().timeout(CLIENT_TIMEOUT).pool_max_idle_per_host(0).build().expect("an HTTP client");

    // A succeeded job, for the routes that read one.
    let job = rt.block_on(async {
        let r = http
            .post(server.url("/v1/jobs"))
            .bearer_auth(&token)
            .header("prefer", "wait=60")
            .timeout(Duration::from_secs(90))
            .json(&json!({"model": "tiny", "prompt": "p", "width": 64, "height": 64, "steps": 2}))
            .send()
            .await
            .expect("the API answers");
        let job: Value = r.json().await.expect("a job");
        assert_eq!(job["status"], "succeeded", "{job}");
        job["id"].as_str().expect("an id").to_string()
    });
    let ctx = Ctx { token, other_token, revoked, job };

    let cases = env_number("DARKROOM_FUZZ_CASES").unwrap_or(DEFAULT_CASES);
    let seed = env_number("DARKROOM_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    println!("fuzz: {cases} cases per group, seed {seed} (DARKROOM_FUZZ_CASES, DARKROOM_FUZZ_SEED); set up in {:.1} s", setup.elapsed().as_secs_f64());
    let mut failures = Vec::new();

    // The sweep first: each of its requests once, each failure reported.
    let (started, mut tally) = (Instant::now(), Tally::default());
    let probes = edge_probes(&ctx);
    for probe in &probes {
        match rt.block_on(send(&http, &server.base, probe)) {
            Err(why) => failures.push(format!("sweep: {why}\nthe request:\n{probe:?}")),
            Ok(None) => tally.unanswered += 1,
            Ok(Some(a)) => {
                *tally.statuses.entry(a.status).or_default() += 1;
                if let Err(why) = check(probe, &a) {
                    failures.push(format!("sweep: {why}\nthe request:\n{probe:?}"));
                }
            }
        }
    }
    println!(
        "fuzz: the sweep, {} requests in {:.1} s: statuses {:?}, unanswered {}",
        probes.len(),
        started.elapsed().as_secs_f64(),
        tally.statuses,
        tally.unanswered
    );

    for (n, group) in groups(&ctx).into_iter().enumerate() {
        let config = Config { cases, failure_persistence: None, max_shrink_iters: 200, max_shrink_time: 60_000, ..Config::default() };
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        seed_bytes[8] = n as u8;
        let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
        let tally = RefCell::new(Tally::default());
        let started = Instant::now();
        let result = runner.run(&group.strategy, |probe| {
            let answer = rt.block_on(send(&http, &server.base, &probe)).map_err(TestCaseError::fail)?;
            let mut tally = tally.borrow_mut();
            match answer {
                None => tally.unanswered += 1,
                Some(a) => {
                    *tally.statuses.entry(a.status).or_default() += 1;
                    check(&probe, &a).map_err(TestCaseError::fail)?;
                }
            }
            Ok(())
        });
        let tally = tally.into_inner();
        println!("fuzz: {} in {:.1} s: statuses {:?}, unanswered {}", group.name, started.elapsed().as_secs_f64(), tally.statuses, tally.unanswered);
        match result {
            Ok(()) => {}
            Err(TestError::Fail(why, probe)) => failures.push(format!("{}: {why}\nthe smallest failing request:\n{probe:?}", group.name)),
            Err(TestError::Abort(why)) => failures.push(format!("{}: aborted: {why}", group.name)),
        }
        let answered: u32 = tally.statuses.values().sum();
        if answered < tally.unanswered {
            failures.push(format!(
                "{}: most requests got no answer within {CLIENT_TIMEOUT:?} ({} of {})",
                group.name,
                tally.unanswered,
                answered + tally.unanswered
            ));
        }
    }
    let (api_log, worker_log) = (server.log(), worker.log());
    for (who, log) in [("the API", &api_log), ("the worker", &worker_log)] {
        for needle in ["panicked", "answering 500"] {
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                failures.push(format!("{who} logged {needle:?}: {line}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
}
