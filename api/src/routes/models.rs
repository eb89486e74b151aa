//! `GET /v1/models`: the catalog, with how many live workers serve each model.
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use darkroom_shared::family::Family;
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::service::Service;

pub fn router() -> Router<Arc<Service>> {
    Router::new().route("/v1/models", get(list))
}

#[derive(Serialize)]
struct ModelView {
    id: String,
    family: Family,
    native_size: i32,
    img2img: bool,
    live_workers: i64,
}

#[derive(Serialize)]
struct ModelList {
    data: Vec<ModelView>,
}

async fn list(State(service): State<Arc<Service>>, _caller: Caller) -> Result<Json<ModelList>, ApiError> {
    let data = service
        .catalog()
        .await?
        .into_iter()
        .map(|m| ModelView { id: m.id, family: m.family, native_size: m.native_size, img2img: m.img2img, live_workers: m.live_workers })
        .collect();
    Ok(Json(ModelList { data }))
}
