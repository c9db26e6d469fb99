//! The generator's webhook receiver: a small HTTP/1.1 server on loopback that
//! checks each request as a Pusher SDK would (`X-Pusher-Key`, then the body's
//! `X-Pusher-Signature`), reads its events and hands the occupancy ones to the
//! run's [`Ledger`], stamped with the moment the body was in.
//!
//! It answers `401` to a request it cannot verify and `400` to a body it
//! cannot read, as a receiver written for Pusher does, so the server's retry
//! behaviour under the bench is the one real receivers get.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pushwire_shared::App;
use pushwire_shared::webhook::{
    KEY_HEADER, SIGNATURE_HEADER, WebhookBody, WebhookEvent, verify_signature,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::ledger::{Ledger, Transition};
use crate::BenchError;

/// The largest body read: 50 client events of 10 KiB each fit with room to spare.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What the receiver has taken in so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Received {
    /// Requests received.
    pub requests: u64,
    /// Requests refused: wrong `X-Pusher-Key`, or a signature that does not match the body.
    pub invalid_signatures: u64,
    /// Verified requests whose body is not a webhook body.
    pub malformed: u64,
    /// Events in verified bodies, every kind.
    pub events: u64,
    /// `channel_occupied` events among them.
    pub occupied: u64,
    /// `channel_vacated` events among them.
    pub vacated: u64,
}

/// The counters behind [`Received`] and the ledger the events go to.
#[derive(Debug)]
struct State {
    app: App,
    ledger: Arc<Mutex<Ledger>>,
    requests: AtomicU64,
    invalid: AtomicU64,
    malformed: AtomicU64,
    events: AtomicU64,
    occupied: AtomicU64,
    vacated: AtomicU64,
}

/// A running receiver; it stops when dropped.
#[derive(Debug)]
pub(crate) struct Receiver {
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Listens on `listen` (loopback only) for webhooks signed as `app`,
    /// feeding the occupancy events to `ledger`.
    pub(crate) async fn start(
        listen: SocketAddr,
        app: App,
        ledger: Arc<Mutex<Ledger>>,
    ) -> Result<Self, BenchError> {
        if !listen.ip().is_loopback() {
            return Err(BenchError::Invalid(
                "--webhook-listen must be a loopback address".into(),
            ));
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| BenchError::Listen {
                addr: listen,
                source,
            })?;
        let state = Arc::new(State {
            app,
            ledger,
            requests: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            events: AtomicU64::new(0),
            occupied: AtomicU64::new(0),
            vacated: AtomicU64::new(0),
        });
        let task = tokio::spawn(serve(listener, state.clone()));
        Ok(Receiver { state, task })
    }

    /// The counts so far.
    pub(crate) fn received(&self) -> Received {
        let s = &self.state;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Received {
            requests: load(&s.requests),
            invalid_signatures: load(&s.invalid),
            malformed: load(&s.malformed),
            events: load(&s.events),
            occupied: load(&s.occupied),
            vacated: load(&s.vacated),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until aborted; each is served on its own task.
///
/// The connection tasks are not tracked: they end when the server closes its
/// side, or with the process.
async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, most likely: the server will retry its batch.
                tracing::warn!(%error, "webhook receiver: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        stream.set_nodelay(true).ok();
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, request).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Checks, reads and records one webhook request.
async fn handle(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (key, signature) = (header(KEY_HEADER), header(SIGNATURE_HEADER));
    let Ok(body) = Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
    else {
        state.malformed.fetch_add(1, Ordering::Relaxed);
        return answer(StatusCode::BAD_REQUEST);
    };
    let at = Instant::now();
    let signed = key.as_deref() == Some(state.app.key.as_str())
        && signature.is_some_and(|s| verify_signature(&state.app.secret, &body, &s));
    if !signed {
        state.invalid.fetch_add(1, Ordering::Relaxed);
        return answer(StatusCode::UNAUTHORIZED);
    }
    let Ok(webhook) = serde_json::from_slice::<WebhookBody>(&body) else {
        state.malformed.fetch_add(1, Ordering::Relaxed);
        return answer(StatusCode::BAD_REQUEST);
    };
    state
        .events
        .fetch_add(webhook.events.len() as u64, Ordering::Relaxed);
    let mut ledger = state.ledger.lock().unwrap_or_else(|e| e.into_inner());
    for event in &webhook.events {
        let transition = match event {
            WebhookEvent::ChannelOccupied { .. } => {
                state.occupied.fetch_add(1, Ordering::Relaxed);
                Transition::Occupied
            }
            WebhookEvent::ChannelVacated { .. } => {
                state.vacated.fetch_add(1, Ordering::Relaxed);
                Transition::Vacated
            }
            _ => continue,
        };
        ledger.arrived(event.channel().as_str(), transition, at);
    }
    answer(StatusCode::OK)
}

fn answer(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use pushwire_shared::webhook::SignedWebhook;
    use pushwire_shared::{AppList, ChannelName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Posts `body` with `headers` over a fresh connection; the status line's code.
    async fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> u16 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut head = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        stream
            .write_all(format!("{head}\r\n{body}").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer[9..12].parse().unwrap()
    }

    #[tokio::test]
    async fn verifies_signatures_and_records_occupancy_events() {
        let apps = AppList::parse("1000001:app-key:app-secret").unwrap();
        let app = apps.single().unwrap().clone();
        let ledger = Arc::new(Mutex::new(Ledger::new("wh-".into(), Instant::now())));
        // Port 0 would do for the test, but the address must be known: bind, read, rebind.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let receiver = Receiver::start(addr, app.clone(), ledger.clone())
            .await
            .unwrap();

        let channel = ChannelName::new("wh-a").unwrap();
        let events = [
            WebhookEvent::ChannelOccupied {
                channel: channel.clone(),
            },
            WebhookEvent::ChannelVacated { channel },
        ];
        let hook = SignedWebhook::new(&app, 1, &events);
        let headers: Vec<(&str, &str)> = hook.headers().to_vec();
        assert_eq!(post(addr, &headers, hook.body()).await, 200);
        // The body changed after signing.
        let tampered = hook.body().replace("wh-a", "wh-b");
        assert_eq!(post(addr, &headers, &tampered).await, 401);
        // Signed, but not a webhook body.
        let other = SignedWebhook::new(&app, 1, &[]);
        let bad = r#"{"events":"no"}"#;
        let sig = pushwire_shared::webhook::signature(&app.secret, bad.as_bytes());
        let bad_headers = [(KEY_HEADER, "app-key"), (SIGNATURE_HEADER, sig.as_str())];
        assert_eq!(post(addr, &bad_headers, bad).await, 400);
        assert_eq!(post(addr, &other.headers(), other.body()).await, 200);

        let received = receiver.received();
        assert_eq!(
            received,
            Received {
                requests: 4,
                invalid_signatures: 1,
                malformed: 1,
                events: 2,
                occupied: 1,
                vacated: 1,
            }
        );
        let tally = ledger.lock().unwrap().tally();
        assert_eq!((tally.unexpected, tally.out_of_order), (2, 0));
    }
}
