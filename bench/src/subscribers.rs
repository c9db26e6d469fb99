//! Opening the subscriber connections, each in its own task that keeps reading
//! deliveries into the [`DeliveryLog`] (and churning when picked) until the run ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::churn::Churn;
use super::connection::{Connection, Endpoint};
use super::deliveries::DeliveryLog;
use super::{BenchConfig, Run};

/// At most this many handshakes in flight at once.
const CONNECT_CONCURRENCY: usize = 512;

/// The connections, once every handshake finished.
#[derive(Debug)]
pub(super) struct Subscribers {
    tasks: Vec<JoinHandle<()>>,
    /// Connections subscribed.
    pub(super) connected: usize,
    /// Connections that failed.
    pub(super) failures: usize,
    /// The first failure's reason.
    pub(super) first_error: Option<String>,
    /// Subscribers per channel index.
    pub(super) per_channel: Vec<usize>,
    /// Time to open them all.
    pub(super) seconds: f64,
}

impl Subscribers {
    /// Closes every connection.
    pub(super) fn close(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Connection `i` joins channel `i mod K` from source address `i mod S`.
pub(super) async fn connect_all(
    config: &BenchConfig,
    run: Run,
    log: Arc<DeliveryLog>,
    churn: Arc<Churn>,
    triggers: u64,
) -> Subscribers {
    let started = Instant::now();
    let per_channel: Arc<Vec<AtomicUsize>> =
        Arc::new((0..config.channels).map(|_| AtomicUsize::new(0)).collect());
    let finished = Arc::new(AtomicUsize::new(0));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut tasks = Vec::with_capacity(config.connections);
    for i in 0..config.connections {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let source = config.source_ips[i % config.source_ips.len()];
        let channel_index = i % config.channels;
        let channel = run.channel(channel_index);
        let (target, key) = (config.socket_addr, config.app.key.clone());
        let handshake = config.handshake;
        let (log, churn, per_channel, done, errors) = (
            log.clone(),
            churn.clone(),
            per_channel.clone(),
            finished.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let endpoint = Endpoint {
                source,
                target,
                app_key: &key,
                handshake,
            };
            let mine = log.for_connection(i, triggers);
            let result = Connection::open(endpoint, vec![channel], mine, run).await;
            drop(permit);
            match result {
                Ok(connection) => {
                    per_channel[channel_index].fetch_add(1, Ordering::Relaxed);
                    done.fetch_add(1, Ordering::Relaxed);
                    connection.run(churn.slot(i), &churn).await;
                }
                Err(e) => {
                    errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(e.to_string());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        if config.progress && i % 1000 == 999 {
            eprintln!("connecting: {} done", finished.load(Ordering::Relaxed));
        }
    }
    // Each task stays alive reading after its handshake: wait for the handshakes only.
    while finished.load(Ordering::Relaxed) < config.connections {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let errors = errors.lock().unwrap_or_else(|e| e.into_inner());
    let per_channel: Vec<usize> = per_channel
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    if config.progress {
        eprintln!(
            "connected {} of {} in {seconds:.1} s",
            config.connections - errors.len(),
            config.connections
        );
    }
    Subscribers {
        tasks,
        connected: config.connections - errors.len(),
        failures: errors.len(),
        first_error: errors.first().cloned(),
        per_channel,
        seconds,
    }
}
