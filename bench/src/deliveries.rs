//! `DeliveryLog`: what arrived, counted once per (connection, trigger), with
//! latencies in sharded HDR histograms so thousands of readers rarely contend.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use super::client::Delivery;

/// Latency histogram shards (one lock per shard on the delivery path).
const SHARDS: usize = 64;
/// Histogram range: 1 µs to 60 s, 3 significant digits.
const HIGHEST_US: u64 = 60_000_000;

/// A histogram of microseconds covering the bench's range.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid histogram bounds")
}

#[derive(Debug)]
struct Shard {
    latency_us: Histogram<u64>,
    delivered: u64,
}

/// Every connection's deliveries.
#[derive(Debug)]
pub(super) struct DeliveryLog {
    shards: Vec<Mutex<Shard>>,
    duplicates: AtomicU64,
    unknown: AtomicU64,
}

/// One connection's view: which triggers it has seen.
#[derive(Debug)]
pub(super) struct ConnectionLog<'a> {
    log: &'a DeliveryLog,
    shard: &'a Mutex<Shard>,
    seen: Vec<u64>,
}

impl DeliveryLog {
    pub(super) fn new() -> Self {
        let shard = || {
            Mutex::new(Shard {
                latency_us: histogram(),
                delivered: 0,
            })
        };
        DeliveryLog {
            shards: (0..SHARDS).map(|_| shard()).collect(),
            duplicates: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
        }
    }

    /// The log of connection `index`, expecting trigger numbers below `triggers`.
    pub(super) fn for_connection(&self, index: usize, triggers: u64) -> ConnectionLog<'_> {
        ConnectionLog {
            log: self,
            shard: &self.shards[index % SHARDS],
            seen: vec![0; (triggers as usize).div_ceil(64)],
        }
    }

    /// All latencies so far and the number of (first) deliveries.
    pub(super) fn merged(&self) -> (Histogram<u64>, u64) {
        let mut all = histogram();
        let mut delivered = 0;
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let _ = all.add(&shard.latency_us);
            delivered += shard.delivered;
        }
        (all, delivered)
    }

    /// Deliveries of a trigger a connection had already received.
    pub(super) fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
}

impl ConnectionLog<'_> {
    /// Records `delivery`, received at `now_us`; whether it was the first
    /// delivery of that trigger to this connection.
    pub(super) fn record(&mut self, delivery: Delivery, now_us: u64) -> bool {
        let (word, bit) = ((delivery.seq / 64) as usize, 1u64 << (delivery.seq % 64));
        match self.seen.get_mut(word) {
            Some(w) if *w & bit != 0 => {
                self.log.duplicates.fetch_add(1, Ordering::Relaxed);
                false
            }
            Some(w) => {
                *w |= bit;
                let mut shard = self.shard.lock().unwrap_or_else(|e| e.into_inner());
                let _ = shard
                    .latency_us
                    .record(now_us.saturating_sub(delivery.sent_us).max(1));
                shard.delivered += 1;
                true
            }
            None => {
                self.log.unknown.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_trigger_once_per_connection() {
        let log = DeliveryLog::new();
        let mut a = log.for_connection(0, 10);
        let mut b = log.for_connection(1, 10);
        a.record(
            Delivery {
                seq: 3,
                sent_us: 100,
            },
            600,
        );
        a.record(
            Delivery {
                seq: 3,
                sent_us: 100,
            },
            700,
        );
        b.record(
            Delivery {
                seq: 3,
                sent_us: 100,
            },
            1100,
        );
        a.record(
            Delivery {
                seq: 99,
                sent_us: 0,
            },
            1,
        );
        let (latency, delivered) = log.merged();
        assert_eq!(
            (
                delivered,
                log.duplicates(),
                log.unknown.load(Ordering::Relaxed)
            ),
            (2, 1, 1)
        );
        assert_eq!(latency.max(), 1000);
    }
}
