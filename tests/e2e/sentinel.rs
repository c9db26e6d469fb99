//! Redis behind Sentinel: the origin finds the primary through the sentinels and
//! follows a failover without a restart; so does the bridge.

use pushwire_shared::event::HISTORY_LOST;
use pushwire_tests::bridge::Bridge;
use pushwire_tests::clients::TEST_APP;
use pushwire_tests::origin::{OriginOptions, test_app, test_workers};
use pushwire_tests::redis::command_at;
use pushwire_tests::sentinel::{FAILOVER_TIMEOUT, SentinelSetup};
use pushwire_tests::{Clients, Origin, Scratch, http, wait};
use serde_json::{Value, json};

/// Triggers `during` on `live` (data: the attempt's number) until one is
/// accepted, and returns that number. Until the workers reach the new primary
/// every trigger must be refused with `503`: never a 200 for an event that
/// went nowhere. A `504` (the connection to the old primary lost with the
/// publish in flight) counts as accepted when the history has its event.
fn trigger_until_accepted(clients: &mut Clients, origin: &Origin, what: &str) -> u32 {
    let mut attempt = 0;
    wait::until(
        &format!("a trigger to be accepted after {what}"),
        FAILOVER_TIMEOUT,
        || {
            attempt += 1;
            let (status, body) = clients.trigger(
                origin.addr,
                TEST_APP,
                &["live"],
                "during",
                json!(attempt.to_string()),
                json!({}),
            );
            match status {
                200 => Some(attempt),
                503 => None,
                504 => history_of_live(origin)
                    .is_some_and(|events| {
                        events.contains(&("during".to_owned(), attempt.to_string()))
                    })
                    .then_some(attempt),
                _ => panic!("trigger #{attempt} during {what}: {status} {body}"),
            }
        },
    )
}

/// An origin on `redis` whose workers reached the primary, and socket `c`
/// subscribed to `live`.
fn origin_with_a_live_socket(scratch: &Scratch, redis: &SentinelSetup) -> (Origin, Clients) {
    let origin = Origin::start(scratch, "origin", OriginOptions::redis(&redis.url()));
    origin.wait_every_worker("connected to the primary", test_workers(), |h| {
        h["broker"]["connected"] == true
    });
    let mut clients = Clients::start(scratch, "clients");
    clients.connect("c", &origin.url(), json!({}));
    clients.subscribe("c", "live");
    (origin, clients)
}

#[test]
fn a_sentinel_failover_is_followed_without_a_restart() {
    let scratch = Scratch::new("sentinel-failover");
    let mut redis = SentinelSetup::start(&scratch);
    let (origin, mut clients) = origin_with_a_live_socket(&scratch, &redis);
    clients.trigger_ok(origin.addr, TEST_APP, &["live"], "before", json!("0"));
    assert_eq!(clients.event("c", "before")[0], json!(0));

    let old = redis.kill_primary();
    // Until the sentinels promote the replica and the workers move to it, every
    // trigger is refused: never a 200 for an event that went nowhere.
    let accepted = trigger_until_accepted(&mut clients, &origin, "the failover");
    let new = redis.primary_port().expect("a primary after the failover");
    assert_ne!(new, old, "the trigger was accepted by the promoted replica");

    // The accepted one arrives, and none of the refused ones before it.
    let seen = clients.events_through("c", "during");
    let during: Vec<_> = seen.iter().filter(|(name, _)| name == "during").collect();
    assert_eq!(during.len(), 1, "{seen:?}");
    assert_eq!(during[0].1[0], json!(accepted), "{seen:?}");
    clients.trigger_ok(origin.addr, TEST_APP, &["live"], "after", json!("x"));
    assert_eq!(clients.event("c", "after")[0], json!("x"));
    assert_eq!(
        origin.health()["status"],
        "ok",
        "the origin was not restarted"
    );
}

/// After `SENTINEL FAILOVER`, the old primary stays up and (here) keeps being a
/// primary, like one cut off from the sentinels but not from the workers: nothing
/// cuts the workers' connections to it, they must leave it because the
/// sentinels name another primary. Triggers must reach the subscribers.
#[test]
fn a_primary_the_sentinels_replaced_is_left_for_the_promoted_one() {
    let scratch = Scratch::new("sentinel-split");
    let redis = SentinelSetup::start_with_undemotable_primary(&scratch);
    let (origin, mut clients) = origin_with_a_live_socket(&scratch, &redis);
    clients.trigger_ok(origin.addr, TEST_APP, &["live"], "before", json!("0"));
    clients.event("c", "before");

    let old = redis.fail_over();
    let new = redis.wait_for_failover(old);
    trigger_until_accepted(&mut clients, &origin, "the switch-over");
    // Every worker's connections end up on the new primary: a trigger through
    // any of them is accepted and delivered.
    for i in 0..2 * test_workers() {
        let event = format!("after-{i}");
        clients.trigger_ok(origin.addr, TEST_APP, &["live"], &event, json!(i));
        assert_eq!(clients.event("c", &event)[0], json!(i));
    }
    let role = command_at(old, &["ROLE"]).expect("ROLE on the old primary");
    assert_eq!(
        role.lines().nth(1),
        Some("master"),
        "still a primary: {role}"
    );
    assert_eq!(redis.primary_port(), Some(new));
}

