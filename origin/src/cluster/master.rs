//! The master process: the listener, the state the cluster shares (which
//! worker is where, the router, the embedded broker's server) and the start
//! and stop of the whole origin. Workers are kept running by `supervisor`;
//! each accepted connection is handed over by `routing`.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UnixDatagram};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinSet;

use super::control_queue::{CONTROL_QUEUE_FRAMES, ControlQueue};
use super::drain::DRAIN_GRACE;
use super::error::ClusterError;
use super::ipc::{RequestId, ToWorker};
use super::public_listener::bind_public;
use super::routing::route;
use super::start_failure::StartFailures;
use super::status;
use super::sticky::{StickyRouter, WorkerId};
use super::supervisor::supervise;
use crate::broker::embedded::{Deliver, EmbeddedBrokerServer, Webhooks};
use crate::config::ServeConfig;
use crate::http_server::ConnectionLimits;
use crate::webhook::WebhookQueue;
use pushwire_shared::history::HistoryPolicy;

/// How often expired sticky sessions are swept.
const SESSION_SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The master's end of one worker's sockets.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) control: ControlQueue,
    pub(super) handoff: Arc<UnixDatagram>,
    /// The worker's process id.
    pub(super) pid: u32,
}

#[derive(Debug)]
pub(super) struct Master {
    pub(super) settings: String,
    pub(super) router: Mutex<StickyRouter>,
    pub(super) broker: EmbeddedBrokerServer,
    pub(super) links: Mutex<HashMap<WorkerId, Link>>,
    /// Woken when a worker becomes ready or fails to start.
    pub(super) ready: Notify,
    pub(super) start_failures: StartFailures,
    /// `true` once the master is stopping: no worker is started or restarted after that.
    pub(super) stopping: watch::Sender<bool>,
    /// Whether each worker's broker connection is up, as it last said.
    pub(super) broker_up: Mutex<HashMap<WorkerId, bool>>,
    /// Restarts so far, by worker.
    pub(super) restarts: Mutex<HashMap<WorkerId, u64>>,
    /// Scrapes waiting for a worker's exposition, by request id.
    pub(super) scrapes: Mutex<HashMap<RequestId, oneshot::Sender<String>>>,
    /// The next id of a request from the master to a worker.
    pub(super) next_request: AtomicU64,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few map operations that cannot leave a map
    // half-updated, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Master {
    /// A master with no worker yet, sending each worker `settings` (JSON),
    /// keeping the embedded broker's history by `history` and reporting its
    /// transitions to `webhooks`.
    fn new(settings: String, history: HistoryPolicy, webhooks: Option<Webhooks>) -> Self {
        Master {
            settings,
            router: Mutex::new(StickyRouter::new()),
            broker: EmbeddedBrokerServer::new(history, webhooks),
            links: Mutex::new(HashMap::new()),
            ready: Notify::new(),
            start_failures: StartFailures::default(),
            stopping: watch::Sender::new(false),
            broker_up: Mutex::default(),
            restarts: Mutex::default(),
            scrapes: Mutex::default(),
            next_request: AtomicU64::new(1),
        }
    }

    pub(super) fn send(&self, worker: WorkerId, message: &ToWorker) {
        self.send_frame(&[worker], &message.encode());
    }

    fn broadcast(&self, message: &ToWorker) {
        let workers: Vec<WorkerId> = lock(&self.links).keys().copied().collect();
        self.send_frame(&workers, &message.encode());
    }

    /// Queues `frame` for each of `workers`. A worker whose queue is full has
    /// stopped reading: it gets no more connections or frames, and its queue
    /// has already asked its supervisor to kill it (which then forgets it).
    fn send_frame(&self, workers: &[WorkerId], frame: &[u8]) {
        let mut stuck = Vec::new();
        {
            let mut links = lock(&self.links);
            for &worker in workers {
                if let Some(link) = links.get(&worker)
                    && link.control.push(frame.to_vec()).is_err()
                {
                    links.remove(&worker);
                    stuck.push(worker);
                }
            }
        }
        for worker in stuck {
            tracing::error!(
                worker,
                queued = CONTROL_QUEUE_FRAMES,
                "worker stopped reading its control frames; stopping it (it restarts and its clients recover from history)"
            );
            lock(&self.router).remove_worker(worker);
        }
    }

