//! `WebhookQueue`: turns a stream of webhook events into batched, retried
//! deliveries, one task per endpoint.
//!
//! Each endpoint gets its own bounded queue and its own task, so a slow or
//! dead receiver costs only its own queue: the caller never waits, and other
//! endpoints keep their pace. A task sends one batch at a time, oldest events
//! first, so the events of a channel reach a receiver in the order they
//! happened; while a batch is being retried, new events wait behind it, and
//! once the queue is full further ones are dropped for that endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pushwire_shared::App;
use pushwire_shared::webhook::{WebhookEndpoint, WebhookEvent};
use tokio::sync::mpsc::{self, error::TryRecvError, error::TrySendError};
use tokio::time::Instant;

use super::sender::REQUEST_TIMEOUT;
use super::{DeliveryCounters, DispatchStats, RetrySchedule, WebhookSender, send_with_retries};

/// How often, at most, a full queue is logged per endpoint: a receiver that
/// stays down would otherwise log every event it misses.
const FULL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How batches are formed, how much may wait, and how failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DispatchSettings {
    /// The most events one request carries (at least 1).
    pub max_batch_events: usize,
    /// How long after its first event was queued a batch that is not full is
    /// sent anyway: events that come close together share a request, none
    /// waits much longer than this while its receiver keeps up.
    pub max_batch_delay: Duration,
    /// How many events may wait for each endpoint, besides the batch in
    /// flight (at least 1); beyond that, new events are dropped for it.
    pub max_pending_events: usize,
    /// How long one attempt may take, connecting and reading the answer included.
    pub timeout: Duration,
    /// When a failed batch is tried again, and when it is given up.
    pub schedule: RetrySchedule,
}

impl Default for DispatchSettings {
    /// Batches of up to 50 events, sent within 250 ms; 10 000 events waiting
    /// per endpoint; 5 s per attempt; retried as Pusher does for 5 minutes.
    fn default() -> Self {
        DispatchSettings {
            max_batch_events: 50,
            max_batch_delay: Duration::from_millis(250),
            max_pending_events: 10_000,
            timeout: REQUEST_TIMEOUT,
            schedule: RetrySchedule::default(),
        }
    }
}

/// An event waiting for its endpoint's task, and when it was queued: a
/// batch's delay runs from its first event's queueing, not from when the
/// task got to it.
#[derive(Debug)]
struct Queued {
    event: WebhookEvent,
    at: Instant,
}

/// One endpoint as `push` sees it: what it wants, and the way to its task.
#[derive(Debug)]
struct Route {
    endpoint: WebhookEndpoint,
    queue: mpsc::Sender<Queued>,
    full_log: FullLog,
}

/// Throttles the "queue full" warning of one endpoint without a lock, so
/// that `push` stays wait-free on its slowest path too.
#[derive(Debug)]
struct FullLog {
    /// When the log may next be written, in ms since `since`.
    next_ms: AtomicU64,
    /// Drops not yet reported.
    unreported: AtomicU64,
    since: Instant,
}

impl FullLog {
    fn new() -> Self {
        FullLog {
            next_ms: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            since: Instant::now(),
        }
    }

