//! Handing each accepted connection to a worker: peek at its request line,
//! ask the `StickyRouter`, pass the descriptor; answer `/ready` in the master,
//! and `503` when no worker can take the connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::handoff::send_connection;
use super::master::{Master, lock};
use super::status;
use super::sticky::{RouteHint, route_hint};
use super::unavailable::answer_unavailable;
use crate::http_server::{ConnectionLimits, LogThrottle};

/// How long a client may take to send its request line before it is dropped.
const REQUEST_LINE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes peeked to find the request line.
const MAX_REQUEST_LINE: usize = 8 * 1024;
/// How often one connection's hand-off is tried before it is dropped.
const HANDOFF_ATTEMPTS: u32 = 5;
/// The pause between those tries.
const HANDOFF_RETRY: Duration = Duration::from_millis(10);
/// How long a connection waits for a ready worker (at start-up, or when all
/// died) before the master answers it `503` itself. A failed start ends the
/// wait at once.
const WORKER_WAIT: Duration = Duration::from_secs(10);

static NO_REQUEST_LINE: LogThrottle = LogThrottle::new();

/// Peeks at the connection's request line (leaving it unread for the worker).
async fn peek_route_hint(stream: &TcpStream) -> Option<RouteHint> {
    let mut buf = vec![0u8; MAX_REQUEST_LINE];
    let mut pause = Duration::from_millis(1);
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None; // closed before saying anything
        }
        if let Some(hint) = route_hint(&buf[..n]) {
            return Some(hint);
        }
        if n == buf.len() {
            return Some(RouteHint::Fresh); // no line end in 8 KiB: the worker will refuse it
        }
        // Part of the line has arrived; peeking again at once would return the same bytes.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Hands one accepted connection to the right worker.
pub(super) async fn route(master: Arc<Master>, stream: TcpStream) {
    let hint = match tokio::time::timeout(REQUEST_LINE_TIMEOUT, peek_route_hint(&stream)).await {
        Ok(Some(hint)) => hint,
        Ok(None) => {
            tracing::debug!("connection closed or failed before its request line; dropped");
            return;
        }
        Err(_) => {
            // A client that never says what it wants is either broken or
            // holding a connection on purpose: visible, but not a flood.
            if let Some(skipped) = NO_REQUEST_LINE.hit(Instant::now()) {
                tracing::info!(
                    similar_since_last_report = skipped,
                    "dropped a connection that sent no request line within {REQUEST_LINE_TIMEOUT:?}"
                );
            }
            return;
        }
    };
    if hint == RouteHint::Readiness {
        let routes = status::readiness_routes(master.clone());
        crate::http_server::serve_one(stream, routes, ConnectionLimits::default()).await;
        return;
    }
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, "cannot hand a connection over; dropped");
            return;
        }
    };
    let deadline = tokio::time::Instant::now() + WORKER_WAIT;
    let mut failures = 0;
    loop {
        let notified = master.ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let picked = lock(&master.router).pick(&hint, Instant::now());
        let handoff =
            picked.and_then(|w| lock(&master.links).get(&w).map(|l| (w, l.handoff.clone())));
        if let Some((worker, handoff)) = handoff {
            match send_connection(&handoff, &stream).await {
                Ok(()) => {
                    tracing::trace!(worker, ?hint, "routed");
                    return;
                }
                Err(e) if worker_is_gone(&e) => {
                    tracing::warn!(worker, error = %e, "a worker's hand-off socket is closed; routing around it");
                    lock(&master.router).remove_worker(worker);
                    continue;
                }
                Err(e) => {
                    // Transient (e.g. no kernel buffers): the worker stays in
                    // rotation, with its sessions; this connection waits a
                    // moment and tries again.
                    failures += 1;
                    tracing::warn!(worker, error = %e, failures, "handing a connection to a worker failed");
                    if failures >= HANDOFF_ATTEMPTS {
                        let why = "no worker could take the connection";
                        return answer_unavailable(stream, why).await;
                    }
                    tokio::time::sleep(HANDOFF_RETRY).await;
                    continue;
                }
            }
        }
        // No worker to take it: never leave it hanging.
        if let Some(reason) = master.start_failures.reason() {
            return answer_unavailable(stream, &format!("no worker is ready: {reason}")).await;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            tracing::warn!("no worker ready within {WORKER_WAIT:?}; answering 503");
            return answer_unavailable(stream, "no worker is ready").await;
        }
    }
}

/// Whether a hand-off error means the worker's end is closed (it exited),
/// rather than a passing shortage.
fn worker_is_gone(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::BrokenPipe | ErrorKind::NotConnected
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixDatagram;

    #[tokio::test]
    async fn a_closed_worker_socket_reads_as_gone() {
        let (master_end, worker_end) = UnixDatagram::pair().unwrap();
        drop(worker_end);
        let stream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(stream.local_addr().unwrap()).unwrap();
        let error = send_connection(&master_end, &client).await.unwrap_err();
        assert!(worker_is_gone(&error), "{error:?}");
        assert!(!worker_is_gone(&std::io::Error::from_raw_os_error(105))); // ENOBUFS
    }
}
