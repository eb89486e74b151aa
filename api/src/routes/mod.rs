//! The native API's routes (`/v1/...`), the health probes and the playground page. Each module holds one resource;
//! `view` holds the JSON shapes they answer with.
pub mod events;
pub mod health;
pub mod jobs;
pub mod models;
pub mod playground;
pub mod view;
