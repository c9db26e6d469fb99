//! pushwire's origin: Socket.IO workers fed by a pub/sub broker, the
//! Pusher-compatible trigger API, and the `pushwire` command line.
//!
//! - [`worker`]: one Socket.IO + trigger API server ([`worker::run`]);
//! - [`broker`]: the pub/sub backends (Redis, in-process);
//! - [`trigger_api`]: `POST /apps/{id}/events` and `/batch_events`;
//! - [`config`]: [`config::ServeConfig`], resolved from flags, env and file;
//! - [`cli`]: the `pushwire` subcommands.

pub mod broker;
pub mod cli;
pub mod config;
pub mod http_client;
pub mod telemetry;
pub mod trigger_api;
pub mod worker;
