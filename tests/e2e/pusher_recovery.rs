//! Recovery for Pusher-protocol clients: stock pusher-js with the served
//! helper (`pushwireRecovery.trackPusher`) subscribes again with `since`
//! after a reconnection and gets what it missed, in order and exactly once.

use pushwire_tests::clients::TEST_APP;
use pushwire_tests::process::{children_of, signal_pid};
use pushwire_tests::{Clients, Deployment, Origin, each_fanout, each_shared_broker};
use serde_json::{Value, json};

fn trigger(clients: &mut Clients, origin: &Origin, n: u64) {
    clients.trigger_ok(origin.addr, TEST_APP, &["orders"], "tick", json!({"n": n}));
}

/// The `n` of every tick client `id` received on `orders` through the next
/// `end` event, which this triggers (a duplicate would arrive before it).
fn ticks_through_end(clients: &mut Clients, origin: &Origin, id: &str) -> Vec<u64> {
    clients.trigger_ok(origin.addr, TEST_APP, &["orders"], "end", json!({}));
    let events = clients.pusher_events_through(id, "orders", "end");
    events
        .iter()
        .filter(|r| r["event"] == "tick")
        .map(|r| r["data"]["n"].as_u64().expect("n"))
        .collect()
}

/// The data of the next `subscription_succeeded` frame `id` got on `channel`.
fn succeeded_frame(clients: &mut Clients, id: &str, channel: &str) -> Value {
    let frame = clients.pusher_frame(id, "subscription_succeeded", |f| {
        f["event"] == "pusher_internal:subscription_succeeded" && f["channel"] == channel
    });
    serde_json::from_str(frame["data"].as_str().expect("data is a string")).expect("JSON data")
}

/// Subscribes `p` (tracked by the helper) to `orders` and has it receive ticks 1–3.
fn subscribed_with_three_ticks(clients: &mut Clients, origin: &Origin) {
    let outcome = clients.pusher_subscribe("p", "orders");
    assert_eq!(
        outcome["event"], "pusher:subscription_succeeded",
        "{outcome}"
    );
    let first = succeeded_frame(clients, "p", "orders");
    assert_eq!(first, json!({}), "no `recovered` without `since`");
    for n in 1..=3 {
        trigger(clients, origin, n);
    }
    assert_eq!(ticks_through_end(clients, origin, "p"), [1, 2, 3]);
}

#[test]
fn pusher_js_recovers_what_it_missed_while_disconnected() {
    each_fanout("pusher-recovery", missed_while_disconnected);
}

fn missed_while_disconnected(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let mut clients = Clients::start(&deployment.scratch, "clients");
    clients.pusher_connect_recovering("p", origin.addr, TEST_APP);
    subscribed_with_three_ticks(&mut clients, &origin);

    clients.pusher_disconnect("p");
    clients.wait_for("p to disconnect", |r| {
        r["type"] == "pusher_state" && r["id"] == "p" && r["state"] == "disconnected"
    });
    for n in 4..=6 {
        trigger(&mut clients, &origin, n);
    }
    clients.pusher_reconnect("p");
    clients.pusher_connected("p");
    assert_eq!(
        succeeded_frame(&mut clients, "p", "orders"),
        json!({"recovered": true})
    );
    trigger(&mut clients, &origin, 7);
    assert_eq!(ticks_through_end(&mut clients, &origin, "p"), [4, 5, 6, 7]);

    // A position the history does not hold (another epoch): subscribed, told
    // it may have missed events, nothing replayed; the helper reports it.
    clients.pusher_raw(
        "p",
        r#"{"event":"pusher:unsubscribe","data":{"channel":"orders"}}"#,
    );
    clients.pusher_raw(
        "p",
        r#"{"event":"pusher:subscribe","data":{"channel":"orders","since":"other:1-0"}}"#,
    );
    assert_eq!(
        succeeded_frame(&mut clients, "p", "orders"),
        json!({"recovered": false})
    );
    let lost = clients.wait_for("the helper to report orders lost", |r| {
        r["type"] == "pusher_lost" && r["id"] == "p"
    });
    assert_eq!(lost["channel"], "orders");
    trigger(&mut clients, &origin, 8);
    assert_eq!(ticks_through_end(&mut clients, &origin, "p"), [8]);

    // A malformed `since` is refused like any malformed subscribe.
    clients.pusher_raw(
        "p",
        r#"{"event":"pusher:subscribe","data":{"channel":"other","since":"garbage"}}"#,
    );
    let error = clients.pusher_frame("p", "an error", |f| f["event"] == "pusher:error");
    assert_eq!(error["data"]["code"], Value::Null, "{error}");
}

#[test]
fn pusher_js_recovers_across_a_killed_worker() {
    each_shared_broker("pusher-recovery-kill", across_a_killed_worker);
}

/// The connection's workers stop (SIGSTOP: nothing reaches the client) while
/// the other origin accepts ticks 4–6, then die (SIGKILL): pusher-js connects
/// again and the helper's `since` brings 4–6 before the live 7.
fn across_a_killed_worker(deployment: &Deployment) {
    let origin = deployment.origin("a");
    let other = deployment.origin("b");
    let mut clients = Clients::start(&deployment.scratch, "clients");
    let first = clients.pusher_connect_recovering("p", origin.addr, TEST_APP);
    subscribed_with_three_ticks(&mut clients, &origin);

    let workers = children_of(origin.pid());
    assert!(!workers.is_empty());
    for &worker in &workers {
        signal_pid(worker, "STOP");
    }
    for n in 4..=6 {
        trigger(&mut clients, &other, n);
    }
    for &worker in &workers {
        signal_pid(worker, "KILL");
    }
    // pusher-js reports the dropped connection (1006), then connects again.
    let again = clients.wait_for("p to connect again", |r| {
        r["type"] == "pusher_connected" && r["id"] == "p"
    });
    assert_ne!(again["socket_id"], first.as_str(), "a new connection");
    assert_eq!(
        succeeded_frame(&mut clients, "p", "orders"),
        json!({"recovered": true})
    );
    trigger(&mut clients, &other, 7);
    assert_eq!(ticks_through_end(&mut clients, &other, "p"), [4, 5, 6, 7]);
}
