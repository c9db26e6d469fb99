//! `pushwire bench`: a load generator for any server speaking SPEC §1–§2
//! (pushwire, or the Node peer).
//!
//! It opens C WebSocket Socket.IO connections (spread over K channels and over
//! several loopback source addresses), then fires signed triggers at rate R for
//! T seconds, each carrying its send time, and measures what arrives: delivered
//! messages/s, loss and duplicates against what was expected, trigger→delivery
//! latency (HDR histogram), and the server's RSS and CPU from `/proc`.

pub mod client;
pub mod proc_stats;
mod report;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use pushwire_shared::App;
use tokio::sync::Semaphore;

pub use self::report::{BenchReport, Latency};
use crate::trigger_client::TriggerClient;

/// At most this many handshakes in flight at once.
const CONNECT_CONCURRENCY: usize = 512;
/// After the last trigger, how long to wait for stragglers.
const SETTLE: Duration = Duration::from_secs(5);
/// Latency histogram shards (one lock per shard on the delivery path).
const SHARDS: usize = 64;
/// Triggers in flight beyond which the generator counts the rest as not sent.
const MAX_TRIGGERS_IN_FLIGHT: usize = 4096;

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
    /// Print progress to stderr every second.
    pub progress: bool,
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Settings out of range.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug)]
struct Shard {
    latency_us: Histogram<u64>,
    delivered: u64,
}

#[derive(Debug)]
struct Counters {
    shards: Vec<Mutex<Shard>>,
    duplicates: AtomicU64,
    late_or_unknown: AtomicU64,
}

impl Counters {
    fn new() -> Self {
        let shard = || {
            Mutex::new(Shard {
                latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                    .expect("valid histogram bounds"),
                delivered: 0,
            })
        };
        Counters {
            shards: (0..SHARDS).map(|_| shard()).collect(),
            duplicates: AtomicU64::new(0),
            late_or_unknown: AtomicU64::new(0),
        }
    }

    fn merged(&self) -> (Histogram<u64>, u64) {
        let mut all = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
        let mut delivered = 0;
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let _ = all.add(&shard.latency_us);
            delivered += shard.delivered;
        }
        (all, delivered)
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

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
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
    let start = Instant::now();
    // Channel names carry a run id, so traffic a server still owes an earlier
    // run can never be counted in this one.
    let run_id: u32 = rand::random();
    let baseline = proc_stats::sample(&config.server_pids);
    let total_triggers = (config.rate * config.duration.as_secs_f64()).ceil() as u64;
    let counters = Arc::new(Counters::new());
    let subscribers: Arc<Vec<AtomicUsize>> =
        Arc::new((0..config.channels).map(|_| AtomicUsize::new(0)).collect());

