//! Abuse by one client, in bounded form, against a 2-worker origin and the
//! bridge: the server refuses it, stays healthy, and the other clients keep
//! receiving.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushwire_tests::bridge::Bridge;
use pushwire_tests::clients::TEST_APP;
use pushwire_tests::origin::OriginOptions;
use pushwire_tests::process::children_of;
use pushwire_tests::raw_ws::StalledClient;
use pushwire_tests::slow_client::SlowClient;
use pushwire_tests::{Clients, Origin, Scratch, http, wait};
use serde_json::{Value, json};

/// How much a worker's resident memory may grow while it refuses the oversized
/// messages: a few of its 100 KB buffers and allocator slack, far below the
/// 32 MB each attacker sends.
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;

/// The default per-socket channel cap (`limits.max_channels_per_socket`).
const CHANNEL_CAP: usize = 100;

fn two_workers(scratch: &Scratch) -> Origin {
    let mut options = OriginOptions::embedded();
    options.workers = 2;
    Origin::start(scratch, "origin", options)
}

/// The largest resident set of the origin's workers, in KiB.
fn worker_rss_kib(origin: &Origin) -> u64 {
    let workers = children_of(origin.pid());
    assert!(!workers.is_empty(), "the origin has no workers");
    workers
        .iter()
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .max()
        .expect("a worker's VmRSS")
}

/// A stock client on `channel` that must keep receiving while others misbehave.
fn watcher(scratch: &Scratch, origin: &Origin, channel: &str) -> Clients {
    let mut clients = Clients::start(scratch, "clients");
    clients.connect(
        "watcher",
        &origin.url(),
        json!({"transports": ["websocket"], "auth": {"channels": [channel]}}),
    );
    clients
}

fn still_receives(clients: &mut Clients, origin: &Origin, channel: &str, event: &str) {
    clients.trigger_ok(origin.addr, TEST_APP, &[channel], event, json!({"n": 1}));
    assert_eq!(clients.event("watcher", event)[0], json!({"n": 1}));
    assert_eq!(
        http::request(origin.addr, "GET", "/health", b"").status,
        200
    );
}

fn code(ack: &Value) -> Option<u64> {
    ack["error"]["code"].as_u64()
}

/// A `subscribe` message as large as `bytes`, its bulk a channel name.
fn huge_subscribe(bytes: usize) -> Vec<u8> {
    let mut message = br#"42["subscribe",{"channel":""#.to_vec();
    message.resize(bytes, b'x');
    message.extend_from_slice(br#""}]"#);
    message
}

/// One 2 MB WebSocket message, and four 32 MB messages in 64 KiB fragments (each
/// fragment under the cap, their sum far above): every attacker is disconnected,
/// no worker grows by more than [`RSS_GROWTH_BOUND_KIB`], and the watcher keeps
/// receiving.
#[test]
fn oversized_messages_close_the_connection() {
    let scratch = Scratch::new("abuse-oversized");
    let origin = two_workers(&scratch);
    let mut clients = watcher(&scratch, &origin, "news");
    let before = worker_rss_kib(&origin);

    let mut whole = StalledClient::connect(origin.addr);
    let message = huge_subscribe(2_000_000);
    whole.send_in_pieces(&message, message.len(), true);
    assert!(
        whole.closed_by_server_within(Duration::from_secs(5)),
        "a 2 MB message was accepted"
    );

    let addr = origin.addr;
    let message = Arc::new(huge_subscribe(32 << 20));
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let message = message.clone();
            std::thread::spawn(move || {
                let mut client = StalledClient::connect(addr);
                // Left unfinished: a server without a cap would hold all of it.
                client.send_in_pieces(&message, 64 * 1024, false);
                client.closed_by_server_within(Duration::from_secs(5))
            })
        })
        .collect();
    for attacker in attackers {
        assert!(
            attacker.join().expect("attacker thread"),
            "a 32 MB fragmented message was not refused (worker RSS {} KiB, {before} KiB before)",
            worker_rss_kib(&origin)
        );
    }
    let after = worker_rss_kib(&origin);
    assert!(
        after < before + RSS_GROWTH_BOUND_KIB,
        "worker RSS grew from {before} KiB to {after} KiB"
    );
    still_receives(&mut clients, &origin, "news", "after-oversized");
}

