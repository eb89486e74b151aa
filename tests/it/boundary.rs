//! The dialect boundary, for every route of every dialect: credentials are checked before a
//! byte of the body is read, and a Postgres that cannot be reached is a 503 with `Retry-After`
//! in the dialect's own error shape, never a 500.
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{ApiServer, ServiceEnv, TcpProxy, POSTGRES, ROUTES};

/// Send the head of a request declaring a 10 MB body and only the first 64 KiB of it, then
/// read what the server answers while the rest of the upload is still owed. Its status and body.
async fn partial_upload(addr: &str, method: &str, path: &str, authorization: Option<&str>) -> (u16, Value) {
    declared_upload(addr, method, path, authorization, 10 * 1024 * 1024).await
}

/// [`partial_upload`] with a declared length of `declared` bytes.
async fn declared_upload(addr: &str, method: &str, path: &str, authorization: Option<&str>, declared: u64) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("the API accepts");
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("head sent");
    let mut sent = vec![b' '; 64 * 1024];
    sent[0] = b'{';
    stream.write_all(&sent).await.expect("the start of the body sent");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                let length = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()));
                length.and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| body.len() >= l)
            });
            if n == 0 || complete {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.unwrap_or_else(|_| panic!("{method} {path}: no answer while the upload was unfinished"));
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{method} {path}: no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| serde_json::from_str(b).unwrap_or(Value::Null)).unwrap_or(Value::Null);
    (status, body)
}

/// The dialect a path belongs to, by its error shape.
fn assert_unauthorized_shape(path: &str, body: &Value) {
    let ok = if path.starts_with("/sdapi/") {
        body == &json!({"detail": "Incorrect username or password"})
    } else if path == "/v1/image/generation" {
        body["object"] == "error" && body["type"] == "authentication_error"
    } else if path == "/" || path.starts_with("/models/") || path.starts_with("/status/") {
        body["error"].is_string()
    } else {
        body["error"]["type"] == "unauthorized"
    };
    assert!(ok, "{path}: 401 in its dialect's shape, got {body}");
}

#[tokio::test]
async fn every_route_answers_401_before_reading_the_body() {
    let env = ServiceEnv::new();
    let server = ApiServer::start(&env, &[]);
    let addr = server.base.trim_start_matches("http://").to_string();
    for (method, path) in ROUTES {
        for auth in [None, Some("Bearer drk_wrong_token_000000000000"), Some("Basic dXNlcjpkcmtfd3Jvbmc=")] {
            let (status, body) = partial_upload(&addr, method, path, auth).await;
            assert_eq!(status, 401, "{method} {path} with {auth:?}: {body}\n{}", server.log());
            assert_unauthorized_shape(path, &body);
        }
    }
}

/// A body declared larger than `--max-body-bytes` is a 413 at once, in each dialect's shape,
/// without waiting for a byte of it.
#[tokio::test]
async fn a_body_declared_over_the_limit_is_413_at_once() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    let server = ApiServer::start(&env, &[]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let auth = format!("Bearer {token}");
    for path in ["/v1/jobs", "/", "/models/tiny", "/v1/image/generation", "/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/options"] {
        let (status, body) = declared_upload(&addr, "POST", path, Some(&auth), 1_000_000_000_000).await;
        assert_eq!(status, 413, "{path}: {body}");
        let texts = [&body["error"]["message"], &body["error"], &body["detail"], &body["message"]];
        assert!(texts.iter().filter_map(|v| v.as_str()).any(|m| m.contains("limit")), "{path}: the dialect's shape naming the limit: {body}");
    }
}

/// A request (method, path, body) valid in itself, and whether an error body has its dialect's shape.
type DialectRequest = (&'static str, &'static str, Value, fn(&Value) -> bool);

