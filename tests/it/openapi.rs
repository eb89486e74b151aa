//! The OpenAPI document and Swagger UI, on the real API: `/openapi.json` is OpenAPI 3.1, needs no
//! token and documents exactly the routes the router serves (every route of `ROUTES`, and
//! nothing the router does not answer), and `/docs` serves Swagger UI.
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{ApiServer, ServiceEnv, ROUTES};

/// The routes that take no token (and so are not in `ROUTES`).
const PUBLIC: &[(&str, &str)] = &[("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/playground")];

/// Whether `path` is an instance of the template `template` (`{name}` is one segment; the last
/// one may take several when nothing else matches, as the router's catch-all `{*model_id}` does).
fn instance_of(template: &str, path: &str, catch_all: bool) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    let is_param = |s: &str| s.starts_with('{') && s.ends_with('}');
    if catch_all && t.last().is_some_and(|s| is_param(s)) && p.len() >= t.len() {
        return t[..t.len() - 1].iter().zip(&p).all(|(t, p)| is_param(t) || t == p);
    }
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| is_param(t) || t == p)
}

/// The documented operations, as (METHOD, path template).
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.push((method.to_ascii_uppercase(), path.clone()));
        }
    }
    out
}

#[tokio::test]
async fn openapi_json_documents_every_route_and_docs_serve_swagger_ui() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[]);
    let client = reqwest::Client::builder().redirect(Policy::none()).build().expect("client");

    let response = client.get(api.url("/openapi.json")).send().await.expect("GET /openapi.json");
    assert_eq!(response.status(), StatusCode::OK, "no token needed");
    assert!(response.headers()["content-type"].to_str().unwrap_or("").starts_with("application/json"));
    let doc: Value = response.json().await.expect("the document is JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "OpenAPI 3.1: {}", doc["openapi"]);
    let documented = operations(&doc);

    // Every route the router serves is documented...
    for (method, path) in ROUTES.iter().chain(PUBLIC) {
        let found = documented.iter().any(|(m, t)| m == method && instance_of(t, path, false))
            || documented.iter().any(|(m, t)| m == method && instance_of(t, path, true));
        assert!(found, "{method} {path} is served but not documented; documented: {documented:?}");
    }
    // ...and every documented operation is one the router serves: without a token, a 401 (or the
    // probe's answer), never the 404 of an unknown route or a 405.
    for (method, template) in &documented {
        assert!(ROUTES.iter().chain(PUBLIC).any(|(m, p)| m == method && instance_of(template, p, true)), "{method} {template} is documented but not in ROUTES");
        let path = template.replace("{id}", "0190e0a4-0000-7000-8000-000000000000").replace("{index}", "0").replace("{model_id}", "tiny");
        let request = client.request(method.parse().expect("method"), api.url(&path)).header("content-type", "application/json").body("{}");
        let status = request.send().await.expect("request").status();
        let public = PUBLIC.iter().any(|(m, p)| m == method && p == &path);
        assert!(
            if public { status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE } else { status == StatusCode::UNAUTHORIZED },
            "{method} {path}: {status}"
        );
        let op = &doc["paths"][template][method.to_ascii_lowercase()];
        assert!(op["responses"].as_object().is_some_and(|r| r.keys().any(|s| s.starts_with('2'))), "{method} {template}: no success response");
        assert_eq!(op.get("security").is_some(), !public, "{method} {template}: security");
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!((schemes["bearerAuth"]["scheme"].as_str(), schemes["basicAuth"]["scheme"].as_str()), (Some("bearer"), Some("basic")));

    // Swagger UI, with no token: /docs redirects to /docs/, which is the UI's page.
    let response = client.get(api.url("/docs")).send().await.expect("GET /docs");
    let status = response.status();
    let page = if status.is_redirection() {
        let location = response.headers()["location"].to_str().expect("location").to_string();
        assert!(location.ends_with("/docs/"), "{location}");
        client.get(api.url("/docs/")).send().await.expect("GET /docs/")
    } else {
        response
    };
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"].to_str().unwrap_or("").starts_with("text/html"));
    let html = page.text().await.expect("the page");
    assert!(html.contains("swagger-ui"), "{html}");
    let config = client.get(api.url("/docs/swagger-initializer.js")).send().await.expect("initializer");
    assert_eq!(config.status(), StatusCode::OK);
    assert!(config.text().await.unwrap_or_default().contains("/openapi.json"), "the UI loads /openapi.json");
}
