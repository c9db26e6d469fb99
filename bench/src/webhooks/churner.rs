//! The churn itself: a pool of Socket.IO sockets, each holding one fresh
//! channel at a time and swapping it for the next one every `hold`.
//!
//! Socket `i` of `n` acts at `start + hold·(i/n + k)`, k = 0, 1, …: it
//! unsubscribes the channel it holds and subscribes a fresh one in the same
//! write, so across the pool `n / hold` channels a second are occupied and as
//! many vacated, evenly spread, with `n` channels occupied at any moment. One
//! subscribe per socket per `hold` stays far below the per-socket subscribe
//! rate limit (10 a second after a burst). After `duration`, each socket's
//! next tick only unsubscribes, so every channel occupied is vacated too.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::WebhookChurnConfig;
use super::ledger::{Ledger, Transition};
use crate::client::{self, Socket};
use crate::deliveries::histogram;
use crate::report::Latency;

/// At most this many handshakes in flight at once.
const CONNECT_CONCURRENCY: usize = 512;

/// The sockets to churn with: `rate · hold`, at least one.
pub(super) fn pool_size(rate: f64, hold: Duration) -> usize {
    (rate * hold.as_secs_f64()).ceil().max(1.0) as usize
}

/// When each socket acts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    /// The first socket's first tick.
    pub(super) start: Instant,
    /// How long each socket holds a channel.
    pub(super) hold: Duration,
    /// Sockets in the pool.
    pub(super) sockets: usize,
    /// Ticks before `start + duration` subscribe; later ones only unsubscribe.
    pub(super) duration: Duration,
}

impl Plan {
    /// Socket `socket`'s `k`-th tick.
    fn tick(&self, socket: usize, k: u32) -> Instant {
        let offset = self
            .hold
            .mul_f64(socket as f64 / self.sockets.max(1) as f64);
        self.start + offset + self.hold * k
    }

    /// Whether a tick at `at` subscribes a fresh channel.
    fn subscribes_at(&self, at: Instant) -> bool {
        at < self.start + self.duration
    }
}

/// The `unsubscribe` frame with ack id `ack`: `42{ack}["unsubscribe",{"channel"}]`.
///
/// ```text
/// unsubscribe_frame(1, "c") == r#"421["unsubscribe",{"channel":"c"}]"#
/// ```
fn unsubscribe_frame(ack: u64, channel: &str) -> String {
    let payload = serde_json::json!({ "channel": channel });
    format!(
        "42{ack}{}",
        serde_json::json!([pushwire_shared::client_protocol::UNSUBSCRIBE, payload])
    )
}

/// What the sockets did, shared by their tasks.
#[derive(Debug)]
pub(super) struct Counts {
    /// Subscribes acknowledged `ok`.
    pub(super) occupied: AtomicU64,
    /// Unsubscribes sent.
    pub(super) vacated: AtomicU64,
    /// Sockets that stopped on an error.
    pub(super) failed: AtomicU64,
    /// The first error.
    pub(super) first_error: Mutex<Option<String>>,
    /// Sockets still cycling.
    pub(super) cycling: AtomicUsize,
    /// Sending the frames → each subscribe's ack, µs.
    subscribe_ack_us: Mutex<Histogram<u64>>,
    /// Sending the frames → each unsubscribe's ack, µs.
    unsubscribe_ack_us: Mutex<Histogram<u64>>,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            occupied: AtomicU64::new(0),
            vacated: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
            cycling: AtomicUsize::new(0),
            subscribe_ack_us: Mutex::new(histogram()),
            unsubscribe_ack_us: Mutex::new(histogram()),
        }
    }
}

impl Counts {
    /// How long the server took to acknowledge subscribes and unsubscribes:
    /// the part of a transition's latency spent before the server made it.
    pub(super) fn ack_latency(&self) -> (Latency, Latency) {
        let read = |h: &Mutex<Histogram<u64>>| {
            Latency::from_histogram(&h.lock().unwrap_or_else(|e| e.into_inner()))
        };
        (read(&self.subscribe_ack_us), read(&self.unsubscribe_ack_us))
    }

