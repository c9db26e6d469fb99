//! Private and presence channels, cluster-wide channel state, the channel
//! query API and client events, with the npm `pusher` SDK as the app backend.

use std::time::Duration;

use pushwire_shared::event::{MEMBER_ADDED, MEMBER_REMOVED};
use pushwire_tests::clients::TEST_APP;
use pushwire_tests::origin::OriginOptions;
use pushwire_tests::process::{children_of, signal_pid};
use pushwire_tests::{Clients, Deployment, Origin, Scratch, each_fanout, each_shared_broker};
use serde_json::{Value, json};

const ROOM: &str = "presence-room";

/// Subscribes `id` (socket `socket_id`) to a presence channel as `user`,
/// authorized by the pusher SDK; returns the ack.
fn join(clients: &mut Clients, id: &str, socket_id: &str, channel: &str, user: &str) -> Value {
    let data = json!({"user_id": user, "user_info": {"name": user.to_uppercase()}});
    let auth = clients.authorize(TEST_APP, socket_id, channel, Some(data));
    clients.emit(
        id,
        "subscribe",
        json!([{"channel": channel, "auth": auth["auth"], "channel_data": auth["channel_data"]}]),
    )
}

/// Triggers `mark` on the room and returns everything `id` received up to it,
/// as `(event, user_id)` pairs for member events and `(event, "")` otherwise.
fn events_until_mark(
    clients: &mut Clients,
    origin: &Origin,
    id: &str,
    mark: &str,
) -> Vec<(String, String)> {
    clients.trigger_ok(origin.addr, TEST_APP, &[ROOM], mark, json!(""));
    clients
        .events_through(id, mark)
        .into_iter()
        .map(|(name, args)| {
            let user = args[0]["user_id"].as_str().unwrap_or_default().to_owned();
            (name, user)
        })
        .collect()
}

fn ev(name: &str, user: &str) -> (String, String) {
    (name.to_owned(), user.to_owned())
}

