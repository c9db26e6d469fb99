//! Firing signed triggers at a fixed rate, each carrying its send time, with
//! live progress once a second.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::deliveries::{DeliveryLog, histogram};
use super::subscribers::Subscribers;
use super::{BenchConfig, BenchError, Run, proc_stats};
use pushwire_origin::trigger_client::TriggerClient;

/// Triggers in flight beyond which the generator counts the rest as not sent.
const MAX_TRIGGERS_IN_FLIGHT: usize = 4096;

/// What the trigger phase did.
#[derive(Debug)]
pub(super) struct TriggerTally {
    /// Triggers answered 200, per channel index.
    pub(super) accepted_per_channel: Vec<u64>,
    /// Triggers answered otherwise.
    pub(super) refused: u64,
    /// Triggers skipped (too many in flight).
    pub(super) not_sent: u64,
    /// Request round trips, µs.
    pub(super) latency: Histogram<u64>,
    /// Length of the phase.
    pub(super) seconds: f64,
    /// Server CPU seconds when it began.
    pub(super) cpu_before: f64,
}

/// Sends `total` triggers at `config.rate` (or idles for `config.duration` when 0),
/// round-robin over the channels, and waits for the last answer.
pub(super) async fn fire(
    config: &BenchConfig,
    run: Run,
    total: u64,
    log: &DeliveryLog,
    subscribers: &Subscribers,
) -> Result<TriggerTally, BenchError> {
    let client = TriggerClient::new(&config.trigger_url, config.app.clone())
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let accepted: Arc<Vec<AtomicU64>> =
        Arc::new((0..config.channels).map(|_| AtomicU64::new(0)).collect());
    let refused = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let latency = Arc::new(Mutex::new(histogram()));
    let padding = "x".repeat(config.payload);
    let cpu_before = proc_stats::sample(&config.server_pids).cpu_seconds;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let (mut seq, mut not_sent, mut last_delivered) = (0u64, 0u64, 0u64);
    if total == 0 {
        tokio::time::sleep(config.duration).await;
    }
    while seq < total {
        let due = ((started.elapsed().as_secs_f64() * config.rate) as u64 + 1).min(total);
        while seq < due {
            let channel = (seq % config.channels as u64) as usize;
            if in_flight.load(Ordering::Relaxed) >= MAX_TRIGGERS_IN_FLIGHT {
                not_sent += 1;
            } else {
                in_flight.fetch_add(1, Ordering::Relaxed);
                let data = format!(r#"{{"s":{seq},"t":{},"p":"{padding}"}}"#, run.micros());
                let (client, accepted, refused, in_flight, latency) = (
                    client.clone(),
                    accepted.clone(),
                    refused.clone(),
                    in_flight.clone(),
                    latency.clone(),
                );
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let status = client
                        .trigger(&[run.channel(channel)], "bench", data, None)
                        .await
                        .map_or(0, |r| r.status);
                    let round_trip = u64::try_from(sent.elapsed().as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    let _ = latency
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record(round_trip);
                    if status == 200 {
                        accepted[channel].fetch_add(1, Ordering::Relaxed);
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
                    let (so_far, delivered) = log.merged();
                    eprintln!(
                        "t={:>3.0}s connected={} triggers={seq} delivered/s={} p99={:.2}ms",
                        started.elapsed().as_secs_f64(),
                        subscribers.connected,
                        delivered - last_delivered,
                        so_far.value_at_quantile(0.99) as f64 / 1000.0
                    );
                    last_delivered = delivered;
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    while in_flight.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let latency = latency.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(TriggerTally {
        accepted_per_channel: accepted.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
        refused: refused.load(Ordering::Relaxed),
        not_sent,
        latency,
        seconds,
        cpu_before,
    })
}
