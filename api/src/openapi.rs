//! The OpenAPI 3.1 document (`GET /openapi.json`) and Swagger UI (`/docs`), generated from the
//! code. Every route is registered with `utoipa_axum::routes!` from the `#[utoipa::path]` on its
//! handler, so the router and the document cannot disagree on paths or methods; request and
//! response bodies are the types the handlers read and write (`ToSchema`).
//!
//! A handler's `#[utoipa::path]` says its method and path, its dialect's `tag`, its body, its
//! parameters, its successful answers and the errors particular to it (a status and why, no
//! body). [`describe`] then gives every operation of a dialect (by its tag) what the error policy
//! gives all of them: the dialect's security schemes, its error body for each error status
//! (`Dialect::error_schema`), the 401/500/503 any authenticated route may answer, the errors of
//! reading a body (`Dialect::BODY_ERRORS`) and the `Retry-After`/`RateLimit` headers of 429s and
//! 503s. To document a new route: put `#[utoipa::path(...)]` on its handler with the dialect's
//! `tag`, and register it with `.routes(routes!(handler))` on its module's `OpenApiRouter`.
use axum::Router;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response};
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

use crate::dialect::{Dialect, Native};

/// Where the document is served (no token needed).
pub const SPEC_PATH: &str = "/openapi.json";
/// Where Swagger UI is served (`/docs` redirects to `/docs/`).
pub const DOCS_PATH: &str = "/docs";

/// The names of the two security schemes: every route takes either (`auth.rs`).
pub const BEARER: &str = "bearerAuth";
pub const BASIC: &str = "basicAuth";

/// The operations' tags: one per dialect, the probes and the playground.
pub mod tags {
    pub const NATIVE: &str = "native";
    pub const A1111: &str = "AUTOMATIC1111";
    pub const HF_ENDPOINT: &str = "Hugging Face endpoint handler";
    pub const HF_SERVERLESS: &str = "Hugging Face serverless";
    pub const HYPERBOLIC: &str = "Hyperbolic";
    pub const HEALTH: &str = "health";
    pub const PLAYGROUND: &str = "playground";
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Darkroom",
        description = "Multi-tenant Stable Diffusion inference. The native API (`/v1/jobs`, `/v1/models`) and four wire-compatible dialects \
(AUTOMATIC1111 under `/sdapi/v1`, the Hugging Face endpoint handler at `POST /`, Hugging Face serverless text-to-image at `/models/{model_id}`, \
Hyperbolic at `/v1/image/generation`) share one queue, tokens and tenants. Authenticate with `Authorization: Bearer <token>`, or HTTP Basic \
with any user name and the token as the password. Each dialect answers errors in its own shape.",
    ),
    tags(
        (name = "native", description = "Darkroom's own API: submit, poll or wait, list, cancel, images, the catalog."),
        (name = "AUTOMATIC1111", description = "AUTOMATIC1111's web API (`--api --api-auth`). Errors: `401 {detail}`, `422 {detail: [{loc, msg, type}]}`, otherwise `{error, detail, body, errors}`."),
        (name = "Hugging Face endpoint handler", description = "The community Stable Diffusion Inference Endpoint handler. Errors: `{error}`."),
        (name = "Hugging Face serverless", description = "Hugging Face's serverless Inference API, text-to-image. Errors: `{error}` (503 while loading adds `estimated_time`)."),
        (name = "Hyperbolic", description = "Hyperbolic's image generation API. Errors: `{object: \"error\", message, type, param, code}`."),
        (name = "health", description = "Probes and metrics; no token."),
        (name = "playground", description = "A page to try the service in a browser (`/playground`); no token to load it, the token is pasted into it."),
    ),
    // `/metrics` is served apart from the documented routes (its state is the recorder, and it
    // may have a listener of its own: `serve --metrics-listen`), so it is listed here.
    paths(crate::metrics::scrape),
)]
struct ApiDoc;

/// The document's base: info, tags, the security schemes and the shared schemas.
pub fn base() -> OpenApi {
    let mut api = ApiDoc::openapi();
    let components = api.components.get_or_insert_with(Default::default);
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.bearer_format = Some("drk_...".into());
    bearer.description = Some("An API token (`darkroom-api token issue TENANT`).".into());
    let mut basic = Http::new(HttpAuthScheme::Basic);
    basic.description = Some("Any user name, the API token as the password (what AUTOMATIC1111 clients send with `--api-auth`).".into());
    components.security_schemes.insert(BEARER.into(), RefOr::T(SecurityScheme::Http(bearer)));
    components.security_schemes.insert(BASIC.into(), RefOr::T(SecurityScheme::Http(basic)));
    api
}

/// Swagger UI at `/docs` and the finished document at `/openapi.json`.
pub fn docs<S: Clone + Send + Sync + 'static>(api: OpenApi) -> Router<S> {
    SwaggerUi::new(DOCS_PATH).url(SPEC_PATH, finish(api)).into()
}