/// The pusher SDK's `get` on `path`, asserting 200.
fn get(clients: &mut Clients, origin: &Origin, path: &str, params: Value) -> Value {
    let (status, body) = clients.get(origin.addr, TEST_APP, path, params);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Presence across two origins (or one, embedded): one member per user however
/// many sockets, events exactly once, queries and `info` cluster-wide.
fn presence_members(a: &Origin, b: &Origin, clients: &mut Clients) {
    let obs = clients.connect("obs", &a.url(), json!({}));
    let ack = join(clients, "obs", &obs, ROOM, "obs");
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["presence"]["ids"], json!(["obs"]));

    let tab1 = clients.connect("u1-tab1", &a.url(), json!({"transports": ["websocket"]}));
    let ack = join(clients, "u1-tab1", &tab1, ROOM, "u1");
    assert_eq!(ack["presence"]["count"], 2, "{ack}");
    assert_eq!(ack["presence"]["hash"]["u1"], json!({"name": "U1"}));
    let tab2 = clients.connect("u1-tab2", &b.url(), json!({}));
    let ack = join(clients, "u1-tab2", &tab2, ROOM, "u1");
    assert_eq!(
        ack["presence"]["count"], 2,
        "a second tab is the same member: {ack}"
    );
    let u2 = clients.connect("u2", &b.url(), json!({}));
    join(clients, "u2", &u2, ROOM, "u2");
    assert_eq!(
        events_until_mark(clients, a, "obs", "mark-1"),
        [
            ev(MEMBER_ADDED, "u1"),
            ev(MEMBER_ADDED, "u2"),
            ev("mark-1", "")
        ]
    );
    // The joining socket does not hear about itself.
    assert_eq!(
        events_until_mark(clients, a, "u2", "mark-2"),
        [ev("mark-1", ""), ev("mark-2", "")]
    );

    // Queries and `info`, cluster-wide (sockets on both origins).
    let channels = get(
        clients,
        a,
        "/channels",
        json!({"filter_by_prefix": "presence-", "info": "user_count"}),
    );
    assert_eq!(channels, json!({"channels": {ROOM: {"user_count": 3}}}));
    let room = get(
        clients,
        b,
        &format!("/channels/{ROOM}"),
        json!({"info": "subscription_count,user_count"}),
    );
    assert_eq!(
        room,
        json!({"occupied": true, "subscription_count": 4, "user_count": 3})
    );
    let users = get(clients, a, &format!("/channels/{ROOM}/users"), json!({}));
    assert_eq!(
        users,
        json!({"users": [{"id": "obs"}, {"id": "u1"}, {"id": "u2"}]})
    );
    let empty = get(
        clients,
        a,
        "/channels/nobody-here",
        json!({"info": "subscription_count"}),
    );
    assert_eq!(empty, json!({"occupied": false, "subscription_count": 0}));
    let (status, _) = clients.get(a.addr, TEST_APP, "/channels/public-x/users", json!({}));
    assert_eq!(status, 400, "users of a non-presence channel");
    let (status, body) = clients.trigger(
        a.addr,
        TEST_APP,
        &[ROOM],
        "info",
        json!(""),
        json!({"info": "user_count,subscription_count"}),
    );
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (
            200,
            json!({"channels": {ROOM: {"user_count": 3, "subscription_count": 4}}})
        )
    );
    // A batch answers per event, in request order.
    let events = json!([
        {"channel": ROOM, "name": "info-batch", "data": "", "info": "user_count"},
        {"channel": "nobody-here", "name": "info-batch", "data": "", "info": "subscription_count"},
    ]);
    let (status, body) = clients.trigger_batch(b.addr, TEST_APP, events);
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (
            200,
            json!({"batch": [{"user_count": 3}, {"subscription_count": 0}]})
        )
    );

    // The first tab leaving changes nothing; the last one removes the member, once.
    clients.unsubscribe("u1-tab1", ROOM);
    assert_eq!(
        events_until_mark(clients, a, "obs", "mark-3"),
        [
            ev("mark-2", ""),
            ev("info", ""),
            ev("info-batch", ""),
            ev("mark-3", "")
        ]
    );
    clients.close("u1-tab2");
    // The server handles the disconnect on its own time: wait until it has.
    let path = format!("/channels/{ROOM}/users");
    pushwire_tests::wait::until(
        "u1's last socket to be gone",
        Duration::from_secs(10),
        || {
            let users = get(clients, a, &path, json!({}));
            (users == json!({"users": [{"id": "obs"}, {"id": "u2"}]})).then_some(())
        },
    );
    assert_eq!(
        events_until_mark(clients, a, "obs", "mark-4"),
        [ev(MEMBER_REMOVED, "u1"), ev("mark-4", "")]
    );
}

#[test]
fn presence_is_cluster_wide_and_counted_once_per_user() {
    each_fanout("presence", |d: &Deployment| {
        let origins = d.origin_pair();
        let mut clients = Clients::start(&d.scratch, "clients");
        presence_members(origins.a(), origins.b(), &mut clients);
    });
}

#[test]
fn private_channels_need_this_sockets_signature() {
    let scratch = Scratch::new("private");
    let origin = Origin::start(&scratch, "origin", OriginOptions::embedded());
    let mut clients = Clients::start(&scratch, "clients");
    let me = clients.connect("me", &origin.url(), json!({}));
    let other = clients.connect("other", &origin.url(), json!({}));
    let good = clients.authorize(TEST_APP, &me, "private-a", None)["auth"].clone();
    let refused = |clients: &mut Clients, auth: Value, channel: &str| {
        let ack = clients.emit(
            "me",
            "subscribe",
            json!([{"channel": channel, "auth": auth}]),
        );
        assert_eq!(ack["error"]["code"], 4009, "{channel} {ack}");
    };
    refused(&mut clients, Value::Null, "private-a");
    refused(&mut clients, json!("not-a-signature"), "private-a");
    refused(
        &mut clients,
        json!(format!(
            "other-key:{}",
            good.as_str().unwrap().split_once(':').unwrap().1
        )),
        "private-a",
    );
    let others = clients_auth(&mut clients, &other, "private-a");
    refused(&mut clients, others, "private-a");
    refused(&mut clients, good.clone(), "private-b");
    // Still usable, and the right signature works.
    let ack = clients.emit(
        "me",
        "subscribe",
        json!([{"channel": "private-a", "auth": good}]),
    );
    assert_eq!(ack, json!({"ok": true}));
    let ack = join(&mut clients, "me", &me, "presence-x", "u");
    assert_eq!(ack["ok"], true);
    let wrong_data = clients.authorize(TEST_APP, &me, "presence-y", Some(json!({"user_id": "u"})));
    let ack = clients.emit("me", "subscribe", json!([{"channel": "presence-y", "auth": wrong_data["auth"], "channel_data": "{\"user_id\":\"admin\"}"}]));
    assert_eq!(
        ack["error"]["code"], 4009,
        "channel_data must be what was signed: {ack}"
    );
}