/// Triggers `tick` `n` on `live` and returns the position socket `c` received it at.
fn tick(clients: &mut Clients, origin: &Origin, n: u32) -> String {
    clients.trigger_ok(origin.addr, TEST_APP, &["live"], "tick", json!({"n": n}));
    let args = clients.event("c", "tick");
    assert_eq!(args[0], json!({"n": n}), "{args:?}");
    args[1]["pos"].as_str().expect("meta.pos").to_owned()
}

/// Subscribes socket `id` to `live` with `since`, asking again while its worker
/// cannot reach the promoted primary yet (`4200`); returns the ack.
fn subscribe_since(clients: &mut Clients, id: &str, since: &str) -> Value {
    wait::until(
        &format!("{id}'s subscribe to be answered by the new primary"),
        FAILOVER_TIMEOUT,
        || {
            let ack = clients.emit(
                id,
                "subscribe",
                json!([{"channel": "live", "since": since}]),
            );
            (ack["error"]["code"] != 4200).then_some(ack)
        },
    )
}

/// The events socket `id` received up to and including `last`, as `(name, data)`.
fn received_through(clients: &mut Clients, id: &str, last: &str) -> Vec<(String, Value)> {
    clients
        .events_through(id, last)
        .into_iter()
        .map(|(name, args)| (name, args[0].clone()))
        .collect()
}

/// The retained events of `live`, oldest first, as `(name, data as triggered)`.
fn history(origin: &Origin) -> Vec<(String, String)> {
    history_of_live(origin).expect("live's history")
}

