//! The origin cluster: one master process, N worker processes, one public port.
//!
//! The master owns the listening socket. It reads the first request line of
//! each accepted connection (without consuming it), picks a worker with the
//! [`StickyRouter`] and passes the connection's descriptor to that worker
//! (`SCM_RIGHTS`); from then on bytes flow between client and worker directly.
//! Workers are the same binary re-executed (`pushwire worker-process`); each
//! talks to the master over two socket pairs set up as its stdin (control
//! frames, see [`ipc`]) and stdout (connection hand-off).
//!
//! The master restarts dead workers with back-off (a worker that cannot start
//! tells it why first: the master logs the reason once and, while no worker is
//! ready, answers every connection `503` with it), runs the embedded broker's
//! server when no Redis is configured
//! ([`EmbeddedBrokerServer`](crate::broker::embedded::EmbeddedBrokerServer)),
//! and on SIGTERM/SIGINT stops accepting, asks every worker to drain, and
//! exits. It also answers for the whole origin: `/ready` and `/metrics`
//! (`status`). A worker exits by itself when the master's end of its control socket
//! closes, so killing the master never leaves workers behind.

mod control;
mod control_queue;
mod drain;
mod error;
mod handoff;
pub(crate) mod ipc;
mod master;
mod public_listener;
mod routing;
mod start_failure;
mod status;
mod sticky;
mod supervisor;
mod unavailable;
mod worker_process;

pub(crate) use self::error::ClusterError;
pub(crate) use self::master::run_master;
pub(crate) use self::worker_process::{WORKER_ID_ENV, run_worker_process};
