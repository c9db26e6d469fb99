//! One origin worker: socketioxide on axum, the trigger API and broker fan-out,
//! all on one listener.
//!
//! [`run`] serves until its shutdown future resolves, then closes every
//! Socket.IO session cleanly and returns. The forked cluster runs one of these
//! per worker process.

mod delivery;
mod handlers;
mod registry;
mod session;
mod socket_ids;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use pushwire_shared::AppList;
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use self::registry::ChannelRegistry;
pub use self::session::{HandshakeError, SocketSession, resolve_app};
pub use self::socket_ids::SocketIdGenerator;

use crate::broker::{Broker, BrokerError, LocalBroker, RedisBroker};
use crate::config::ServeConfig;
use crate::trigger_api::{self, TriggerApi};

/// How many broker messages may wait for delivery before the broker side waits.
const INBOUND_QUEUE: usize = 16 * 1024;

/// What the Socket.IO handlers share.
#[derive(Debug)]
pub(crate) struct WorkerContext {
    pub(crate) apps: Arc<AppList>,
    pub(crate) registry: ChannelRegistry,
    pub(crate) socket_ids: SocketIdGenerator,
}

/// Why a worker could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The broker could not be set up (e.g. an invalid Redis URL).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Serves Socket.IO, the trigger API and `/health` on `listener` until `shutdown`
/// resolves; then closes all sessions and returns.
pub async fn run(
    listener: TcpListener,
    config: &ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    let broker: Arc<dyn Broker> = match &config.redis_url {
        Some(url) => Arc::new(RedisBroker::start(url, inbound_tx)?),
        None => Arc::new(LocalBroker::new(inbound_tx)),
    };
    let apps = Arc::new(config.apps.clone());
    let ctx = Arc::new(WorkerContext {
        apps: apps.clone(),
        registry: ChannelRegistry::new(broker.clone()),
        socket_ids: SocketIdGenerator::random(),
    });

    let (socketio_layer, io) = SocketIo::builder().build_layer();
    handlers::register(&io, ctx.clone());
    tokio::spawn(delivery::run(inbound_rx, io.clone()));

    let api = TriggerApi::new(apps, broker.clone(), config.max_request_bytes);
    let app = Router::new()
        .route("/health", get(move || health(broker.clone())))
        .merge(trigger_api::routes(api))
        .layer(socketio_layer);

    tracing::info!(addr = %listener.local_addr()?, broker = broker_kind(config), "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: closing client sessions");
            io.close().await;
        })
        .await?;
    Ok(())
}

fn broker_kind(config: &ServeConfig) -> &'static str {
    if config.redis_url.is_some() {
        "redis"
    } else {
        "local"
    }
}

/// `GET /health`: liveness, plus whether the broker is connected.
async fn health(broker: Arc<dyn Broker>) -> impl IntoResponse {
    let body = serde_json::json!({ "status": "ok", "broker": broker.health() });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}
