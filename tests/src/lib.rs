//! End-to-end test harness: starts real processes (redis-server, the `pushwire`
//! binary, a node driver of stock clients) in their own process groups, each
//! test in its own scratch directory, and tears everything down on drop, even
//! on panic. A failing test prints the tail of every log it produced.

pub mod bridge;
pub mod clients;
pub mod deployment;
pub mod echo_clients;
pub mod edge;
pub mod http;
pub mod origin;
pub mod process;
pub mod prometheus;
pub mod pusher_browser;
pub mod pusher_clients;
pub mod pusher_raw;
pub mod raw_ws;
pub mod redis;
pub mod redis_cluster;
pub mod reporter;
pub mod sentinel;
pub mod slow_client;
pub mod test_ca;
pub mod users;
pub mod wait;
pub mod webhook_receiver;

pub use clients::Clients;
pub use deployment::{Deployment, Fanout, each_fanout, each_shared_broker};
pub use origin::Origin;
pub use process::Scratch;
pub use redis::RedisServer;
pub use reporter::Reporter;
