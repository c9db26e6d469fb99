//! pushwire's origin: Socket.IO workers fed by a pub/sub broker, the
//! Pusher-compatible trigger API, and the `pushwire` command line.
//!
//! The library exists for the `pushwire` binary ([`cli::main`]) and the load
//! generator (`pushwire-bench`, which signs triggers with [`trigger_client`]);
//! everything else is private to the crate:
//!
//! - `cluster`: the master process, sticky routing, descriptor hand-off, IPC
//!   framing and worker supervision;
//! - `worker`: one Socket.IO + trigger API server;
//! - `broker`: the pub/sub backends (Redis, and the embedded broker in
//!   `broker/embedded/`);
//! - `trigger_api`: the Pusher-compatible HTTP API (triggers and queries);
//! - `http_server`: the HTTP/1.1 server under every listener, with its
//!   deadlines and per-address connection cap;
//! - `metrics`: the Prometheus metrics of each process, and their merge;
//! - `bridge`: the Upstash-compatible Redis REST bridge (`pushwire bridge`);
//! - `config`: the settings of `pushwire serve`, resolved from flags,
//!   environment and file in one step;
//! - `webhook`: batching webhook events per endpoint, sending each batch
//!   signed, and retrying it;
//! - `cli`: one file per subcommand.
//!
//! `CONTRIBUTING.md` describes how a trigger flows through them.

mod backoff;
mod bridge;
mod broker;
pub mod cli;
mod clock;
mod cluster;
mod config;
#[cfg(test)]
mod dependency_check;
mod http_server;
mod metrics;
#[cfg(test)]
mod module_graph;
mod paths;
mod redis_connection;
pub mod telemetry;
mod trigger_api;
pub mod trigger_client;
mod webhook;
mod worker;

pub use config::DEV_APPS;
