//! One origin worker: socketioxide on axum, the Pusher-protocol endpoint, the
//! trigger API and broker fan-out, all behind one listener.
//!
//! [`serve`] runs until its shutdown future resolves, then closes every
//! Socket.IO session and returns. The cluster master runs one worker process per
//! core, each calling [`serve`] on the connections the master hands it.

mod app_connections;
mod cache;
mod catch_up;
mod client_events;
mod client_script;
mod cluster_http;
mod cross_origin;
mod delivery;
mod demo;
mod handlers;
mod message_cap;
mod presence;
mod pusher;
mod registry;
mod replay;
mod request_head;
mod session;
mod socket_events;
mod socket_ids;
mod subscribe_rate;
mod subscribers;
mod subscription;
mod users;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use pushwire_shared::AppList;
use pushwire_shared::webhook::WebhookEventKind;
use socketioxide::SocketIo;
use tokio::sync::mpsc;

pub(crate) use self::registry::ChannelRegistry;
pub(crate) use self::session::SocketSession;
pub(crate) use self::socket_ids::SocketIdGenerator;

use self::app_connections::AppConnections;
use crate::broker::{Broker, Inbound};
use crate::config::ServeConfig;
use crate::trigger_api::{self, TriggerApi};

pub(crate) use crate::paths::is_socket_io;

/// Each WebSocket's read buffer, allocated for the connection's life. Clients
/// send little (pongs of a few bytes, subscribes of ~100), so a small buffer keeps
/// idle connections cheap; larger frames still arrive, in pieces of this size.
/// The Pusher endpoint uses the same size.
pub(crate) const WS_READ_BUFFER: usize = 256;

/// How long a stopping worker waits for its Pusher connections to send their
/// close frames before it exits.
const PUSHER_CLOSE_PATIENCE: Duration = Duration::from_secs(2);

/// How many broker messages may wait for delivery before the broker side waits.
pub(crate) const INBOUND_QUEUE: usize = 16 * 1024;

/// Lets the cluster master route a polling session's later requests here.
pub(crate) trait SessionClaims: Send + Sync + std::fmt::Debug + 'static {
    /// Records that this worker holds Engine.IO session `sid`; resolves once the
    /// master knows.
    fn claim(&self, sid: String) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// What the Socket.IO handlers share.
#[derive(Debug)]
pub(crate) struct WorkerContext {
    pub(crate) apps: Arc<AppList>,
    pub(crate) registry: ChannelRegistry,
    pub(crate) socket_ids: SocketIdGenerator,
    /// For history reads (`subscribe` with `since`).
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) catch_ups: catch_up::CatchUps,
    /// Ids of the events sockets cause (member events, client events).
    pub(crate) event_ids: crate::trigger_api::EventIdGenerator,
    /// How long a replay waits on a socket whose send buffer stays full: the
    /// heartbeat's own patience (interval + timeout).
    pub(crate) replay_patience: Duration,
    /// Per app, the event kinds some webhook endpoint of it wants: events of
    /// other kinds are not even built.
    pub(crate) wanted_webhooks: Arc<HashMap<String, HashSet<WebhookEventKind>>>,
    /// Each app's connections on this worker, against `limits.max_connections`.
    pub(crate) connections: Arc<AppConnections>,
}

impl WorkerContext {
    /// Whether some webhook endpoint of `app` wants events of `kind`.
    pub(crate) fn wants_webhook(&self, app: &str, kind: WebhookEventKind) -> bool {
        self.wanted_webhooks
            .get(app)
            .is_some_and(|kinds| kinds.contains(&kind))
    }
}

/// Who a worker is: its index in the cluster and its socket ids (whose node
/// number also names it in the broker's directory).
#[derive(Debug)]
pub(crate) struct WorkerIdentity {
    /// The worker's index, 0-based.
    pub id: usize,
    /// Its socket id generator.
    pub socket_ids: SocketIdGenerator,
}

