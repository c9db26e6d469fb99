//! The HTTP/1.1 server under every pushwire listener (origin workers and the
//! bridge): hyper with deadlines, a per-address connection cap and graceful
//! shutdown.
//!
//! `axum::serve` would do, but it runs hyper without a timer, which turns the
//! header-read timeout off: a client could hold a connection forever by
//! sending a header byte now and then, or by never sending a second request.
//! Here each connection gets:
//!
//! - a header-read deadline, which hyper also applies while a kept-alive
//!   connection waits for its next request (so it is the idle timeout too);
//! - a body-read deadline ([`DeadlineBody`]);
//! - a cap on the head's size (hyper answers 431 above it);
//! - a place in its source address's count ([`SourceCap`]), refused when the
//!   source holds its limit.
//!
//! Refusals and timeouts are logged at most once per ten seconds each
//! ([`LogThrottle`]), so an attack cannot flood the log either.

mod body_deadline;
mod limits;
mod log_throttle;
mod source_cap;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

pub(crate) use self::body_deadline::body_deadline_of;
pub(crate) use self::limits::{
    ConnectionLimits, DEFAULT_BODY_READ_TIMEOUT_MS, DEFAULT_HEADER_READ_TIMEOUT_MS,
    DEFAULT_MAX_CONNECTIONS_PER_IP, MAX_CONNECTIONS_PER_IP_BOUNDS, READ_TIMEOUT_BOUNDS,
};
pub(crate) use self::log_throttle::LogThrottle;

use self::body_deadline::DeadlineBody;
use self::source_cap::{Admitted, SourceCap};

/// The largest request head (request line and headers) accepted. Browsers send
/// a few KiB, cookies included; hyper's default would let each connection
/// hold ~400 KiB of buffered head.
const MAX_HEAD_BYTES: usize = 32 * 1024;

/// `Keep-Alive` (the `http` crate has no constant for it).
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

static REFUSED: LogThrottle = LogThrottle::new();
static HEAD_TIMEOUT: LogThrottle = LogThrottle::new();

/// Serves `router` on the connections `listener` yields, under `limits`, until
/// `shutdown` resolves; then stops accepting, lets requests in progress finish
/// and returns once every connection is closed or upgraded.
pub(crate) async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let server = ConnectionServer::new(router, limits);
    let sources = SourceCap::new(limits.max_connections_per_ip);
    // Every connection task holds a clone of `open`; when the last one ends,
    // `all_closed` yields `None`.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let (stop, stopping) = watch::channel(false);

    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let Some(ticket) = sources.admit(peer.ip()) else {
            if let Some(skipped) = REFUSED.hit(Instant::now()) {
                tracing::warn!(
                    source = %peer.ip(),
                    limit = limits.max_connections_per_ip,
                    similar_since_last_report = skipped,
                    "refused a connection: its address holds the most connections allowed (max_connections_per_ip; behind a proxy, raise it or set 0)"
                );
            }
            continue;
        };
        let connection = server.connection(Admitted::new(io, ticket));
        let mut stopping = stopping.clone();
        let open = open.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = async { stopping.wait_for(|&stop| stop).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                log_connection_error(&e, peer);
            }
            drop(open);
        });
    }

    let _ = stop.send(true);
    drop(open);
    let _ = all_closed.recv().await;
    Ok(())
}

/// Serves `router` on one connection accepted elsewhere (the master answers
/// `/ready` itself this way), under the same deadlines; returns when it closes.
pub(crate) async fn serve_one(stream: TcpStream, router: Router, limits: ConnectionLimits) {
    let peer = stream.peer_addr();
    if let Err(e) = ConnectionServer::new(router, limits)
        .connection(stream)
        .await
        && let Ok(peer) = peer
    {
        log_connection_error(&e, peer);
    }
}

/// What every connection is served with.
struct ConnectionServer {
    http: http1::Builder,
    router: Router,
    body_timeout: Duration,
    keep_alive_hint: HeaderValue,
}

impl ConnectionServer {
    fn new(router: Router, limits: ConnectionLimits) -> Self {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout())
            .max_header_size(MAX_HEAD_BYTES);
        let keep_alive_hint = HeaderValue::try_from(format!(
            "timeout={}",
            (limits.header_read_timeout_ms / 1000).max(1)
        ))
        .expect("a number is a valid header value");
        ConnectionServer {
            http,
            router,
            body_timeout: limits.body_read_timeout(),
            keep_alive_hint,
        }
    }

    /// Serves `io` until it closes or upgrades.
    fn connection<I>(
        &self,
        io: I,
    ) -> hyper::server::conn::http1::UpgradeableConnection<
        TokioIo<I>,
        impl hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>>
                     + Send
                     + use<I>,
        > + Send
        + use<I>,
    >
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (router, body_timeout) = (self.router.clone(), self.body_timeout);
        let keep_alive_hint = self.keep_alive_hint.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
            let request =
                request.map(|body| Body::new(DeadlineBody::new(Body::new(body), body_timeout)));
            let response = router.clone().oneshot(request);
            let hint = keep_alive_hint.clone();
            async move {
                let mut response = response.await?;
                announce_idle_timeout(&mut response, hint);
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        self.http
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
    }
}

/// Tells a client that keeps the connection how long it may stay idle
/// (`Keep-Alive: timeout=<s>`), so that HTTP agents which read the hint (Node's,
/// among others) retire it before the server closes it, rather than sending a
/// request into a connection being closed.
fn announce_idle_timeout(response: &mut axum::response::Response, hint: HeaderValue) {
    let closes = response
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    if !closes && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(KEEP_ALIVE, hint);
    }
}

fn log_connection_error(error: &hyper::Error, peer: SocketAddr) {
    if error.is_timeout() {
        if let Some(skipped) = HEAD_TIMEOUT.hit(Instant::now()) {
            tracing::info!(
                source = %peer.ip(),
                similar_since_last_report = skipped,
                "closed a connection that sent no complete request head in time (idle, or too slow)"
            );
        }
    } else {
        // Clients going away mid-request are routine.
        tracing::debug!(source = %peer.ip(), error = %error, "connection ended with an error");
    }
}
