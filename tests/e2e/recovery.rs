//! Channel history and recovery: `subscribe` with `since` replays what a socket
//! missed, in order and exactly once, then live events; the history endpoint;
//! and "recovered: false" when the history cannot reach back.

use pushwire_tests::clients::TEST_APP;
use pushwire_tests::origin::{OriginOptions, test_app};
use pushwire_tests::{Clients, Deployment, Origin, RedisServer, Scratch, each_fanout, http};
use serde_json::{Value, json};

fn trigger(clients: &mut Clients, origin: &Origin, channel: &str, n: u64) {
    clients.trigger_ok(origin.addr, TEST_APP, &[channel], "tick", json!({"n": n}));
}

/// Receives `tick` on `id` and returns `(n, pos)`.
fn tick(clients: &mut Clients, id: &str) -> (u64, String) {
    let args = clients.event(id, "tick");
    let pos = args[1]["pos"].as_str().expect("meta.pos is a string");
    (args[0]["n"].as_u64().expect("n"), pos.to_owned())
}

/// Triggers tick `n` once Redis takes it again (the first attempt after a
/// restart may meet the publisher's broken connection and get 503).
fn publish_after_restart(clients: &mut Clients, origin: &Origin, channel: &str, n: u64) {
    pushwire_tests::wait::until(
        "a publish after the restart",
        std::time::Duration::from_secs(10),
        || {
            let (status, _) = clients.trigger(
                origin.addr,
                TEST_APP,
                &[channel],
                "tick",
                json!({"n": n}),
                json!({}),
            );
            (status == 200).then_some(())
        },
    );
}

