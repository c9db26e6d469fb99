//! pushwire's load generator, run as `pushwire-bench`: it measures any server
//! speaking SPEC §1–§2 (pushwire, or the Node peer).
//!
//! It opens C WebSocket Socket.IO connections (spread over K channels and over
//! several loopback source addresses), then fires signed triggers at rate R for
//! T seconds, each carrying its send time, and measures what arrives: delivered
//! messages/s, loss and duplicates against what was expected, trigger→delivery
//! latency (HDR histogram), the server's RSS and CPU from `/proc`, and, for the
//! Redis nodes named, each one's CPU from `INFO cpu`.
//!
//! With churn on, connections close and come back during the trigger phase,
//! subscribing again with `since`; the counts stay exact across the reconnects
//! because each connection keeps its own record of what it received and picks
//! up where it left off (see the `churn` module).
//!
//! With `--webhook-listen`, a webhook receiver runs alongside and counts what
//! the server sends; `--webhook-churn` is a run of its own, occupying and
//! vacating channels at a rate and timing their webhooks (see [`webhooks`]).
//!
//! [`run`] takes a [`BenchConfig`] and returns a [`BenchReport`]; the
//! `pushwire-bench` binary is its command line. The generator is its own crate so
//! that its WebSocket client and histograms stay out of the server's dependencies.

mod churn;
pub mod client;
mod connection;
mod deliveries;
pub mod polling;
pub mod proc_stats;
pub mod pusher;
pub mod redis_cpu;
mod report;
mod subscribers;
mod triggers;
pub mod webhooks;
pub mod write_floor;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushwire_shared::App;

use self::churn::Churn;
pub use self::churn::ChurnReport;
use self::deliveries::DeliveryLog;
pub use self::redis_cpu::RedisCpu;
pub use self::report::{BenchReport, Latency};

/// After the last trigger, how long to wait for stragglers.
const SETTLE: Duration = Duration::from_secs(5);
/// After the last trigger, how long reconnects still in progress may take.
const CHURN_SETTLE: Duration = Duration::from_secs(30);
/// The most reconnects per second `--churn` may ask for.
pub const MAX_CHURN_RATE: f64 = 10_000.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Socket.IO server, `host:port`.
    pub socket_addr: SocketAddr,
    /// Trigger API base URL, `http://host:port`.
    pub trigger_url: String,
    /// Credentials.
    pub app: App,
    /// Connections to open.
    pub connections: usize,
    /// Channels the connections are spread over.
    pub channels: usize,
    /// Triggers per second (0: idle run, connections only).
    pub rate: f64,
    /// How long to trigger (or to hold idle connections).
    pub duration: Duration,
    /// Bytes of padding in each event's data.
    pub payload: usize,
    /// Local addresses to connect from, used in turn.
    pub source_ips: Vec<IpAddr>,
    /// Server processes to measure (with their descendants).
    pub server_pids: Vec<u32>,
    /// Redis nodes whose CPU to read from `INFO cpu` (loopback).
    pub redis_nodes: Vec<SocketAddr>,
    /// Print progress to stderr every second.
    pub progress: bool,
    /// Reconnects per second across all connections during the trigger phase (0: off).
    pub churn: f64,
    /// How each connection opens its session (polling first; browser headers).
    pub handshake: client::Handshake,
    /// Where to receive the server's webhooks during the run (loopback), if anywhere.
    pub webhook_listen: Option<SocketAddr>,
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Settings out of range.
    #[error("{0}")]
    Invalid(String),
    /// The webhook receiver could not listen.
    #[error("cannot listen for webhooks on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// One run's clock and names: send times are µs since `start`; channels are
/// `bench-{run_id:x}-{index}`, unique per run, so traffic a server still owes an
/// earlier run can never be counted in this one.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: Instant,
    id: u32,
}

impl Run {
    fn micros(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn channel(&self, index: usize) -> String {
        format!("bench-{:x}-{index}", self.id)
    }
}

/// Parses `127.0.0.1-127.0.0.16` or `127.0.0.1,127.0.0.2` into addresses.
pub fn parse_source_ips(spec: &str) -> Result<Vec<IpAddr>, BenchError> {
    let bad = || BenchError::Invalid(format!("invalid --source-ips {spec:?}"));
    let mut ips = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to): (std::net::Ipv4Addr, std::net::Ipv4Addr) = (
                    from.parse().map_err(|_| bad())?,
                    to.parse().map_err(|_| bad())?,
                );
                let (from, to) = (u32::from(from), u32::from(to));
                if to < from || to - from > 1024 {
                    return Err(bad());
                }
                ips.extend((from..=to).map(|n| IpAddr::from(std::net::Ipv4Addr::from(n))));
            }
            None => ips.push(part.parse().map_err(|_| bad())?),
        }
    }
    if ips.is_empty() || !ips.iter().all(IpAddr::is_loopback) {
        return Err(BenchError::Invalid(
            "--source-ips must name loopback addresses only".into(),
        ));
    }
    Ok(ips)
}

