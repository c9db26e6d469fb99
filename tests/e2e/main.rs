//! End-to-end tests: real redis-server, the real `pushwire` binary, the npm
//! `socket.io-client`, `pusher-js`, `laravel-echo` and `pusher` packages,
//! headless Chromium. One test binary; each test owns its processes and
//! scratch directory.

mod abuse;
mod bench;
mod bridge;
mod cli;
mod cluster;
mod counts;
mod cross_origin;
mod delivery;
mod demo;
mod edge;
mod fault_runs;
mod logs;
mod metrics;
mod nothing_lost;
mod presence;
mod publish_outcome;
mod pusher_browsers;
mod pusher_cache;
mod pusher_echo;
mod pusher_encrypted;
mod pusher_protocol;
mod pusher_recovery;
mod pusher_users;
mod python_clients;
mod recovery;
mod redis_cluster;
mod resilience;
mod sentinel;
mod slow_consumer;
mod subscribe;
mod trigger_api;
mod webhooks;
mod webhooks_redis;
mod worker_start;
