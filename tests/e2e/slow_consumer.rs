//! A client that stops reading is cut off when its send buffer is full and
//! disconnected; the others keep receiving everything, in order; and the slow
//! one never receives an event after one it missed (so it can recover).

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
    // The default heartbeat (25 s + 20 s): what ends the stalled client below is
    // its full buffer, not a missed ping.
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

    // 2,500 events of 8 KB: far more than the stalled socket's buffers (its
    // send buffer and the kernel's, on both ends) hold.
    let payload = "x".repeat(8000);
    for batch in 0..250 {
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
            .events_through(id, "e2499")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let expected: Vec<String> = (0..2500).map(|i| format!("e{i}")).collect();
        assert_eq!(seen, expected, "{id} got every event, in order");
    }
    // It reads again: it gets what was queued for it, a gap-free prefix, then
    // the disconnect (its client would now recover from its last position).
    let (got, disconnected) = stalled.resume(Duration::from_secs(10));
    assert!(
        disconnected,
        "the stalled consumer was not disconnected; got {} events",
        got.len()
    );
    assert!(
        got.len() < 2500,
        "its buffer was full: it cannot have everything"
    );
    let prefix: Vec<String> = (0..got.len()).map(|i| format!("e{i}")).collect();
    assert_eq!(got, prefix, "events in order, none after a gap");
    // The server is unharmed: a new subscriber still gets events.
    clients.connect(
        "late",
        &origin.url(),
        json!({"auth": {"channels": ["flood"]}}),
    );
    clients.trigger_ok(origin.addr, TEST_APP, &["flood"], "after", json!(""));
    clients.event("late", "after");
}
