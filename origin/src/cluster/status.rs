//! The origin's status, answered by the master for all its workers:
//! readiness (`GET /ready`, on the public port and the metrics listener) and
//! Prometheus metrics (`GET /metrics`, on the metrics listener only).
//!
//! `/health` stays liveness, answered by whichever worker gets the request;
//! `/ready` says whether this origin should get new sessions: `200` when at
//! least one worker is ready and its broker connection is up, `503` while no
//! worker is ready (starting, or all restarting), while no ready worker reaches
//! its broker, and while the origin drains on shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::oneshot;

use super::ipc::ToWorker;
use super::master::{Master, lock};
use crate::metrics::{OriginMetrics, WorkerProcess};

/// How long a scrape waits for each worker's exposition; a worker that does
/// not answer in time is left out of that scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// The OpenMetrics text format's content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the origin is not ready.
pub(crate) fn not_ready_reason(master: &Master) -> Option<String> {
    if *master.stopping.borrow() {
        return Some("draining: the origin is shutting down".into());
    }
    let ready = lock(&master.router).ready_workers().to_vec();
    if ready.is_empty() {
        return Some(match master.start_failures.reason() {
            Some(why) => format!("no worker is ready: {why}"),
            None => "no worker is ready".into(),
        });
    }
    let broker_up = lock(&master.broker_up);
    if !ready.iter().any(|w| broker_up.get(w) == Some(&true)) {
        return Some("no worker reaches the broker".into());
    }
    None
}

/// `GET /ready`.
fn readiness(master: &Master) -> Response {
    let (status, body) = match not_ready_reason(master) {
        None => (StatusCode::OK, serde_json::json!({"status": "ready"})),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "not ready", "reason": reason}),
        ),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Every worker's exposition and the master's, as one.
pub(crate) async fn scrape(master: &Master) -> String {
    let workers: Vec<WorkerProcess> = lock(&master.links)
        .iter()
        .map(|(&id, link)| WorkerProcess { id, pid: link.pid })
        .collect();
    let mut waiting = Vec::with_capacity(workers.len());
    for worker in &workers {
        let request = master.next_request.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        lock(&master.scrapes).insert(request, answer);
        master.send(worker.id, &ToWorker::MetricsRequest(request));
        waiting.push((request, answered));
    }
    let deadline = tokio::time::Instant::now() + SCRAPE_TIMEOUT;
    let mut expositions = Vec::with_capacity(waiting.len() + 1);
    for (request, answered) in waiting {
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(Ok(text)) => expositions.push(text),
            _ => {
                lock(&master.scrapes).remove(&request);
            }
        }
    }
    let origin = OriginMetrics {
        ready_workers: lock(&master.router).ready_workers().len(),
        restarts: lock(&master.restarts)
            .iter()
            .map(|(&id, &n)| (id, n))
            .collect(),
        workers,
        webhooks: master.broker.webhook_stats(),
    };
    expositions.push(origin.encode());
    crate::metrics::merge(expositions.iter().map(String::as_str))
}

/// The metrics listener's routes: `/metrics` and `/ready`.
pub(crate) fn metrics_routes(master: Arc<Master>) -> Router {
    let scraped = master.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let master = scraped.clone();
                async move { ([(header::CONTENT_TYPE, OPENMETRICS)], scrape(&master).await) }
            }),
        )
        .merge(readiness_routes(master))
}

/// The public port's `/ready`, answered by the master itself.
pub(crate) fn readiness_routes(master: Arc<Master>) -> Router {
    Router::new().route("/ready", get(move || async move { readiness(&master) }))
}
