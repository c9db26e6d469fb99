//! `DeliveryCounters`: what webhook delivery has done so far, counted
//! without locks by whichever task sends, read as [`DispatchStats`].

use std::sync::atomic::{AtomicU64, Ordering};

/// What webhook delivery has done so far, summed over every endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DispatchStats {
    /// Events in batches a receiver accepted (`2xx`).
    pub delivered_events: u64,
    /// Batches a receiver accepted.
    pub batches_sent: u64,
    /// Events dropped because their endpoint's queue was full.
    pub dropped_full: u64,
    /// Events dropped with a batch that still failed when the schedule gave
    /// up (or, with Redis, that waited longer than the retry window).
    pub dropped_given_up: u64,
    /// Events dropped with a batch whose failure no retry can mend (a URL
    /// the client cannot request).
    pub dropped_not_retryable: u64,
}

/// The counters behind [`DispatchStats`], shared by the handle and the tasks.
#[derive(Debug, Default)]
pub(crate) struct DeliveryCounters {
    delivered_events: AtomicU64,
    batches_sent: AtomicU64,
    dropped_full: AtomicU64,
    dropped_given_up: AtomicU64,
    dropped_not_retryable: AtomicU64,
}

impl DeliveryCounters {
    /// Counts a batch of `events` a receiver accepted.
    pub(crate) fn delivered(&self, events: u64) {
        self.delivered_events.fetch_add(events, Ordering::Relaxed);
        self.batches_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts events dropped because their queue was full.
    pub(crate) fn dropped_full(&self, events: u64) {
        self.dropped_full.fetch_add(events, Ordering::Relaxed);
    }

    /// Counts events dropped when the retry window ended.
    pub(crate) fn given_up(&self, events: u64) {
        self.dropped_given_up.fetch_add(events, Ordering::Relaxed);
    }

    /// Counts events dropped because no retry could send them.
    pub(crate) fn not_retryable(&self, events: u64) {
        self.dropped_not_retryable
            .fetch_add(events, Ordering::Relaxed);
    }

    /// The counts so far.
    pub(crate) fn stats(&self) -> DispatchStats {
        let read = |n: &AtomicU64| n.load(Ordering::Relaxed);
        DispatchStats {
            delivered_events: read(&self.delivered_events),
            batches_sent: read(&self.batches_sent),
            dropped_full: read(&self.dropped_full),
            dropped_given_up: read(&self.dropped_given_up),
            dropped_not_retryable: read(&self.dropped_not_retryable),
        }
    }
}
