//! Webhooks under channel churn (`--webhook-churn`), and a receiver that runs
//! alongside an ordinary run (`--webhook-listen` alone).
//!
//! The churn run connects a pool of sockets, then has them occupy and vacate
//! fresh channels at the rate asked (see [`churner`]) while its own HTTP
//! receiver ([`receiver`]) takes the server's webhooks, checks their
//! signatures and matches each `channel_occupied` / `channel_vacated` to the
//! moment the generator made it happen ([`ledger`]): the subscribe's ack, or
//! the unsubscribe leaving. It reports what arrived against what was expected,
//! the latency, and the server's CPU over the churn. Without a receiver (a
//! server without webhooks, for the A/B) it churns and measures the CPU alone.

mod churner;
mod ledger;
mod receiver;
mod report;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushwire_shared::App;

use self::churner::{Counts, Plan};
use self::ledger::Ledger;
pub use self::ledger::LedgerTally;
pub use self::receiver::Received;
use self::receiver::Receiver;
pub use self::report::{WebhookChurnReport, WebhookTally};
use crate::{BenchError, client, proc_stats};

/// The most channels a second `--webhook-churn` may ask for.
pub const MAX_CHURN_CHANNELS_PER_SECOND: f64 = 20_000.0;
/// The shortest hold: one subscribe per socket per hold must stay below the
/// server's default per-socket rate limit (10 a second).
pub const MIN_HOLD: Duration = Duration::from_millis(200);
/// The longest hold: a socket reads (and answers pings) only while it acts.
pub const MAX_HOLD: Duration = Duration::from_secs(10);
/// The most sockets a churn run opens (`rate · hold`).
const MAX_SOCKETS: usize = 100_000;
/// After the last unsubscribe, how long to wait for the webhooks still due.
const SETTLE: Duration = Duration::from_secs(10);
/// After an ordinary run, how long to wait for its channels' `channel_vacated`.
const VACATED_SETTLE: Duration = Duration::from_secs(5);
/// Between connecting the pool and the first tick: every socket task is spawned
/// and asleep before its first tick comes.
const LEAD: Duration = Duration::from_millis(100);

/// What a webhook churn run does.
#[derive(Debug, Clone)]
pub struct WebhookChurnConfig {
    /// Socket.IO server, `host:port` (loopback).
    pub socket_addr: SocketAddr,
    /// Credentials: the app key to connect with, its secret to verify webhooks.
    pub app: App,
    /// Channels occupied (and as many vacated) per second.
    pub rate: f64,
    /// How long each channel stays occupied; the pool is `rate · hold` sockets.
    pub hold: Duration,
    /// How long fresh channels are occupied; the last are vacated up to `hold` later.
    pub duration: Duration,
    /// Local addresses to connect from, used in turn.
    pub source_ips: Vec<IpAddr>,
    /// Server processes to measure (with their descendants).
    pub server_pids: Vec<u32>,
    /// Where to receive the server's webhooks (loopback); none: churn only.
    pub listen: Option<SocketAddr>,
    /// How each socket opens its session.
    pub handshake: client::Handshake,
    /// Print progress to stderr every second.
    pub progress: bool,
}

