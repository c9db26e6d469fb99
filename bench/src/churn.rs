//! Churn: at an aggregate rate, a random connected bench client closes its
//! WebSocket, reconnects and subscribes again with `since` = the last `pos` it
//! received, so the events sent while it was away are replayed to it.
//!
//! Only clients that have received a `pos` on every channel they are on can be
//! picked: a client without one would have to subscribe without `since`, and
//! anything in flight to it at the close would be gone for good, which would
//! make the bench's loss count depend on timing instead of on the server.
//! Picks that find no such client (the start of the run, idle runs, servers
//! without history) are counted as skipped.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Notify;

use super::deliveries::histogram;
use super::report::Latency;

/// Random slots tried per pick before the pick counts as skipped.
const PICK_TRIES: usize = 32;

/// A connection's state, as the picker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum State {
    /// Handshaking, or not churnable yet (no `pos` on some channel).
    Busy = 0,
    /// Connected with a `pos` on every channel: may be picked.
    Ready = 1,
    /// Picked: closing, reconnecting and subscribing again.
    Churning = 2,
    /// Closed for good.
    Gone = 3,
}

/// One connection's churn handle.
#[derive(Debug)]
pub(super) struct Slot {
    state: AtomicU8,
    picked: Notify,
}

impl Slot {
    /// Publishes the connection's state (from its own task).
    pub(super) fn set(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Resolves once the picker chose this connection.
    pub(super) async fn picked(&self) {
        self.picked.notified().await;
    }

    /// Marks the connection gone; whether it was in the middle of a churn.
    pub(super) fn gone(&self) -> bool {
        self.state.swap(State::Gone as u8, Ordering::AcqRel) == State::Churning as u8
    }
}

/// The churn of one run: a slot per connection (none when churn is off) and the tallies.
#[derive(Debug)]
pub(super) struct Churn {
    slots: Vec<Slot>,
    reconnects: AtomicU64,
    recovered: AtomicU64,
    not_recovered: AtomicU64,
    failures: AtomicU64,
    skipped: AtomicU64,
    replayed: AtomicU64,
    in_progress: AtomicUsize,
    recovery_us: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<String>>,
}

impl Churn {
    /// Slots for `connections` connections when `rate` > 0, else none.
    pub(super) fn new(connections: usize, rate: f64) -> Self {
        let slots = if rate > 0.0 { connections } else { 0 };
        Churn {
            slots: (0..slots)
                .map(|_| Slot {
                    state: AtomicU8::new(State::Busy as u8),
                    picked: Notify::new(),
                })
                .collect(),
            reconnects: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            not_recovered: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            in_progress: AtomicUsize::new(0),
            recovery_us: Mutex::new(histogram()),
            first_error: Mutex::new(None),
        }
    }

    /// Connection `index`'s slot, when churn is on.
    pub(super) fn slot(&self, index: usize) -> Option<&Slot> {
        self.slots.get(index)
    }

    /// Picks a random ready connection and tells it to churn; false if none was found.
    fn pick(&self) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        for _ in 0..PICK_TRIES {
            let slot = &self.slots[rand::random_range(0..self.slots.len())];
            let ready = slot
                .state
                .compare_exchange(
                    State::Ready as u8,
                    State::Churning as u8,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok();
            if ready {
                self.in_progress.fetch_add(1, Ordering::Relaxed);
                slot.picked.notify_one();
                return true;
            }
        }
        false
    }

