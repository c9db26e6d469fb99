//! The Socket.IO side: handshake app selection, subscribe/unsubscribe acks.

use pushwire_shared::channel_auth;
use pushwire_tests::clients::{Credentials, TEST_APP};
use pushwire_tests::origin::{OriginOptions, TEST_APPS, test_app};
use pushwire_tests::{Clients, Deployment, Origin, Scratch, each_fanout, http};
use serde_json::{Value, json};

fn code(ack: &Value) -> u64 {
    assert_eq!(ack["ok"], false, "expected an error ack: {ack}");
    assert!(
        ack["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{ack}"
    );
    ack["error"]["code"].as_u64().expect("numeric code")
}

#[test]
fn subscribe_acks_say_what_is_wrong() {
    each_fanout("acks", acks);
}

fn acks(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let mut clients = Clients::start(&deployment.scratch, "clients");
    let socket_id = clients.connect("c", &origin.url(), json!({}));
    assert!(
        socket_id.split_once('.').is_some_and(|(a, b)| !a.is_empty()
            && !b.is_empty()
            && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())),
        "{socket_id}"
    );

    assert_eq!(
        code(&clients.emit("c", "subscribe", json!([{"channel": "a b"}]))),
        4001
    );
    assert_eq!(
        code(&clients.emit("c", "subscribe", json!([{"channel": ""}]))),
        4001
    );
    assert_eq!(
        code(&clients.emit("c", "subscribe", json!([{"channel": "x".repeat(201)}]))),
        4001
    );
    assert_eq!(code(&clients.emit("c", "subscribe", json!(["news"]))), 4000);
    assert_eq!(code(&clients.emit("c", "subscribe", json!([42]))), 4000);
    assert_eq!(code(&clients.emit("c", "subscribe", json!([{}]))), 4000);
    assert_eq!(code(&clients.emit("c", "subscribe", json!([]))), 4000);
    assert_eq!(
        code(&clients.emit("c", "subscribe", json!([{"channel": 7}]))),
        4000
    );
    assert_eq!(code(&clients.emit("c", "unsubscribe", json!([null]))), 4000);
    assert_eq!(
        code(&clients.emit("c", "subscribe", json!([{"channel": "private-x"}]))),
        4009
    );
    assert_eq!(
        code(&clients.emit(
            "c",
            "subscribe",
            json!([{"channel": "private-x", "auth": "app-key:00"}])
        )),
        4009
    );

    // A private channel with the backend's signature for this socket.
    let app = test_app();
    let auth = channel_auth::sign(&app, &socket_id, "private-x", None);
    assert_eq!(
        clients.emit(
            "c",
            "subscribe",
            json!([{"channel": "private-x", "auth": auth}])
        ),
        json!({"ok": true})
    );

    // Subscribing twice is idempotent: one delivery.
    clients.subscribe("c", "twice");
    clients.subscribe("c", "twice");
    clients.trigger_ok(
        origin.addr,
        TEST_APP,
        &["twice", "private-x"],
        "once",
        json!(""),
    );
    clients.trigger_ok(origin.addr, TEST_APP, &["twice"], "sentinel", json!(""));
    let seen: Vec<(String, String)> = clients
        .events_through("c", "sentinel")
        .into_iter()
        .map(|(name, args)| {
            (
                name,
                args[1]["channel"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let twice: Vec<_> = seen
        .iter()
        .filter(|(n, c)| n == "once" && c == "twice")
        .collect();
    assert_eq!(twice.len(), 1, "{seen:?}");

    // An emit without an ack callback works; it just gets no answer.
    clients.connect("quiet", &origin.url(), json!({"transports": ["websocket"]}));
    clients.emit_without_ack("quiet", "subscribe", json!([{"channel": "quiet"}]));
    // A socket's subscription changes apply one at a time, so once the same
    // subscribe is acknowledged, the unacknowledged one has taken effect too.
    clients.subscribe("quiet", "quiet");
    clients.trigger_ok(origin.addr, TEST_APP, &["quiet"], "heard", json!(""));
    clients.event("quiet", "heard");
}

#[test]
fn handshake_picks_the_app_and_apps_never_mix() {
    each_fanout("apps", apps_never_mix);
}

fn apps_never_mix(deployment: &Deployment) {
    let mut options = deployment.options();
    options.apps = format!("{TEST_APPS},2000002:other-key:other-secret");
    let origin = Origin::start(&deployment.scratch, "origin", options);
    let mut clients = Clients::start(&deployment.scratch, "clients");
    let message = clients.connect_refused("anon", &origin.url(), json!({}));
    assert!(message.contains("app_key"), "{message}");
    let message = clients.connect_refused(
        "stranger",
        &origin.url(),
        json!({"auth": {"app_key": "nope"}}),
    );
    assert!(message.contains("unknown app_key"), "{message}");

    clients.connect(
        "one",
        &origin.url(),
        json!({"auth": {"app_key": "app-key"}}),
    );
    clients.connect(
        "two",
        &origin.url(),
        json!({"auth": {"app_key": "other-key"}}),
    );
    clients.subscribe("one", "news");
    clients.subscribe("two", "news");
    let other = Credentials {
        id: "2000002",
        key: "other-key",
        secret: "other-secret",
    };
    clients.trigger_ok(origin.addr, TEST_APP, &["news"], "for-one", json!(""));
    clients.trigger_ok(origin.addr, other, &["news"], "for-two", json!(""));
    let seen: Vec<String> = clients
        .events_through("two", "for-two")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(seen, ["for-two"]);
    let seen: Vec<String> = clients
        .events_through("one", "for-one")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(seen, ["for-one"]);
    // Signed with app 1's credentials for app 2's path: refused.
    let (status, _) = clients.trigger(
        origin.addr,
        Credentials {
            id: "2000002",
            ..TEST_APP
        },
        &["news"],
        "x",
        json!(""),
        json!({}),
    );
    assert_eq!(status, 401);
}

#[test]
fn garbage_socket_io_traffic_never_hurts_the_server() {
    let scratch = Scratch::new("garbage");
    let origin = Origin::start(&scratch, "origin", OriginOptions::embedded());
    let get = |target: &str| http::request(origin.addr, "GET", target, b"");
    let post = |target: &str, body: &[u8]| http::request(origin.addr, "POST", target, body);

    // Engine.IO level: unknown protocol version, unknown session, bogus transport.
    for target in [
        "/socket.io/?EIO=9&transport=polling",
        "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAA",
        "/socket.io/?EIO=4&transport=carrier-pigeon",
        "/socket.io/?transport=polling",
    ] {
        let status = get(target).status;
        assert!((400..500).contains(&status), "{target}: {status}");
    }

    // A real polling session fed garbage packets.
    let open = get("/socket.io/?EIO=4&transport=polling");
    assert_eq!(open.status, 200, "{}", open.body);
    let sid = http::open_packet_sid(&open.body);
    let session = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    for garbage in [
        &b"40"[..],
        b"42[\"subscribe\",{\"channel\":",
        b"\xff\xfe",
        b"49",
        b"42[1,2,3]",
        b"9999",
    ] {
        let status = post(&session, garbage).status;
        assert!(
            status < 500,
            "garbage {:?} got {status}",
            String::from_utf8_lossy(garbage)
        );
    }

    // Still serving: health, triggers and a stock client.
    assert_eq!(origin.health()["status"], "ok");
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("after", &origin.url(), json!({}));
    clients.subscribe("after", "still-here");
    clients.trigger_ok(origin.addr, TEST_APP, &["still-here"], "ok", json!(""));
    clients.event("after", "ok");
}
