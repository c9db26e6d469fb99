//! `/metrics` and `/ready`: a real Prometheus scrapes a 2-worker origin and
//! sees what the test did; readiness follows the broker.

use std::time::Duration;

use pushwire_tests::clients::TEST_APP;
use pushwire_tests::origin::OriginOptions;
use pushwire_tests::prometheus::Prometheus;
use pushwire_tests::{Clients, Origin, RedisServer, Scratch, http, wait};
use serde_json::json;

/// How long a change may take to reach Prometheus (scraped every second).
const SEEN_WITHIN: Duration = Duration::from_secs(20);

/// Prometheus sees exactly the test's open sockets, on every worker, and the
/// trigger counter rises by exactly the number of triggers sent.
#[test]
fn prometheus_sees_connections_and_triggers() {
    let scratch = Scratch::new("metrics-prometheus");
    let redis = RedisServer::start(&scratch);
    let origin = Origin::start(&scratch, "origin", OriginOptions::redis(&redis.url()));
    let prometheus = Prometheus::start(&scratch, origin.metrics_addr());
    prometheus.wait_for("up", 1.0, SEEN_WITHIN);
    prometheus.wait_for("sum(pushwire_connections)", 0.0, SEEN_WITHIN);

    let mut clients = Clients::start(&scratch, "clients");
    let ids: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    let (websocket, polling) = ids.split_at(3);
    let subscribe = json!({"auth": {"channels": ["news"]}});
    let mut websocket_only = subscribe.clone();
    websocket_only["transports"] = json!(["websocket"]);
    clients.connect_all(websocket, &origin.url(), websocket_only);
    clients.connect_all(polling, &origin.url(), subscribe);
    prometheus.wait_for("sum(pushwire_connections)", 6.0, SEEN_WITHIN);
    prometheus.wait_for("sum(pushwire_subscriptions)", 6.0, SEEN_WITHIN);
    let workers = pushwire_tests::origin::test_workers() as f64;
    prometheus.wait_for(
        "count(pushwire_process_resident_memory_bytes)",
        workers + 1.0,
        SEEN_WITHIN,
    );
    assert_eq!(prometheus.scalar("count(pushwire_build_info)"), Some(1.0));

    let accepted = r#"sum(pushwire_trigger_requests_total{code="200"})"#;
    let before = prometheus.scalar(accepted).unwrap_or(0.0);
    for n in 0..5 {
        clients.trigger_ok(origin.addr, TEST_APP, &["news"], "tick", json!({ "n": n }));
    }
    prometheus.wait_for(accepted, before + 5.0, SEEN_WITHIN);
    // Every socket got each event.
    prometheus.wait_for("sum(pushwire_messages_delivered_total)", 30.0, SEEN_WITHIN);

    clients.close("c0");
    prometheus.wait_for("sum(pushwire_connections)", 5.0, SEEN_WITHIN);
    assert_eq!(prometheus.scalar(accepted), Some(before + 5.0));
}

/// The origin's `/metrics` is one valid exposition for all its workers.
#[test]
fn one_exposition_for_the_whole_origin() {
    let scratch = Scratch::new("metrics-exposition");
    let origin = Origin::start(&scratch, "origin", OriginOptions::embedded());
    // Origin::start returns once one worker answers; the others may still be
    // starting, and a scrape leaves out a worker that is not there yet.
    let workers = pushwire_tests::origin::test_workers();
    let response = wait::until("every worker in the exposition", SEEN_WITHIN, || {
        let response = http::request(origin.metrics_addr(), "GET", "/metrics", b"");
        (0..workers)
            .all(|w| {
                response
                    .body
                    .contains(&format!("pushwire_broker_up{{worker=\"{w}\"}} 1"))
            })
            .then_some(response)
    });
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        response.header("content-type")
    );
    let text = response.body;
    assert_eq!(
        text.matches("# TYPE pushwire_connections gauge").count(),
        1,
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(
        text.matches("# EOF").count(),
        1,
        "one exposition, not one per process: {text}"
    );
    // The public port does not expose metrics.
    assert_ne!(
        http::request(origin.addr, "GET", "/metrics", b"").status,
        200
    );
}

/// `/ready` (on the public port and the metrics listener) says 503 while the
/// broker is down and 200 once it is back; `/health` stays 200 throughout.
#[test]
fn readiness_follows_the_broker() {
    let scratch = Scratch::new("metrics-readiness");
    let mut redis = RedisServer::start(&scratch);
    let origin = Origin::start(&scratch, "origin", OriginOptions::redis(&redis.url()));
    let ready = |addr| http::request(addr, "GET", "/ready", b"");
    for addr in [origin.addr, origin.metrics_addr()] {
        wait::until("ready", SEEN_WITHIN, || {
            (ready(addr).status == 200).then_some(())
        });
    }

    redis.stop();
    for addr in [origin.addr, origin.metrics_addr()] {
        let response = wait::until("not ready while Redis is down", SEEN_WITHIN, || {
            let response = ready(addr);
            (response.status == 503).then_some(response)
        });
        assert_eq!(
            response.json(),
            json!({"status": "not ready", "reason": "no worker reaches the broker"})
        );
    }
    assert_eq!(
        http::request(origin.addr, "GET", "/health", b"").status,
        200
    );

    redis.restart();
    for addr in [origin.addr, origin.metrics_addr()] {
        wait::until("ready again", SEEN_WITHIN, || {
            (ready(addr).status == 200).then_some(())
        });
    }
}
