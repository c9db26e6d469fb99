//! Pusher Channels protocol 7 beside Socket.IO: `GET /app/{key}?protocol=7`,
//! upgraded to a WebSocket that stock Pusher SDKs (pusher-js, …) speak.
//!
//! A connection is a [`SocketSession`](super::SocketSession) like a Socket.IO
//! socket's: same socket ids, same subscription rules and auth
//! ([`super::subscription`]), same client-event path; events reach it through
//! the same delivery task ([`PusherRooms`] is its second
//! [`LocalSubscribers`](super::subscribers::LocalSubscribers)).

mod cached;
mod connection;
mod frames;
mod recovery;
mod rooms;
mod signin;
mod subscribe;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use pushwire_shared::App;

use self::frames::ErrorCode;
pub(crate) use self::rooms::PusherRooms;
use super::WorkerContext;
use super::app_connections::ConnectionSlot;

/// The protocol version this endpoint speaks.
const PROTOCOL: u32 = 7;

/// The bytes of frames gathered before a write even without a flush. The
/// buffer keeps its largest size once grown, so it stays small: a few dozen
/// events' frames.
const WRITE_BUFFER: usize = 4 * 1024;

/// The seconds of silence after which the server pings a client (Pusher's value).
pub(crate) const ACTIVITY_TIMEOUT: Duration = Duration::from_secs(120);

/// What the endpoint needs besides the request.
#[derive(Debug)]
struct Endpoint {
    ctx: Arc<WorkerContext>,
    rooms: Arc<PusherRooms>,
    /// The largest message a client may send (the apps' client-message cap).
    max_message: usize,
    activity_timeout: Duration,
    /// Becomes true when the worker closes: every connection is told to reconnect.
    closing: watch::Receiver<bool>,
    /// Each connection's task holds one of its receivers while it runs, so
    /// shutdown can wait for them (see [`PusherShutdown`]).
    open: Arc<watch::Sender<()>>,
}

/// A worker's way to close its Pusher connections when it stops.
#[derive(Debug)]
pub(crate) struct PusherShutdown {
    closing: watch::Sender<bool>,
    open: Arc<watch::Sender<()>>,
}

impl PusherShutdown {
    /// Tells every connection to close with 4200 (reconnect) and waits, at
    /// most `patience`, until each has sent its close: a worker exiting
    /// before then would leave its clients a bare dropped connection.
    pub(crate) async fn close_all(&self, patience: Duration) {
        let _ = self.closing.send(true);
        if tokio::time::timeout(patience, self.open.closed())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.open.receiver_count(),
                "Pusher connections still closing at exit"
            );
        }
    }
}

/// The `/app/{key}` route, and the handle that closes its connections with
/// 4200 (reconnect) when the worker stops, as Socket.IO sessions are closed.
pub(crate) fn routes(
    ctx: Arc<WorkerContext>,
    rooms: Arc<PusherRooms>,
    max_message: usize,
) -> (Router, PusherShutdown) {
    let (closing, closing_rx) = watch::channel(false);
    let open = Arc::new(watch::channel(()).0);
    let endpoint = Arc::new(Endpoint {
        ctx,
        rooms,
        max_message,
        activity_timeout: ACTIVITY_TIMEOUT,
        closing: closing_rx,
        open: open.clone(),
    });
    let router = Router::new()
        .route("/app/{key}", get(upgrade))
        .route("/app", get(wrong_path))
        .route("/app/", get(wrong_path))
        .route("/app/{key}/{*rest}", get(wrong_path))
        .with_state(endpoint);
    (router, PusherShutdown { closing, open })
}