/// Runs the churn and returns its report.
pub async fn run(config: WebhookChurnConfig) -> Result<WebhookChurnReport, BenchError> {
    if !config.socket_addr.ip().is_loopback() {
        return Err(BenchError::Invalid(
            "the bench targets loopback servers only".into(),
        ));
    }
    if !(config.rate > 0.0 && config.rate <= MAX_CHURN_CHANNELS_PER_SECOND) {
        return Err(BenchError::Invalid(format!(
            "--webhook-churn must be in (0, {MAX_CHURN_CHANNELS_PER_SECOND}] channels per second"
        )));
    }
    if !(MIN_HOLD..=MAX_HOLD).contains(&config.hold) {
        return Err(BenchError::Invalid(format!(
            "--webhook-hold must be in [{MIN_HOLD:?}, {MAX_HOLD:?}]"
        )));
    }
    let sockets = churner::pool_size(config.rate, config.hold);
    if sockets > MAX_SOCKETS {
        return Err(BenchError::Invalid(format!(
            "--webhook-churn × --webhook-hold needs {sockets} sockets, more than {MAX_SOCKETS}"
        )));
    }
    // Channel names unique per run: webhooks a server still owes an earlier
    // run are counted as foreign, never matched.
    let prefix: Arc<str> = format!("wh-{:x}-", rand::random::<u32>()).into();
    let ledger = Arc::new(Mutex::new(Ledger::new(prefix.to_string(), Instant::now())));
    let receiver = match config.listen {
        Some(addr) => Some(Receiver::start(addr, config.app.clone(), ledger.clone()).await?),
        None => None,
    };
    let pool = churner::connect(&config, sockets).await;
    if config.progress {
        eprintln!(
            "connected {} of {sockets} in {:.1} s",
            pool.sockets.len(),
            pool.seconds
        );
    }
    let connected = pool.sockets.len();
    let start = Instant::now() + LEAD;
    lock(&ledger).set_start(start);
    let plan = Plan {
        start,
        hold: config.hold,
        sockets: connected,
        duration: config.duration,
    };
    let counts = Arc::new(Counts::default());
    let server_before = proc_stats::sample(&config.server_pids);
    let bench_before = proc_stats::sample(&[std::process::id()]);
    let mut churning = tokio::spawn(churner::churn(
        pool.sockets,
        plan,
        prefix,
        receiver.is_some().then(|| ledger.clone()),
        counts.clone(),
    ));
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let finished = loop {
        tokio::select! {
            finished = &mut churning => break finished.unwrap_or_default(),
            _ = ticker.tick() => if config.progress {
                progress(start, &counts, receiver.as_ref(), &ledger);
            }
        }
    };
    let churn_seconds = start.elapsed().as_secs_f64();
    if receiver.is_some() {
        let deadline = Instant::now() + SETTLE;
        while lock(&ledger).pending() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let server_after = proc_stats::sample(&config.server_pids);
    let bench_after = proc_stats::sample(&[std::process::id()]);
    drop(finished);

    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    let (occupied, vacated) = (load(&counts.occupied), load(&counts.vacated));
    let server_cpu = server_after.cpu_seconds - server_before.cpu_seconds;
    let webhooks = receiver.map(|receiver| {
        let received = receiver.received();
        let ledger = lock(&ledger);
        let steady_from = config.hold.as_secs_f64().ceil() as usize;
        let steady_to = config.duration.as_secs_f64().floor() as usize;
        WebhookTally {
            received,
            ledger: ledger.tally(),
            events_per_second: (received.occupied + received.vacated) as f64
                / churn_seconds.max(1e-9),
            events_per_second_steady: ledger::steady_rate(
                ledger.timeline(),
                steady_from,
                steady_to,
            ),
            timeline: ledger.timeline().to_vec(),
        }
    });
    let (subscribe_ack_latency, unsubscribe_ack_latency) = counts.ack_latency();
    Ok(WebhookChurnReport {
        channels_per_second: config.rate,
        hold_seconds: config.hold.as_secs_f64(),
        sockets,
        connected,
        connect_failures: pool.failures,
        first_connect_error: pool.first_error,
        connect_seconds: pool.seconds,
        churn_seconds,
        channels_occupied: occupied,
        channels_vacated: vacated,
        socket_failures: load(&counts.failed),
        first_socket_error: lock(&counts.first_error).clone(),
        subscribe_ack_latency,
        unsubscribe_ack_latency,
        webhooks,
        server_processes: server_after.processes,
        server_cpu_seconds: server_cpu,
        server_cpu_us_per_transition: server_cpu * 1e6 / ((occupied + vacated).max(1) as f64),
        bench_cpu_seconds: bench_after.cpu_seconds - bench_before.cpu_seconds,
    })
}

/// One progress line on stderr.
fn progress(start: Instant, counts: &Counts, receiver: Option<&Receiver>, ledger: &Mutex<Ledger>) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut line = format!(
        "t={:>3.0}s sockets={} occupied={} vacated={}",
        start.elapsed().as_secs_f64().max(0.0),
        counts.cycling.load(Relaxed),
        counts.occupied.load(Relaxed),
        counts.vacated.load(Relaxed),
    );
    if let Some(receiver) = receiver {
        let ledger = lock(ledger);
        let tally = ledger.tally();
        line.push_str(&format!(
            " webhooks={} pending={} p99={:.2}ms",
            receiver.received().events,
            ledger.pending(),
            tally.latency.p99_ms
        ));
    }
    eprintln!("{line}");
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A receiver running alongside an ordinary run: it counts and verifies the
/// webhooks, so that a server with webhooks on has its receiver, without
/// matching them to anything.
#[derive(Debug)]
pub(crate) struct Listener {
    receiver: Receiver,
}

impl Listener {
    /// Listens on `listen` for webhooks signed as `app`.
    pub(crate) async fn start(listen: SocketAddr, app: App) -> Result<Self, BenchError> {
        let ledger = Arc::new(Mutex::new(Ledger::new(String::new(), Instant::now())));
        Ok(Listener {
            receiver: Receiver::start(listen, app, ledger).await?,
        })
    }

    /// Waits until `vacated` channels' `channel_vacated` came (the run's
    /// sockets are closed), or a few seconds: a webhook the server still owes
    /// when the receiver is gone would be retried into the next run.
    pub(crate) async fn finish(self, vacated: u64) -> Received {
        let deadline = Instant::now() + VACATED_SETTLE;
        while self.receiver.received().vacated < vacated && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.receiver.received()
    }
}
