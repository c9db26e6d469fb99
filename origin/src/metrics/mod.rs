//! Prometheus metrics: what each process counts, and one exposition for the
//! whole origin.
//!
//! Every worker keeps its counters in its own registry ([`WorkerMetrics`],
//! reached through [`worker`]); each series carries the worker's id as a
//! `worker` label. The master serves `/metrics`: it asks every worker for its
//! exposition over the control socket, adds its own ([`OriginMetrics`]: build
//! info, worker restarts, each process's memory and CPU) and joins them
//! ([`merge`]). A worker that restarts starts its counters from zero again;
//! its series keep their labels, so Prometheus reads the drop as a counter
//! reset and `rate()` and `increase()` stay right.

#[cfg(test)]
mod dashboard_check;
mod merge;
mod origin;
mod process_stats;
mod webhooks;
mod worker;

use std::sync::OnceLock;

pub(crate) use self::merge::merge;
pub(crate) use self::origin::{OriginMetrics, WorkerProcess};
pub(crate) use self::worker::{AppLabels, OutcomeLabels, TransportLabels, WorkerMetrics};

static WORKER: OnceLock<WorkerMetrics> = OnceLock::new();

/// Fills in the gauges that are read rather than counted, just before a scrape.
type ScrapeHook = Box<dyn Fn(&WorkerMetrics) + Send + Sync>;

static SCRAPE_HOOK: OnceLock<ScrapeHook> = OnceLock::new();

/// Names this process's metrics after worker `id`; call before anything counts.
pub(crate) fn init_worker(id: usize) {
    let _ = WORKER.set(WorkerMetrics::new(&id.to_string()));
}

/// This process's worker metrics.
pub(crate) fn worker() -> &'static WorkerMetrics {
    WORKER.get_or_init(|| WorkerMetrics::new("0"))
}

/// Installs what sets the read gauges at each scrape (the worker's server,
/// which knows its sockets and its broker).
pub(crate) fn on_scrape(hook: impl Fn(&WorkerMetrics) + Send + Sync + 'static) {
    let _ = SCRAPE_HOOK.set(Box::new(hook));
}

/// What this worker's webhook senders have done (with Redis, workers send).
type WebhookStatsHook = Box<dyn Fn() -> Option<crate::webhook::DispatchStats> + Send + Sync>;

static WEBHOOK_STATS: OnceLock<(String, WebhookStatsHook)> = OnceLock::new();

/// Installs where worker `id`'s webhook counts are read at each scrape.
pub(crate) fn webhook_stats_from(
    id: String,
    stats: impl Fn() -> Option<crate::webhook::DispatchStats> + Send + Sync + 'static,
) {
    let _ = WEBHOOK_STATS.set((id, Box::new(stats)));
}

/// This worker's exposition, its read gauges up to date.
pub(crate) fn scrape_worker() -> String {
    let metrics = worker();
    if let Some(hook) = SCRAPE_HOOK.get() {
        hook(metrics);
    }
    let text = metrics.encode();
    match WEBHOOK_STATS
        .get()
        .and_then(|(id, stats)| Some((id, stats()?)))
    {
        Some((id, stats)) => merge([text.as_str(), webhooks::encode(&stats, id).as_str()]),
        None => text,
    }
}
