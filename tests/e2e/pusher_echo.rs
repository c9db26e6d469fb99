//! Laravel Echo in Node: its `pusher` broadcaster with pusher-js given as the
//! `Pusher` option, beside plain pusher-js clients, receiving what the npm
//! `pusher` SDK triggers. (Echo in a browser page: `pusher_browsers`.)

use pushwire_tests::clients::TEST_APP;
use pushwire_tests::echo_clients::ECHO_LISTENS;
use pushwire_tests::{Clients, Deployment, each_fanout};
use serde_json::json;

/// The app backend's `encryptionMasterKeyBase64`: 32 bytes, base64.
const MASTER_KEY: &str = "cHVzaHdpcmUtdGVzdC1tYXN0ZXIta2V5LTMyYnl0ZXM=";

#[test]
fn laravel_echo_in_node_beside_pusher_js() {
    each_fanout("echo-node", echo_in_node);
}

fn echo_in_node(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let mut clients = Clients::start(&deployment.scratch, "clients");
    clients.echo_connect("alice", origin.addr, TEST_APP, "alice", MASTER_KEY);

    for (kind, name, channel, event) in ECHO_LISTENS {
        clients.echo(
            "alice",
            "echo_listen",
            json!({"kind": kind, "name": name, "event": event}),
        );
        clients.echo_subscribed("alice", channel);
    }
    clients.trigger_ok(
        origin.addr,
        TEST_APP,
        &["orders"],
        "order.shipped",
        json!({"id": 1}),
    );
    let event = clients.echo_report("alice", "echo_event");
    assert_eq!(
        (&event["channel"], &event["data"]),
        (&json!("orders"), &json!({"id": 1}))
    );
    clients.trigger_ok(
        origin.addr,
        TEST_APP,
        &["private-orders.1"],
        "App\\Events\\OrderShipped",
        json!({"order": {"id": 1}}),
    );
    let event = clients.echo_report("alice", "echo_event");
    assert_eq!(event["event"], "OrderShipped", "{event}");
    assert_eq!(event["data"], json!({"order": {"id": 1}}), "{event}");
    let (status, _) = clients.trigger_encrypted(
        origin.addr,
        TEST_APP,
        MASTER_KEY,
        "private-encrypted-vault",
        "secret",
        json!({"pin": 1}),
    );
    assert_eq!(status, 200);
    let event = clients.echo_report("alice", "echo_event");
    assert_eq!(event["data"], json!({"pin": 1}), "decrypted: {event}");

    // Presence with a pusher-js member: here, joining, leaving.
    clients.echo("alice", "echo_join", json!({"name": "room"}));
    assert_eq!(
        clients.echo_report("alice", "echo_here")["users"],
        json!(["alice"])
    );
    let bob = json!({"user_id": "bob", "user_info": {"name": "bob"}});
    clients.pusher_connect("bob", origin.addr, TEST_APP, Some(bob));
    clients.pusher_subscribe("bob", "presence-room");
    assert_eq!(clients.echo_report("alice", "echo_joining")["user"], "bob");

    // Whispers cross to pusher-js and back.
    clients.echo(
        "alice",
        "echo_listen_for_whisper",
        json!({"name": "chat", "event": "typing"}),
    );
    clients.echo_subscribed("alice", "private-chat");
    let subscribed = clients.pusher_subscribe("bob", "private-chat");
    assert_eq!(subscribed["event"], "pusher:subscription_succeeded");
    clients.echo(
        "alice",
        "echo_whisper",
        json!({"name": "chat", "event": "typing", "data": {"name": "alice"}}),
    );
    let whisper = clients.pusher_event("bob", "private-chat", "client-typing");
    assert_eq!(whisper["data"], json!({"name": "alice"}), "{whisper}");
    clients.pusher_client_event(
        "bob",
        "private-chat",
        "client-typing",
        json!({"name": "bob"}),
    );
    let whisper = clients.echo_report("alice", "echo_whisper");
    assert_eq!(whisper["data"], json!({"name": "bob"}), "{whisper}");

    clients.pusher_close("bob");
    assert_eq!(clients.echo_report("alice", "echo_leaving")["user"], "bob");
    clients.echo("alice", "echo_close", json!({}));
}