fn history(origin: &Origin, channel: &str, extra: &[(&str, &str)]) -> Value {
    let path = format!("/apps/1000001/channels/{channel}/history");
    let response = http::signed_with(origin.addr, "GET", &path, extra, b"", &test_app());
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

fn replay_then_live(d: &Deployment) {
    let origin = d.origin("origin");
    let mut clients = Clients::start(&d.scratch, "clients");
    clients.connect("first", &origin.url(), json!({}));
    clients.subscribe("first", "r");
    for n in 1..=3 {
        trigger(&mut clients, &origin, "r", n);
    }
    let mut last = String::new();
    for n in 1..=3 {
        let (got, pos) = tick(&mut clients, "first");
        assert_eq!(got, n);
        assert!(pos > last || last.is_empty(), "{pos} after {last}");
        last = pos;
    }
    clients.close("first");
    for n in 4..=6 {
        trigger(&mut clients, &origin, "r", n);
    }

    // A new socket asks for what followed event 3: 4, 5, 6, then the ack.
    clients.connect("back", &origin.url(), json!({}));
    let ack = clients.emit(
        "back",
        "subscribe",
        json!([{"channel": "r", "since": last}]),
    );
    assert_eq!(ack, json!({"ok": true, "recovered": true}));
    let replayed: Vec<u64> = (0..3).map(|_| tick(&mut clients, "back").0).collect();
    assert_eq!(replayed, [4, 5, 6]);
    trigger(&mut clients, &origin, "r", 7);
    let seen = clients.events_through("back", "tick");
    assert_eq!(
        seen.len(),
        1,
        "exactly one live event after the replay: {seen:?}"
    );
    assert_eq!(seen[0].1[0]["n"], 7);

    // Another epoch (or any position the history does not hold): told, not replayed.
    clients.connect("stranger", &origin.url(), json!({}));
    let ack = clients.emit(
        "stranger",
        "subscribe",
        json!([{"channel": "r", "since": "other:1-0"}]),
    );
    assert_eq!(ack, json!({"ok": true, "recovered": false}));
    let ack = clients.emit(
        "stranger",
        "subscribe",
        json!([{"channel": "s", "since": "garbage"}]),
    );
    assert_eq!(ack["error"]["code"], 4000, "{ack}");

    // The handshake form recovers too, and says so per channel.
    let established = clients.connect_all(
        &["hs".to_owned()],
        &origin.url(),
        json!({"auth": {"channels": [{"channel": "r", "since": last}]}}),
    );
    assert_eq!(
        established[0]["subscriptions"],
        json!([{"ok": true, "recovered": true, "channel": "r"}])
    );
    let replayed: Vec<u64> = (0..4).map(|_| tick(&mut clients, "hs").0).collect();
    assert_eq!(replayed, [4, 5, 6, 7]);

    // The history endpoint: everything retained, then what followed a position.
    let all = history(&origin, "r", &[]);
    let names: Vec<&Value> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["data"])
        .collect();
    assert_eq!(names.len(), 7, "{all}");
    assert_eq!(all["events"][0]["name"], "tick");
    assert_eq!(all["events"][0]["data"], r#"{"n":1}"#, "data as triggered");
    let after = history(&origin, "r", &[("since", &last)]);
    assert_eq!(after["recovered"], true);
    let ns: Vec<&Value> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["data"])
        .collect();
    assert_eq!(ns, [r#"{"n":4}"#, r#"{"n":5}"#, r#"{"n":6}"#, r#"{"n":7}"#]);
    let unsigned = http::request(origin.addr, "GET", "/apps/1000001/channels/r/history", b"");
    assert_eq!(unsigned.status, 401);
    let bad = history_status(&origin, "r", &[("since", "nope")]);
    assert_eq!(bad, 400);

    // The recovery helper the tests drive is the one the origin serves.
    let helper = http::request(origin.addr, "GET", "/pushwire-recovery.js", b"");
    assert_eq!(helper.status, 200);
    assert!(
        helper
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/javascript"))
    );
    let file = include_str!("../../origin/assets/pushwire-recovery.js");
    assert_eq!(helper.body, file);
}

fn history_status(origin: &Origin, channel: &str, extra: &[(&str, &str)]) -> u16 {
    let path = format!("/apps/1000001/channels/{channel}/history");
    http::signed_with(origin.addr, "GET", &path, extra, b"", &test_app()).status
}

#[test]
fn since_replays_the_missed_events_then_live_ones() {
    each_fanout("replay", replay_then_live);
}

#[test]
fn a_trimmed_history_is_reported_not_papered_over() {
    let scratch = Scratch::new("trimmed");
    let mut options = OriginOptions::embedded();
    options.args = vec!["--history-max-events".into(), "3".into()];
    let origin = Origin::start(&scratch, "origin", options);
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("a", &origin.url(), json!({}));
    clients.subscribe("a", "t");
    trigger(&mut clients, &origin, "t", 1);
    let (_, first) = tick(&mut clients, "a");
    for n in 2..=6 {
        trigger(&mut clients, &origin, "t", n);
    }
    assert_eq!(
        history(&origin, "t", &[])["events"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    clients.connect("b", &origin.url(), json!({}));
    let ack = clients.emit("b", "subscribe", json!([{"channel": "t", "since": first}]));
    assert_eq!(ack, json!({"ok": true, "recovered": false}));
    trigger(&mut clients, &origin, "t", 7);
    let seen = clients.events_through("b", "tick");
    assert_eq!(
        seen.len(),
        1,
        "nothing replayed, live events flow: {seen:?}"
    );
    assert_eq!(seen[0].1[0]["n"], 7);
}

#[test]
fn a_redis_restart_is_reported_as_not_recovered() {
    let scratch = Scratch::new("recovery-redis-restart");
    let mut redis = RedisServer::start(&scratch);
    let origin = Origin::start(&scratch, "origin", OriginOptions::redis(&redis.url()));
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("a", &origin.url(), json!({}));
    clients.subscribe("a", "live");
    trigger(&mut clients, &origin, "live", 1);
    let (_, pos) = tick(&mut clients, "a");
    clients.close("a");
    // Accepted while the client is away, then lost with Redis's memory.
    trigger(&mut clients, &origin, "live", 2);

    redis.restart();
    origin.wait_every_worker("reconnected", pushwire_tests::origin::test_workers(), |h| {
        h["broker"]["connected"] == true
    });
    publish_after_restart(&mut clients, &origin, "live", 3);
    clients.connect("b", &origin.url(), json!({}));
    let ack = clients.emit("b", "subscribe", json!([{"channel": "live", "since": pos}]));
    assert_eq!(
        ack,
        json!({"ok": true, "recovered": false}),
        "event 2 is gone and the client must know"
    );
}

/// Polls the tracked clients' summary until `done` holds for it (deadline 15 s).
fn until_tracked(clients: &mut Clients, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let summary = clients.tracked_summary();
        if done(&summary) {
            return summary;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {summary}");
        std::thread::sleep(std::time::Duration::from_millis(50)); // polling with a deadline
    }
}

#[test]
fn events_published_while_the_pubsub_connection_was_down_are_delivered() {
    let scratch = Scratch::new("pubsub-blip");
    let redis = RedisServer::start(&scratch);
    let origin = Origin::start(&scratch, "origin", OriginOptions::redis(&redis.url()));
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("c", &origin.url(), json!({}));
    clients.subscribe("c", "blip");
    trigger(&mut clients, &origin, "blip", 0);
    assert_eq!(tick(&mut clients, "c").0, 0);
    // Redis stays up with its data; only the workers' subscriptions are cut.
    let killed = redis
        .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .unwrap();
    assert_ne!(killed, ":0", "the workers' pub/sub connections were found");
    for n in 1..=30 {
        trigger(&mut clients, &origin, "blip", n);
    }
    let got: Vec<u64> = (1..=30).map(|_| tick(&mut clients, "c").0).collect();
    assert_eq!(got, (1..=30).collect::<Vec<_>>(), "all, in order, once");
    trigger(&mut clients, &origin, "blip", 31);
    let seen = clients.events_through("c", "tick");
    assert_eq!(seen.len(), 1, "no duplicate: {seen:?}");
    assert_eq!(seen[0].1[0]["n"], 31);
}

/// Redis, an origin on it, and client `c` subscribed to `live` through the
/// recovery helper, having received `tick` 1.
fn tracked_client_after_event_1(scratch: &Scratch) -> (RedisServer, Origin, Clients) {
    let redis = RedisServer::start(scratch);
    let origin = Origin::start(scratch, "origin", OriginOptions::redis(&redis.url()));
    let mut clients = Clients::start(scratch, "clients");
    let ack = clients.connect_tracked("c", &origin.url(), json!({}), "live", "tick");
    assert_eq!(ack, json!({"ok": true}));
    trigger(&mut clients, &origin, "live", 1);
    until_tracked(&mut clients, "event 1", |s| {
        s["c"]["received"] == json!([1])
    });
    (redis, origin, clients)
}

#[test]
fn a_redis_restart_under_a_connected_client_is_reported_as_not_recovered() {
    let scratch = Scratch::new("redis-restart-live");
    let (mut redis, origin, mut clients) = tracked_client_after_event_1(&scratch);

    redis.restart();
    // The worker cannot vouch for what happened meanwhile: the client is made to
    // subscribe again and told so, instead of silently missing events.
    let summary = until_tracked(&mut clients, "a recovered:false ack", |s| {
        s["c"]["acks"].as_array().is_some_and(|a| a.len() >= 2)
    });
    assert_eq!(
        summary["c"]["acks"][1],
        json!({"ok": true, "recovered": false}),
        "{summary}"
    );
    publish_after_restart(&mut clients, &origin, "live", 2);
    until_tracked(&mut clients, "event 2", |s| {
        s["c"]["received"] == json!([1, 2])
    });
}

#[test]
fn the_helper_asks_again_when_a_resubscribe_finds_redis_unavailable() {
    let scratch = Scratch::new("helper-retries");
    let (redis, origin, mut clients) = tracked_client_after_event_1(&scratch);

    // Reconnected while Redis is frozen, the helper's subscribe with `since` is
    // answered 4200 (the origin bounds its Redis reads at 2 s); Redis stays frozen
    // 3 s from the reconnection, so at least that first answer is a 4200.
    redis.pause();
    clients.drop_transport("c");
    until_tracked(&mut clients, "the reconnection", |s| {
        s["c"]["connections"] == json!(2)
    });
    std::thread::sleep(std::time::Duration::from_secs(3)); // the fault's duration
    redis.resume();

    // Asked again, the server now answers: the channel is recovered, not dropped.
    let summary = until_tracked(&mut clients, "a second ack", |s| {
        s["c"]["acks"].as_array().is_some_and(|a| a.len() >= 2)
    });
    assert_eq!(
        summary["c"]["acks"],
        json!([{"ok": true}, {"ok": true, "recovered": true}]),
        "{summary}"
    );
    trigger(&mut clients, &origin, "live", 2);
    until_tracked(&mut clients, "event 2", |s| {
        s["c"]["received"] == json!([1, 2])
    });
}

#[test]
fn history_older_than_its_age_limit_is_trimmed() {
    let scratch = Scratch::new("history-age");
    let redis = RedisServer::start(&scratch);
    let mut options = OriginOptions::redis(&redis.url());
    options.args = vec!["--history-max-age-secs".into(), "1".into()];
    let origin = Origin::start(&scratch, "origin", options);
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("a", &origin.url(), json!({}));
    clients.subscribe("a", "aging");
    trigger(&mut clients, &origin, "aging", 1);
    let (_, first) = tick(&mut clients, "a");
    // Let event 1 grow older than the 1 s limit; the next publish trims it.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    trigger(&mut clients, &origin, "aging", 2);
    let kept = history(&origin, "aging", &[]);
    let data: Vec<&Value> = kept["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["data"])
        .collect();
    assert_eq!(data, [r#"{"n":2}"#], "{kept}");
    clients.connect("b", &origin.url(), json!({}));
    let ack = clients.emit(
        "b",
        "subscribe",
        json!([{"channel": "aging", "since": first}]),
    );
    assert_eq!(ack, json!({"ok": true, "recovered": false}));
}