fn clients_auth(clients: &mut Clients, socket_id: &str, channel: &str) -> Value {
    clients.authorize(TEST_APP, socket_id, channel, None)["auth"].clone()
}

#[test]
fn client_events_reach_the_others_but_not_the_sender() {
    each_shared_broker("client-events", client_events);
}

fn client_events(d: &Deployment) {
    let a = d.origin("origin-a");
    let b = d.origin("origin-b");
    let mut clients = Clients::start(&d.scratch, "clients");
    let sender = clients.connect("sender", &a.url(), json!({}));
    let receiver = clients.connect("receiver", &b.url(), json!({}));
    for (id, socket_id) in [("sender", &sender), ("receiver", &receiver)] {
        let auth = clients_auth(&mut clients, socket_id, "private-chat");
        let ack = clients.emit(
            id,
            "subscribe",
            json!([{"channel": "private-chat", "auth": auth}]),
        );
        assert_eq!(ack, json!({"ok": true}));
    }
    let ack = clients.emit(
        "sender",
        "client-typing",
        json!([{"channel": "private-chat", "data": {"who": "s"}}]),
    );
    assert_eq!(ack, json!({"ok": true}));
    let args = clients.event("receiver", "client-typing");
    assert_eq!(args[0], json!({"who": "s"}));
    assert_eq!(args[1]["channel"], "private-chat");
    clients.trigger_ok(a.addr, TEST_APP, &["private-chat"], "mark", json!(""));
    let seen = clients.events_through("sender", "mark");
    assert_eq!(
        seen.len(),
        1,
        "the sender does not get its own client event: {seen:?}"
    );

    clients.subscribe("sender", "public");
    let ack = clients.emit(
        "sender",
        "client-x",
        json!([{"channel": "public", "data": 1}]),
    );
    assert_eq!(ack["error"]["code"], 4009, "{ack}");
    let ack = clients.emit(
        "sender",
        "client-x",
        json!([{"channel": "private-other", "data": 1}]),
    );
    assert_eq!(ack["error"]["code"], 4009, "not subscribed: {ack}");
    let ack = clients.emit("sender", "nonsense", json!([{}]));
    assert_eq!(ack["error"]["code"], 4000, "{ack}");
    let codes: Vec<Value> = (0..15)
        .map(|i| {
            clients.emit(
                "sender",
                "client-burst",
                json!([{"channel": "private-chat", "data": i}]),
            )["error"]["code"]
                .clone()
        })
        .collect();
    assert!(
        codes.contains(&json!(4301)),
        "rate limited at 10/s: {codes:?}"
    );
}

/// On a Redis Cluster the reaper runs one script per channel, on the
/// channel's shard: the same outcome is required there.
#[test]
fn a_dead_origins_members_are_removed_by_the_others() {
    each_shared_broker("presence-crash", dead_origin);
}

fn dead_origin(d: &Deployment) {
    let a = d.origin("origin-a");
    let mut b = d.origin("origin-b");
    let mut clients = Clients::start(&d.scratch, "clients");
    let obs = clients.connect("obs", &a.url(), json!({}));
    join(&mut clients, "obs", &obs, ROOM, "obs");
    let doomed = clients.connect("doomed", &b.url(), json!({"reconnection": false}));
    join(&mut clients, "doomed", &doomed, ROOM, "doomed");
    assert_eq!(
        events_until_mark(&mut clients, &a, "obs", "mark-1"),
        [ev(MEMBER_ADDED, "doomed"), ev("mark-1", "")]
    );
    // A crash, not a shutdown: every process of origin B at once, no goodbyes.
    // Origin A's workers notice B's silence (10 s) and remove its members.
    for worker in children_of(b.pid()) {
        signal_pid(worker, "KILL");
    }
    b.signal_master("KILL");
    b.wait_exit(Duration::from_secs(5));
    let removed = clients.event("obs", MEMBER_REMOVED);
    assert_eq!(removed[0], json!({"user_id": "doomed"}));
    let users = get(
        &mut clients,
        &a,
        &format!("/channels/{ROOM}/users"),
        json!({}),
    );
    assert_eq!(users, json!({"users": [{"id": "obs"}]}));
}