/// One socket asks for 50 channels past the cap: 50 acks are `4101`; a
/// socket whose handshake took the whole cap gets `4101` too, until it leaves
/// a channel; the watcher keeps receiving.
#[test]
fn channels_per_socket_are_capped() {
    let scratch = Scratch::new("abuse-channel-cap");
    let origin = two_workers(&scratch);
    let mut clients = watcher(&scratch, &origin, "news");

    let mut greedy = StalledClient::connect(origin.addr);
    let subscribes: Vec<_> = (0..CHANNEL_CAP + 50)
        .map(|i| ("subscribe", json!({"channel": format!("c{i}")})))
        .collect();
    let acks = greedy.emit_all(&subscribes);
    // The server handles one socket's events concurrently, so which of them
    // took the last slots is not fixed: exactly the cap succeed, the rest are
    // refused with 4101.
    let granted = acks
        .iter()
        .filter(|ack| **ack == json!({"ok": true}))
        .count();
    assert_eq!(granted, CHANNEL_CAP, "{acks:?}");
    for ack in acks.iter().filter(|ack| **ack != json!({"ok": true})) {
        assert_eq!(code(ack), Some(4101), "{ack}");
    }
    still_receives(&mut clients, &origin, "news", "after-cap");

    let full: Vec<String> = (0..CHANNEL_CAP).map(|i| format!("h{i}")).collect();
    let report = clients.connect_all(
        &["full".to_owned()],
        &origin.url(),
        json!({"transports": ["websocket"], "auth": {"channels": full}}),
    );
    let subscriptions = report[0]["subscriptions"].as_array().expect("results");
    assert!(subscriptions.iter().all(|s| s["ok"] == true), "{report:?}");
    let extra = json!([{"channel": "extra"}]);
    assert_eq!(
        code(&clients.emit("full", "subscribe", extra.clone())),
        Some(4101)
    );
    clients.unsubscribe("full", "h0");
    // The handshake spent the socket's subscribe burst: the freed slot is usable
    // as soon as the rate allows (a tenth of a second by default).
    wait::until("a freed slot to be usable", Duration::from_secs(5), || {
        let ack = clients.emit("full", "subscribe", extra.clone());
        match code(&ack) {
            None => Some(()),
            Some(4102) => None,
            Some(other) => panic!("unexpected refusal {other}: {ack}"),
        }
    });
}

/// After its burst, a socket churning subscriptions is held to the refill rate
/// (10 a second by default): the excess gets `4102`, and no more than the burst
/// plus the refill since the socket opened is granted.
#[test]
fn subscribes_are_rate_limited() {
    let scratch = Scratch::new("abuse-subscribe-rate");
    let origin = two_workers(&scratch);
    let mut clients = watcher(&scratch, &origin, "news");

    // Before the socket exists, so that the refill counted from here bounds
    // what the server may have granted.
    let start = Instant::now();
    let mut churner = StalledClient::connect(origin.addr);
    let burst: Vec<_> = (0..CHANNEL_CAP)
        .map(|i| ("subscribe", json!({"channel": format!("a{i}")})))
        .collect();
    assert!(
        churner
            .emit_all(&burst)
            .iter()
            .all(|ack| ack == &json!({"ok": true}))
    );
    // Slots freed first (their acks awaited: one socket's events are handled
    // concurrently), so the subscribes below meet the rate limit, not the cap.
    let leave: Vec<_> = (0..50)
        .map(|i| ("unsubscribe", json!({"channel": format!("a{i}")})))
        .collect();
    let left = churner.emit_all(&leave);
    assert!(
        left.iter().all(|ack| ack == &json!({"ok": true})),
        "{left:?}"
    );
    let join: Vec<_> = (0..50)
        .map(|i| ("subscribe", json!({"channel": format!("b{i}")})))
        .collect();
    let joined = churner.emit_all(&join);
    let elapsed = start.elapsed().as_secs_f64();
    let accepted = joined.iter().filter(|ack| code(ack).is_none()).count();
    let refused = joined.iter().filter(|ack| code(ack) == Some(4102)).count();
    assert_eq!(accepted + refused, 50, "{joined:?}");
    assert!(
        accepted as f64 <= 1.0 + elapsed * 10.0,
        "{accepted} subscribes accepted in {elapsed:.2} s"
    );
    assert!(refused > 0, "no subscribe was refused in {elapsed:.2} s");
    still_receives(&mut clients, &origin, "news", "after-churn");
}

/// Where the slow attacks below come from: another loopback address than the
/// well-behaved clients', so that the per-address cap hits only the attacker.
const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// The deadlines the slow attacks run against (the defaults are 10 s).
const READ_TIMEOUT_MS: &str = "1000";

/// How long past a deadline a connection may take to be closed.
const GRACE: Duration = Duration::from_secs(5);

