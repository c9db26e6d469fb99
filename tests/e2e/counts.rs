//! Read-your-writes for the channel counts: once a socket's `subscribe` or
//! `unsubscribe` is acked, a channel query at any origin already counts it (or
//! no longer does), with no waiting in between.

use std::collections::BTreeSet;

use pushwire_shared::channel_auth;
use pushwire_tests::origin::{OriginOptions, test_app};
use pushwire_tests::{Clients, Origin, RedisServer, Scratch, http};
use serde_json::{Value, json};

/// Rounds on public channels, each on a channel of its own.
const ROUNDS: usize = 25;
/// Rounds on presence channels.
const PRESENCE_ROUNDS: usize = 5;
/// Sockets per worker: several subscribes of one worker are in flight at once.
const PER_WORKER: usize = 6;
/// Distinct presence users among the sockets.
const USERS: usize = 5;

/// A connected socket: the driver's id and the server's socket id.
struct Socket {
    id: String,
    socket_id: String,
}

/// Connects [`PER_WORKER`] WebSocket-only sockets per worker of every origin
/// (a master hands new connections to its workers in turn) and checks that
/// every worker got some. The list alternates origins, and within an origin
/// its workers, so any run of it is spread over all of them.
fn connect_spread(clients: &mut Clients, origins: &[&Origin], workers: usize) -> Vec<Socket> {
    let per_origin: Vec<Vec<Socket>> = origins
        .iter()
        .enumerate()
        .map(|(o, origin)| {
            let ids: Vec<String> = (0..PER_WORKER * workers)
                .map(|i| format!("o{o}-s{i}"))
                .collect();
            let opts = json!({"transports": ["websocket"]});
            let reports = clients.connect_all(&ids, &origin.url(), opts);
            ids.into_iter()
                .zip(reports)
                .map(|(id, report)| Socket {
                    id,
                    socket_id: report["socket_id"].as_str().expect("socket_id").to_owned(),
                })
                .collect()
        })
        .collect();
    let mut sockets = Vec::new();
    for i in 0..PER_WORKER * workers {
        for origin in &per_origin {
            let Socket { id, socket_id } = &origin[i];
            sockets.push(Socket {
                id: id.clone(),
                socket_id: socket_id.clone(),
            });
        }
    }
    let nodes: BTreeSet<&str> = sockets
        .iter()
        .map(|s| s.socket_id.split('.').next().unwrap_or_default())
        .collect();
    assert_eq!(
        nodes.len(),
        origins.len() * workers,
        "sockets on every worker: {nodes:?}"
    );
    sockets
}

/// A signed `GET /apps/{id}/channels/{channel}?info=…`, made from here (no
/// extra hop through the clients' driver).
fn channel_info(origin: &Origin, channel: &str, info: &str) -> Value {
    let app = test_app();
    let path = format!("/apps/{}/channels/{channel}", app.id);
    let response = http::signed_with(origin.addr, "GET", &path, &[("info", info)], b"", &app);
    assert_eq!(response.status, 200, "GET {path}: {}", response.body);
    response.json()
}

/// Emits `event` from every socket in `sockets` at once, with `args_of` each;
/// asserts every ack is `{"ok": true, …}`.
fn emit_each(
    clients: &mut Clients,
    sockets: &[Socket],
    event: &str,
    args_of: impl Fn(&Socket) -> Value,
) {
    let emits: Vec<(&str, &str, Value)> = sockets
        .iter()
        .map(|s| (s.id.as_str(), event, args_of(s)))
        .collect();
    for (ack, socket) in clients.emit_all(&emits).iter().zip(sockets) {
        assert_eq!(ack["ok"], true, "{event} of {}: {ack}", socket.id);
    }
}

