//! The forked cluster: sticky sessions, supervision, graceful shutdown, no orphans.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pushwire_tests::clients::TEST_APP;
use pushwire_tests::origin::OriginOptions;
use pushwire_tests::process::{children_of, is_alive, signal_pid};
use pushwire_tests::raw_ws::StalledClient;
use pushwire_tests::{Clients, Origin, RedisServer, Scratch, http, wait};
use serde_json::{Value, json};

/// The part of a socket id before the dot: one value per worker process.
fn node_of(report: &Value) -> String {
    let socket_id = report["socket_id"].as_str().expect("socket_id");
    socket_id.split('.').next().expect("node part").to_owned()
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// 200 default-transport (polling, then upgrade) and 200 WebSocket-only clients
/// against 4 workers: all connect, subscribe through the handshake and receive
/// an event; sessions land on every worker; nobody sees "Session ID unknown".
fn sticky_sessions(options: OriginOptions, scratch: &Scratch) {
    let workers = options.workers;
    let origin = Origin::start(scratch, "origin", options);
    let mut clients = Clients::start(scratch, "clients");
    let subscribe = json!({"auth": {"channels": ["crowd"]}});
    let mut ws_opts = subscribe.clone();
    ws_opts["transports"] = json!(["websocket"]);
    let polling = clients.connect_all(&ids("p", 200), &origin.url(), subscribe.clone());
    // Clients sharing a keep-alive pool, as browser tabs do: one session's request
    // may ride on a connection another session opened.
    let mut pooled_opts = subscribe;
    pooled_opts["agent"] = json!("pooled");
    let pooled = clients.connect_all(&ids("k", 12), &origin.url(), pooled_opts);
    let websocket = clients.connect_all(&ids("w", 200), &origin.url(), ws_opts);

    for report in polling.iter().chain(&websocket).chain(&pooled) {
        assert_eq!(
            report["subscriptions"],
            json!([{"channel": "crowd", "ok": true}]),
            "{report}"
        );
    }
    for (name, reports) in [("polling-first", &polling), ("websocket-only", &websocket)] {
        let nodes: BTreeSet<String> = reports.iter().map(node_of).collect();
        assert_eq!(
            nodes.len(),
            workers,
            "{name} sessions on {} of {workers} workers",
            nodes.len()
        );
    }

    let (status, _) = clients.trigger(
        origin.addr,
        TEST_APP,
        &["crowd"],
        "hello",
        json!("{\"n\":1}"),
        json!({}),
    );
    assert_eq!(status, 200);
    for id in ids("p", 200)
        .iter()
        .chain(&ids("w", 200))
        .chain(&ids("k", 12))
    {
        assert_eq!(clients.event(id, "hello")[0], json!({"n": 1}), "{id}");
    }
    let trouble: Vec<&Value> = clients
        .pending_reports()
        .iter()
        .filter(|r| r["type"] == "disconnect" || r["type"] == "connect_error")
        .collect();
    assert!(trouble.is_empty(), "sessions broke: {trouble:?}");
}

#[test]
fn sticky_sessions_spread_and_stick_with_the_embedded_broker() {
    let scratch = Scratch::new("sticky-embedded");
    let mut options = OriginOptions::embedded();
    options.workers = 4;
    sticky_sessions(options, &scratch);
}

#[test]
fn sticky_sessions_spread_and_stick_with_redis() {
    let scratch = Scratch::new("sticky-redis");
    let redis = RedisServer::start(&scratch);
    let mut options = OriginOptions::redis(&redis.url());
    options.workers = 4;
    sticky_sessions(options, &scratch);
}

#[test]
fn a_killed_worker_is_replaced_and_its_clients_come_back() {
    let scratch = Scratch::new("supervision");
    let mut options = OriginOptions::embedded();
    options.workers = 2;
    let origin = Origin::start(&scratch, "origin", options);
    let mut clients = Clients::start(&scratch, "clients");
    let opts =
        json!({"auth": {"channels": ["k"]}, "reconnectionDelay": 100, "reconnectionDelayMax": 500});
    let mut ws_opts = opts.clone();
    ws_opts["transports"] = json!(["websocket"]);
    let all: Vec<String> = ids("p", 20).into_iter().chain(ids("w", 20)).collect();
    let mut reports = clients.connect_all(&all[..20], &origin.url(), opts);
    reports.extend(clients.connect_all(&all[20..], &origin.url(), ws_opts));

    // Find the worker of the first client and kill it.
    let victim_node = node_of(&reports[0]);
    let mut victim_pid = None;
    origin.wait_every_worker("report its pid", 2, |h| {
        if h["node"] == victim_node.as_str() {
            victim_pid = h["pid"].as_u64();
        }
        true
    });
    let victim_pid = victim_pid.expect("the victim's /health") as u32;
    let before = children_of(origin.pid());
    assert!(
        before.contains(&victim_pid),
        "{victim_pid} not among {before:?}"
    );
    let killed_at = Instant::now();
    signal_pid(victim_pid, "KILL");
    let replacement = wait::until("a replacement worker", Duration::from_secs(10), || {
        let now = children_of(origin.pid());
        (now.len() == 2 && !now.contains(&victim_pid)).then_some(now)
    });
    eprintln!(
        "worker {victim_pid} replaced by {replacement:?} after {:?}",
        killed_at.elapsed()
    );
    origin.wait_every_worker("ready after the restart", 2, |h| h["status"] == "ok");

    // Its clients reconnect by themselves, re-subscribed through the handshake.
    let orphaned: Vec<&String> = all
        .iter()
        .zip(&reports)
        .filter(|(_, r)| node_of(r) == victim_node)
        .map(|(id, _)| id)
        .collect();
    assert!(!orphaned.is_empty());
    for id in &orphaned {
        let report = clients.wait_for(&format!("{id} to reconnect"), |r| {
            r["type"] == "connected" && r["id"] == id.as_str()
        });
        assert_ne!(node_of(&report), victim_node);
        assert_eq!(
            report["subscriptions"],
            json!([{"channel": "k", "ok": true}])
        );
    }
    let (status, _) = clients.trigger(
        origin.addr,
        TEST_APP,
        &["k"],
        "after-restart",
        json!(""),
        json!({}),
    );
    assert_eq!(status, 200);
    for id in &all {
        clients.event(id, "after-restart");
    }
}

/// A trigger in flight: its connection is inside a worker (a first request on
/// it was answered), the second request's head and half its body are sent.
fn trigger_in_flight(origin: &Origin) -> http::PendingRequest {
    let app = &pushwire_tests::origin::test_app();
    let mut inflight = http::KeepAlive::connect(origin.addr);
    let body = json!({"name": "late", "channel": "c", "data": "x"}).to_string();
    let first = inflight.signed_post("/apps/1000001/events", body.as_bytes(), app);
    assert_eq!(first.status, 200);
    inflight.start_signed_post("/apps/1000001/events", body.as_bytes(), app)
}

#[test]
fn sigterm_drains_and_exits_zero_and_clients_reconnect_elsewhere() {
    let scratch = Scratch::new("graceful");
    let mut options = OriginOptions::embedded();
    options.workers = 2;
    let mut origin = Origin::start(&scratch, "origin", options);
    let workers = children_of(origin.pid());
    assert_eq!(workers.len(), 2);
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("polling", &origin.url(), json!({}));
    clients.connect("ws", &origin.url(), json!({"transports": ["websocket"]}));

    let pending = trigger_in_flight(&origin);

    let stop_sent = Instant::now();
    origin.signal_master("TERM");
    let response = pending.finish();
    assert_eq!(
        response.status, 200,
        "the in-flight trigger completes: {}",
        response.body
    );

    let status = origin.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "master exit status {status:?}");
    eprintln!("master exited {:?} after SIGTERM", stop_sent.elapsed());
    for pid in workers {
        assert!(!is_alive(pid), "worker {pid} outlived the master");
    }
    // Closed at the transport level, so stock clients try to reconnect (to another origin).
    for id in ["polling", "ws"] {
        let report = clients.wait_for(&format!("{id} disconnected"), |r| {
            r["type"] == "disconnect" && r["id"] == id
        });
        assert_eq!(report["reason"], "transport close", "{id}: {report}");
    }
}

