//! `Ledger`: which occupancy webhooks a churn run expects, which arrived, and
//! how long after the generator's own reference each one came.
//!
//! The two sides race: the receiver may hear of a channel before the socket's
//! task has written down its reference (a `channel_occupied` batch can beat the
//! subscribe ack back to the generator), so each mark records whichever comes
//! first and the latency is taken when the second comes. A webhook that beats
//! its reference counts as `early`, with a latency of zero.

use std::collections::HashMap;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::deliveries::histogram;
use crate::report::Latency;

/// The two occupancy transitions the churn drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transition {
    /// `channel_occupied`: referenced to the subscribe's ack.
    Occupied,
    /// `channel_vacated`: referenced to sending the unsubscribe.
    Vacated,
}

/// One transition of one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Mark {
    /// Neither the reference nor the webhook yet.
    #[default]
    Unseen,
    /// The reference, waiting for its webhook.
    Expected(Instant),
    /// The webhook, waiting for its reference.
    Arrived(Instant),
    /// Both: the latency is recorded.
    Matched,
}

#[derive(Debug, Default)]
struct Entry {
    occupied: Mark,
    vacated: Mark,
}

impl Entry {
    fn mark(&mut self, transition: Transition) -> &mut Mark {
        match transition {
            Transition::Occupied => &mut self.occupied,
            Transition::Vacated => &mut self.vacated,
        }
    }
}

/// What the ledger holds at the end of a run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LedgerTally {
    /// References written: subscribe acks plus unsubscribes sent.
    pub events_expected: u64,
    /// Webhooks matched to a reference (each counted once).
    pub events_matched: u64,
    /// References whose webhook never came.
    pub missing: u64,
    /// Webhooks for this run's channels with no reference (a subscribe whose
    /// ack never came, for instance).
    pub unexpected: u64,
    /// Webhooks received again for a transition already received.
    pub duplicates: u64,
    /// Occupancy webhooks for channels that are not this run's.
    pub foreign: u64,
    /// Webhooks that arrived before their reference (latency counted as zero).
    pub early: u64,
    /// `channel_vacated` received before that channel's `channel_occupied`.
    pub out_of_order: u64,
    /// Latency over both transitions.
    pub latency: Latency,
    /// Reference → `channel_occupied` received.
    pub occupied_latency: Latency,
    /// Reference → `channel_vacated` received.
    pub vacated_latency: Latency,
}

/// The expectations and arrivals of one run, for channels named `{prefix}…`.
#[derive(Debug)]
pub(super) struct Ledger {
    prefix: String,
    start: Instant,
    entries: HashMap<String, Entry>,
    occupied_us: Histogram<u64>,
    vacated_us: Histogram<u64>,
    /// Webhooks received per second since `start` (index: whole seconds).
    timeline: Vec<u64>,
    expected: u64,
    duplicates: u64,
    foreign: u64,
    early: u64,
    out_of_order: u64,
}

impl Ledger {
    /// An empty ledger for channels starting with `prefix`, its timeline from `start`.
    pub(super) fn new(prefix: String, start: Instant) -> Self {
        Ledger {
            prefix,
            start,
            entries: HashMap::new(),
            occupied_us: histogram(),
            vacated_us: histogram(),
            timeline: Vec::new(),
            expected: 0,
            duplicates: 0,
            foreign: 0,
            early: 0,
            out_of_order: 0,
        }
    }

    /// Restarts the timeline at `start` (once the sockets are connected).
    pub(super) fn set_start(&mut self, start: Instant) {
        self.start = start;
    }

    /// The generator's reference for `transition` of `channel`, taken `at`.
    pub(super) fn expect(&mut self, channel: &str, transition: Transition, at: Instant) {
        let entry = self.entries.entry(channel.to_owned()).or_default();
        let mark = entry.mark(transition);
        match *mark {
            Mark::Arrived(received) => {
                self.expected += 1;
                // The webhook won the race: the server had queued it before
                // the generator saw its own ack.
                self.early += 1;
                *mark = Mark::Matched;
                self.record(transition, at, received.max(at));
            }
            Mark::Unseen => {
                self.expected += 1;
                *mark = Mark::Expected(at);
            }
            // A second reference for one transition is the caller's bug;
            // counting the first only keeps `pending` consistent.
            Mark::Expected(_) | Mark::Matched => {}
        }
    }

    /// A webhook for `transition` of `channel`, received `at`.
    pub(super) fn arrived(&mut self, channel: &str, transition: Transition, at: Instant) {
        let second = usize::try_from(at.saturating_duration_since(self.start).as_secs())
            .unwrap_or(usize::MAX)
            .min(3600);
        if self.timeline.len() <= second {
            self.timeline.resize(second + 1, 0);
        }
        self.timeline[second] += 1;
        if !channel.starts_with(&self.prefix) {
            self.foreign += 1;
            return;
        }
        let entry = self.entries.entry(channel.to_owned()).or_default();
        if transition == Transition::Vacated
            && matches!(entry.occupied, Mark::Unseen | Mark::Expected(_))
        {
            self.out_of_order += 1;
        }
        let mark = entry.mark(transition);
        match *mark {
            Mark::Expected(reference) => {
                *mark = Mark::Matched;
                self.record(transition, reference, at);
            }
            Mark::Unseen => *mark = Mark::Arrived(at),
            Mark::Arrived(_) | Mark::Matched => self.duplicates += 1,
        }
    }

