//! User authentication (`pusher:signin`, Socket.IO `signin`), the npm
//! `pusher` SDK's `sendToUser` and `terminateUserConnections`, with stock
//! pusher-js and socket.io-client clients spread over workers and origins.

use pushwire_tests::clients::TEST_APP;
use pushwire_tests::origin::test_workers;
use pushwire_tests::{Clients, Deployment, Origin, each_fanout, http};
use serde_json::{Value, json};

/// Signs Socket.IO socket `id` (whose Pusher socket id is `socket_id`) in as
/// `user`, signed by the SDK's `authenticateUser`; returns the ack.
fn socket_io_signin(clients: &mut Clients, id: &str, socket_id: &str, user: Value) -> Value {
    let signed = clients.authenticate_user(TEST_APP, socket_id, user);
    clients.emit(id, "signin", json!([signed]))
}

/// How many workers of `origin` hold at least one Pusher-protocol connection
/// (`pushwire_connections` has a series per worker).
fn workers_with_pusher_connections(origin: &Origin) -> usize {
    let metrics = http::request(origin.metrics_addr(), "GET", "/metrics", b"").body;
    metrics
        .lines()
        .filter(|l| l.starts_with("pushwire_connections{") && l.contains("transport=\"pusher\""))
        .filter(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        })
        .count()
}

/// The Pusher error code in an error pusher-js reported (a `PusherError`,
/// bare or wrapped).
fn error_code(error: &Value) -> &Value {
    match &error["data"]["code"] {
        Value::Null => &error["error"]["data"]["code"],
        code => code,
    }
}