    // Connect.
    let connected = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let connect_started = Instant::now();
    let mut handshakes = Vec::with_capacity(config.connections);
    for i in 0..config.connections {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let source = config.source_ips[i % config.source_ips.len()];
        let channel_index = i % config.channels;
        let (counters, subscribers, task_connected, task_failures, first_error) = (
            counters.clone(),
            subscribers.clone(),
            connected.clone(),
            failures.clone(),
            first_error.clone(),
        );
        let (target, key) = (config.socket_addr, config.app.key.clone());
        handshakes.push(tokio::spawn(async move {
            let channel = format!("bench-{run_id:x}-{channel_index}");
            let result = client::connect(source, target, &key, &channel).await;
            drop(permit);
            match result {
                Ok(ws) => {
                    subscribers[channel_index].fetch_add(1, Ordering::Relaxed);
                    task_connected.fetch_add(1, Ordering::Relaxed);
                    let shard = &counters.shards[i % SHARDS];
                    let mut seen = vec![0u64; (total_triggers as usize).div_ceil(64) + 1];
                    client::read_deliveries(ws, |d| {
                        let (word, bit) = ((d.seq / 64) as usize, 1u64 << (d.seq % 64));
                        match seen.get_mut(word) {
                            Some(w) if *w & bit != 0 => {
                                counters.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(w) => {
                                *w |= bit;
                                let latency = micros(start).saturating_sub(d.sent_us).max(1);
                                let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                                let _ = shard.latency_us.record(latency);
                                shard.delivered += 1;
                            }
                            None => {
                                counters.late_or_unknown.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                    .await;
                }
                Err(e) => {
                    task_failures.fetch_add(1, Ordering::Relaxed);
                    first_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e.to_string());
                }
            }
        }));
        if config.progress && i % 1000 == 999 {
            eprintln!(
                "connecting: {} connected, {} failed",
                connected.load(Ordering::Relaxed),
                failures.load(Ordering::Relaxed)
            );
        }
    }
    // Wait until every handshake finished (each task stays alive reading afterwards).
    while connected.load(Ordering::Relaxed) + failures.load(Ordering::Relaxed) < config.connections
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    let idle = proc_stats::sample(&config.server_pids);
    if config.progress {
        eprintln!(
            "connected {} of {} in {connect_seconds:.1} s",
            connected.load(Ordering::Relaxed),
            config.connections
        );
    }

    // Trigger.
    let triggers = TriggerClient::new(&config.trigger_url, config.app.clone())
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let accepted_per_channel: Arc<Vec<AtomicU64>> =
        Arc::new((0..config.channels).map(|_| AtomicU64::new(0)).collect());
    let refused = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let not_sent = Arc::new(AtomicU64::new(0));
    let trigger_latency = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
    ));
    let padding = "x".repeat(config.payload);
    let trigger_started = Instant::now();
    let cpu_before = proc_stats::sample(&config.server_pids);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut last_delivered = 0u64;
    let mut seq = 0u64;
    if total_triggers == 0 {
        tokio::time::sleep(config.duration).await;
    }
    while seq < total_triggers {
        let due = (trigger_started.elapsed().as_secs_f64() * config.rate) as u64 + 1;
        while seq < due.min(total_triggers) {
            let channel_index = (seq % config.channels as u64) as usize;
            if in_flight.load(Ordering::Relaxed) >= MAX_TRIGGERS_IN_FLIGHT {
                not_sent.fetch_add(1, Ordering::Relaxed);
            } else {
                in_flight.fetch_add(1, Ordering::Relaxed);
                let data = format!(r#"{{"s":{seq},"t":{},"p":"{padding}"}}"#, micros(start));
                let (triggers, accepted, refused, in_flight, trigger_latency) = (
                    triggers.clone(),
                    accepted_per_channel.clone(),
                    refused.clone(),
                    in_flight.clone(),
                    trigger_latency.clone(),
                );
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let channel = format!("bench-{run_id:x}-{channel_index}");
                    let status = triggers
                        .trigger(&[channel], "bench", data, None)
                        .await
                        .map_or(0, |r| r.status);
                    let _ = trigger_latency
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record(micros(sent).max(1));
                    if status == 200 {
                        accepted[channel_index].fetch_add(1, Ordering::Relaxed);
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
            seq += 1;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            _ = ticker.tick() => {
                if config.progress {
                    let (latency, delivered) = counters.merged();
                    eprintln!(
                        "t={:>3.0}s connected={} triggers={seq} delivered/s={} p99={:.2}ms",
                        trigger_started.elapsed().as_secs_f64(),
                        connected.load(Ordering::Relaxed),
                        delivered - last_delivered,
                        latency.value_at_quantile(0.99) as f64 / 1000.0
                    );
                    last_delivered = delivered;
                }
            }
        }
    }
    let trigger_seconds = trigger_started.elapsed().as_secs_f64();
    while in_flight.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let expected: u64 = (0..config.channels)
        .map(|c| {
            accepted_per_channel[c].load(Ordering::Relaxed)
                * subscribers[c].load(Ordering::Relaxed) as u64
        })
        .sum();
    let settle_deadline = Instant::now() + SETTLE;
    while counters.merged().1 < expected && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy = proc_stats::sample(&config.server_pids);
    let (latency, delivered) = counters.merged();
    let accepted: u64 = accepted_per_channel
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum();
    let trigger_latency = trigger_latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for handshake in handshakes {
        handshake.abort();
    }
    let connected = connected.load(Ordering::Relaxed);
    Ok(BenchReport {
        connections: config.connections,
        connected,
        connect_failures: failures.load(Ordering::Relaxed),
        first_connect_error: first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        connect_seconds,
        connects_per_second: connected as f64 / connect_seconds.max(1e-9),
        channels: config.channels,
        triggers_sent: total_triggers - not_sent.load(Ordering::Relaxed),
        triggers_accepted: accepted,
        triggers_refused: refused.load(Ordering::Relaxed),
        triggers_not_sent: not_sent.load(Ordering::Relaxed),
        trigger_seconds,
        trigger_latency: Latency::from_histogram(&trigger_latency),
        expected_deliveries: expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        duplicates: counters.duplicates.load(Ordering::Relaxed),
        delivered_per_second: delivered as f64 / trigger_seconds.max(1e-9),
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
        server_cpu_seconds_triggering: busy.cpu_seconds - cpu_before.cpu_seconds,
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
