//! pushwire's edge worker: SPEC §1's trigger API at the edge.
//!
//! Requests are checked by the same `pushwire_shared` code the origin runs; an
//! accepted trigger is published with ONE request to the Upstash-compatible
//! bridge (`POST /` running the publish script: history append and PUBLISH of
//! every message, atomically), and answered `200` only when the bridge confirmed
//! all of them. Channel queries (and a trigger's `info`) read the cluster-wide
//! channel state through the bridge's `/pipeline`, with `shared::directory`.
//!
//! [`handler`], [`query`], [`bridge`] and [`config`] are plain Rust over `shared` types, unit-tested
//! natively; the Workers entry point (wasm only) just moves bytes in and out.

pub mod bridge;
pub mod config;
pub mod handler;
pub mod query;

#[cfg(target_arch = "wasm32")]
mod entry;
