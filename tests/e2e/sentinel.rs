//! Redis behind Sentinel: the origin finds the primary through the sentinels and
//! follows a failover without a restart; so does the bridge.

use pushwire_tests::bridge::Bridge;
use pushwire_tests::clients::TEST_APP;
use pushwire_tests::origin::{OriginOptions, test_workers};
use pushwire_tests::redis::command_at;
use pushwire_tests::sentinel::{FAILOVER_TIMEOUT, SentinelSetup};
use pushwire_tests::{Clients, Origin, Scratch, wait};
use serde_json::json;

/// Triggers `during` on `live` (data: the attempt's number) until one is
/// accepted, and returns that number. Until the workers reach the new primary
/// every trigger must be refused with `503`: never a 200 for an event that
/// went nowhere.
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
                _ => panic!("trigger #{attempt} during {what}: {status} {body}"),
            }
        },
    )
}

#[test]
fn a_sentinel_failover_is_followed_without_a_restart() {
    let scratch = Scratch::new("sentinel-failover");
    let mut redis = SentinelSetup::start(&scratch);
    let origin = Origin::start(&scratch, "origin", OriginOptions::redis(&redis.url()));
    origin.wait_every_worker("connected to the primary", test_workers(), |h| {
        h["broker"]["connected"] == true
    });
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("c", &origin.url(), json!({}));
    clients.subscribe("c", "live");
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
    let origin = Origin::start(&scratch, "origin", OriginOptions::redis(&redis.url()));
    origin.wait_every_worker("connected to the primary", test_workers(), |h| {
        h["broker"]["connected"] == true
    });
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("c", &origin.url(), json!({}));
    clients.subscribe("c", "live");
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