/// Serves Socket.IO, the trigger API and `/health` on the connections `listener`
/// yields until `shutdown` resolves; then closes all sessions and returns.
///
/// `broker` publishes and subscribes; what it receives arrives on `inbound`.
pub(crate) async fn serve<L>(
    listener: L,
    config: &ServeConfig,
    identity: WorkerIdentity,
    broker: Arc<dyn Broker>,
    inbound: mpsc::Receiver<Inbound>,
    claims: Arc<dyn SessionClaims>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let apps = Arc::new(config.apps.clone());
    let WorkerIdentity {
        id: worker_id,
        socket_ids,
    } = identity;
    let node = socket_ids.node();
    let (catch_ups, catch_up_commands) = catch_up::CatchUps::channel();
    let ctx = Arc::new(WorkerContext {
        apps: apps.clone(),
        registry: ChannelRegistry::new(broker.clone()),
        socket_ids,
        broker: broker.clone(),
        catch_ups,
        event_ids: Default::default(),
        replay_patience: Duration::from_millis(config.ping_interval_ms + config.ping_timeout_ms),
        connections: AppConnections::new(config.workers),
        wanted_webhooks: Arc::new(
            config
                .webhooks
                .iter()
                .map(|(app, endpoints)| {
                    let kinds = endpoints.iter().flat_map(|e| e.events()).collect();
                    (app.clone(), kinds)
                })
                .collect(),
        ),
    });

    let demo_routes = if config.demo {
        demo::routes(&apps, config.uses_dev_app)
    } else {
        Router::new()
    };
    let api = TriggerApi::new(apps, broker.clone(), config.max_request_bytes);
    let message_cap = message_cap::max_client_message_bytes(&config.apps);
    let pusher_rooms = Arc::new(pusher::PusherRooms::default());
    let (pusher_routes, pusher_shutdown) =
        pusher::routes(ctx.clone(), pusher_rooms.clone(), message_cap);
    let routes = Router::new()
        .route(
            "/health",
            get(move || health(broker.clone(), worker_id, node)),
        )
        .merge(demo_routes)
        .merge(client_script::routes())
        .merge(trigger_api::routes(api))
        .merge(pusher_routes);
    // One Socket.IO service in front of all routes. (`Router::layer` would build
    // one Engine.IO instance per route, and a session opened through one would be
    // unknown to the others.)
    let (socketio, io) = SocketIo::builder()
        .ws_read_buffer_size(WS_READ_BUFFER)
        .max_payload(message_cap as u64)
        .ws_max_message_size(message_cap)
        .ws_max_frame_size(message_cap)
        .ping_interval(Duration::from_millis(config.ping_interval_ms))
        .ping_timeout(Duration::from_millis(config.ping_timeout_ms))
        .build_with_inner_svc(routes);
    tokio::spawn(delivery::run(
        inbound,
        catch_up_commands,
        subscribers::SocketIoSubscribers::new(io.clone()),
        pusher_rooms,
        ctx.broker.clone(),
    ));
    crate::metrics::webhook_stats_from(worker_id.to_string(), {
        let broker = ctx.broker.clone();
        move || broker.webhook_stats()
    });
    crate::metrics::on_scrape({
        let (io, broker) = (io.clone(), ctx.broker.clone());
        move |metrics| {
            let (mut websocket, mut polling) = (0, 0);
            for socket in io.sockets() {
                match socket.transport_type() {
                    socketioxide::TransportType::Websocket => websocket += 1,
                    socketioxide::TransportType::Polling => polling += 1,
                }
            }
            for (transport, n) in [("websocket", websocket), ("polling", polling)] {
                metrics
                    .connections
                    .get_or_create(&crate::metrics::TransportLabels { transport })
                    .set(n);
            }
            metrics.broker_up.set(i64::from(broker.health().connected));
        }
    });
    handlers::register(&io, ctx);
    // Closing removes the namespace, and a session joining it after that would be
    // refused ("Invalid namespace"), after which socket.io clients never
    // reconnect by themselves. This fallback, consulted only once `/` is gone,
    // accepts such a session instead: its transport closes with this worker, and
    // it reconnects.
    if let Err(e) = io.dyn_ns("/", async |_: socketioxide::extract::SocketRef| {}) {
        tracing::error!(error = %e, "cannot install the closing-time namespace");
    }
    // Innermost first: the head is trimmed just before socketioxide keeps it,
    // after the CORS check has read the request's `Origin`.
    let app = Router::new()
        .fallback_service(socketio)
        .layer(axum::middleware::map_request(request_head::detach))
        .layer(axum::middleware::from_fn_with_state(
            claims,
            cluster_http::route_hints,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.allowed_origins.clone()),
            cross_origin::cross_origin,
        ));

    // The master hands this worker every n-th connection, so its share of
    // the per-address cap is 1/n of the origin's.
    let limits = config.connections.share_of(config.workers);
    crate::http_server::serve(listener, app, limits, async move {
        shutdown.await;
        tracing::info!("closing client sessions");
        // Both kinds at once: each waits for its connections to be told.
        tokio::join!(pusher_shutdown.close_all(PUSHER_CLOSE_PATIENCE), io.close());
    })
    .await
}

/// `GET /health`: liveness; which worker answered (its id, pid and socket-id
/// node); whether its broker is connected.
async fn health(broker: Arc<dyn Broker>, worker_id: usize, node: u64) -> impl IntoResponse {
    let body = serde_json::json!({
        "status": "ok",
        "worker": worker_id,
        "pid": std::process::id(),
        "node": node.to_string(),
        "broker": broker.health(),
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}