/// The user events pusher-js client `id` has been handed and not yet read.
fn user_events(clients: &mut Clients, id: &str) -> Vec<String> {
    clients
        .pending_reports()
        .iter()
        .filter(|r| r["type"] == "pusher_user_event" && r["id"] == id)
        .map(|r| r["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn users_sign_in_receive_their_events_and_are_terminated() {
    each_fanout("pusher-users", users);
}

fn users(deployment: &Deployment) {
    // With Redis, across two origins; embedded, across the workers of one
    // (the master spreads Pusher connections over its workers).
    let origins = deployment.origin_pair();
    let (a, b) = (origins.a(), origins.b());
    let mut clients = Clients::start(&deployment.scratch, "clients");
    let alice = json!({"id": "alice", "name": "Alice"});
    let bob = json!({"id": "bob"});

    // pusher-js signs in with the SDK's authenticateUser; the success
    // carries the user_data that was signed, and pusher-js then asks for its
    // user's channel, which it is on already.
    clients.pusher_connect_user("alice-1", a.addr, TEST_APP, alice.clone(), false);
    let success = clients.pusher_signin("alice-1");
    let data: Value = serde_json::from_str(success["data"].as_str().expect("data is a string"))
        .expect("JSON data");
    let user_data: Value = serde_json::from_str(data["user_data"].as_str().unwrap()).unwrap();
    assert_eq!(user_data, alice);
    clients.pusher_connect_user("alice-2", b.addr, TEST_APP, alice.clone(), false);
    clients.pusher_signin("alice-2");
    if origins.is_one_origin() && test_workers() > 1 {
        // One origin: the master hands connections to its workers in turn,
        // so Alice's two connections are on two workers.
        assert_eq!(workers_with_pusher_connections(a), 2);
    }
    clients.pusher_connect_user("bob-1", a.addr, TEST_APP, bob.clone(), false);
    clients.pusher_signin("bob-1");

    // A Socket.IO socket signs in with the same kind of signature over its
    // own socket id.
    let socket_id = clients.connect("alice-s", &b.url(), json!({}));
    let ack = socket_io_signin(&mut clients, "alice-s", &socket_id, alice.clone());
    assert_eq!(ack["ok"], true, "{ack}");
    let signed: Value = serde_json::from_str(ack["user_data"].as_str().unwrap()).unwrap();
    assert_eq!(signed, alice);

    // sendToUser reaches every connection of the user, whatever its protocol,
    // worker or origin, and no one else's.
    let (status, body) = clients.send_to_user(b.addr, TEST_APP, "alice", "note", json!({"n": 1}));
    assert_eq!((status, body.as_str()), (200, "{}"));
    for id in ["alice-1", "alice-2"] {
        assert_eq!(
            clients.pusher_user_event(id, "note"),
            json!({"n": 1}),
            "{id}"
        );
    }
    let frame = clients.pusher_frame("alice-1", "the note frame", |f| f["event"] == "note");
    assert_eq!(frame["channel"], "#server-to-user-alice");
    let args = clients.event("alice-s", "note");
    assert_eq!(args[0], json!({"n": 1}));
    assert_eq!(args[1]["channel"], "#server-to-user-alice");
    let (status, _) = clients.send_to_user(a.addr, TEST_APP, "bob", "for-bob", json!("hi"));
    assert_eq!(status, 200);
    assert_eq!(clients.pusher_user_event("bob-1", "for-bob"), json!("hi"));
    // Alice's event had reached all her connections before Bob's was sent:
    // none of it reached Bob, and Bob's reached none of hers.
    assert_eq!(user_events(&mut clients, "bob-1"), Vec::<String>::new());
    for id in ["alice-1", "alice-2"] {
        assert_eq!(user_events(&mut clients, id), Vec::<String>::new(), "{id}");
    }

    // Nobody joins a user channel without signing in as that user: not by a
    // raw pusher:subscribe (pusher-js itself refuses such names), not by a
    // Socket.IO subscribe.
    clients.pusher_raw(
        "bob-1",
        r##"{"event":"pusher:subscribe","data":{"channel":"#server-to-user-alice"}}"##,
    );
    let refused = clients.pusher_frame("bob-1", "the refusal", |f| {
        f["channel"] == "#server-to-user-alice"
    });
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    let ack = clients.emit(
        "alice-s",
        "subscribe",
        json!([{"channel": "#server-to-user-bob"}]),
    );
    assert_eq!(ack["error"]["code"], 4009, "{ack}");

    // Bad signatures are refused: pusher-js gets 4009 and stays
    // disconnected; a Socket.IO socket gets an error ack and stays connected.
    clients.pusher_connect_user("mallory", a.addr, TEST_APP, alice.clone(), true);
    clients.pusher_signin_start("mallory");
    let error = clients.pusher_error("mallory");
    assert_eq!(error_code(&error), 4009, "{error}");
    clients.pusher_state_change("mallory", "disconnected");
    let socket_id = clients.connect("mallory-s", &a.url(), json!({}));
    let mut signed = clients.authenticate_user(TEST_APP, &socket_id, alice.clone());
    signed["user_data"] = json!(json!({"id": "bob"}).to_string());
    let ack = clients.emit("mallory-s", "signin", json!([signed]));
    assert_eq!(ack["error"]["code"], 4009, "{ack}");
    let ack = clients.emit("mallory-s", "signin", json!(["not an object"]));
    assert_eq!(ack["error"]["code"], 4000, "{ack}");

    // terminateUserConnections closes exactly Alice's connections, on both
    // protocols, everywhere.
    let (status, body) = clients.terminate_user(a.addr, TEST_APP, "alice");
    assert_eq!((status, body.as_str()), (200, "{}"));
    for id in ["alice-1", "alice-2"] {
        let error = clients.pusher_error(id);
        assert_eq!(error_code(&error), 4009, "{id}: {error}");
        clients.pusher_state_change(id, "disconnected");
    }
    let notice = clients.event("alice-s", "pushwire:terminated");
    assert_eq!(notice[0]["code"], 4009, "{notice:?}");
    let gone = clients.wait_for("alice-s to be disconnected", |r| {
        r["type"] == "disconnect" && r["id"] == "alice-s"
    });
    assert_eq!(gone["reason"], "io server disconnect", "{gone}");

    // Bob is still connected and reachable; the terminated pusher-js
    // clients did not reconnect meanwhile (4009 is "refused" to pusher-js).
    let (status, _) = clients.send_to_user(b.addr, TEST_APP, "bob", "still-here", json!(1));
    assert_eq!(status, 200);
    clients.pusher_user_event("bob-1", "still-here");
    for id in ["alice-1", "alice-2"] {
        assert_eq!(clients.pusher_state_now(id), "disconnected", "{id}");
        let reconnected = clients
            .pending_reports()
            .iter()
            .any(|r| r["id"] == id && r["type"] == "pusher_connected");
        assert!(!reconnected, "{id} reconnected after being terminated");
    }
    // The order was not delivered as an event to anyone.
    let leaked = clients
        .pending_reports()
        .iter()
        .any(|r| r.to_string().contains("pushwire:terminate_connections"));
    assert!(!leaked, "the termination order reached a client");
}

#[test]
fn a_replay_of_a_user_channel_skips_the_termination_order() {
    each_fanout("pusher-users-replay", replay_skips_the_order);
}

fn replay_skips_the_order(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let mut clients = Clients::start(&deployment.scratch, "clients");
    let dave = json!({"id": "dave"});
    let first = clients.connect("dave-1", &origin.url(), json!({}));
    let ack = socket_io_signin(&mut clients, "dave-1", &first, dave.clone());
    assert_eq!(ack["ok"], true, "{ack}");
    let (status, _) = clients.send_to_user(origin.addr, TEST_APP, "dave", "one", json!(1));
    assert_eq!(status, 200);
    let pos = clients.event("dave-1", "one")[1]["pos"].clone();
    let (status, _) = clients.terminate_user(origin.addr, TEST_APP, "dave");
    assert_eq!(status, 200);
    clients.event("dave-1", "pushwire:terminated");

    // A later socket of Dave's leaves its user channel, misses an event and
    // comes back with `since`: the replay holds the termination order, which
    // is skipped, and the socket stays.
    let second = clients.connect("dave-2", &origin.url(), json!({}));
    let ack = socket_io_signin(&mut clients, "dave-2", &second, dave);
    assert_eq!(ack["ok"], true, "{ack}");
    let channel = "#server-to-user-dave";
    let ack = clients.emit("dave-2", "unsubscribe", json!([{"channel": channel}]));
    assert_eq!(ack["ok"], true, "{ack}");
    let (status, _) = clients.send_to_user(origin.addr, TEST_APP, "dave", "two", json!(2));
    assert_eq!(status, 200);
    let ack = clients.emit(
        "dave-2",
        "subscribe",
        json!([{"channel": channel, "since": pos}]),
    );
    assert_eq!(
        (&ack["ok"], &ack["recovered"]),
        (&json!(true), &json!(true)),
        "{ack}"
    );
    let seen: Vec<String> = clients
        .events_through("dave-2", "two")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(seen, ["two"], "the replay");
    let (status, _) = clients.send_to_user(origin.addr, TEST_APP, "dave", "three", json!(3));
    assert_eq!(status, 200);
    clients.event("dave-2", "three");
    let troubled = clients
        .pending_reports()
        .iter()
        .any(|r| r["id"] == "dave-2" && (r["type"] == "disconnect" || r["type"] == "event"));
    assert!(!troubled, "{:?}", clients.pending_reports());
}