/// A request of each dialect, and what its 503 must look like.
fn dialect_requests() -> Vec<DialectRequest> {
    vec![
        ("POST", "/v1/jobs", json!({"model": "tiny", "prompt": "p"}), |b| b["error"]["type"] == "unavailable"),
        ("GET", "/v1/jobs", Value::Null, |b| b["error"]["type"] == "unavailable"),
        ("GET", "/v1/models", Value::Null, |b| b["error"]["type"] == "unavailable"),
        ("POST", "/", json!({"inputs": "p"}), |b| b["error"].is_string()),
        ("POST", "/models/tiny", json!({"inputs": "p"}), |b| b["error"].is_string()),
        ("POST", "/v1/image/generation", json!({"model_name": "tiny", "prompt": "p"}), |b| b["object"] == "error" && b["type"] == "server_error"),
        ("POST", "/sdapi/v1/txt2img", json!({"prompt": "p"}), |b| b["error"] == "HTTPException"),
        ("GET", "/sdapi/v1/progress", Value::Null, |b| b["error"] == "HTTPException"),
        ("GET", "/sdapi/v1/options", Value::Null, |b| b["error"] == "HTTPException"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_is_503_with_retry_after_in_every_dialect() {
    let proxy = TcpProxy::start(POSTGRES.trim_start_matches("postgres://postgres@")).await;
    let mut env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    // The server reaches the same database through the proxy.
    env.database_url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, env.database);
    let server = ApiServer::start(&env, &[]);
    let http = reqwest::Client::new();

    proxy.down();
    let requests = dialect_requests().into_iter().map(|(method, path, body, shaped)| {
        let mut req = http.request(method.parse().expect("method"), server.url(path)).bearer_auth(&token);
        if !body.is_null() {
            req = req.json(&body);
        }
        async move {
            let r = req.timeout(Duration::from_secs(60)).send().await.expect("the API answers");
            let (status, retry_after) = (r.status(), r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string));
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (method, path, status, retry_after, body, shaped)
        }
    });
    // Concurrently: each waits for the pool's acquire timeout.
    let answers = futures_join_all(requests).await;
    for (method, path, status, retry_after, body, shaped) in answers {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}: {body}\n{}", server.log());
        assert!(retry_after.as_deref().and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s > 0), "{method} {path}: Retry-After {retry_after:?}");
        assert!(shaped(&body), "{method} {path}: 503 in its dialect's shape, got {body}");
        assert!(!body.to_string().contains("127.0.0.1"), "{method} {path}: no backend detail is sent: {body}");
    }
    assert!(!server.log().contains("answering 500"), "{}", server.log());

    proxy.up().await;
    let r = http.get(server.url("/v1/models")).bearer_auth(&token).send().await.expect("the API answers");
    assert_eq!(r.status(), StatusCode::OK, "back once Postgres is");
}

/// `join_all` without a dependency: run the futures as tasks, in order.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("request task"));
    }
    out
}

/// NUL characters (which Postgres refuses) in any text field are a 4xx naming the field, in
/// every dialect, never a 500.
#[tokio::test]
async fn nul_characters_are_refused_naming_the_field_in_every_dialect() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    env.register_tiny_model().await;
    let server = ApiServer::start(&env, &[]);
    let http = reqwest::Client::new();
    let nul = "a lighthouse\u{0}at dusk";
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/v1/jobs", json!({"model": "tiny", "prompt": nul}), "prompt"),
        ("/v1/jobs", json!({"model": "tiny", "prompt": "p", "negative_prompt": nul}), "negative_prompt"),
        ("/", json!({"inputs": nul}), "inputs"),
        ("/models/tiny", json!({"inputs": nul}), "inputs"),
        ("/v1/image/generation", json!({"model_name": "tiny", "prompt": nul}), "prompt"),
        ("/sdapi/v1/txt2img", json!({"prompt": nul}), "prompt"),
        ("/sdapi/v1/txt2img", json!({"prompt": "p", "negative_prompt": nul}), "negative_prompt"),
        ("/sdapi/v1/options", json!({ "samples_format\u{0}": "png" }), "samples_format"),
        ("/sdapi/v1/options", json!({"some_option": ["x", nul]}), "some_option"),
    ];
    for (path, body, field) in cases {
        let r = http.post(server.url(path)).bearer_auth(&token).json(&body).send().await.expect("the API answers");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_client_error(), "{path} {body}: {status} {text}");
        assert!(text.contains(field), "{path}: the answer names {field}: {text}");
    }
    assert!(!server.log().contains("answering 500"), "{}", server.log());
}

/// A client that trickles its body (a byte every 200 ms) is cut off with a 408 once
/// `--body-read-timeout-secs` has passed, in the dialect's shape.
#[tokio::test]
async fn a_trickled_body_is_cut_off_with_408() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    let server = ApiServer::start(&env, &[("DARKROOM_BODY_READ_TIMEOUT_SECS", "1")]);
    let addr = server.base.trim_start_matches("http://").to_string();
    for (path, shaped) in [("/v1/jobs", "request_timeout"), ("/sdapi/v1/txt2img", "HTTPException"), ("/v1/image/generation", "invalid_request_error")] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        let started = std::time::Instant::now();
        let mut answer = vec![0u8; 4096];
        let read = async {
            loop {
                tokio::select! {
                    n = stream.read(&mut answer) => return n.unwrap_or(0),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        let _ = stream.write_all(b" ").await;
                    }
                }
            }
        };
        let n = tokio::time::timeout(Duration::from_secs(10), read).await.expect("answered while trickling");
        let text = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(text.contains(shaped), "{path}: the dialect's shape: {text}");
        assert!(started.elapsed() < Duration::from_secs(5), "{path}: cut off near the deadline, not after {:?}", started.elapsed());
    }
}

