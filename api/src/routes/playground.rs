//! `GET /playground`: a page for trying the service in a browser (`api/assets/playground.html`,
//! embedded in the binary). It needs no token itself: it is static, and the API calls it makes
//! carry the token the user pastes. Its Content-Security-Policy lets nothing run or load but the
//! page's own inline script and style (allowed by their SHA-256, computed from the embedded page,
//! so an edit cannot leave the header stale) and calls to this origin.
use std::sync::{Arc, LazyLock};

use axum::http::header;
use axum::response::IntoResponse;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::tags;
use crate::service::Service;

/// The page: one file with its script and style inline, nothing from another host.
pub const PAGE: &str = include_str!("../../assets/playground.html");

/// The page's Content-Security-Policy.
pub static CSP: LazyLock<String> = LazyLock::new(|| csp(PAGE));

pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(page))
}

/// The playground: generate from a browser, with live progress and previews (no token needed to
/// load the page; paste one into it).
#[utoipa::path(get, path = "/playground", operation_id = "playground", tag = tags::PLAYGROUND, responses(
    (status = 200, description = "The playground page", content_type = "text/html", body = String),
))]
async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP.as_str()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

/// The policy for `html`: its inline `<script>` and `<style>` blocks by hash, images from this
/// origin, `data:` (previews) and `blob:` (fetched images), requests to this origin only.
fn csp(html: &str) -> String {
    let hashes = |tag: &str| inline_blocks(html, tag).into_iter().map(|b| format!(" 'sha256-{}'", sha256_b64(b))).collect::<String>();
    format!(
        "default-src 'none'; script-src{}; style-src{}; img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes("script"),
        hashes("style")
    )
}

/// The text of every `<tag>…</tag>` block (attribute-less opening tags: the page uses no others).
fn inline_blocks<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

fn sha256_b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use darkroom_shared::sampler::Sampler;

    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_pages_inline_script_and_style() {
        let scripts = inline_blocks(PAGE, "script");
        let styles = inline_blocks(PAGE, "style");
        assert_eq!((scripts.len(), styles.len()), (1, 1), "one inline script and one style");
        // Nothing the hashes would not cover: no script or style with attributes, no inline
        // handlers or style attributes (CSP blocks those without 'unsafe-inline').
        assert_eq!(PAGE.matches("<script").count(), 1, "every <script> is the bare inline one");
        assert_eq!(PAGE.matches("<style").count(), 1, "every <style> is the bare inline one");
        for needle in [" style=\"", " onclick=", " onload=", " onerror=", " onchange=", " oninput=", " onsubmit=", "http://", "https://"] {
            assert!(!PAGE.contains(needle), "the page contains {needle:?}");
        }
        let policy = CSP.as_str();
        assert!(policy.contains(&format!("script-src 'sha256-{}';", sha256_b64(scripts[0]))), "{policy}");
        assert!(policy.contains(&format!("style-src 'sha256-{}';", sha256_b64(styles[0]))), "{policy}");
        assert!(policy.starts_with("default-src 'none';") && policy.contains("connect-src 'self'") && !policy.contains("unsafe"), "{policy}");
    }

    #[test]
    fn the_pages_samplers_are_the_ones_the_api_accepts() {
        let select = PAGE.split("<select id=\"sampler\"").nth(1).and_then(|s| s.split("</select>").next()).expect("the sampler <select>");
        let offered: Vec<&str> = select.split("<option>").skip(1).map(|o| o.split('<').next().unwrap_or("").trim()).collect();
        assert_eq!(offered, Sampler::names(), "the page's sampler list");
    }

    #[test]
    fn inline_blocks_finds_each_block() {
        assert_eq!(inline_blocks("<p><script>a</script><script>b</script>", "script"), vec!["a", "b"]);
        assert!(inline_blocks("<script>unterminated", "script").is_empty());
    }
}
