//! Redis going away and coming back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pushwire_shared::event::HISTORY_LOST;
use pushwire_tests::clients::TEST_APP;
use pushwire_tests::http;
use pushwire_tests::origin::{OriginOptions, test_app, test_workers};
use pushwire_tests::{Clients, Origin, RedisServer, Scratch};
use serde_json::json;

/// Longer than the 2 s the origin allows its other Redis commands.
const SLOW_REDIS: Duration = Duration::from_secs(3);

#[test]
fn redis_restart_gives_503_then_delivery_resumes_by_itself() {
    let scratch = Scratch::new("redis-restart");
    let mut redis = RedisServer::start(&scratch);
    let origin = Origin::start(&scratch, "origin", OriginOptions::redis(&redis.url()));
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("c", &origin.url(), json!({}));
    clients.subscribe("c", "live");
    clients.trigger_ok(origin.addr, TEST_APP, &["live"], "before", json!("1"));
    clients.event("c", "before");

    redis.stop();
    // The first triggers may meet the connection Redis closed: the client
    // library reports the same error whether or not the publish was written
    // before the break, so the origin answers 504 (outcome unknown). Once
    // the connection is known to be gone, every trigger is a 503.
    let mut refused = 0;
    for i in 0..20 {
        let (status, body) = clients.trigger(
            origin.addr,
            TEST_APP,
            &["live"],
            "down",
            json!(i.to_string()),
            json!({}),
        );
        if status == 504 && refused == 0 {
            assert!(body.contains("outcome is unknown"), "{body}");
            continue;
        }
        assert_eq!(status, 503, "trigger #{i} while Redis is down: {body}");
        assert!(body.contains("unavailable"), "{body}");
        refused += 1;
        if refused == 5 {
            break;
        }
    }
    assert_eq!(refused, 5, "triggers refused while Redis is down");
    assert_eq!(origin.health()["status"], "ok", "the origin stays up");

    redis.restart();
    // Each worker's subscriber reconnects and re-subscribes by itself; /health says when.
    origin.wait_every_worker("re-subscribed", test_workers(), |h| {
        h["broker"]["connected"] == true
    });
    let (status, body) = clients.trigger(
        origin.addr,
        TEST_APP,
        &["live"],
        "after",
        json!("2"),
        json!({}),
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    // Delivery resumed, and nothing refused while Redis was down was delivered.
    // Redis came back empty, so the socket was told its history was lost.
    let seen = clients.events_through("c", "after");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[0],
        (HISTORY_LOST.to_owned(), vec![json!({"channel": "live"})])
    );
    assert_eq!(seen[1].1[0], json!(2));
}

#[test]
fn origin_starts_while_redis_is_down_and_recovers() {
    let scratch = Scratch::new("redis-late");
    let mut redis = RedisServer::start(&scratch);
    redis.stop();
    let origin = Origin::start(&scratch, "origin", OriginOptions::redis(&redis.url()));
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("c", &origin.url(), json!({}));
    let ack = clients.emit("c", "subscribe", json!([{"channel": "late"}]));
    assert_eq!(ack["error"]["code"], 4200, "{ack}");
    assert_eq!(
        clients
            .trigger(origin.addr, TEST_APP, &["late"], "e", json!(""), json!({}))
            .0,
        503
    );

    redis.restart();
    origin.wait_every_worker("connected to Redis", test_workers(), |h| {
        h["broker"]["connected"] == true
    });
    clients.subscribe("c", "late");
    clients.trigger_ok(origin.addr, TEST_APP, &["late"], "e", json!("ok"));
    assert_eq!(clients.event("c", "e")[0], json!("ok"));
}

/// A subscriber of channel `slow` on `origin`; a trigger sent to `trigger_addr`
/// while `redis` is frozen for [`SLOW_REDIS`] must be answered `200` (not before
/// Redis runs again) and delivered once, in order with the next one.
pub(crate) fn assert_a_slow_redis_delays_the_trigger(
    scratch: &Scratch,
    redis: &RedisServer,
    origin: &Origin,
    trigger_addr: SocketAddr,
) {
    let mut clients = Clients::start(scratch, "clients");
    clients.connect("c", &origin.url(), json!({}));
    clients.subscribe("c", "slow");
    // The path's Redis connections are open before Redis slows down (a connection
    // opened while it is frozen fails before anything is sent: a plain 503).
    clients.trigger_ok(trigger_addr, TEST_APP, &["slow"], "before", json!("0"));

    redis.pause();
    let trigger = std::thread::spawn(move || {
        let body = json!({"name": "slow", "channel": "slow", "data": "1"}).to_string();
        http::signed_with(
            trigger_addr,
            "POST",
            "/apps/1000001/events",
            &[],
            body.as_bytes(),
            &test_app(),
        )
    });
    // Redis stays frozen until the trigger has waited SLOW_REDIS, unless it is
    // answered before (the failure this is for).
    let paused = Instant::now();
    while paused.elapsed() < SLOW_REDIS && !trigger.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let answered_while_paused = trigger.is_finished();
    redis.resume();
    let response = trigger.join().unwrap();
    assert!(
        !answered_while_paused,
        "answered while Redis was frozen: {response:?}"
    );
    assert_eq!((response.status, response.body.as_str()), (200, "{}"));

    clients.trigger_ok(trigger_addr, TEST_APP, &["slow"], "after", json!("2"));
    let seen = clients.events_through("c", "after");
    let names: Vec<&str> = seen.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["before", "slow", "after"],
        "delivered once, in order: {seen:?}"
    );
}

#[test]
fn a_slow_redis_delays_a_trigger_instead_of_refusing_an_event_it_publishes() {
    // A trigger whose publish outlives a short command timeout would be answered
    // 503 although Redis then runs the script: the event is delivered, and the
    // caller, told to retry, publishes it a second time.
    let scratch = Scratch::new("redis-slow");
    let redis = RedisServer::start(&scratch);
    let origin = Origin::start(&scratch, "origin", OriginOptions::redis(&redis.url()));
    assert_a_slow_redis_delays_the_trigger(&scratch, &redis, &origin, origin.addr);
}