    fn ack(&self, histogram: &Mutex<Histogram<u64>>, sent: Instant, at: Instant) {
        let us = u64::try_from(at.saturating_duration_since(sent).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = histogram
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(us);
    }
}

/// The pool, once every handshake finished.
#[derive(Debug)]
pub(super) struct Pool {
    /// The connected sockets.
    pub(super) sockets: Vec<Socket>,
    /// Handshakes that failed.
    pub(super) failures: usize,
    /// The first failure's reason.
    pub(super) first_error: Option<String>,
    /// Time to connect them all.
    pub(super) seconds: f64,
}

/// Connects `n` sockets, spread over the source addresses.
pub(super) async fn connect(config: &WebhookChurnConfig, n: usize) -> Pool {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let source = config.source_ips[i % config.source_ips.len()];
        let (target, key, handshake) =
            (config.socket_addr, config.app.key.clone(), config.handshake);
        tasks.spawn(async move {
            let socket = client::connect(source, target, &key, handshake).await;
            drop(permit);
            socket
        });
    }
    let (mut sockets, mut failures, mut first_error) = (Vec::with_capacity(n), 0, None);
    while let Some(joined) = tasks.join_next().await {
        match joined
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            Ok(socket) => sockets.push(socket),
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    Pool {
        sockets,
        failures,
        first_error,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Runs every socket's cycle; returns the sockets that finished it (still
/// open, holding no channel) once all have.
pub(super) async fn churn(
    sockets: Vec<Socket>,
    plan: Plan,
    prefix: Arc<str>,
    ledger: Option<Arc<Mutex<Ledger>>>,
    counts: Arc<Counts>,
) -> Vec<Socket> {
    let mut tasks = JoinSet::new();
    counts.cycling.store(sockets.len(), Ordering::Relaxed);
    for (index, ws) in sockets.into_iter().enumerate() {
        let (prefix, ledger, counts) = (prefix.clone(), ledger.clone(), counts.clone());
        tasks.spawn(async move {
            let mut ws = ws;
            let outcome = cycle(&mut ws, index, plan, &prefix, ledger.as_deref(), &counts).await;
            counts.cycling.fetch_sub(1, Ordering::Relaxed);
            match outcome {
                Ok(()) => Some(ws),
                Err(e) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    counts
                        .first_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e.to_string());
                    None
                }
            }
        });
    }
    let mut finished = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        finished.extend(joined.ok().flatten());
    }
    finished
}

/// One socket's ticks, from its first subscribe to its last unsubscribe.
async fn cycle(
    ws: &mut Socket,
    index: usize,
    plan: Plan,
    prefix: &str,
    ledger: Option<&Mutex<Ledger>>,
    counts: &Counts,
) -> Result<(), client::ClientError> {
    let expect = |channel: &str, transition, at| {
        if let Some(ledger) = ledger {
            ledger
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .expect(channel, transition, at);
        }
    };
    let mut held: Option<String> = None;
    for k in 0u32.. {
        let at = plan.tick(index, k);
        tokio::time::sleep_until(at.into()).await;
        let next = plan
            .subscribes_at(at)
            .then(|| format!("{prefix}{index}-{k}"));
        let mut frames = Vec::with_capacity(2);
        if let Some(old) = &held {
            frames.push(unsubscribe_frame(1, old));
        }
        if let Some(new) = &next {
            frames.push(client::subscribe_frame(frames.len() as u64 + 1, new, None));
        }
        if frames.is_empty() {
            break;
        }
        // The vacancy's reference is the moment the unsubscribe leaves: the
        // server may report it before its ack is back.
        let sent = Instant::now();
        let unsubscribed = held.take().inspect(|old| {
            expect(old, Transition::Vacated, sent);
            counts.vacated.fetch_add(1, Ordering::Relaxed);
        });
        let acks = client::subscribe(ws, &frames, |_| {}).await?;
        if let (Some(_), Some(ack)) = (unsubscribed, acks.first()) {
            counts.ack(&counts.unsubscribe_ack_us, sent, ack.at);
        }
        if let (Some(_), Some(ack)) = (&next, acks.last()) {
            counts.ack(&counts.subscribe_ack_us, sent, ack.at);
        }
        match (next, acks.last()) {
            (Some(new), Some(ack)) => {
                expect(&new, Transition::Occupied, ack.at);
                counts.occupied.fetch_add(1, Ordering::Relaxed);
                held = Some(new);
            }
            _ => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_spread_the_pool_evenly_over_each_hold() {
        let start = Instant::now();
        let plan = Plan {
            start,
            hold: Duration::from_secs(1),
            sockets: 4,
            duration: Duration::from_secs(2),
        };
        let ms = |i, k| plan.tick(i, k).duration_since(start).as_millis();
        assert_eq!(
            [ms(0, 0), ms(1, 0), ms(3, 0), ms(2, 1), ms(3, 2)],
            [0, 250, 750, 1500, 2750]
        );
        // Socket 3 subscribes at 0.75 and 1.75 s, and only unsubscribes at 2.75 s.
        assert!(plan.subscribes_at(plan.tick(3, 1)));
        assert!(!plan.subscribes_at(plan.tick(3, 2)));
        assert_eq!(pool_size(2000.0, Duration::from_secs(1)), 2000);
        assert_eq!(pool_size(150.0, Duration::from_millis(500)), 75);
        assert_eq!(pool_size(0.1, Duration::from_millis(500)), 1);
    }

    #[test]
    fn the_unsubscribe_frame_is_socket_io_event_with_ack() {
        assert_eq!(
            unsubscribe_frame(1, "c"),
            r#"421["unsubscribe",{"channel":"c"}]"#
        );
    }
}