/// What every operation gets from the error policy (module docs), and OpenAPI's path syntax.
pub fn finish(mut api: OpenApi) -> OpenApi {
    describe::<Native>(&mut api);
    crate::dialects::describe_all(&mut api);
    // axum's catch-all `{*model_id}` is a plain `{model_id}` parameter in OpenAPI (whose value
    // may hold `/`, percent-encoded).
    let paths = std::mem::take(&mut api.paths.paths);
    api.paths.paths = paths.into_iter().map(|(path, item)| (path.replace("{*", "{"), item)).collect();
    api
}

/// Give every operation tagged `D::TAG` the dialect's security, error bodies and headers.
pub fn describe<D: Dialect>(api: &mut OpenApi) {
    let components = api.components.get_or_insert_with(Default::default);
    for (name, schema) in D::error_schemas() {
        components.schemas.entry(name).or_insert(schema);
    }
    for item in api.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch].into_iter().flatten() {
            if op.tags.as_ref().is_some_and(|t| t.iter().any(|t| t == D::TAG)) {
                describe_operation::<D>(op);
            }
        }
    }
}

fn describe_operation<D: Dialect>(op: &mut Operation) {
    let schemes = if D::TAG == tags::A1111 { [BASIC, BEARER] } else { [BEARER, BASIC] };
    op.security.get_or_insert_with(|| schemes.iter().map(|s| SecurityRequirement::new(*s, Vec::<String>::new())).collect());
    let responses = &mut op.responses.responses;
    let mut add = |status: u16, why: &str| {
        responses.entry(status.to_string()).or_insert_with(|| RefOr::T(Response::new(why)));
    };
    add(401, "Missing, unreadable, unknown or revoked credentials.");
    add(500, "A fault of the server (details are logged, never sent).");
    add(503, "A backend (Postgres, Redis) does not answer; retry after `Retry-After` seconds.");
    if op.request_body.is_some() {
        for &status in D::BODY_ERRORS {
            add(status, body_error(status));
        }
    }
    for (status, response) in responses.iter_mut() {
        let (Ok(code), RefOr::T(response)) = (status.parse::<u16>(), response) else { continue };
        if code < 400 {
            continue;
        }
        if response.content.is_empty() {
            response.content.insert("application/json".into(), RefOr::T(Content::new(Some(Ref::from_schema_name(D::error_schema(code))))));
        }
        for (name, kind, description) in error_headers(code) {
            let schema = ObjectBuilder::new().schema_type(kind).build();
            response.headers.entry(name.into()).or_insert_with(|| RefOr::T(HeaderBuilder::new().schema(Some(schema)).description(Some(description)).build()));
        }
    }
}

/// Why a body may be refused, by status.
fn body_error(status: u16) -> &'static str {
    match status {
        400 => "The body is not JSON, or (in this dialect's codes) a value is refused; the field is named.",
        408 => "The body did not arrive within `--body-read-timeout-secs`.",
        413 => "The body is larger than `--max-body-bytes`.",
        415 => "The body is declared as something other than JSON.",
        422 => "A value is refused (type, range, unknown field, or a limit such as `--max-job-cost`); the field is named.",
        _ => "The body is refused.",
    }
}

/// The headers an error status carries.
fn error_headers(status: u16) -> Vec<(&'static str, Type, &'static str)> {
    match status {
        401 => vec![("WWW-Authenticate", Type::String, "The dialect's challenge (`Bearer realm=\"darkroom\"`, or `Basic` for AUTOMATIC1111).")],
        429 => vec![
            ("Retry-After", Type::Integer, "Whole seconds after which a retry may succeed."),
            ("RateLimit-Policy", Type::String, "Over the rate limit: `\"jobs\";q=<per minute>;w=60;burst=<burst>`."),
            ("RateLimit", Type::String, "Over the rate limit: `\"jobs\";r=0;t=<seconds>`."),
        ],
        503 => vec![("Retry-After", Type::Integer, "Whole seconds after which a retry may succeed.")],
        _ => vec![],
    }
}

/// A schema and the schemas it refers to, by name: what [`Dialect::error_schemas`] lists.
pub type Schemas = Vec<(String, RefOr<Schema>)>;

/// `T`'s schema and those it refers to, appended to `out`.
pub fn schema_of<T: utoipa::ToSchema>(out: &mut Schemas) {
    T::schemas(out);
    out.push((T::name().into_owned(), T::schema()));
}

/// Checks that a hand-written or derived schema says what a parser accepts.
#[cfg(test)]
pub mod testing {
    use serde::de::{self, Deserialize, Deserializer, Visitor};
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;

