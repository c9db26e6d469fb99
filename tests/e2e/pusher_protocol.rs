//! Pusher Channels protocol 7 at `/app/{key}`, with the stock npm `pusher-js`
//! client, beside Socket.IO sockets on the same channels.

use std::time::Duration;

use pushwire_tests::clients::{Credentials, TEST_APP};
use pushwire_tests::process::{children_of, signal_pid};
use pushwire_tests::{Clients, Deployment, Origin, each_fanout, http, pusher_raw, wait};
use serde_json::{Value, json};

/// The channel's subscription count, as the trigger API reports it.
fn subscription_count(clients: &mut Clients, origin: &Origin, channel: &str) -> u64 {
    let (status, body) = clients.get(
        origin.addr,
        TEST_APP,
        &format!("/channels/{channel}"),
        json!({"info": "subscription_count"}),
    );
    assert_eq!(status, 200, "{body}");
    body["subscription_count"].as_u64().unwrap_or(0)
}

/// Open Pusher-protocol connections, as the origin's metrics count them.
fn pusher_connections(origin: &Origin) -> u64 {
    let metrics = http::request(origin.metrics_addr(), "GET", "/metrics", b"").body;
    metrics
        .lines()
        .filter(|l| l.starts_with("pushwire_connections{") && l.contains("transport=\"pusher\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn succeeded(outcome: &Value) -> &Value {
    assert_eq!(
        outcome["event"], "pusher:subscription_succeeded",
        "{outcome}"
    );
    &outcome["data"]
}

/// Subscribes Socket.IO socket `id` to a private or presence channel, authorized
/// by the pusher SDK; returns the ack.
fn socket_io_join(
    clients: &mut Clients,
    id: &str,
    socket_id: &str,
    channel: &str,
    member: Option<Value>,
) -> Value {
    let auth = clients.authorize(TEST_APP, socket_id, channel, member);
    clients.emit(
        id,
        "subscribe",
        json!([{"channel": channel, "auth": auth["auth"], "channel_data": auth["channel_data"]}]),
    )
}

#[test]
fn pusher_js_and_socket_io_receive_the_same_events() {
    each_fanout("pusher-public", public);
}

fn public(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let mut clients = Clients::start(&deployment.scratch, "clients");
    let p = clients.pusher_connect("p", origin.addr, TEST_APP, None);
    assert!(
        p.split_once('.')
            .is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok()),
        "{p}"
    );
    succeeded(&clients.pusher_subscribe("p", "news"));
    let s = clients.connect("s", &origin.url(), json!({}));
    clients.subscribe("s", "news");
    assert_eq!(subscription_count(&mut clients, &origin, "news"), 2);

    clients.trigger_ok(
        origin.addr,
        TEST_APP,
        &["news"],
        "greet",
        json!({"hello": "world"}),
    );
    let event = clients.pusher_event("p", "news", "greet");
    assert_eq!(event["data"], json!({"hello": "world"}), "{event}");
    let frame = clients.pusher_frame("p", "the greet frame", |f| f["event"] == "greet");
    assert_eq!(frame["data"], "{\"hello\":\"world\"}", "data is a string");
    let args = clients.event("s", "greet");
    assert_eq!(args[0], json!({"hello": "world"}));
    assert_eq!(args[1]["id"], frame["id"], "the same event id");

    // A trigger's socket_id leaves out that socket, whichever kind it is.
    for (excluded, other) in [(&p, "s"), (&s, "p")] {
        let (status, body) = clients.trigger(
            origin.addr,
            TEST_APP,
            &["news"],
            "not-you",
            json!(excluded),
            json!({"socket_id": excluded}),
        );
        assert_eq!(status, 200, "{body}");
        clients.trigger_ok(origin.addr, TEST_APP, &["news"], "mark", json!(excluded));
        if other == "s" {
            clients.event("s", "not-you");
            clients.event("s", "mark");
            clients.pusher_event("p", "news", "mark");
        } else {
            clients.pusher_event("p", "news", "not-you");
            clients.pusher_event("p", "news", "mark");
            clients.event("s", "mark");
        }
    }
    let leaked = clients
        .pending_reports()
        .iter()
        .filter(|r| r["event"] == "not-you")
        .count();
    assert_eq!(leaked, 0, "an excluded socket got the event");

    clients.pusher_unsubscribe("p", "news");
    wait::until("the unsubscribe counted", Duration::from_secs(10), || {
        (subscription_count(&mut clients, &origin, "news") == 1).then_some(())
    });

    assert_eq!(pusher_connections(&origin), 1);
    clients.pusher_close("p");
    wait::until("the connection uncounted", Duration::from_secs(10), || {
        (pusher_connections(&origin) == 0).then_some(())
    });
}

#[test]
fn pusher_js_private_and_presence_channels() {
    each_fanout("pusher-presence", private_and_presence);
}

fn private_and_presence(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let mut clients = Clients::start(&deployment.scratch, "clients");
    let pa = json!({"user_id": "pa", "user_info": {"name": "PA"}});
    clients.pusher_connect("p", origin.addr, TEST_APP, Some(pa));
    succeeded(&clients.pusher_subscribe("p", "private-room"));

    let wrong = Credentials {
        secret: "not-the-secret",
        ..TEST_APP
    };
    clients.pusher_connect("bad", origin.addr, wrong, None);
    let refused = clients.pusher_subscribe("bad", "private-room");
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    assert_eq!(refused["data"]["status"], 401, "{refused}");

    let members = succeeded(&clients.pusher_subscribe("p", "presence-room")).clone();
    assert_eq!(members["count"], 1, "{members}");
    assert_eq!(members["me"], json!({"id": "pa", "info": {"name": "PA"}}));

    // A Socket.IO member joins: pusher-js sees it; and sees it leave.
    let s = clients.connect("s", &origin.url(), json!({}));
    let member = json!({"user_id": "sb", "user_info": {"name": "SB"}});
    let ack = socket_io_join(&mut clients, "s", &s, "presence-room", Some(member));
    assert_eq!(ack["presence"]["count"], 2, "{ack}");
    assert_eq!(ack["presence"]["ids"], json!(["pa", "sb"]));
    let added = clients.pusher_event("p", "presence-room", "pusher:member_added");
    assert_eq!(added["data"], json!({"id": "sb", "info": {"name": "SB"}}));

    // Subscribing again is answered again, with the members as they are now.
    clients.pusher_raw(
        "p",
        r#"{"event":"pusher:subscribe","data":{"channel":"presence-room"}}"#,
    );
    let again = clients.pusher_frame("p", "a second subscription_succeeded", |f| {
        f["event"] == "pusher_internal:subscription_succeeded"
            && f["data"].as_str().is_some_and(|d| d.contains("\"sb\""))
    });
    let data: Value = serde_json::from_str(again["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["presence"]["count"], 2, "{again}");

    // A second pusher-js member: the Socket.IO socket sees it, once.
    let pc = json!({"user_id": "pc", "user_info": null});
    clients.pusher_connect("p2", origin.addr, TEST_APP, Some(pc));
    let members = succeeded(&clients.pusher_subscribe("p2", "presence-room")).clone();
    assert_eq!(members["ids"], json!(["pa", "pc", "sb"]), "{members}");
    let added = clients.event("s", "pushwire:member_added");
    assert_eq!(added[0]["user_id"], "pc");
    clients.pusher_event("p", "presence-room", "pusher:member_added");

    clients.pusher_close("p2");
    let removed = clients.event("s", "pushwire:member_removed");
    assert_eq!(removed[0]["user_id"], "pc");
    clients.close("s");
    let removed = clients.pusher_event("p", "presence-room", "pusher:member_removed");
    assert_eq!(removed["data"]["id"], "pc", "{removed}");
    let removed = clients.pusher_event("p", "presence-room", "pusher:member_removed");
    assert_eq!(removed["data"]["id"], "sb", "{removed}");
}

#[test]
fn client_events_cross_between_pusher_js_and_socket_io() {
    each_fanout("pusher-client-events", client_events);
}

fn client_events(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let mut clients = Clients::start(&deployment.scratch, "clients");
    clients.pusher_connect("p", origin.addr, TEST_APP, None);
    succeeded(&clients.pusher_subscribe("p", "private-chat"));
    let s = clients.connect("s", &origin.url(), json!({}));
    let ack = socket_io_join(&mut clients, "s", &s, "private-chat", None);
    assert_eq!(ack["ok"], true, "{ack}");

    clients.pusher_client_event("p", "private-chat", "client-hi", json!({"a": 1}));
    assert_eq!(clients.event("s", "client-hi")[0], json!({"a": 1}));

    let ack = clients.emit(
        "s",
        "client-yo",
        json!([{"channel": "private-chat", "data": {"b": 2}}]),
    );
    assert_eq!(ack["ok"], true, "{ack}");
    let event = clients.pusher_event("p", "private-chat", "client-yo");
    assert_eq!(event["data"], json!({"b": 2}));

    // Refused on a public channel, with an error the connection survives.
    succeeded(&clients.pusher_subscribe("p", "news"));
    clients.pusher_raw("p", r#"{"event":"client-no","channel":"news","data":{}}"#);
    let error = clients.pusher_frame("p", "a refused client event", |f| {
        f["event"] == "pusher:error"
    });
    assert!(
        error["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("private and presence")),
        "{error}"
    );
    clients.pusher_client_event("p", "private-chat", "client-again", json!("x"));
    assert_eq!(clients.event("s", "client-again")[0], json!("x"));

    // Over the app's rate (10 a second): Pusher's 4301 on both kinds, and the
    // connection stays. 25 sent at once put more than 10 in some second.
    for n in 0..25 {
        clients.pusher_raw(
            "p",
            &format!(r#"{{"event":"client-burst","channel":"private-chat","data":{n}}}"#),
        );
    }
    let error = clients.pusher_frame("p", "a rate-limited client event", |f| {
        f["event"] == "pusher:error"
    });
    assert_eq!(error["data"]["code"], 4301, "{error}");
    let codes: Vec<Value> = (0..25)
        .map(|n| {
            let ack = clients.emit(
                "s",
                "client-burst",
                json!([{"channel": "private-chat", "data": n}]),
            );
            ack["error"]["code"].clone()
        })
        .collect();
    assert!(codes.contains(&json!(4301)), "{codes:?}");
    let ack = socket_io_join(&mut clients, "s", &s, "private-after", None);
    assert_eq!(ack["ok"], true, "still connected: {ack}");
}

#[test]
fn pusher_protocol_errors_and_pings() {
    each_fanout("pusher-errors", errors_and_pings);
}

fn errors_and_pings(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let mut clients = Clients::start(&deployment.scratch, "clients");

    let unknown = Credentials {
        key: "no-such-key",
        ..TEST_APP
    };
    clients.pusher_start("unknown", origin.addr, unknown, None, None);
    let error = clients.pusher_error("unknown");
    assert_eq!(error["error"]["data"]["code"], 4001, "{error}");

    for (path, code) in [
        ("/app/no-such-key?protocol=7", 4001),
        ("/app/app-key?protocol=6&client=js", 4007),
        ("/app/app-key?protocol=seven", 4006),
        ("/app/app-key?client=js", 4008),
        ("/app?protocol=7", 4005),
        ("/app/?protocol=7", 4005),
        ("/app/app-key/extra?protocol=7", 4005),
    ] {
        let refusal = pusher_raw::refused(origin.addr, path);
        assert_eq!(refusal.error["event"], "pusher:error", "{path}");
        assert_eq!(refusal.error["data"]["code"], code, "{path}: {refusal:?}");
        assert_eq!(refusal.close_code, Some(code), "{path}");
    }

    // pusher-js pings after its activity timeout; the server answers.
    clients.pusher_start("p", origin.addr, TEST_APP, None, Some(500));
    clients.wait_for("p connected", |r| {
        r["type"] == "pusher_connected" && r["id"] == "p"
    });
    clients.pusher_frame("p", "a pong", |f| f["event"] == "pusher:pong");

    for (text, says) in [
        ("{not json", "not JSON"),
        (r#"{"data":{}}"#, "no \"event\""),
        (r#"{"event":"pusher:nonsense","data":{}}"#, "unknown event"),
        (
            r#"{"event":"pusher:subscribe","data":{"channel":"a b"}}"#,
            "",
        ),
    ] {
        clients.pusher_raw("p", text);
        let error = clients.pusher_frame("p", "an error", |f| f["event"] == "pusher:error");
        assert!(
            error["data"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{text}: {error}"
        );
        assert_eq!(error["data"]["code"], Value::Null, "not fatal: {error}");
    }
    // Still connected and usable.
    succeeded(&clients.pusher_subscribe("p", "still-here"));
    clients.trigger_ok(origin.addr, TEST_APP, &["still-here"], "ok", json!("1"));
    clients.pusher_event("p", "still-here", "ok");

    // A stopping origin tells its connections 4200: reconnect (elsewhere) now.
    origin.signal_master("TERM");
    clients.wait_for("p told 4200", |r| {
        r["type"] == "pusher_error" && r["id"] == "p" && r["error"]["data"]["code"] == 4200
    });
}

#[test]
fn pusher_js_reconnects_and_resubscribes_after_a_worker_is_killed() {
    each_fanout("pusher-worker-kill", reconnect_after_kill);
}

fn reconnect_after_kill(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let mut clients = Clients::start(&deployment.scratch, "clients");
    let first = clients.pusher_connect("p", origin.addr, TEST_APP, None);
    succeeded(&clients.pusher_subscribe("p", "news"));
    // Every worker, so the one holding the connection is among them.
    for worker in children_of(origin.pid()) {
        signal_pid(worker, "KILL");
    }
    let again = clients.wait_for("p to connect again", |r| {
        r["type"] == "pusher_connected" && r["id"] == "p"
    });
    assert_ne!(again["socket_id"], first.as_str(), "a new connection");
    // pusher-js subscribes its channels again by itself.
    clients.pusher_event("p", "news", "pusher:subscription_succeeded");
    clients.trigger_ok(origin.addr, TEST_APP, &["news"], "after", json!("1"));
    clients.pusher_event("p", "news", "after");
}

/// An app at its `limits.max_connections` refuses the next connection of
/// either kind: Pusher's 4100 (the SDKs retry after a pause), a Socket.IO
/// `connect_error`; a closed connection frees its place.
#[test]
fn an_app_at_its_connection_cap_refuses_with_4100() {
    use pushwire_tests::Scratch;
    use pushwire_tests::origin::OriginOptions;

    let scratch = Scratch::new("pusher-capacity");
    let config = scratch.file("pushwire.json");
    std::fs::write(
        &config,
        r#"{"apps": [{"id": "1000001", "key": "app-key", "secret": "app-secret",
                      "limits": {"max_connections": 2}}]}"#,
    )
    .expect("write the config");
    let mut options = OriginOptions::embedded();
    options.apps = String::new();
    // One worker holds the whole cap, so which connection is refused is certain.
    options.workers = 1;
    options.args = vec!["--config".into(), config.display().to_string()];
    let origin = Origin::start(&scratch, "origin", options);
    let mut clients = Clients::start(&scratch, "clients");
    clients.pusher_connect("p1", origin.addr, TEST_APP, None);
    clients.connect("s1", &origin.url(), json!({"transports": ["websocket"]}));

    let refusal = pusher_raw::refused(origin.addr, "/app/app-key?protocol=7");
    assert_eq!(refusal.error["data"]["code"], 4100, "{refusal:?}");
    assert_eq!(refusal.close_code, Some(4100));
    clients.pusher_start("p2", origin.addr, TEST_APP, None, None);
    let error = clients.pusher_error("p2");
    assert_eq!(error["error"]["data"]["code"], 4100, "{error}");
    let message = clients.connect_refused("s2", &origin.url(), json!({}));
    assert!(message.contains("over capacity"), "{message}");

    // A place frees up: pusher-js, retrying by itself, gets in.
    clients.close("s1");
    clients.wait_for("p2 to connect after its retry", |r| {
        r["type"] == "pusher_connected" && r["id"] == "p2"
    });
}

#[test]
fn presence_members_are_counted_once_across_origins_and_protocols() {
    pushwire_tests::each_shared_broker("pusher-presence-mix", members_across_origins);
}

/// One user with sockets of both kinds on two origins (each with the suite's
/// workers) is one member: added once when its first socket joins, removed
/// once when its last leaves, as seen by observers of both kinds.
fn members_across_origins(deployment: &Deployment) {
    const ROOM: &str = "presence-mix";
    let (a, b) = (deployment.origin("a"), deployment.origin("b"));
    let mut clients = Clients::start(&deployment.scratch, "clients");
    let user = |id: &str| json!({"user_id": id, "user_info": null});
    clients.pusher_connect("obs", a.addr, TEST_APP, Some(user("o")));
    succeeded(&clients.pusher_subscribe("obs", ROOM));
    let sobs = clients.connect("sobs", &b.url(), json!({}));
    let ack = socket_io_join(&mut clients, "sobs", &sobs, ROOM, Some(user("o2")));
    assert_eq!(ack["ok"], true, "{ack}");
    let added = clients.pusher_event("obs", ROOM, "pusher:member_added");
    assert_eq!(added["data"]["id"], "o2");

    // User u: pusher-js on a, Socket.IO on b, pusher-js on b.
    clients.pusher_connect("u1", a.addr, TEST_APP, Some(user("u")));
    succeeded(&clients.pusher_subscribe("u1", ROOM));
    let u2 = clients.connect("u2", &b.url(), json!({}));
    let ack = socket_io_join(&mut clients, "u2", &u2, ROOM, Some(user("u")));
    assert_eq!(ack["presence"]["ids"], json!(["o", "o2", "u"]), "{ack}");
    clients.pusher_connect("u3", b.addr, TEST_APP, Some(user("u")));
    let members = succeeded(&clients.pusher_subscribe("u3", ROOM)).clone();
    assert_eq!(members["count"], 3, "{members}");
    assert_eq!(
        clients.pusher_event("obs", ROOM, "pusher:member_added")["data"]["id"],
        "u"
    );
    assert_eq!(
        clients.event("sobs", "pushwire:member_added")[0]["user_id"],
        "u"
    );

    // Its first two sockets leave: still a member. The last: removed, once.
    clients.pusher_close("u1");
    clients.close("u2");
    clients.pusher_close("u3");
    assert_eq!(
        clients.pusher_event("obs", ROOM, "pusher:member_removed")["data"]["id"],
        "u"
    );
    assert_eq!(
        clients.event("sobs", "pushwire:member_removed")[0]["user_id"],
        "u"
    );

    // Nothing more about u reached either observer.
    clients.trigger_ok(a.addr, TEST_APP, &[ROOM], "end", json!(0));
    let seen = clients.pusher_events_through("obs", ROOM, "end");
    let members: Vec<&Value> = seen
        .iter()
        .filter(|r| {
            r["event"]
                .as_str()
                .is_some_and(|e| e.starts_with("pusher:member"))
        })
        .collect();
    assert!(members.is_empty(), "more member events: {members:?}");
    let seen = clients.events_through("sobs", "end");
    let members: Vec<&(String, Vec<Value>)> = seen
        .iter()
        .filter(|(name, _)| name.starts_with("pushwire:member"))
        .collect();
    assert!(members.is_empty(), "more member events: {members:?}");
    // And the count agrees: two members left.
    let (status, body) = clients.get(
        a.addr,
        TEST_APP,
        &format!("/channels/{ROOM}/users"),
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"users": [{"id": "o"}, {"id": "o2"}]}));
}