    pub(super) fn forget(&self, worker: WorkerId) {
        lock(&self.router).remove_worker(worker);
        lock(&self.links).remove(&worker);
        lock(&self.broker_up).remove(&worker);
        self.broker.remove_worker(worker, self);
    }
}

impl Deliver for Master {
    fn deliver(&self, workers: &[WorkerId], payload: String) {
        // Encoded once for every subscriber.
        let frame = ToWorker::BrokerDelivery(payload).encode();
        self.send_frame(workers, &frame);
    }
}

/// The queue delivering `config`'s webhooks, when it names any endpoint and
/// the embedded broker runs (with Redis the workers send them), and its grace
/// period.
fn webhook_queue(config: &ServeConfig) -> Option<Webhooks> {
    if config.redis_url.is_some() {
        return None;
    }
    let apps: Vec<_> = config
        .apps
        .iter()
        .filter_map(|app| {
            let endpoints = config.webhooks.get(&app.id)?;
            Some((app.clone(), endpoints.clone()))
        })
        .collect();
    (!apps.is_empty()).then(|| Webhooks {
        queue: WebhookQueue::start(apps, config.webhook_dispatch()),
        vacated_grace: Duration::from_millis(config.webhook_grace_ms),
    })
}

/// Runs the master until `shutdown` resolves, then drains the workers and returns.
pub(crate) async fn run_master(
    config: &ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ClusterError> {
    let addr = SocketAddr::new(config.host, config.port);
    let listener = bind_public(addr).map_err(|source| ClusterError::Bind { addr, source })?;
    let broker = if config.redis_url.is_some() {
        "redis"
    } else {
        "embedded"
    };
    tracing::info!(addr = %listener.local_addr()?, workers = config.workers, broker, "listening");

    let mut public = config.clone();
    public.port = listener.local_addr()?.port();
    let master = Arc::new(Master::new(
        serde_json::to_string(&public).expect("the config always serialises"),
        config.history,
        webhook_queue(config),
    ));
    let metrics_server = match config.metrics_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ClusterError::BindMetrics { addr, source })?;
            tracing::info!(addr = %listener.local_addr()?, "serving metrics and readiness");
            let routes = status::metrics_routes(master.clone());
            Some(tokio::spawn(crate::http_server::serve(
                listener,
                routes,
                ConnectionLimits::default(),
                std::future::pending(),
            )))
        }
        None => None,
    };

    let mut supervisors = JoinSet::new();
    for id in 0..config.workers {
        supervisors.spawn(supervise(master.clone(), id));
    }
    let sweeper = tokio::spawn({
        let master = master.clone();
        async move {
            loop {
                tokio::time::sleep(SESSION_SWEEP_EVERY).await;
                lock(&master.router).expire(Instant::now());
            }
        }
    });

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small realtime frames must not wait for Nagle; the option
                    // travels with the socket to the worker.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(route(master.clone(), stream));
                }
                Err(e) => {
                    // E.g. out of descriptors: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }

    drop(listener);
    sweeper.abort();
    tracing::info!("stopping: no longer accepting; draining workers");
    master.stopping.send_replace(true);
    master.broadcast(&ToWorker::Shutdown);
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        while supervisors.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("workers did not stop within {DRAIN_GRACE:?}; killing them");
        // Dropping the supervisors drops their `Child`ren, which kills them.
        supervisors.shutdown().await;
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cluster::sticky::RouteHint;

    /// A master with no workers, for tests.
    pub(in crate::cluster) fn master() -> Master {
        Master::new(String::new(), Default::default(), None)
    }

    #[tokio::test]
    async fn a_worker_that_stops_reading_is_dropped_and_stopped() {
        let master = master();
        let (handoff, _other_end) = UnixDatagram::pair().unwrap();
        let (control, _frames_never_read, stuck) = ControlQueue::new(3);
        lock(&master.links).insert(
            7,
            Link {
                control,
                handoff: Arc::new(handoff),
                pid: 0,
            },
        );
        lock(&master.router).add_ready(7);
        for n in 0..3 {
            master.deliver(&[7], format!("event {n}"));
            assert!(lock(&master.links).contains_key(&7));
        }
        master.deliver(&[7], "one too many".to_owned());
        assert!(!lock(&master.links).contains_key(&7));
        assert_eq!(
            lock(&master.router).pick(&RouteHint::Fresh, Instant::now()),
            None
        );
        tokio::time::timeout(Duration::from_secs(5), stuck.notified())
            .await
            .expect("the supervisor is told to stop it");
    }
}