/// Runs the bench and returns its report.
pub async fn run(config: BenchConfig) -> Result<BenchReport, BenchError> {
    if config.connections == 0 || config.channels == 0 || config.channels > config.connections {
        return Err(BenchError::Invalid(
            "need 1 ≤ channels ≤ connections".into(),
        ));
    }
    if !config.socket_addr.ip().is_loopback() {
        return Err(BenchError::Invalid(
            "the bench targets loopback servers only".into(),
        ));
    }
    if !config.redis_nodes.iter().all(|n| n.ip().is_loopback()) {
        return Err(BenchError::Invalid(
            "--redis-cpu must name loopback addresses only".into(),
        ));
    }
    if config.handshake.protocol == client::Protocol::Pusher
        && (config.churn > 0.0 || config.handshake.polling_first)
    {
        return Err(BenchError::Invalid(
            "the Pusher protocol has no `since` nor polling: no churn, no polling first".into(),
        ));
    }
    if !(0.0..=MAX_CHURN_RATE).contains(&config.churn) {
        return Err(BenchError::Invalid(format!(
            "churn must be in [0, {MAX_CHURN_RATE}] reconnects per second"
        )));
    }
    let run = Run {
        start: Instant::now(),
        id: rand::random(),
    };
    let total_triggers = (config.rate * config.duration.as_secs_f64()).ceil() as u64;
    let log = Arc::new(DeliveryLog::new());
    let churn = Arc::new(Churn::new(config.connections, config.churn));
    let listener = match config.webhook_listen {
        Some(addr) => Some(webhooks::Listener::start(addr, config.app.clone()).await?),
        None => None,
    };

    let baseline = proc_stats::sample(&config.server_pids);
    let redis_baseline = redis_cpu::sample(&config.redis_nodes).await;
    let subscribers =
        subscribers::connect_all(&config, run, log.clone(), churn.clone(), total_triggers).await;
    let idle = proc_stats::sample(&config.server_pids);
    let redis_connected = redis_cpu::sample(&config.redis_nodes).await;

    let churning = (config.churn > 0.0).then(|| {
        let (churn, rate) = (churn.clone(), config.churn);
        tokio::spawn(async move { churn::drive(&churn, rate).await })
    });
    let (own_before, phase_start) = (proc_stats::own_cpu_seconds(), Instant::now());
    let tally = triggers::fire(&config, run, total_triggers, &log, &subscribers).await;
    if let Some(churning) = churning {
        churning.abort();
    }
    let tally = tally?;
    churn.settle(CHURN_SETTLE).await;
    let expected: u64 = tally
        .accepted_per_channel
        .iter()
        .zip(&subscribers.per_channel)
        .map(|(accepted, subscribed)| accepted * *subscribed as u64)
        .sum();
    let settle_deadline = Instant::now() + SETTLE;
    while log.merged().1 < expected && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy = proc_stats::sample(&config.server_pids);
    let generator = proc_stats::GeneratorLoad::over(
        proc_stats::own_cpu_seconds() - own_before,
        phase_start.elapsed().as_secs_f64(),
        proc_stats::usable_cores(),
    );
    let redis_end = redis_cpu::sample(&config.redis_nodes).await;
    let (latency, delivered) = log.merged();
    subscribers.close();
    let webhooks = match listener {
        Some(listener) => {
            let occupied = subscribers.per_channel.iter().filter(|n| **n > 0).count();
            Some(listener.finish(occupied as u64).await)
        }
        None => None,
    };

    let connected = subscribers.connected;
    let accepted: u64 = tally.accepted_per_channel.iter().sum();
    Ok(BenchReport {
        connections: config.connections,
        connected,
        connect_failures: subscribers.failures,
        first_connect_error: subscribers.first_error.clone(),
        connect_seconds: subscribers.seconds,
        connects_per_second: connected as f64 / subscribers.seconds.max(1e-9),
        channels: config.channels,
        triggers_sent: total_triggers - tally.not_sent,
        triggers_accepted: accepted,
        triggers_refused: tally.refused,
        triggers_not_sent: tally.not_sent,
        trigger_seconds: tally.seconds,
        trigger_latency: Latency::from_histogram(&tally.latency),
        expected_deliveries: expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        duplicates: log.duplicates(),
        delivered_per_second: delivered as f64 / tally.seconds.max(1e-9),
        latency: Latency::from_histogram(&latency),
        server_processes: idle.processes,
        server_rss_baseline_bytes: baseline.rss_bytes,
        server_rss_connected_bytes: idle.rss_bytes,
        server_rss_end_bytes: busy.rss_bytes,
        server_rss_per_connection_bytes: if connected > 0 {
            idle.rss_bytes.saturating_sub(baseline.rss_bytes) as f64 / connected as f64
        } else {
            0.0
        },
        server_cpu_seconds_connecting: idle.cpu_seconds - baseline.cpu_seconds,
        server_cpu_seconds_triggering: busy.cpu_seconds - tally.cpu_before,
        generator,
        redis_cpu: redis_cpu::phases(
            &config.redis_nodes,
            &redis_baseline,
            &redis_connected,
            &redis_end,
        ),
        churn: churn.report(config.churn),
        webhooks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ip_ranges() {
        assert_eq!(parse_source_ips("127.0.0.1-127.0.0.3").unwrap().len(), 3);
        assert_eq!(parse_source_ips("127.0.0.1,::1").unwrap().len(), 2);
        assert!(parse_source_ips("10.0.0.1").is_err());
        assert!(parse_source_ips("127.0.0.5-127.0.0.1").is_err());
        assert!(parse_source_ips("").is_err());
    }
}