    /// Counts one drop; returns how many to report if a log is due now.
    fn dropped(&self) -> Option<u64> {
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(FULL_LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let due = now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if due {
            Some(self.unreported.swap(0, Ordering::Relaxed) + 1)
        } else {
            self.unreported.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[derive(Debug)]
struct Shared {
    /// App id → its endpoints.
    routes: HashMap<String, Vec<Route>>,
    counters: Arc<DeliveryCounters>,
}

/// The handle through which events reach their endpoints' delivery tasks.
///
/// Cheap to clone; [`push`](WebhookQueue::push) never blocks and never fails
/// the caller. Once the last handle is dropped, each task sends what it still
/// holds and ends.
#[derive(Debug, Clone)]
pub(crate) struct WebhookQueue {
    shared: Arc<Shared>,
}

impl WebhookQueue {
    /// Starts one delivery task per endpoint of every app in `apps` (the
    /// configured apps with their endpoints) and returns the handle.
    ///
    /// Call it within a Tokio runtime: outside one, no task can start, and
    /// the queue logs an error and delivers nothing.
    pub(crate) fn start(
        apps: Vec<(App, Vec<WebhookEndpoint>)>,
        settings: DispatchSettings,
    ) -> Self {
        let urls = apps.iter().flat_map(|(_, endpoints)| endpoints);
        let sender = WebhookSender::for_urls(settings.timeout, urls.map(WebhookEndpoint::url));
        Self::start_with(apps, settings, sender)
    }

    /// [`start`](Self::start), sending through `sender`.
    pub(crate) fn start_with(
        apps: Vec<(App, Vec<WebhookEndpoint>)>,
        settings: DispatchSettings,
        sender: WebhookSender,
    ) -> Self {
        let counters = Arc::new(DeliveryCounters::default());
        let mut routes: HashMap<String, Vec<Route>> = HashMap::new();
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Some(runtime),
            Err(error) => {
                tracing::error!(
                    %error,
                    "webhook queue started outside a runtime: no webhook will be sent"
                );
                None
            }
        };
        if let Some(runtime) = runtime {
            for (app, endpoints) in apps {
                let app = Arc::new(app);
                for endpoint in endpoints {
                    // tokio refuses a capacity of 0, or one above its semaphore's.
                    let capacity = settings
                        .max_pending_events
                        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
                    let (queue, events) = mpsc::channel(capacity);
                    let task = Delivery {
                        app: app.clone(),
                        endpoint: endpoint.clone(),
                        sender: sender.clone(),
                        settings,
                        counters: counters.clone(),
                    };
                    runtime.spawn(task.run(events));
                    routes.entry(app.id.clone()).or_default().push(Route {
                        endpoint,
                        queue,
                        full_log: FullLog::new(),
                    });
                }
            }
        }
        WebhookQueue {
            shared: Arc::new(Shared { routes, counters }),
        }
    }

    /// Queues `event` of app `app_id` for every endpoint of that app that
    /// wants it (its kind, and its channel's prefix).
    ///
    /// Never waits: when an endpoint's queue is full the event is dropped
    /// for that endpoint, counted, and logged at most once per 10 s per
    /// endpoint.
    pub(crate) fn push(&self, app_id: &str, event: WebhookEvent) {
        let Some(routes) = self.shared.routes.get(app_id) else {
            return;
        };
        let (kind, channel) = (event.kind(), event.channel().as_str());
        let at = Instant::now();
        for route in routes.iter().filter(|r| r.endpoint.wants(kind, channel)) {
            let queued = Queued {
                event: event.clone(),
                at,
            };
            match route.queue.try_send(queued) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.shared.counters.dropped_full(1);
                    if let Some(dropped) = route.full_log.dropped() {
                        tracing::warn!(
                            app = app_id,
                            url = %route.endpoint.url(),
                            dropped,
                            "webhook queue full: events dropped for this endpoint"
                        );
                    }
                }
                // The task ends only once every handle is gone, so this is
                // a task that died; nothing else would deliver the event.
                Err(TrySendError::Closed(_)) => {
                    tracing::error!(
                        app = app_id,
                        url = %route.endpoint.url(),
                        "webhook delivery task is gone"
                    );
                }
            }
        }
    }

    /// The counts so far, over every endpoint.
    pub(crate) fn stats(&self) -> DispatchStats {
        self.shared.counters.stats()
    }
}

/// The delivery task of one endpoint.
struct Delivery {
    app: Arc<App>,
    endpoint: WebhookEndpoint,
    sender: WebhookSender,
    settings: DispatchSettings,
    counters: Arc<DeliveryCounters>,
}

impl Delivery {
    /// Sends batches until the queue is closed and empty.
    async fn run(self, mut events: mpsc::Receiver<Queued>) {
        let max = self.settings.max_batch_events.max(1);
        let mut batch = Vec::with_capacity(max.min(1024));
        while let Some(first) = events.recv().await {
            // A delay too long to add is a batch sent only once full.
            let deadline = first.at.checked_add(self.settings.max_batch_delay);
            batch.push(first.event);
            fill(&mut batch, max, deadline, &mut events).await;
            self.deliver(&batch).await;
            batch.clear();
        }
    }

    /// Sends `batch` until it is accepted, or dropped.
    async fn deliver(&self, batch: &[WebhookEvent]) {
        let url = self.endpoint.url();
        send_with_retries(
            &self.sender,
            &self.app,
            url,
            batch,
            &self.settings,
            &self.counters,
            |_| async {},
        )
        .await;
    }
}

/// Adds queued events to `batch` until it holds `max`, or `deadline` (if
/// any) passes and nothing more is waiting, or the queue closes.
///
/// What is already waiting is taken even past the deadline: after a long
/// retry, the backlog goes out in full batches, not one event at a time.
async fn fill(
    batch: &mut Vec<WebhookEvent>,
    max: usize,
    deadline: Option<Instant>,
    events: &mut mpsc::Receiver<Queued>,
) {
    while batch.len() < max {
        match events.try_recv() {
            Ok(queued) => batch.push(queued.event),
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {
                let next = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, events.recv())
                        .await
                        .ok()
                        .flatten(),
                    None => events.recv().await,
                };
                match next {
                    Some(queued) => batch.push(queued.event),
                    None => return,
                }
            }
        }
    }
}