/// The header-read, idle and body-read deadlines on one server: a head sent a
/// byte at a time is cut off, a connection kept alive after a request to
/// `kept_alive_path` is closed once idle, and a body sent a byte at a time to
/// `post_path` gets `408`. Returns nothing; panics naming the
/// attack that held its connection.
fn deadlines_hold(server: SocketAddr, kept_alive_path: &str, post_path: &str, extra_headers: &str) {
    let pause = Duration::from_millis(100);
    // A head whose trickle would take 5 s, five times the deadline.
    let mut head = SlowClient::connect_from(ATTACKER, server);
    assert!(head.send(b"GET /health HTTP/1.1\r\n"));
    let started = Instant::now();
    let padding = format!("Host: x\r\nX-Padding: {}\r\n\r\n", "a".repeat(30));
    assert!(
        !head.trickle(padding.as_bytes(), pause),
        "a request head sent over {:?} was read to its end: {}",
        started.elapsed(),
        head.received_text()
    );
    assert!(started.elapsed() < Duration::from_secs(1) + GRACE);

    let mut idle = SlowClient::connect_from(ATTACKER, server);
    let request = format!("GET {kept_alive_path} HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(idle.send(request.as_bytes()));
    let started = Instant::now();
    assert!(
        idle.closed_within(Duration::from_secs(1) + GRACE),
        "an idle kept-alive connection was held for {:?}",
        started.elapsed()
    );
    let answer = idle.received_text().to_ascii_lowercase();
    // The idle deadline is announced, so that HTTP agents retire the
    // connection before the server closes it.
    assert!(
        answer.starts_with("http/1.1 ") && answer.contains("keep-alive: timeout=1\r\n"),
        "{answer}"
    );

    let body = "x".repeat(50);
    let mut slow_body = SlowClient::connect_from(ATTACKER, server);
    let request = format!(
        "POST {post_path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    assert!(slow_body.send(request.as_bytes()));
    let started = Instant::now();
    slow_body.trickle(body.as_bytes(), pause);
    assert!(slow_body.closed_within(GRACE), "a body trickle was held");
    let answer = slow_body.received_text();
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("did not arrive within 1000 ms"),
        "after {:?}: {answer}",
        started.elapsed()
    );
}

/// Slow heads, idle connections and slow bodies against a 2-worker origin are
/// cut off at their deadlines, and connections past the per-address cap are
/// closed at once, while a client of another address keeps receiving and each
/// refusal is logged.
#[test]
fn held_open_connections_are_closed_and_capped() {
    const CAP: usize = 20;
    let scratch = Scratch::new("abuse-held-open");
    let mut options = OriginOptions::embedded();
    options.workers = 2;
    let cap = CAP.to_string();
    for arg in [
        "--header-read-timeout-ms",
        READ_TIMEOUT_MS,
        "--body-read-timeout-ms",
        READ_TIMEOUT_MS,
        "--max-connections-per-ip",
        &cap,
    ] {
        options.args.push(arg.to_owned());
    }
    let origin = Origin::start(&scratch, "origin", options);
    let mut clients = watcher(&scratch, &origin, "news");
    let before = worker_rss_kib(&origin);

    // The trigger API keeps connections (Socket.IO paths close theirs); an
    // unsigned query is refused, on a kept connection.
    deadlines_hold(
        origin.addr,
        "/apps/1000001/channels",
        "/apps/1000001/events",
        "",
    );

    // WebSockets: connections with no deadline once upgraded. The master hands
    // fresh connections to the workers in turn, and each holds half the cap.
    let held: Vec<SlowClient> = (0..CAP * 2)
        .filter_map(|_| SlowClient::websocket_from(ATTACKER, origin.addr))
        .collect();
    assert!(
        (CAP / 2..=CAP).contains(&held.len()),
        "{} of {} connections from one address were kept (cap {CAP})",
        held.len(),
        CAP * 2
    );
    still_receives(&mut clients, &origin, "news", "while-capped");
    let after = worker_rss_kib(&origin);
    assert!(
        after < before + RSS_GROWTH_BOUND_KIB,
        "worker RSS grew from {before} KiB to {after} KiB"
    );
    drop(held);
    wait::until(
        "the attacker's address to be admitted again",
        Duration::from_secs(10),
        || SlowClient::websocket_from(ATTACKER, origin.addr),
    );

    let log = origin.log();
    for line in [
        "refused a connection: its address holds the most connections allowed",
        "closed a connection that sent no complete request head in time",
        "dropped a request whose body did not arrive in time",
    ] {
        assert!(log.contains(line), "not logged: {line}");
    }
}

/// The bridge has the same deadlines and cap as the origin.
#[test]
fn the_bridge_cuts_off_held_open_connections() {
    let scratch = Scratch::new("abuse-bridge-held-open");
    // Nothing here reaches Redis: every request ends before the bridge would use it.
    let bridge = Bridge::start(
        &scratch,
        "bridge",
        "redis://127.0.0.1:1",
        &[
            "--header-read-timeout-ms",
            READ_TIMEOUT_MS,
            "--body-read-timeout-ms",
            READ_TIMEOUT_MS,
            "--max-connections-per-ip",
            "3",
        ],
    );
    let authorization = format!("Authorization: Bearer {}\r\n", bridge.token);
    deadlines_hold(bridge.addr, "/health", "/", &authorization);

    // Three kept-alive connections from one address, then a fourth: closed at
    // once, while a client of another address is served.
    let held: Vec<SlowClient> = (0..3)
        .map(|_| {
            let mut client = SlowClient::connect_from(ATTACKER, bridge.addr);
            assert!(client.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
            client
        })
        .collect();
    let mut fourth = SlowClient::connect_from(ATTACKER, bridge.addr);
    fourth.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        fourth.closed_within(Duration::from_secs(1)) && fourth.received.is_empty(),
        "a fourth connection was served: {}",
        fourth.received_text()
    );
    assert_eq!(
        http::request(bridge.addr, "GET", "/health", b"").status,
        200
    );
    drop(held);
}