    fn record(&mut self, transition: Transition, reference: Instant, received: Instant) {
        let us = u64::try_from(received.saturating_duration_since(reference).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let histogram = match transition {
            Transition::Occupied => &mut self.occupied_us,
            Transition::Vacated => &mut self.vacated_us,
        };
        let _ = histogram.record(us);
    }

    /// References still waiting for their webhook.
    pub(super) fn pending(&self) -> u64 {
        self.expected - (self.occupied_us.len() + self.vacated_us.len())
    }

    /// Webhooks received per whole second since the start.
    pub(super) fn timeline(&self) -> &[u64] {
        &self.timeline
    }

    /// The counts and latencies so far.
    pub(super) fn tally(&self) -> LedgerTally {
        let unexpected = self
            .entries
            .values()
            .flat_map(|e| [e.occupied, e.vacated])
            .filter(|m| matches!(m, Mark::Arrived(_)))
            .count() as u64;
        let mut both = histogram();
        let _ = both.add(&self.occupied_us);
        let _ = both.add(&self.vacated_us);
        LedgerTally {
            events_expected: self.expected,
            events_matched: both.len(),
            missing: self.pending(),
            unexpected,
            duplicates: self.duplicates,
            foreign: self.foreign,
            early: self.early,
            out_of_order: self.out_of_order,
            latency: Latency::from_histogram(&both),
            occupied_latency: Latency::from_histogram(&self.occupied_us),
            vacated_latency: Latency::from_histogram(&self.vacated_us),
        }
    }
}

/// The mean of `timeline`'s whole seconds in `[from, to)`: the rate once every
/// socket is cycling (from the first vacate on) and before the last ticks.
/// `None` when that window holds no whole second.
pub(super) fn steady_rate(timeline: &[u64], from: usize, to: usize) -> Option<f64> {
    let to = to.min(timeline.len());
    (from < to).then(|| timeline[from..to].iter().sum::<u64>() as f64 / (to - from) as f64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn matches_each_transition_once_whichever_side_comes_first() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new("wh-1-".into(), t0);
        // Reference first, then the webhook 30 ms later.
        ledger.expect("wh-1-0-0", Transition::Occupied, ms(t0, 10));
        ledger.arrived("wh-1-0-0", Transition::Occupied, ms(t0, 40));
        // The webhook beats its reference: matched, early, zero latency.
        ledger.arrived("wh-1-0-0", Transition::Vacated, ms(t0, 1100));
        ledger.expect("wh-1-0-0", Transition::Vacated, ms(t0, 1105));
        // Received twice.
        ledger.arrived("wh-1-0-0", Transition::Occupied, ms(t0, 1200));
        // Never arrives.
        ledger.expect("wh-1-0-1", Transition::Occupied, ms(t0, 1000));
        // Never expected; and another run's channel.
        ledger.arrived("wh-1-9-9", Transition::Occupied, ms(t0, 1300));
        ledger.arrived("wh-2-0-0", Transition::Occupied, ms(t0, 1300));

        let tally = ledger.tally();
        assert_eq!(
            (
                tally.events_expected,
                tally.events_matched,
                tally.missing,
                tally.unexpected,
                tally.duplicates,
                tally.foreign,
                tally.early,
                tally.out_of_order,
            ),
            (3, 2, 1, 1, 1, 1, 1, 0)
        );
        assert!(
            (tally.occupied_latency.max_ms - 30.0).abs() < 0.1,
            "{tally:?}"
        );
        assert!(tally.vacated_latency.max_ms < 0.01, "{tally:?}");
        assert_eq!(ledger.pending(), 1);
        assert_eq!(ledger.timeline(), &[1, 4]);
    }

    #[test]
    fn a_vacancy_heard_before_its_occupancy_is_out_of_order() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new("wh-".into(), t0);
        ledger.expect("wh-a", Transition::Occupied, t0);
        ledger.expect("wh-a", Transition::Vacated, ms(t0, 5));
        ledger.arrived("wh-a", Transition::Vacated, ms(t0, 20));
        ledger.arrived("wh-a", Transition::Occupied, ms(t0, 25));
        let tally = ledger.tally();
        assert_eq!((tally.events_matched, tally.out_of_order), (2, 1));
        assert!((tally.latency.max_ms - 25.0).abs() < 0.1);
    }

    #[test]
    fn percentiles_come_from_every_matched_webhook() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new("c".into(), t0);
        for i in 0..100u64 {
            let channel = format!("c{i}");
            ledger.expect(&channel, Transition::Occupied, t0);
            // 1, 2, …, 100 ms.
            ledger.arrived(&channel, Transition::Occupied, ms(t0, i + 1));
        }
        let l = ledger.tally().latency;
        assert_eq!(l.count, 100);
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
    }

    #[test]
    fn the_steady_rate_averages_whole_seconds_in_the_window() {
        let timeline = [10, 200, 400, 400, 300];
        assert_eq!(steady_rate(&timeline, 2, 4), Some(400.0));
        assert_eq!(steady_rate(&timeline, 1, 9), Some(325.0));
        assert_eq!(steady_rate(&timeline, 4, 4), None);
        assert_eq!(steady_rate(&[], 0, 3), None);
    }
}