    /// The field names (aliases included) serde's derived `Deserialize` of `T` accepts.
    pub fn serde_fields<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
        struct Grab<'a>(&'a mut Vec<&'static str>);
        impl<'de> Deserializer<'de> for Grab<'_> {
            type Error = de::value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("not a struct"))
            }
            fn deserialize_struct<V: Visitor<'de>>(self, _: &'static str, fields: &'static [&'static str], _: V) -> Result<V::Value, Self::Error> {
                self.0.extend_from_slice(fields);
                Err(de::Error::custom("fields read"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit unit_struct
                newtype_struct seq tuple tuple_struct map enum identifier ignored_any
            }
        }
        let mut fields = Vec::new();
        let _ = T::deserialize(Grab(&mut fields));
        fields
    }

    /// The property names of `T`'s object schema.
    pub fn properties<T: utoipa::ToSchema>() -> Vec<String> {
        match T::schema() {
            RefOr::T(Schema::Object(o)) => o.properties.keys().cloned().collect(),
            _ => panic!("{} is not an object schema", T::name()),
        }
    }

    /// `T`'s schema documents exactly the fields its parser accepts, but for `aliases` (which
    /// the schema's descriptions name).
    pub fn assert_schema_matches_parser<T: utoipa::ToSchema + for<'de> Deserialize<'de>>(aliases: &[&str]) {
        let mut documented = properties::<T>();
        documented.sort();
        let mut accepted: Vec<String> = serde_fields::<T>().into_iter().filter(|f| !aliases.contains(f)).map(str::to_string).collect();
        accepted.sort();
        assert!(!accepted.is_empty(), "{}: no fields read", T::name());
        assert_eq!(documented, accepted, "{}: the schema and the parser disagree", T::name());
    }
}

#[cfg(test)]
mod tests {
    use darkroom_shared::request::GenerationRequest;
    use darkroom_shared::validate::{MAX_GUIDANCE_SCALE, MAX_NUM_IMAGES, MAX_PROMPT_CHARS, MAX_STEPS};
    use serde_json::Value;

    use super::*;

    /// Operations whose first tag is not one [`describe`] knows.
    fn undescribed(api: &OpenApi) -> Vec<String> {
        let known = [tags::NATIVE, tags::A1111, tags::HF_ENDPOINT, tags::HF_SERVERLESS, tags::HYPERBOLIC, tags::HEALTH, tags::PLAYGROUND];
        let mut out = Vec::new();
        for (path, item) in &api.paths.paths {
            for op in [&item.get, &item.post, &item.put, &item.delete, &item.patch].into_iter().flatten() {
                if !op.tags.as_ref().and_then(|t| t.first()).is_some_and(|t| known.contains(&t.as_str())) {
                    out.push(path.clone());
                }
            }
        }
        out
    }

    fn document() -> Value {
        let (_, api) = crate::app::documented_routes().split_for_parts();
        let api = finish(api);
        assert!(undescribed(&api).is_empty(), "operations without a known tag: {:?}", undescribed(&api));
        serde_json::to_value(&api).expect("the document serializes")
    }

    /// Every `$ref` in `v`.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_complete() {
        let doc = document();
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", doc["openapi"]);
        let mut found = Vec::new();
        refs(&doc, &mut found);
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
            assert!(doc["components"]["schemas"].get(name).is_some(), "$ref to a missing schema {name}");
        }
        let paths = doc["paths"].as_object().expect("paths");
        let mut ids: Vec<&str> =
            paths.values().flat_map(|item| item.as_object().into_iter().flatten()).filter_map(|(_, op)| op["operationId"].as_str()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "operation ids are unique");
        assert!(paths.contains_key("/models/{model_id}"), "the catch-all is a plain parameter: {:?}", paths.keys());
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                let public = ["/healthz", "/readyz", "/metrics", "/playground"].contains(&path.as_str());
                let responses = op["responses"].as_object().expect("responses");
                assert_eq!(op.get("security").is_none(), public, "{method} {path}: security");
                if !public {
                    for status in ["401", "500", "503"] {
                        let body = &responses[status]["content"]["application/json"]["schema"]["$ref"];
                        assert!(body.is_string(), "{method} {path}: {status} has no error body");
                    }
                }
                if op.get("requestBody").is_some() {
                    assert!(responses.contains_key("413") && responses.contains_key("408"), "{method} {path}: body errors");
                }
            }
        }
        let a1111 = &paths["/sdapi/v1/txt2img"]["post"]["responses"];
        assert_eq!(a1111["401"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/A1111Unauthorized");
        assert_eq!(a1111["422"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/A1111ValidationError");
        assert!(a1111["429"]["headers"].get("Retry-After").is_some());
        // Schemas are named by type; two types of one name would silently share one schema.
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["Progress"]["properties"].get("step").is_some() && schemas["A1111Progress"]["properties"].get("eta_relative").is_some());
        let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
        assert_eq!((schemes[BEARER]["scheme"].as_str(), schemes[BASIC]["scheme"].as_str()), (Some("bearer"), Some("basic")));
    }

    #[test]
    fn the_canonical_request_schema_has_validations_bounds() {
        testing::assert_schema_matches_parser::<GenerationRequest>(&[]);
        let doc = document();
        let props = &doc["components"]["schemas"]["GenerationRequest"]["properties"];
        assert_eq!(props["steps"]["maximum"].as_f64(), Some(f64::from(MAX_STEPS)));
        assert_eq!(props["guidance_scale"]["maximum"].as_f64(), Some(f64::from(MAX_GUIDANCE_SCALE)));
        assert_eq!(props["num_images"]["maximum"].as_f64(), Some(f64::from(MAX_NUM_IMAGES)));
        assert_eq!(props["prompt"]["maxLength"].as_u64(), Some(MAX_PROMPT_CHARS as u64));
        assert_eq!(props["steps"]["default"], 25);
    }
}
