//! The webhook series: whichever process sends webhooks (the master with the
//! embedded broker, each worker with Redis) reports its [`DispatchStats`]
//! under its `worker` label.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::webhook::DispatchStats;

type Labels = Vec<(&'static str, String)>;

/// Adds `stats` of the process `worker` (an id, or `master`) to `registry`.
pub(crate) fn register(registry: &mut Registry, stats: &DispatchStats, worker: &str) {
    let delivered = Family::<Labels, Counter>::default();
    delivered
        .get_or_create(&vec![("worker", worker.to_owned())])
        .inc_by(stats.delivered_events);
    registry.register(
        "webhook_events_delivered",
        "Webhook events a receiver accepted (2xx)",
        delivered,
    );
    let dropped = Family::<Labels, Counter>::default();
    for (reason, n) in [
        ("queue_full", stats.dropped_full),
        ("given_up", stats.dropped_given_up),
        ("not_sendable", stats.dropped_not_retryable),
    ] {
        dropped
            .get_or_create(&vec![
                ("worker", worker.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc_by(n);
    }
    registry.register(
        "webhook_events_dropped",
        "Webhook events dropped: queue_full (the endpoint's queue was full), given_up (retried for 5 minutes), not_sendable",
        dropped,
    );
}

/// The exposition of `stats` alone, for a worker to add to its own.
pub(crate) fn encode(stats: &DispatchStats, worker: &str) -> String {
    let mut registry = Registry::with_prefix("pushwire");
    register(&mut registry, stats, worker);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}
