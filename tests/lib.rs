//! Shared test helpers live in it/helpers.rs; this crate has no library code.