/// Every round: all sockets subscribe to a fresh channel, then some
/// unsubscribe; right after each batch of acks one origin, then the other, is
/// asked for the counts. Returns every count that was off.
fn rounds(clients: &mut Clients, origins: &[&Origin], sockets: &[Socket]) -> Vec<String> {
    let n = sockets.len();
    let mut wrong = Vec::new();
    let mut check = |round: usize, origin: &Origin, channel: &str, info: &str, want: Value| {
        let got = channel_info(origin, channel, info);
        if got != want {
            wrong.push(format!("round {round}, {channel}: {got} instead of {want}"));
        }
    };
    for round in 0..ROUNDS {
        let channel = format!("counted-{round}");
        emit_each(
            clients,
            sockets,
            "subscribe",
            |_| json!([{"channel": channel}]),
        );
        let (at, then) = (round % origins.len(), (round + 1) % origins.len());
        let want = json!({"occupied": true, "subscription_count": n});
        check(round, origins[at], &channel, "subscription_count", want);

        let leaving = 1 + round % n;
        emit_each(
            clients,
            &sockets[..leaving],
            "unsubscribe",
            |_| json!([{"channel": channel}]),
        );
        let left = n - leaving;
        let want = json!({"occupied": left > 0, "subscription_count": left});
        check(round, origins[then], &channel, "subscription_count", want);
    }

    let app = test_app();
    let user_of = |s: &Socket| {
        let i = sockets
            .iter()
            .position(|o| o.id == s.id)
            .unwrap_or_default();
        format!("u{}", i % USERS)
    };
    for round in 0..PRESENCE_ROUNDS {
        let channel = format!("presence-counted-{round}");
        emit_each(clients, sockets, "subscribe", |s| {
            let data = json!({"user_id": user_of(s)}).to_string();
            let auth = channel_auth::sign(&app, &s.socket_id, &channel, Some(&data));
            json!([{"channel": channel, "auth": auth, "channel_data": data}])
        });
        let (at, then) = (round % origins.len(), (round + 1) % origins.len());
        let info = "subscription_count,user_count";
        let want = json!({"occupied": true, "subscription_count": n, "user_count": USERS});
        check(round, origins[at], &channel, info, want);

        // Leaves `round + 1` sockets, so the last rounds keep every user.
        let leaving = n - (round + 1);
        emit_each(
            clients,
            &sockets[..leaving],
            "unsubscribe",
            |_| json!([{"channel": channel}]),
        );
        let users: BTreeSet<String> = sockets[leaving..].iter().map(user_of).collect();
        let want = json!({
            "occupied": true,
            "subscription_count": n - leaving,
            "user_count": users.len(),
        });
        check(round, origins[then], &channel, info, want);
    }
    wrong
}

fn assert_exact(wrong: &[String]) {
    let checks = 2 * (ROUNDS + PRESENCE_ROUNDS);
    assert!(
        wrong.is_empty(),
        "{} of {checks} counts read right after the acks were off:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn counts_are_exact_right_after_the_acks_across_redis_origins() {
    let scratch = Scratch::new("counts-redis");
    let redis = RedisServer::start(&scratch);
    let options = OriginOptions::redis(&redis.url());
    let workers = options.workers;
    let a = Origin::start(&scratch, "a", options.clone());
    let b = Origin::start(&scratch, "b", options);
    let mut clients = Clients::start(&scratch, "clients");
    let sockets = connect_spread(&mut clients, &[&a, &b], workers);
    assert_exact(&rounds(&mut clients, &[&a, &b], &sockets));
}

#[test]
fn counts_are_exact_right_after_the_acks_with_the_embedded_broker() {
    let scratch = Scratch::new("counts-embedded");
    let options = OriginOptions::embedded();
    let workers = options.workers;
    let origin = Origin::start(&scratch, "origin", options);
    let mut clients = Clients::start(&scratch, "clients");
    let sockets = connect_spread(&mut clients, &[&origin], workers);
    assert_exact(&rounds(&mut clients, &[&origin], &sockets));
}

/// A worker on thousands of channels keeps beating: its heartbeat rewrites
/// its whole counts hash in one script, which once handed every field to one
/// `HSET` and failed past about 4,000 channels (Lua's `unpack` limit), deleting
/// the counts every 2 s and leaving the worker to be reaped as dead.
#[test]
fn a_worker_on_thousands_of_channels_keeps_its_counts_and_its_heartbeat() {
    use pushwire_shared::keys::KeySpace;

    const SOCKETS: usize = 42;
    const PER_SOCKET: usize = 100;
    let scratch = Scratch::new("counts-many-channels");
    let redis = RedisServer::start(&scratch);
    let mut options = OriginOptions::redis(&redis.url());
    options.workers = 1;
    let origin = Origin::start(&scratch, "origin", options);
    let mut clients = Clients::start(&scratch, "clients");
    let mut socket_id = String::new();
    for s in 0..SOCKETS {
        let channels: Vec<String> = (0..PER_SOCKET).map(|c| format!("many-{s}-{c}")).collect();
        socket_id = clients.connect(
            &format!("s{s}"),
            &origin.url(),
            json!({"transports": ["websocket"], "auth": {"channels": channels}}),
        );
    }
    let node = socket_id.split('.').next().expect("a socket id").to_owned();
    let keys = KeySpace::DEFAULT;
    let score = || {
        let reply = redis
            .command(&["ZSCORE", &keys.nodes(), &node])
            .expect("ZSCORE");
        reply.trim().parse::<u64>().unwrap_or(0)
    };
    let subscribed = score();
    // A heartbeat after every subscription: it rewrote the counts, then beat.
    pushwire_tests::wait::until(
        "a heartbeat of the worker on 4,200 channels",
        std::time::Duration::from_secs(10),
        || (score() > subscribed).then_some(()),
    );
    assert_eq!(
        redis.command(&["HLEN", &keys.node_subs(&node)]).unwrap(),
        format!(":{}", SOCKETS * PER_SOCKET)
    );
    assert_eq!(
        channel_info(&origin, "many-41-99", "subscription_count")["subscription_count"],
        1
    );
}