/// A client that opens a connection and trickles its request head (a header byte every 200 ms)
/// or sends none of it is cut off once `--header-read-timeout-secs` (2 s here) has passed,
/// with a 408 or a closed connection; a client that sends its heads in time keeps its
/// connection for several requests (keep-alive).
#[tokio::test]
async fn a_trickled_request_head_is_cut_off() {
    let env = ServiceEnv::new();
    let server = ApiServer::start(&env, &[("DARKROOM_HEADER_READ_TIMEOUT_SECS", "2")]);
    let addr = server.base.trim_start_matches("http://").to_string();

    // Keep-alive: three requests on one connection, the last after a pause shorter than the timeout.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    for pause in [0, 0, 1000] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        stream.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.expect("request sent");
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await.expect("answered").expect("read");
        let text = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(text.starts_with("HTTP/1.1 200"), "keep-alive request after {pause} ms: {text:?}");
    }

    for trickle in [true, false] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let started = std::time::Instant::now();
        stream.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").as_bytes()).await.expect("partial head");
        let mut answer = Vec::new();
        let read = async {
            let mut buf = [0u8; 4096];
            loop {
                tokio::select! {
                    n = stream.read(&mut buf) => match n {
                        Ok(0) | Err(_) => return,
                        Ok(n) => answer.extend_from_slice(&buf[..n]),
                    },
                    _ = tokio::time::sleep(Duration::from_millis(200)), if trickle => {
                        let _ = stream.write_all(b"a").await;
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(15), read).await.unwrap_or_else(|_| panic!("trickle={trickle}: the connection was still open after 15 s"));
        let elapsed = started.elapsed();
        let text = String::from_utf8_lossy(&answer).to_string();
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "trickle={trickle}: a 408 or nothing: {text:?}");
        // The timeout (2 s), plus a margin for a busy machine.
        assert!(elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(6), "trickle={trickle}: cut off after {elapsed:?}");
    }
}

/// A request (method, path), the status it must get, and whether its body has the dialect's shape.
type ShapedAnswer = (&'static str, &'static str, u16, fn(&Value) -> bool);

/// A method a route does not take, a model id that is not UTF-8 once decoded, and an A1111
/// path that names nothing are answered in the dialect's own shape, not the native one nor
/// axum's plain text (found by the fuzz tests).
#[tokio::test]
async fn wrong_methods_and_unreadable_paths_answer_in_the_dialects_shape() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    let server = ApiServer::start(&env, &[]);
    let http = reqwest::Client::new();
    let cases: Vec<ShapedAnswer> = vec![
        ("PUT", "/", 405, |b| b["error"].is_string()),
        ("GET", "/models/tiny", 405, |b| b["error"].is_string()),
        ("DELETE", "/v1/image/generation", 405, |b| b["object"] == "error" && b["type"] == "invalid_request_error"),
        ("GET", "/sdapi/v1/txt2img", 405, |b| b["error"] == "HTTPException" && b["detail"] == "Method Not Allowed"),
        ("PATCH", "/v1/jobs", 405, |b| b["error"]["type"] == "method_not_allowed"),
        ("POST", "/models/%FF", 404, |b| b["error"].as_str().is_some_and(|m| m.contains("UTF-8"))),
        ("GET", "/sdapi/v1/", 404, |b| b == &json!({"detail": "Not Found"})),
    ];
    for (method, path, expected, shaped) in cases {
        let r = http.request(method.parse().expect("method"), server.url(path)).bearer_auth(&token).json(&json!({"inputs": "p"})).send().await.expect("answer");
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, expected, "{method} {path}: {body}");
        assert!(shaped(&body), "{method} {path}: the dialect's shape, got {body}");
    }
}

/// Numbers at the ends of f64's range in a tenant's A1111 options come back exactly: Postgres
/// prints JSONB numbers as plain decimals (309 digits for f64::MAX), which serde_json's default
/// parser overflowed on, so every later `GET /sdapi/v1/options` was a 500 (found by the fuzz tests).
#[tokio::test]
async fn stored_options_keep_numbers_at_the_ends_of_f64() {
    let env = ServiceEnv::new();
    let token = env.tenant_with_token("acme");
    // GET options names the current checkpoint: the catalog needs a model.
    env.register_tiny_model().await;
    let server = ApiServer::start(&env, &[]);
    let http = reqwest::Client::new();
    let numbers = json!({"max": f64::MAX, "min": f64::MIN, "tiny": 4.9e-324, "near": 1.7976931348623155e308});
    let r = http.post(server.url("/sdapi/v1/options")).bearer_auth(&token).json(&numbers).send().await.expect("answer");
    assert_eq!(r.status(), 200);
    let r = http.get(server.url("/sdapi/v1/options")).bearer_auth(&token).send().await.expect("answer");
    assert_eq!(r.status(), 200, "{}", server.log());
    let options: Value = r.json().await.expect("JSON");
    for key in ["max", "min", "tiny", "near"] {
        assert_eq!(options[key].as_f64(), numbers[key].as_f64(), "{key}: {options}");
    }
}