/// [`history`], or `None` when the origin cannot read it (`503`, Redis failing over).
fn history_of_live(origin: &Origin) -> Option<Vec<(String, String)>> {
    let path = "/apps/1000001/channels/live/history";
    let response = http::signed_with(origin.addr, "GET", path, &[], b"", &test_app());
    if response.status != 200 {
        assert_eq!(response.status, 503, "{}", response.body);
        return None;
    }
    let text = |v: &Value| v.as_str().expect("a string").to_owned();
    Some(
        response.json()["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| (text(&e["name"]), text(&e["data"])))
            .collect(),
    )
}

/// Redis replicates asynchronously: events a dying primary accepted but had not
/// sent to its replica yet are missing from the promoted replica's history.
/// Whoever was sent one of them must be told so, never left with a quiet gap.
#[test]
fn events_a_failover_loses_are_reported_to_the_clients_that_had_them() {
    let scratch = Scratch::new("sentinel-loss");
    let mut redis = SentinelSetup::start(&scratch);
    let (origin, mut clients) = origin_with_a_live_socket(&scratch, &redis);
    // `pos[n]`: the position of tick n.
    let mut pos = vec![String::new()];
    for n in 1..=3 {
        pos.push(tick(&mut clients, &origin, n));
    }
    redis.wait_for_replica_sync();
    // Ticks 4 and 5 are accepted and delivered, but only the primary has them.
    let replica = redis.cut_off_replica();
    for n in 4..=5 {
        pos.push(tick(&mut clients, &origin, n));
    }
    let old = redis.kill_primary();
    redis.thaw_replica(replica);
    assert_eq!(redis.wait_for_failover(old), replica);

    // Its worker finds c's last event missing from the promoted primary's
    // history, and says so before anything else.
    assert_eq!(
        received_through(&mut clients, "c", HISTORY_LOST),
        [(HISTORY_LOST.to_owned(), json!({"channel": "live"}))]
    );
    // Recovering from a lost event: told, and nothing replayed.
    for n in [4, 5] {
        let id = format!("from-{n}");
        clients.connect(&id, &origin.url(), json!({}));
        let ack = subscribe_since(&mut clients, &id, &pos[n]);
        assert_eq!(
            ack,
            json!({"ok": true, "recovered": false}),
            "since tick {n}"
        );
    }
    // Recovering from an event that reached the replica: recovered, with what
    // the history holds after it. Ticks 4 and 5 are not among them and nothing
    // says so: a client that never had them cannot be told (PROTOCOL.md, §3
    // Replication and failover).
    clients.connect("from-2", &origin.url(), json!({}));
    let ack = subscribe_since(&mut clients, "from-2", &pos[2]);
    assert_eq!(ack, json!({"ok": true, "recovered": true}));

    let accepted = trigger_until_accepted(&mut clients, &origin, "the failover");
    let during = ("during".to_owned(), json!(accepted));
    assert_eq!(
        received_through(&mut clients, "from-2", "during"),
        [("tick".to_owned(), json!({"n": 3})), during.clone()]
    );
    for id in ["c", "from-4", "from-5"] {
        assert_eq!(
            received_through(&mut clients, id, "during"),
            std::slice::from_ref(&during),
            "{id}"
        );
    }
    let tick_data = |n: u32| ("tick".to_owned(), json!({"n": n}).to_string());
    assert_eq!(
        history(&origin),
        [
            tick_data(1),
            tick_data(2),
            tick_data(3),
            ("during".to_owned(), accepted.to_string())
        ]
    );
}

/// With `min-replicas-to-write` the primary refuses writes while it has no
/// replica in step, so pushwire refuses triggers (`503`) instead of accepting
/// events a failover could lose, and accepts them again once the replica is back.
#[test]
fn a_primary_that_requires_a_replica_refuses_triggers_without_one() {
    let scratch = Scratch::new("sentinel-min-replicas");
    let redis = SentinelSetup::start(&scratch);
    let primary = redis.primary_port().expect("a primary");
    let set = command_at(primary, &["CONFIG", "SET", "min-replicas-to-write", "1"])
        .expect("CONFIG SET on the primary");
    assert_eq!(set, "+OK");
    let (origin, mut clients) = origin_with_a_live_socket(&scratch, &redis);
    clients.trigger_ok(origin.addr, TEST_APP, &["live"], "before", json!("0"));
    assert_eq!(clients.event("c", "before")[0], json!(0));

    let replica = redis.cut_off_replica();
    for i in 0..3 {
        let (status, body) = clients.trigger(
            origin.addr,
            TEST_APP,
            &["live"],
            "refused",
            json!(i.to_string()),
            json!({}),
        );
        assert_eq!(status, 503, "trigger #{i} without a replica: {body}");
        assert!(body.contains("NOREPLICAS"), "{body}");
    }
    redis.thaw_replica(replica);
    let accepted = trigger_until_accepted(&mut clients, &origin, "the replica's return");
    assert_eq!(
        received_through(&mut clients, "c", "during"),
        [("during".to_owned(), json!(accepted))],
        "none of the refused events was delivered"
    );
    assert_eq!(
        history(&origin),
        [
            ("before".to_owned(), "0".to_owned()),
            ("during".to_owned(), accepted.to_string())
        ],
        "none of the refused events was kept"
    );
}

#[test]
fn a_malformed_sentinel_url_is_refused_at_start() {
    let output = std::process::Command::new(pushwire_tests::origin::pushwire_bin())
        .args(["serve", "--redis", "redis+sentinel://127.0.0.1:26379"])
        .env_remove("PUSHWIRE_CONFIG")
        .output()
        .expect("run pushwire serve");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--redis / PUSHWIRE_REDIS_URL: not a Redis URL (Sentinel URL: "),
        "{stderr}"
    );
}

#[test]
fn the_bridge_follows_a_sentinel_failover() {
    let scratch = Scratch::new("sentinel-bridge");
    let mut redis = SentinelSetup::start(&scratch);
    let bridge = Bridge::start(&scratch, "bridge", &redis.url(), &["--allow", "SET"]);
    let set = |value: &str| bridge.post("/", &json!(["SET", "k", value]).to_string(), None);
    let resp = set("before");
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, r#"{"result":"OK"}"#)
    );

    let old = redis.kill_primary();
    let mut attempt = 0;
    let accepted = wait::until(
        "the bridge to write again after the failover",
        FAILOVER_TIMEOUT,
        || {
            attempt += 1;
            let resp = set(&attempt.to_string());
            match resp.status {
                200 => Some(attempt),
                503 => None,
                status => panic!("SET #{attempt} during the failover: {status} {}", resp.body),
            }
        },
    );
    let new = redis.primary_port().expect("a primary after the failover");
    assert_ne!(new, old);
    let value = command_at(new, &["GET", "k"]).expect("GET on the new primary");
    assert_eq!(
        value,
        accepted.to_string(),
        "the write went to the new primary"
    );
}

/// The cluster's fault run on a Sentinel-managed primary: it is SIGKILLed
/// while 100 sockets receive 2,000 events; after the sentinels promote the
/// replica, every socket has its events in order and exactly once, or was
/// told it missed some, and triggers resume without restarting anything.
#[test]
fn a_sentinel_failover_under_load_loses_nothing_clients_are_not_told_of() {
    let scratch = Scratch::new("sentinel-under-load");
    let mut redis = SentinelSetup::start(&scratch);
    let channels: Vec<String> = (0..50).map(|k| format!("c{k}")).collect();
    let outcome = crate::fault_runs::run(&scratch, &mut redis, channels, true, |redis| {
        let old = redis.kill_primary();
        redis.wait_for_failover(old);
    });
    eprintln!("sentinel failover: {outcome:?}");
    assert!(
        outcome.refused > 0,
        "the kill reached the triggers: {outcome:?}"
    );
}
