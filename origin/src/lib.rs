//! pushwire's origin: Socket.IO workers fed by a pub/sub broker, the
//! Pusher-compatible trigger API, and the `pushwire` command line.
//!
//! - [`cluster`]: the master process and its worker processes on one port;
//! - [`worker`]: one Socket.IO + trigger API server ([`worker::serve`]);
//! - [`broker`]: the pub/sub backends (Redis, the embedded broker);
//! - [`trigger_api`]: `POST /apps/{id}/events` and `/batch_events`;
//! - [`bridge`]: the Upstash-compatible Redis REST bridge (`pushwire bridge`);
//! - [`config`]: [`config::ServeConfig`], resolved from flags, env and file;
//! - [`cli`]: the `pushwire` subcommands.

pub mod backoff;
pub mod bridge;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
#[cfg(test)]
mod module_graph;
mod paths;
pub mod redis_connection;
pub mod telemetry;
pub mod trigger_api;
pub mod trigger_client;
pub mod worker;