    /// A picked connection closed its socket and starts reconnecting.
    pub(super) fn started(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// One subscribe ack of a reconnect, `elapsed` after it started.
    pub(super) fn acked(&self, recovered: Option<bool>, elapsed: Duration) {
        match recovered {
            Some(true) => {
                self.recovered.fetch_add(1, Ordering::Relaxed);
                let us = u64::try_from(elapsed.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let _ = self
                    .recovery_us
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(us);
            }
            Some(false) => {
                self.not_recovered.fetch_add(1, Ordering::Relaxed);
            }
            // The server ignored `since` (no history): neither.
            None => {}
        }
    }

    /// Deliveries first received while a reconnect's subscribes were pending (the replay).
    pub(super) fn replayed(&self, n: u64) {
        self.replayed.fetch_add(n, Ordering::Relaxed);
    }

    /// A picked connection is subscribed again.
    pub(super) fn finished(&self) {
        self.in_progress.fetch_sub(1, Ordering::Relaxed);
    }

    /// A picked connection could not come back (it is gone).
    pub(super) fn failed(&self, error: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(error);
        self.finished();
    }

    /// Waits until no reconnect is in progress, or `limit` passed.
    pub(super) async fn settle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.in_progress.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The churn part of the report.
    pub(super) fn report(&self, rate: f64) -> ChurnReport {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        ChurnReport {
            churn_rate: rate,
            churn_reconnects: load(&self.reconnects),
            churn_recovered: load(&self.recovered),
            churn_not_recovered: load(&self.not_recovered),
            churn_failures: load(&self.failures),
            churn_skipped: load(&self.skipped),
            churn_replayed: load(&self.replayed),
            churn_recovery_latency: Latency::from_histogram(
                &self.recovery_us.lock().unwrap_or_else(|e| e.into_inner()),
            ),
            churn_first_error: self
                .first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// Picks `rate` connections per second until dropped (the caller aborts it).
pub(super) async fn drive(churn: &Churn, rate: f64) {
    let started = tokio::time::Instant::now();
    let mut picks = 0u64;
    loop {
        picks += 1;
        tokio::time::sleep_until(started + Duration::from_secs_f64(picks as f64 / rate)).await;
        if !churn.pick() {
            churn.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What churn did (all zero when it was off).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ChurnReport {
    /// Reconnects asked for per second (`--churn`).
    pub churn_rate: f64,
    /// Connections closed by churn and reconnected (or tried to).
    pub churn_reconnects: u64,
    /// Subscribe acks after a reconnect with `recovered: true`.
    pub churn_recovered: u64,
    /// Subscribe acks after a reconnect with `recovered: false` (history too short).
    pub churn_not_recovered: u64,
    /// Reconnects that did not come back (the connection is lost for the rest of the run).
    pub churn_failures: u64,
    /// Picks that found no connection with a `pos` on all its channels.
    pub churn_skipped: u64,
    /// Deliveries first received during a reconnect's subscribe (the replay).
    pub churn_replayed: u64,
    /// From closing the socket to the subscribe ack with `recovered: true`.
    pub churn_recovery_latency: Latency,
    /// Why the first failed reconnect failed.
    pub churn_first_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn picks_only_ready_connections() {
        let churn = Churn::new(3, 1.0);
        assert!(!churn.pick(), "nobody is ready");
        churn.slots[1].set(State::Ready);
        assert!(churn.pick());
        assert_eq!(
            churn.slots[1].state.load(Ordering::Relaxed),
            State::Churning as u8
        );
        // The notification is kept until the connection looks.
        tokio::time::timeout(Duration::from_secs(1), churn.slots[1].picked())
            .await
            .expect("picked");
        assert!(!churn.pick(), "already churning");
        assert!(churn.slots[1].gone());
        churn.failed("x".into());
        let report = churn.report(1.0);
        assert_eq!(
            (report.churn_failures, report.churn_first_error.as_deref()),
            (1, Some("x"))
        );
        assert!(Churn::new(3, 0.0).slot(0).is_none());
    }

    #[test]
    fn recovery_latency_counts_recovered_acks_only() {
        let churn = Churn::new(1, 1.0);
        churn.acked(Some(true), Duration::from_millis(4));
        churn.acked(Some(false), Duration::from_millis(9));
        churn.acked(None, Duration::from_millis(9));
        let r = churn.report(1.0);
        assert_eq!((r.churn_recovered, r.churn_not_recovered), (1, 1));
        assert_eq!(r.churn_recovery_latency.count, 1);
        assert!((r.churn_recovery_latency.max_ms - 4.0).abs() < 0.01);
    }
}
