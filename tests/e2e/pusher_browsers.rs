//! pusher-js and Laravel Echo in headless Chromium, as an app's pages use
//! them: the npm packages' browser builds, channels authorized by the page's
//! own backend (the npm `pusher` SDK's `authorizeChannel`, as Laravel's
//! `/broadcasting/auth` does), events triggered with the npm `pusher` SDK.

use pushwire_tests::clients::TEST_APP;
use pushwire_tests::echo_clients::ECHO_LISTENS;
use pushwire_tests::pusher_browser::BrowserPages;
use pushwire_tests::{Clients, Deployment, Fanout, Origin};
use serde_json::{Value, json};

/// The app backend's `encryptionMasterKeyBase64`: 32 bytes, base64.
const MASTER_KEY: &str = "cHVzaHdpcmUtdGVzdC1tYXN0ZXIta2V5LTMyYnl0ZXM=";

fn subscribed(outcome: &Value) {
    assert_eq!(outcome["type"], "subscribed", "{outcome}");
}

#[test]
fn pusher_js_in_chromium_receives_public_private_and_encrypted_events() {
    let deployment = Deployment::start("pusher-chromium", Fanout::Embedded);
    let origin = deployment.origin("origin");
    let mut clients = Clients::start(&deployment.scratch, "clients");
    let mut pages = BrowserPages::start(&deployment.scratch, TEST_APP, MASTER_KEY);

    pages.open("a", origin.addr, "alice");
    pages.call("a", "pusher", json!({}));
    pages.connected("a", "pusher");
    for (channel, event) in [
        ("news", "greet"),
        ("private-orders", "order"),
        ("private-encrypted-vault", "secret"),
    ] {
        pages.call(
            "a",
            "subscribe",
            json!({"channel": channel, "event": event}),
        );
        subscribed(&pages.subscription("a", "pusher", channel));
    }
    // The private ones went through the page's backend.
    for channel in ["private-orders", "private-encrypted-vault"] {
        let auth = pages.wait_for("an authorization", |r| {
            r["type"] == "auth" && r["channel"] == channel
        });
        assert_eq!(
            (&auth["user"], &auth["status"]),
            (&json!("alice"), &json!(200))
        );
    }

    clients.trigger_ok(
        origin.addr,
        TEST_APP,
        &["news"],
        "greet",
        json!({"hello": "browser"}),
    );
    assert_eq!(
        pages.event("a", "pusher", "news", "greet"),
        json!({"hello": "browser"})
    );
    clients.trigger_ok(
        origin.addr,
        TEST_APP,
        &["private-orders"],
        "order",
        json!({"id": 1}),
    );
    assert_eq!(
        pages.event("a", "pusher", "private-orders", "order"),
        json!({"id": 1})
    );
    let (status, body) = clients.trigger_encrypted(
        origin.addr,
        TEST_APP,
        MASTER_KEY,
        "private-encrypted-vault",
        "secret",
        json!({"pin": 1234}),
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert_eq!(
        pages.event("a", "pusher", "private-encrypted-vault", "secret"),
        json!({"pin": 1234}),
        "decrypted in the page"
    );
}

#[test]
fn laravel_echo_in_chromium_across_two_origins() {
    let deployment = Deployment::start("echo-chromium", Fanout::Redis);
    let a = deployment.origin("a");
    let b = Origin::start(&deployment.scratch, "b", deployment.options());
    let mut clients = Clients::start(&deployment.scratch, "clients");
    let mut pages = BrowserPages::start(&deployment.scratch, TEST_APP, MASTER_KEY);

    pages.open("alice", a.addr, "alice");
    pages.call("alice", "echo", json!({}));
    pages.connected("alice", "echo");
    pages.open("bob", b.addr, "bob");
    pages.call("bob", "echo", json!({}));
    pages.connected("bob", "echo");

    // Echo.channel / private / encryptedPrivate(...).listen(...).
    for (kind, name, channel, event) in ECHO_LISTENS {
        pages.call(
            "alice",
            "listen",
            json!({"kind": kind, "name": name, "event": event}),
        );
        subscribed(&pages.subscription("alice", "echo", channel));
    }
    clients.trigger_ok(
        b.addr,
        TEST_APP,
        &["orders"],
        "order.shipped",
        json!({"id": 1}),
    );
    assert_eq!(
        pages.event("alice", "echo", "orders", ".order.shipped"),
        json!({"id": 1})
    );
    // What Laravel broadcasts for App\Events\OrderShipped.
    clients.trigger_ok(
        b.addr,
        TEST_APP,
        &["private-orders.1"],
        "App\\Events\\OrderShipped",
        json!({"order": {"id": 1}}),
    );
    assert_eq!(
        pages.event("alice", "echo", "private-orders.1", "OrderShipped"),
        json!({"order": {"id": 1}})
    );
    let (status, _) = clients.trigger_encrypted(
        b.addr,
        TEST_APP,
        MASTER_KEY,
        "private-encrypted-vault",
        "secret",
        json!({"pin": 1}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        pages.event("alice", "echo", "private-encrypted-vault", ".secret"),
        json!({"pin": 1})
    );

    // Echo.join: here, joining, leaving, across the two origins.
    pages.call("alice", "join", json!({"name": "room"}));
    assert_eq!(pages.report("alice", "here")["users"], json!(["Alice"]));
    pages.call("bob", "join", json!({"name": "room"}));
    assert_eq!(
        pages.report("bob", "here")["users"],
        json!(["Alice", "Bob"])
    );
    assert_eq!(pages.report("alice", "joining")["user"], "Bob");
    pages.call("bob", "leave", json!({"name": "room"}));
    assert_eq!(pages.report("alice", "leaving")["user"], "Bob");

    // whisper / listenForWhisper: client events on a private channel.
    pages.call(
        "alice",
        "listenForWhisper",
        json!({"name": "chat", "event": "typing"}),
    );
    subscribed(&pages.subscription("alice", "echo", "private-chat"));
    pages.call(
        "bob",
        "listen",
        json!({"kind": "private", "name": "chat", "event": ".message"}),
    );
    subscribed(&pages.subscription("bob", "echo", "private-chat"));
    pages.call(
        "bob",
        "whisper",
        json!({"name": "chat", "event": "typing", "data": {"name": "Bob"}}),
    );
    let whisper = pages.report("alice", "whisper");
    assert_eq!(whisper["data"], json!({"name": "Bob"}), "{whisper}");

    // Bob's page closes: his connection goes, and with it his subscriptions.
    pages.call("bob", "join", json!({"name": "room"}));
    assert_eq!(pages.report("alice", "joining")["user"], "Bob");
    pages.close("bob");
    assert_eq!(pages.report("alice", "leaving")["user"], "Bob");
}