#[test]
fn presence_limits_are_per_app() {
    let scratch = Scratch::new("presence-limits");
    let config = scratch.file("pushwire.json");
    std::fs::write(
        &config,
        r#"{"apps": [{"id": "1000001", "key": "app-key", "secret": "app-secret",
                      "limits": {"max_presence_members": 1, "max_presence_user_info_bytes": 20}}]}"#,
    )
    .expect("write the config");
    let mut options = OriginOptions::embedded();
    options.apps = String::new();
    options.args = vec!["--config".into(), config.display().to_string()];
    let origin = Origin::start(&scratch, "origin", options);
    let mut clients = Clients::start(&scratch, "clients");
    let first = clients.connect("first", &origin.url(), json!({}));
    assert_eq!(join(&mut clients, "first", &first, ROOM, "a")["ok"], true);
    let again = clients.connect("again", &origin.url(), json!({}));
    let ack = join(&mut clients, "again", &again, ROOM, "a");
    assert_eq!(
        ack["presence"]["count"], 1,
        "the same user may add a socket: {ack}"
    );
    let second = clients.connect("second", &origin.url(), json!({}));
    let ack = join(&mut clients, "second", &second, ROOM, "b");
    assert_eq!(
        ack["error"]["code"], 4100,
        "a second member is over the limit: {ack}"
    );
    let big = json!({"user_id": "c", "user_info": {"bio": "x".repeat(50)}});
    let auth = clients.authorize(TEST_APP, &second, "presence-other", Some(big));
    let ack = clients.emit(
        "second",
        "subscribe",
        json!([{"channel": "presence-other", "auth": auth["auth"], "channel_data": auth["channel_data"]}]),
    );
    assert_eq!(
        ack["error"]["code"], 4100,
        "user_info over its limit: {ack}"
    );
}

#[test]
fn a_dead_workers_members_are_removed_by_the_embedded_broker() {
    let scratch = Scratch::new("presence-worker-crash");
    let mut options = OriginOptions::embedded();
    options.workers = 2;
    let origin = Origin::start(&scratch, "origin", options);
    let mut clients = Clients::start(&scratch, "clients");
    let node_of = |socket_id: &str| socket_id.split('.').next().unwrap_or_default().to_owned();
    let doomed = clients.connect("doomed", &origin.url(), json!({"reconnection": false}));
    // An observer on the other worker (connections go to the workers in turn).
    let mut observer = None;
    for i in 0..6 {
        let id = format!("obs{i}");
        let socket_id = clients.connect(&id, &origin.url(), json!({"transports": ["websocket"]}));
        if node_of(&socket_id) != node_of(&doomed) {
            observer = Some((id, socket_id));
            break;
        }
    }
    let (obs, obs_socket) = observer.expect("a socket on the other worker");
    join(&mut clients, &obs, &obs_socket, ROOM, "obs");
    join(&mut clients, "doomed", &doomed, ROOM, "doomed");
    assert_eq!(clients.event(&obs, MEMBER_ADDED)[0]["user_id"], "doomed");
    // Find the doomed socket's worker by its node number, and kill it outright.
    let pid = pushwire_tests::wait::until(
        "the doomed worker's /health",
        Duration::from_secs(10),
        || {
            let health = origin.health();
            (health["node"] == node_of(&doomed).as_str()).then(|| health["pid"].as_u64())?
        },
    );
    signal_pid(pid as u32, "KILL");
    let removed = clients.event(&obs, MEMBER_REMOVED);
    assert_eq!(removed[0], json!({"user_id": "doomed"}));
}
