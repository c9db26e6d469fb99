//! Why the cluster could not run.

use std::net::SocketAddr;

use super::ipc::IpcError;

/// Why the cluster could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    /// The public address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics address cannot be bound.
    #[error(
        "cannot serve metrics on {addr} (--metrics-addr / PUSHWIRE_METRICS_ADDR): {source}; \
         pick another address, or --metrics false"
    )]
    BindMetrics {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A worker process cannot be run.
    #[error("{}: {source}", program.display())]
    Spawn {
        /// The program: this binary, re-executed.
        program: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Other I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The control socket failed.
    #[error(transparent)]
    Ipc(#[from] IpcError),
    /// The worker received bad settings.
    #[error("invalid worker settings: {0}")]
    Settings(String),
    /// The worker's broker could not start.
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    /// The worker could not start and has told the master why (the master logs it).
    #[error("the worker could not start: {0}")]
    StartFailed(String),
}