/// A socket.io client refused with `connect_error` never reconnects by itself,
/// so a session that asks to join `/` while its worker is closing must not be
/// refused: it joins, and its transport closes with the worker like the others.
#[test]
fn a_session_joining_during_shutdown_is_not_refused() {
    let scratch = Scratch::new("join-during-shutdown");
    let mut options = OriginOptions::embedded();
    options.workers = 1;
    let mut origin = Origin::start(&scratch, "origin", options);
    // Opened before the stop, joining after it.
    let mut late = StalledClient::open_session(origin.addr);
    // Closed by the worker when it closes its sessions: the sign that it did.
    let joined = StalledClient::subscribe(origin.addr, "c");
    // An in-flight trigger keeps the worker serving until it completes.
    let pending = trigger_in_flight(&origin);

    origin.signal_master("TERM");
    assert!(
        joined.closed_by_server_within(Duration::from_secs(10)),
        "the worker closed its sessions"
    );
    if let Some(answer) = late.join_root() {
        assert!(answer.starts_with("40"), "refused while closing: {answer}");
    }
    // Published after the close: delivering it must not trip over the closed server.
    assert_eq!(pending.finish().status, 200);
    let status = origin.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "master exit status {status:?}");
    let log = origin.log();
    assert!(!log.contains("panicked"), "a panic while closing:\n{log}");
}

