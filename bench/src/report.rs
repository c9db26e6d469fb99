//! The bench's results: a human summary and `--json`.

use hdrhistogram::Histogram;

use super::churn::ChurnReport;
use super::redis_cpu::RedisCpu;
use super::webhooks::Received;

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of a histogram of microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Everything one bench run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Connections asked for.
    pub connections: usize,
    /// Connections established and subscribed.
    pub connected: usize,
    /// Connections that failed.
    pub connect_failures: usize,
    /// The first failure's reason.
    pub first_connect_error: Option<String>,
    /// Time to open all connections.
    pub connect_seconds: f64,
    /// Connections per second while connecting.
    pub connects_per_second: f64,
    /// Channels used.
    pub channels: usize,
    /// Triggers sent.
    pub triggers_sent: u64,
    /// Triggers answered 200.
    pub triggers_accepted: u64,
    /// Triggers answered otherwise (or not at all).
    pub triggers_refused: u64,
    /// Triggers skipped because too many were in flight (the server fell behind).
    pub triggers_not_sent: u64,
    /// Length of the trigger phase.
    pub trigger_seconds: f64,
    /// Trigger request round trips.
    pub trigger_latency: Latency,
    /// Deliveries the accepted triggers called for.
    pub expected_deliveries: u64,
    /// Deliveries received (each once).
    pub delivered: u64,
    /// Expected but not received.
    pub lost: u64,
    /// Received more than once.
    pub duplicates: u64,
    /// Deliveries per second of the trigger phase.
    pub delivered_per_second: f64,
    /// Trigger → delivery latency.
    pub latency: Latency,
    /// Server processes measured.
    pub server_processes: usize,
    /// Server RSS before connecting.
    pub server_rss_baseline_bytes: u64,
    /// Server RSS with every connection open, idle.
    pub server_rss_connected_bytes: u64,
    /// Server RSS at the end.
    pub server_rss_end_bytes: u64,
    /// (connected − baseline) / connections.
    pub server_rss_per_connection_bytes: f64,
    /// Server CPU seconds spent while connecting.
    pub server_cpu_seconds_connecting: f64,
    /// Server CPU seconds spent during the trigger phase.
    pub server_cpu_seconds_triggering: f64,
    /// The generator's own CPU over the triggering phase (`generator.bound`:
    /// it was the bottleneck, and the step measured it rather than the server).
    pub generator: crate::proc_stats::GeneratorLoad,
    /// Each `--redis-cpu` node's CPU seconds per phase, in the order given.
    pub redis_cpu: Vec<RedisCpu>,
    /// Reconnects and their recovery (`churn_*` fields).
    #[serde(flatten)]
    pub churn: ChurnReport,
    /// What the webhook receiver took in, with `--webhook-listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Received>,
}

impl BenchReport {
    /// A plain-text summary.
    pub fn summary(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let l = &self.latency;
        let mut summary = format!(
            "connections    {} of {} in {:.1} s ({:.0}/s), {} failed{}\n\
             triggers       {} sent, {} accepted, {} refused, {} not sent; round trip p50 {:.2} ms p99 {:.2} ms\n\
             deliveries     {} of {} expected ({} lost, {} duplicates), {:.0}/s\n\
             latency        p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms\n\
             server         {} processes; RSS {:.1} MiB idle → {:.1} MiB connected ({:.1} KiB/connection) → {:.1} MiB end\n\
             server CPU     {:.2} s connecting, {:.2} s triggering\n\
             generator CPU  {:.2} s triggering, {:.0}% of its {} core(s){}",
            self.connected,
            self.connections,
            self.connect_seconds,
            self.connects_per_second,
            self.connect_failures,
            self.first_connect_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            self.triggers_sent,
            self.triggers_accepted,
            self.triggers_refused,
            self.triggers_not_sent,
            self.trigger_latency.p50_ms,
            self.trigger_latency.p99_ms,
            self.delivered,
            self.expected_deliveries,
            self.lost,
            self.duplicates,
            self.delivered_per_second,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.p999_ms,
            l.max_ms,
            self.server_processes,
            mib(self.server_rss_baseline_bytes),
            mib(self.server_rss_connected_bytes),
            self.server_rss_per_connection_bytes / 1024.0,
            mib(self.server_rss_end_bytes),
            self.server_cpu_seconds_connecting,
            self.server_cpu_seconds_triggering,
            self.generator.cpu_seconds,
            self.generator.busy_share * 100.0,
            self.generator.cores,
            if self.generator.bound {
                " — the generator was the bottleneck: not a measure of the server"
            } else {
                ""
            },
        );
        let seconds = |s: Option<f64>| s.map_or_else(|| "?".to_owned(), |s| format!("{s:.2}"));
        for node in &self.redis_cpu {
            summary.push_str(&format!(
                "\nredis CPU      {}: {} s connecting, {} s triggering",
                node.node,
                seconds(node.cpu_seconds_connecting),
                seconds(node.cpu_seconds_triggering),
            ));
        }
        let c = &self.churn;
        if c.churn_rate > 0.0 {
            let r = &c.churn_recovery_latency;
            summary.push_str(&format!(
                "\nchurn          {} reconnects ({:.0}/s asked, {} picks skipped), {} failed{}; \
                 {} recovered, {} not recovered, {} deliveries replayed\n\
                 recovery       p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                c.churn_reconnects,
                c.churn_rate,
                c.churn_skipped,
                c.churn_failures,
                c.churn_first_error
                    .as_deref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default(),
                c.churn_recovered,
                c.churn_not_recovered,
                c.churn_replayed,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
            ));
        }
        if let Some(w) = &self.webhooks {
            summary.push_str(&format!(
                "\nwebhooks       {} requests ({} invalid signatures, {} malformed), {} events \
                 ({} occupied, {} vacated)",
                w.requests, w.invalid_signatures, w.malformed, w.events, w.occupied, w.vacated,
            ));
        }
        summary
    }
}
