//! The metrics' documents agree with `/metrics`: every `pushwire_…` name in
//! `deploy/grafana-dashboard.json`'s expressions is a series the registries
//! export, and README's metrics table lists exactly the exported metrics.

use std::collections::BTreeSet;

use std::time::Duration;

use super::{
    AppLabels, OriginMetrics, OutcomeLabels, TransportLabels, WorkerMetrics, WorkerProcess,
};

const DASHBOARD: &str = include_str!("../../../deploy/grafana-dashboard.json");
const README: &str = include_str!("../../../README.md");

/// Worker metrics with a series in every family (an empty family is not
/// exported at all).
fn every_worker_series() -> WorkerMetrics {
    let metrics = WorkerMetrics::new("0");
    let transport = TransportLabels {
        transport: "websocket",
    };
    metrics.connections.get_or_create(&transport).set(1);
    metrics.trigger_answered("1", "events", 200, Duration::ZERO);
    let app = AppLabels { app: "1".into() };
    metrics.events_published.get_or_create(&app).inc();
    let outcome = OutcomeLabels {
        outcome: "recovered",
    };
    metrics.history_replays.get_or_create(&outcome).inc();
    metrics.client_event("1", "sent".into());
    metrics.subscribe_refused("1", 4101);
    metrics.broker_command("publish", Duration::ZERO);
    metrics
}

/// The master's metrics with a series in every family.
fn every_origin_series() -> OriginMetrics {
    OriginMetrics {
        workers: vec![WorkerProcess {
            id: 0,
            pid: std::process::id(),
        }],
        ready_workers: 1,
        restarts: vec![(0, 1)],
        webhooks: Some(Default::default()),
    }
}

/// The series names an exposition's `# TYPE` lines announce.
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split(' ');
        let (Some(family), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
    }
    names
}

/// Every `pushwire_…` word in `expr`.
fn named_in(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("pushwire_"))
}

fn expressions(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query", serde_json::Value::String(expr)) => found.push(expr.clone()),
                    _ => expressions(value, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| expressions(v, found)),
        _ => {}
    }
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("the dashboard is valid JSON");
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut names = exported(&every_worker_series().encode());
    names.extend(exported(&every_origin_series().encode()));
    let mut used = BTreeSet::new();
    for expr in &exprs {
        for name in named_in(expr) {
            assert!(
                names.contains(name),
                "the dashboard queries {name}, which /metrics does not export ({expr})"
            );
            used.insert(name.to_owned());
        }
    }
    // Every exported series is on the dashboard or listed here as left off.
    let left_off: BTreeSet<&str> = [
        "pushwire_trigger_duration_seconds_sum",
        "pushwire_trigger_duration_seconds_count",
        "pushwire_broker_command_duration_seconds_sum",
        "pushwire_broker_command_duration_seconds_count",
    ]
    .into();
    for name in &names {
        assert!(
            used.contains(name) || left_off.contains(name.as_str()),
            "{name} is exported but not on the dashboard"
        );
    }
    // The panels the dashboard promises.
    for name in [
        "pushwire_connections",
        "pushwire_subscriptions",
        "pushwire_trigger_requests_total",
        "pushwire_messages_delivered_total",
        "pushwire_trigger_duration_seconds_bucket",
        "pushwire_slow_consumer_evictions_total",
        "pushwire_broker_up",
        "pushwire_broker_command_duration_seconds_bucket",
        "pushwire_process_resident_memory_bytes",
    ] {
        assert!(used.contains(name), "no panel shows {name}");
    }
}

#[test]
fn names_are_found_in_expressions() {
    let words: Vec<&str> =
        named_in("sum by (le) (rate(pushwire_a_bucket{job=~\"x\"}[5m])) / pushwire_b").collect();
    assert_eq!(words, ["pushwire_a_bucket", "pushwire_b"]);
    let names = exported("# TYPE pushwire_x counter\n# TYPE pushwire_y histogram\n");
    assert!(names.contains("pushwire_x_total") && names.contains("pushwire_y_count"));
}

/// The metric names an exposition's `# TYPE` lines announce, as README names
/// them: counters with `_total`, histograms and gauges by their family name.
fn documented_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut words = rest.split(' ');
            let (family, kind) = (words.next()?, words.next()?);
            Some(match kind {
                "counter" => format!("{family}_total"),
                _ => family.to_owned(),
            })
        })
        .collect()
}

#[test]
fn the_readme_lists_every_metric_and_no_other() {
    let table = README
        .split("## Metrics and readiness")
        .nth(1)
        .expect("README has a metrics section");
    let listed: BTreeSet<String> = table
        .lines()
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| line.strip_prefix("| `pushwire_"))
        .filter_map(|rest| Some(format!("pushwire_{}", rest.split('`').next()?)))
        .collect();
    let mut exported = documented_names(&every_worker_series().encode());
    exported.extend(documented_names(&every_origin_series().encode()));
    assert_eq!(
        listed, exported,
        "README's metrics table (left) and /metrics (right) differ"
    );
}
