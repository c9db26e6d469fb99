//! `WorkerMetrics`: what one worker process counts, in its own registry.

use std::borrow::Cow;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Labels naming only the app.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AppLabels {
    pub app: String,
}

/// A trigger API request's route and answer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TriggerLabels {
    /// The app id from the path (`""` when the path names none).
    pub app: String,
    /// `events` or `batch_events`.
    pub route: &'static str,
    /// The HTTP status answered.
    pub code: u16,
}

/// A trigger API route.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub route: &'static str,
}

/// An app and an outcome (`result`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub app: String,
    pub result: String,
}

/// An app and a refusal's ack code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RefusalLabels {
    pub app: String,
    pub code: u16,
}

/// A transport (`websocket` or `polling` for Socket.IO, `pusher` for the Pusher protocol).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TransportLabels {
    pub transport: &'static str,
}

/// A broker command (`publish script`, `presence join`, …).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CommandLabels {
    pub command: &'static str,
}

/// An outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub outcome: &'static str,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to ~6.5 s: loopback Redis round trips up to the publish bound.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 17))
}

/// Every metric a worker keeps. Counters only grow for the process's life;
/// the gauges are set when a scrape asks for them ([`WorkerMetrics::encode`]).
#[derive(Debug)]
pub(crate) struct WorkerMetrics {
    registry: Registry,
    /// Open Socket.IO connections by transport (set at scrape).
    pub connections: Family<TransportLabels, Gauge>,
    /// Socket subscriptions on this worker.
    pub subscriptions: Gauge,
    /// Channels with at least one subscriber on this worker.
    pub occupied_channels: Gauge,
    /// Presence memberships of this worker's sockets.
    pub presence_members: Gauge,
    /// Trigger API requests by route and status.
    pub trigger_requests: Family<TriggerLabels, Counter>,
    /// Trigger handling time, from the body read to the answer.
    pub trigger_duration: Timings<RouteLabels>,
    /// Events the trigger API accepted (one per event, whatever its channels).
    pub events_published: Family<AppLabels, Counter>,
    /// Event messages written to sockets.
    pub messages_delivered: Counter,
    /// Sockets disconnected because their send buffer was full.
    pub slow_consumer_evictions: Counter,
    /// `subscribe` with `since`, by outcome (`recovered` or `not_recovered`).
    pub history_replays: Family<OutcomeLabels, Counter>,
    /// Client events by result (`sent`, or the refusal's ack code).
    pub client_events: Family<ResultLabels, Counter>,
    /// Subscribes refused, by ack code.
    pub subscribe_refusals: Family<RefusalLabels, Counter>,
    /// Whether this worker's broker connection is up (set at scrape).
    pub broker_up: Gauge,
    /// Redis command time, by command.
    pub broker_command_duration: Timings<CommandLabels>,
    /// Times the broker's subscription connection was re-established.
    pub broker_reconnects: Counter,
}

impl WorkerMetrics {
    /// The metrics of worker `worker` (its id is a label on every series).
    pub(crate) fn new(worker: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "pushwire",
            std::iter::once((Cow::Borrowed("worker"), Cow::Owned(worker.to_owned()))),
        );
        let metrics = WorkerMetrics {
            connections: Family::default(),
            subscriptions: Gauge::default(),
            occupied_channels: Gauge::default(),
            presence_members: Gauge::default(),
            trigger_requests: Family::default(),
            trigger_duration: Family::new_with_constructor(latency_histogram),
            events_published: Family::default(),
            messages_delivered: Counter::default(),
            slow_consumer_evictions: Counter::default(),
            history_replays: Family::default(),
            client_events: Family::default(),
            subscribe_refusals: Family::default(),
            broker_up: Gauge::default(),
            broker_command_duration: Family::new_with_constructor(latency_histogram),
            broker_reconnects: Counter::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "connections",
            "Open Socket.IO connections, by transport",
            metrics.connections.clone(),
        );
        r.register(
            "subscriptions",
            "Channel subscriptions of this worker's sockets",
            metrics.subscriptions.clone(),
        );
        r.register(
            "occupied_channels",
            "Channels with at least one subscriber on this worker",
            metrics.occupied_channels.clone(),
        );
        r.register(
            "presence_members",
            "Presence channel memberships of this worker's sockets",
            metrics.presence_members.clone(),
        );
        r.register(
            "trigger_requests",
            "Trigger API requests (events, batch_events), by app, route and HTTP status",
            metrics.trigger_requests.clone(),
        );
        r.register_with_unit(
            "trigger_duration",
            "Trigger API handling time, from reading the body to the answer",
            Unit::Seconds,
            metrics.trigger_duration.clone(),
        );
        r.register(
            "events_published",
            "Events accepted by the trigger API and published",
            metrics.events_published.clone(),
        );
        r.register(
            "messages_delivered",
            "Event messages written to sockets",
            metrics.messages_delivered.clone(),
        );
        r.register(
            "slow_consumer_evictions",
            "Sockets disconnected because their send buffer was full",
            metrics.slow_consumer_evictions.clone(),
        );
        r.register(
            "history_replays",
            "Subscribes with since, by outcome (recovered, not_recovered)",
            metrics.history_replays.clone(),
        );
        r.register(
            "client_events",
            "Client events, by app and result (sent, or the refusal's ack code)",
            metrics.client_events.clone(),
        );
        r.register(
            "subscribe_refusals",
            "Subscribes refused, by app and ack code",
            metrics.subscribe_refusals.clone(),
        );
        r.register(
            "broker_up",
            "1 while the worker's broker connection is up",
            metrics.broker_up.clone(),
        );
        r.register_with_unit(
            "broker_command_duration",
            "Redis command round trip time, by command",
            Unit::Seconds,
            metrics.broker_command_duration.clone(),
        );
        r.register(
            "broker_reconnects",
            "Times the broker's subscription connection was re-established",
            metrics.broker_reconnects.clone(),
        );
        WorkerMetrics {
            registry,
            ..metrics
        }
    }

    /// Counts one trigger API request and its handling time.
    pub(crate) fn trigger_answered(
        &self,
        app: &str,
        route: &'static str,
        code: u16,
        took: Duration,
    ) {
        self.trigger_requests
            .get_or_create(&TriggerLabels {
                app: app.to_owned(),
                route,
                code,
            })
            .inc();
        self.trigger_duration
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    /// Counts a client event's result: `sent`, or the refusal's ack code.
    pub(crate) fn client_event(&self, app: &str, result: String) {
        self.client_events
            .get_or_create(&ResultLabels {
                app: app.to_owned(),
                result,
            })
            .inc();
    }

    /// Counts a refused subscribe.
    pub(crate) fn subscribe_refused(&self, app: &str, code: u16) {
        self.subscribe_refusals
            .get_or_create(&RefusalLabels {
                app: app.to_owned(),
                code,
            })
            .inc();
    }

    /// Records one Redis command's round trip.
    pub(crate) fn broker_command(&self, command: &'static str, took: Duration) {
        self.broker_command_duration
            .get_or_create(&CommandLabels { command })
            .observe(took.as_secs_f64());
    }

    /// The registry in the OpenMetrics text format.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
