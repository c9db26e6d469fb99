//! End-to-end encrypted channels (`private-encrypted-*`): the npm `pusher` SDK
//! encrypts what it triggers, pushwire relays the ciphertext untouched to
//! pusher-js (which decrypts it) and to Socket.IO sockets, and refuses client
//! events on them.

use pushwire_tests::clients::{Credentials, TEST_APP};
use pushwire_tests::{Clients, Deployment, Fanout, Origin};
use serde_json::{Value, json};

/// The app backend's `encryptionMasterKeyBase64`: 32 bytes, base64.
const MASTER_KEY: &str = "cHVzaHdpcmUtdGVzdC1tYXN0ZXIta2V5LTMyYnl0ZXM=";

const CHANNEL: &str = "private-encrypted-orders";

fn succeeded(outcome: &Value) {
    assert_eq!(
        outcome["event"], "pusher:subscription_succeeded",
        "{outcome}"
    );
}

#[test]
fn encrypted_channels_on_the_embedded_broker() {
    let deployment = Deployment::start("pusher-encrypted", Fanout::Embedded);
    let origin = deployment.origin("origin");
    encrypted_channels(&deployment, &origin, &origin);
}

#[test]
fn encrypted_channels_across_two_origins_of_two_workers_on_redis() {
    let deployment = Deployment::start("pusher-encrypted", Fanout::Redis);
    let mut options = deployment.options();
    options.workers = 2;
    let a = Origin::start(&deployment.scratch, "a", options.clone());
    let b = Origin::start(&deployment.scratch, "b", options);
    encrypted_channels(&deployment, &a, &b);
}

/// pusher-js subscribers on `a` and `b`, a Socket.IO one on `b`; triggers go to `a`.
fn encrypted_channels(deployment: &Deployment, a: &Origin, b: &Origin) {
    let mut clients = Clients::start(&deployment.scratch, "clients");
    clients.pusher_connect_encrypted("p", a.addr, TEST_APP, MASTER_KEY);
    succeeded(&clients.pusher_subscribe("p", CHANNEL));
    clients.pusher_connect_encrypted("q", b.addr, TEST_APP, MASTER_KEY);
    succeeded(&clients.pusher_subscribe("q", CHANNEL));

    // Authorized like a private channel: a wrong signature is refused.
    let wrong = Credentials {
        secret: "not-the-secret",
        ..TEST_APP
    };
    clients.pusher_connect_encrypted("bad", b.addr, wrong, MASTER_KEY);
    let refused = clients.pusher_subscribe("bad", CHANNEL);
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    assert_eq!(refused["data"]["status"], 401, "{refused}");

    // A Socket.IO socket subscribes with the same authorization; the
    // shared_secret beside it is the client's, and ignored.
    let s = clients.connect("s", &b.url(), json!({}));
    let auth = clients.authorize_encrypted(TEST_APP, MASTER_KEY, &s, CHANNEL);
    assert!(auth["shared_secret"].is_string(), "{auth}");
    let ack = clients.emit(
        "s",
        "subscribe",
        json!([{"channel": CHANNEL, "auth": auth["auth"], "shared_secret": auth["shared_secret"]}]),
    );
    assert_eq!(ack, json!({"ok": true}));
    let ack = clients.emit(
        "s",
        "subscribe",
        json!([{"channel": "private-encrypted-x"}]),
    );
    assert_eq!(ack["error"]["code"], 4009, "{ack}");

    let secret = json!({"order": 42, "to": "Zoë"});
    let (status, body) = clients.trigger_encrypted(
        a.addr,
        TEST_APP,
        MASTER_KEY,
        CHANNEL,
        "shipped",
        secret.clone(),
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    // pusher-js hands its listeners what the backend encrypted, decrypted.
    for id in ["p", "q"] {
        let event = clients.pusher_event(id, CHANNEL, "shipped");
        assert_eq!(event["data"], secret, "{id}: {event}");
    }
    // On the wire, on both origins, the same ciphertext.
    let on_a = clients.pusher_frame("p", "the shipped frame", |f| f["event"] == "shipped");
    let on_b = clients.pusher_frame("q", "the shipped frame", |f| f["event"] == "shipped");
    assert_eq!(on_a["data"], on_b["data"], "relayed byte for byte");
    let text = on_a["data"].as_str().expect("data is a string");
    let sealed: Value = serde_json::from_str(text).expect("data is JSON text");
    assert!(
        sealed["nonce"].is_string() && sealed["ciphertext"].is_string(),
        "{sealed}"
    );
    assert!(!text.contains("order") && !text.contains("Zo"), "{text}");
    // Socket.IO gets the same sealed box (parsed, as any JSON data string is).
    let args = clients.event("s", "shipped");
    assert_eq!(args[0], sealed);
    assert_eq!(args[1]["id"], on_a["id"], "the same event id");
    // ...which the socket's app opens with its authorization's shared_secret.
    assert_eq!(
        clients.open_sealed(&auth["shared_secret"], &args[0]),
        secret
    );

    // Client events: pusher-js refuses them itself; sent anyway, the server
    // refuses them too, on both protocols, and the connection stays usable.
    let thrown = clients.pusher_try_client_event("p", CHANNEL, "client-typing", json!({}));
    assert!(
        thrown
            .as_str()
            .is_some_and(|m| m.contains("encrypted channels")),
        "{thrown}"
    );
    clients.pusher_raw(
        "p",
        &json!({"event": "client-typing", "channel": CHANNEL, "data": {"x": 1}}).to_string(),
    );
    let error = clients.pusher_frame("p", "a refused client event", |f| {
        f["event"] == "pusher:error"
    });
    assert_eq!(error["data"]["code"], Value::Null, "not fatal: {error}");
    assert!(
        error["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not allowed on encrypted channels")),
        "{error}"
    );
    let ack = clients.emit(
        "s",
        "client-typing",
        json!([{"channel": CHANNEL, "data": {"x": 2}}]),
    );
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["code"], 4009, "{ack}");
    assert!(
        ack["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("encrypted")),
        "{ack}"
    );
    let (status, _) = clients.trigger_encrypted(
        a.addr,
        TEST_APP,
        MASTER_KEY,
        CHANNEL,
        "after",
        json!("still here"),
    );
    assert_eq!(status, 200);
    for id in ["p", "q"] {
        assert_eq!(
            clients.pusher_event(id, CHANNEL, "after")["data"],
            "still here"
        );
    }
    clients.event("s", "after");
    let leaked: Vec<&Value> = clients
        .pending_reports()
        .iter()
        .filter(|r| r["event"] == "client-typing")
        .collect();
    assert!(
        leaked.is_empty(),
        "a refused client event arrived: {leaked:?}"
    );

    // private-encrypted-cache-*: a new subscriber gets the last event, still sealed
    // by the backend and opened by pusher-js.
    let cache = "private-encrypted-cache-prices";
    let (status, _) = clients.trigger_encrypted(
        a.addr,
        TEST_APP,
        MASTER_KEY,
        cache,
        "price",
        json!({"v": 7}),
    );
    assert_eq!(status, 200);
    clients.pusher_connect_encrypted("r", b.addr, TEST_APP, MASTER_KEY);
    succeeded(&clients.pusher_subscribe("r", cache));
    let cached = clients.pusher_event("r", cache, "price");
    assert_eq!(cached["data"], json!({"v": 7}), "{cached}");
}
