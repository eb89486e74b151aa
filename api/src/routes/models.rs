//! `GET /v1/models`: the catalog, with how many live workers serve each model.
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use darkroom_shared::family::Family;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::openapi::tags;
use crate::service::Service;

pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(list))
}

/// A catalog model.
#[derive(Serialize, utoipa::ToSchema)]
struct ModelView {
    /// The model id requests name.
    id: String,
    family: Family,
    /// Width and height (pixels) when a request gives none.
    native_size: i32,
    /// Width and height must be multiples of this (pixels).
    size_multiple: i32,
    /// Whether it takes an `init_image`.
    img2img: bool,
    /// Workers serving it now (heartbeat within the live window).
    live_workers: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ModelList {
    data: Vec<ModelView>,
}

/// The catalog: every model a worker has registered, with its live workers.
#[utoipa::path(get, path = "/v1/models", operation_id = "listModels", tag = tags::NATIVE, responses((status = 200, description = "The catalog", body = ModelList)))]
async fn list(State(service): State<Arc<Service>>, _caller: Caller) -> Result<Json<ModelList>, ApiError> {
    let data = service
        .catalog()
        .await?
        .into_iter()
        .map(|m| ModelView {
            id: m.id,
            family: m.family,
            native_size: m.native_size,
            size_multiple: m.size_multiple,
            img2img: m.img2img,
            live_workers: m.live_workers,
        })
        .collect();
    Ok(Json(ModelList { data }))
}
