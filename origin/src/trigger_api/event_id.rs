//! Event ids: unique strings, roughly time-ordered, shared by every channel an event goes to.

use std::sync::atomic::{AtomicU64, Ordering};

use pushwire_shared::event_id::{IdIssuer, event_id};

/// Generates [`IdIssuer::Origin`] ids: milliseconds of acceptance, a random number
/// per process, and a per-process counter. Unique across processes without coordination.
#[derive(Debug)]
pub(crate) struct EventIdGenerator {
    node: u64,
    next: AtomicU64,
}

impl Default for EventIdGenerator {
    fn default() -> Self {
        EventIdGenerator {
            node: rand::random::<u64>() >> 16,
            next: AtomicU64::new(0),
        }
    }
}

impl EventIdGenerator {
    /// The next id, for an event accepted at `ts_ms`.
    pub(crate) fn next(&self, ts_ms: u64) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        event_id(IdIssuer::Origin, ts_ms, self.node, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_within_one_millisecond() {
        let ids = EventIdGenerator::default();
        assert_ne!(ids.next(1), ids.next(1));
        assert!(ids.next(255).starts_with("ff-"));
    }
}