/// Whether `headers` ask for a WebSocket, and its `Sec-WebSocket-Key`.
fn websocket_key(headers: &HeaderMap) -> Option<&HeaderValue> {
    let has = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    (has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket"))
        .then(|| headers.get(header::SEC_WEBSOCKET_KEY))
        .flatten()
}

/// Why a connection is refused once upgraded (Pusher sends these over the
/// WebSocket, so the SDKs see the code).
fn refusal(endpoint: &Endpoint, key: &str, query: Option<&str>) -> Option<(ErrorCode, String)> {
    // Only `protocol` is read, and a number needs no percent-decoding.
    let protocol = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("protocol="));
    let protocol = match protocol {
        None => return Some((ErrorCode::NoProtocol, "no protocol version given".into())),
        Some(text) => match text.parse::<u32>() {
            Ok(version) => version,
            Err(_) => {
                return Some((
                    ErrorCode::InvalidVersion,
                    format!("invalid protocol version {text:?}"),
                ));
            }
        },
    };
    if protocol != PROTOCOL {
        return Some((
            ErrorCode::UnsupportedProtocol,
            format!("protocol {protocol} is not supported; this server speaks {PROTOCOL}"),
        ));
    }
    endpoint
        .ctx
        .apps
        .by_key(key)
        .is_none()
        .then(|| (ErrorCode::UnknownApp, format!("unknown app key {key:?}")))
}

async fn upgrade(
    State(endpoint): State<Arc<Endpoint>>,
    Path(key): Path<String>,
    request: Request,
) -> Response {
    let admitted = match refusal(&endpoint, &key, request.uri().query()) {
        Some(refused) => Err(refused),
        None => endpoint
            .ctx
            .apps
            .by_key(&key)
            .cloned()
            .ok_or_else(|| (ErrorCode::UnknownApp, "unknown app key".to_owned()))
            .and_then(|app| match endpoint.ctx.connections.open(&app) {
                Ok(slot) => Ok((app, slot)),
                Err(e) => Err((ErrorCode::OverCapacity, e.to_string())),
            }),
    };
    accept(endpoint, request, admitted)
}

/// `/app`, `/app/` and paths below `/app/{key}/`: upgraded, to tell the SDK
/// 4005 (a path error) in the protocol's own terms.
async fn wrong_path(State(endpoint): State<Arc<Endpoint>>, request: Request) -> Response {
    let text = format!(
        "no Pusher endpoint at {}: connect to /app/{{app_key}}?protocol=7",
        request.uri().path()
    );
    accept(endpoint, request, Err((ErrorCode::PathNotFound, text)))
}

/// Upgrades `request` and serves the connection as `admitted`'s app (holding
/// its slot until it closes), or closes it with the refusal's code.
fn accept(
    endpoint: Arc<Endpoint>,
    mut request: Request,
    admitted: Result<(App, ConnectionSlot), (ErrorCode, String)>,
) -> Response {
    let Some(accept) = websocket_key(request.headers()).map(|k| derive_accept_key(k.as_bytes()))
    else {
        return (
            StatusCode::BAD_REQUEST,
            "this is a WebSocket endpoint (Pusher protocol 7)\n",
        )
            .into_response();
    };
    let upgraded = hyper::upgrade::on(&mut request);
    let open = endpoint.open.subscribe();
    tokio::spawn(async move {
        let _open = open;
        let io = match upgraded.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => {
                tracing::debug!(error = %e, "pusher upgrade failed");
                return;
            }
        };
        // tungstenite allocates its read buffer up front (128 KiB by default):
        // a small one keeps idle connections cheap. The write buffer grows only
        // when frames are written: frames queued together are gathered up to
        // this size and leave with one flush (see `connection::send_queued`).
        let config = WebSocketConfig::default()
            .read_buffer_size(super::WS_READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER)
            .max_message_size(Some(endpoint.max_message))
            .max_frame_size(Some(endpoint.max_message));
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        match admitted {
            Ok((app, _slot)) => {
                connection::run(
                    ws,
                    app,
                    endpoint.ctx.clone(),
                    endpoint.rooms.clone(),
                    endpoint.activity_timeout,
                    endpoint.closing.clone(),
                )
                .await;
            }
            Err((code, text)) => connection::refuse(ws, code, &text).await,
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).unwrap_or(HeaderValue::from_static("")),
            ),
        ],
    )
        .into_response()
}
