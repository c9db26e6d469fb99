//! The webhook churn run's results: a human summary and `--json`.

use super::ledger::LedgerTally;
use super::receiver::Received;
use crate::report::Latency;

/// What the receiver made of the webhooks, when the run listened for them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WebhookTally {
    /// Requests, checks and events as received.
    #[serde(flatten)]
    pub received: Received,
    /// Matching against the generator's references, and the latencies.
    #[serde(flatten)]
    pub ledger: LedgerTally,
    /// Occupancy events received per second over the churn (first tick to last unsubscribe).
    pub events_per_second: f64,
    /// Occupancy events received per second while every socket was both
    /// subscribing and unsubscribing (whole seconds from the first `hold` to
    /// the end of `duration`); none when that window holds no whole second.
    pub events_per_second_steady: Option<f64>,
    /// Occupancy events received in each whole second since the churn started.
    pub timeline: Vec<u64>,
}

/// Everything one webhook churn run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookChurnReport {
    /// Channels a second asked for (`--webhook-churn`).
    pub channels_per_second: f64,
    /// How long each channel is held, seconds (`--webhook-hold`).
    pub hold_seconds: f64,
    /// Sockets in the pool.
    pub sockets: usize,
    /// Sockets connected.
    pub connected: usize,
    /// Sockets that failed to connect.
    pub connect_failures: usize,
    /// The first connect failure's reason.
    pub first_connect_error: Option<String>,
    /// Time to connect the pool.
    pub connect_seconds: f64,
    /// From the first tick to the last unsubscribe's ack.
    pub churn_seconds: f64,
    /// Subscribes acknowledged (channels occupied).
    pub channels_occupied: u64,
    /// Unsubscribes sent (channels vacated).
    pub channels_vacated: u64,
    /// Sockets that stopped on an error (their channel is left to the server).
    pub socket_failures: u64,
    /// The first such error.
    pub first_socket_error: Option<String>,
    /// Sending a tick's frames → the subscribe's ack.
    pub subscribe_ack_latency: Latency,
    /// Sending a tick's frames → the unsubscribe's ack.
    pub unsubscribe_ack_latency: Latency,
    /// The webhooks, when `--webhook-listen` was given.
    pub webhooks: Option<WebhookTally>,
    /// Server processes measured.
    pub server_processes: usize,
    /// Server CPU seconds from the first tick until the webhooks settled.
    pub server_cpu_seconds: f64,
    /// That CPU per channel transition the generator made (µs).
    pub server_cpu_us_per_transition: f64,
    /// The generator's own CPU seconds over the same window (it shares the box).
    pub bench_cpu_seconds: f64,
}

impl WebhookChurnReport {
    /// A plain-text summary.
    pub fn summary(&self) -> String {
        let mut summary = format!(
            "sockets        {} of {} in {:.1} s, {} failed{}\n\
             churn          {:.0} channels/s asked, {:.1} s hold; {} occupied, {} vacated in {:.1} s; \
             {} sockets failed{}\n\
             acks           subscribe p50 {:.2} ms p99 {:.2} ms max {:.2} ms; \
             unsubscribe p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            self.connected,
            self.sockets,
            self.connect_seconds,
            self.connect_failures,
            first(&self.first_connect_error),
            self.channels_per_second,
            self.hold_seconds,
            self.channels_occupied,
            self.channels_vacated,
            self.churn_seconds,
            self.socket_failures,
            first(&self.first_socket_error),
            self.subscribe_ack_latency.p50_ms,
            self.subscribe_ack_latency.p99_ms,
            self.subscribe_ack_latency.max_ms,
            self.unsubscribe_ack_latency.p50_ms,
            self.unsubscribe_ack_latency.p99_ms,
            self.unsubscribe_ack_latency.max_ms,
        );
        match &self.webhooks {
            Some(w) => {
                let (r, t, l) = (&w.received, &w.ledger, &w.ledger.latency);
                let steady = w
                    .events_per_second_steady
                    .map_or_else(|| "–".to_owned(), |s| format!("{s:.0}"));
                summary.push_str(&format!(
                    "\nwebhooks       {} requests ({} invalid signatures, {} malformed), {} events \
                     ({} occupied, {} vacated)\n\
                     matched        {} of {} expected ({} missing, {} unexpected, {} duplicates, \
                     {} foreign, {} early, {} out of order)\n\
                     rate           {:.0} events/s over the churn, {steady} events/s steady\n\
                     latency        p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms \
                     (occupied p50 {:.2} p99 {:.2}; vacated p50 {:.2} p99 {:.2})",
                    r.requests,
                    r.invalid_signatures,
                    r.malformed,
                    r.events,
                    r.occupied,
                    r.vacated,
                    t.events_matched,
                    t.events_expected,
                    t.missing,
                    t.unexpected,
                    t.duplicates,
                    t.foreign,
                    t.early,
                    t.out_of_order,
                    w.events_per_second,
                    l.p50_ms,
                    l.p90_ms,
                    l.p99_ms,
                    l.max_ms,
                    t.occupied_latency.p50_ms,
                    t.occupied_latency.p99_ms,
                    t.vacated_latency.p50_ms,
                    t.vacated_latency.p99_ms,
                ));
            }
            None => summary.push_str("\nwebhooks       not listened for (no --webhook-listen)"),
        }
        summary.push_str(&format!(
            "\nserver CPU     {:.2} s ({} processes; {:.1} µs per transition); generator {:.2} s",
            self.server_cpu_seconds,
            self.server_processes,
            self.server_cpu_us_per_transition,
            self.bench_cpu_seconds,
        ));
        summary
    }
}

fn first(error: &Option<String>) -> String {
    error
        .as_deref()
        .map(|e| format!(" (first: {e})"))
        .unwrap_or_default()
}
