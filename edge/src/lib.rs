//! pushwire's edge worker: SPEC §1's trigger API at the edge.
//!
//! Requests are checked by the same `pushwire_shared::trigger_request` code the
//! origin runs; an accepted trigger is published with ONE request to the
//! Upstash-compatible bridge (`POST /multi-exec` carrying every PUBLISH), and
//! answered `200 {}` only when the bridge confirmed all of them.
//!
//! [`handler`] and [`config`] are plain Rust over `shared` types, unit-tested
//! natively; the Workers entry point (wasm only) just moves bytes in and out.

pub mod config;
pub mod handler;

#[cfg(target_arch = "wasm32")]
mod entry;