#[test]
fn sigterm_during_a_restart_back_off_stops_at_once() {
    // A worker that keeps dying is restarted after a growing pause (100 ms,
    // doubling). A stop during that pause must end it: a worker started after
    // the master told its workers to stop would never be told, and the master
    // would wait for it until its drain grace ran out.
    let scratch = Scratch::new("stop-in-back-off");
    let mut options = OriginOptions::embedded();
    options.workers = 1;
    let mut origin = Origin::start(&scratch, "origin", options);
    const KILLS: usize = 6; // the pause after the 6th crash is 3.2 s
    for kill in 1..=KILLS {
        let worker = wait::until("a worker", Duration::from_secs(10), || {
            match children_of(origin.pid())[..] {
                [pid] => Some(pid),
                _ => None,
            }
        });
        signal_pid(worker, "KILL");
        // "worker exited; restarting it", or, when it was killed before it was
        // ready, "… cannot start: the worker exited before it was ready …".
        wait::until(
            "the master to see the crash",
            Duration::from_secs(10),
            || (origin.log().matches("worker exited").count() == kill).then_some(()),
        );
    }
    let stop_sent = Instant::now();
    origin.signal_master("TERM");
    let status = origin.wait_exit(Duration::from_secs(2));
    assert!(status.success(), "master exit status {status:?}");
    let log = origin.log();
    let stopping = log
        .find("stopping: no longer accepting")
        .expect("the stop is logged");
    assert!(
        !log[stopping..].contains("spawned worker"),
        "a worker was started during the stop:\n{}",
        &log[stopping..]
    );
    eprintln!("stopped {:?} after SIGTERM", stop_sent.elapsed());
}

#[test]
fn workers_exit_when_the_master_is_killed() {
    let scratch = Scratch::new("orphans");
    let mut options = OriginOptions::embedded();
    options.workers = 2;
    let mut origin = Origin::start(&scratch, "origin", options);
    let workers = children_of(origin.pid());
    assert_eq!(workers.len(), 2, "{workers:?}");
    origin.signal_master("KILL");
    origin.wait_exit(Duration::from_secs(5));
    wait::until(
        "workers to exit after the master died",
        Duration::from_secs(10),
        || workers.iter().all(|&pid| !is_alive(pid)).then_some(()),
    );
}
