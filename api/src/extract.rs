//! The extractors every route shares, native and dialect alike, each rejecting in the route's
//! dialect shape: [`Caller`], the tenant a request acts for, [`JsonBody`], its JSON body, and
//! [`PathParam`], what its path names.
//!
//! A handler takes `Caller<D>` before `JsonBody<T, D>`: axum runs the parts extractors first, so
//! the token is checked before a byte of the body is read, and a large upload with a wrong token
//! is answered 401 at once.
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use darkroom_shared::store::Tenant;
use serde::de::DeserializeOwned;

use crate::auth::presented_token;
use crate::dialect::{ContentTypePolicy, Dialect, DialectError, Native};
use crate::error::ApiError;
use crate::service::Service;

/// The authenticated tenant of a request.
#[derive(Clone, Debug)]
pub struct Caller<D = Native> {
    pub tenant: Tenant,
    dialect: PhantomData<D>,
}

impl<S, D> FromRequestParts<S> for Caller<D>
where
    S: Send + Sync,
    D: Dialect,
    Arc<Service>: FromRef<S>,
{
    type Rejection = DialectError<D>;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = presented_token(&parts.headers)?;
        let service = Arc::<Service>::from_ref(state);
        match service.tenant_for_token(&token).await? {
            Some(tenant) => Ok(Caller { tenant, dialect: PhantomData }),
            None => Err(ApiError::Unauthorized("the API token is unknown or revoked").into()),
        }
    }
}

/// A JSON request body, deserialized into `T`, with errors naming the field at fault. The body
/// limit (`--max-body-bytes`, axum's `DefaultBodyLimit`) is a 413: at once for a body whose
/// `Content-Length` says it is larger, as soon as the limit is passed for one sent in chunks.
pub struct JsonBody<T, D = Native>(pub T, pub PhantomData<D>);

impl<S, T, D> FromRequest<S> for JsonBody<T, D>
where
    S: Send + Sync,
    T: DeserializeOwned,
    D: Dialect,
    Arc<Service>: FromRef<S>,
{
    type Rejection = DialectError<D>;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if D::CONTENT_TYPE == ContentTypePolicy::Json {
            check_content_type(req.headers())?;
        }
        // A body declared larger than the limit is refused before a byte of it is read.
        let limit = Arc::<Service>::from_ref(state).settings().max_body_bytes;
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            // Take in what arrives within a second (up to the limit) so that a client that sends
            // a modestly oversized body whole can read the answer instead of a broken pipe.
            let _ = tokio::time::timeout(Duration::from_secs(1), axum::body::to_bytes(req.into_body(), limit)).await;
            return Err(ApiError::PayloadTooLarge { limit }.into());
        }
        // The whole body within the deadline: a client trickling it byte by byte is cut off.
        let deadline = Arc::<Service>::from_ref(state).settings().body_read_timeout;
        let read = tokio::time::timeout(deadline, Bytes::from_request(req, state)).await.map_err(|_| ApiError::RequestTimeout { secs: deadline.as_secs() })?;
        let bytes = read.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::Malformed { field: None, message: format!("the request body could not be read: {}", rejection.body_text()) }
            }
        })?;
        Ok(JsonBody(crate::json::parse(&bytes)?, PhantomData))
    }
}

/// A route's path parameters. A path that cannot be read as `T` (a percent-encoded byte that
/// is not UTF-8, a value of the wrong type) names nothing here: a 404 in the dialect's shape,
/// instead of axum's plain-text 400.
pub struct PathParam<T, D = Native>(pub T, pub PhantomData<D>);

impl<S, T, D> FromRequestParts<S> for PathParam<T, D>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
    D: Dialect,
{
    type Rejection = DialectError<D>;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value, PhantomData)),
            Err(rejection) => Err(ApiError::NotFound(format!("no such resource: {}", rejection.body_text())).into()),
        }
    }
}

/// A body declared as something other than JSON is refused; no Content-Type at all is read as JSON.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let mime = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(text.to_string()))
    }
}
