//! A client that stops reading is disconnected; the others keep receiving
//! everything, in order.

use std::time::Duration;

use pushwire_tests::clients::TEST_APP;
use pushwire_tests::origin::OriginOptions;
use pushwire_tests::raw_ws::StalledClient;
use pushwire_tests::{Clients, Origin, Scratch};
use serde_json::json;

#[test]
fn a_stalled_consumer_is_dropped_and_others_get_everything() {
    let scratch = Scratch::new("slow-consumer");
    let mut options = OriginOptions::embedded();
    options.workers = 1;
    options.args = ["--ping-interval-ms", "500", "--ping-timeout-ms", "500"]
        .map(String::from)
        .to_vec();
    let origin = Origin::start(&scratch, "origin", options);
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect(
        "reader",
        &origin.url(),
        json!({"transports": ["websocket"], "auth": {"channels": ["flood"]}}),
    );
    clients.connect(
        "poller",
        &origin.url(),
        json!({"auth": {"channels": ["flood"]}}),
    );
    let stalled = StalledClient::subscribe(origin.addr, "flood");

    // 300 events of 4 KiB: far more than the stalled socket's buffers hold.
    let payload = "x".repeat(4096);
    for batch in 0..30 {
        let events: Vec<_> = (0..10)
            .map(|i| json!({"channel": "flood", "name": format!("e{}", batch * 10 + i), "data": payload}))
            .collect();
        assert_eq!(
            clients
                .trigger_batch(origin.addr, TEST_APP, json!(events))
                .0,
            200
        );
    }
    for id in ["reader", "poller"] {
        let seen: Vec<String> = clients
            .events_through(id, "e299")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let expected: Vec<String> = (0..300).map(|i| format!("e{i}")).collect();
        assert_eq!(seen, expected, "{id} got every event, in order");
    }
    assert!(
        stalled.closed_by_server_within(Duration::from_secs(10)),
        "the stalled consumer was not disconnected"
    );
    // The server is unharmed: a new subscriber still gets events.
    clients.connect(
        "late",
        &origin.url(),
        json!({"auth": {"channels": ["flood"]}}),
    );
    clients.trigger_ok(origin.addr, TEST_APP, &["flood"], "after", json!(""));
    clients.event("late", "after");
}
