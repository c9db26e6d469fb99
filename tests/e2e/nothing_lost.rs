//! "Nothing lost": 100 stock socket.io-client sockets using the recovery helper,
//! spread over two origins of two workers each, receive 5,000 numbered events
//! published at a steady rate while workers are SIGKILLed, transports are cut
//! and the origins are restarted one at a time. Every socket must end with
//! every event, in order, exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use pushwire_shared::App;
use pushwire_tests::http::KeepAlive;
use pushwire_tests::origin::{OriginOptions, test_app};
use pushwire_tests::process::{children_of, signal_pid};
use pushwire_tests::{Clients, Origin, RedisServer, Scratch};
use serde_json::{Value, json};

const EVENTS: u64 = 5_000;
const CLIENTS: usize = 100;
/// Steady publishing rate: 5,000 events over about 20 seconds.
const PUBLISH_EVERY: Duration = Duration::from_millis(4);
/// Enough history to cover the longest outage a client sees here (an origin
/// restart plus reconnection back-off) at this rate.
const HISTORY: &str = "5000";

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn origin_options(redis: &RedisServer, port: u16) -> OriginOptions {
    let mut options = OriginOptions::redis(&redis.url());
    options.workers = 2;
    options.port = port;
    options.args = vec!["--history-max-events".into(), HISTORY.into()];
    options
}

/// Publishes events 1..=EVENTS through `publisher`, one at a time at a steady
/// rate, retrying any that is not accepted (the publisher itself is never
/// disturbed, so a refusal is never a half-done publish).
fn publish_all(publisher: std::net::SocketAddr, app: App, sent: Arc<AtomicU64>) {
    let mut conn = KeepAlive::connect(publisher);
    let start = Instant::now();
    for n in 1..=EVENTS {
        let due = start + PUBLISH_EVERY * n as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait); // pacing the load, not synchronising
        }
        let body = json!({"name": "seq", "channel": "orders", "data": format!("{{\"n\":{n}}}")});
        let body = body.to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let response = conn.signed_post("/apps/1000001/events", body.as_bytes(), &app);
            if response.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "event {n} refused: {response:?}");
        }
        sent.store(n, Ordering::Relaxed);
    }
}

#[test]
fn every_client_gets_every_event_through_kills_drops_and_restarts() {
    let scratch = Scratch::new("nothing-lost");
    let redis = RedisServer::start(&scratch);
    let publisher = Origin::start(&scratch, "publisher", {
        let mut o = origin_options(&redis, 0);
        o.workers = 1;
        o
    });
    let mut origins = [
        Origin::start(&scratch, "origin-a", origin_options(&redis, 0)),
        Origin::start(&scratch, "origin-b", origin_options(&redis, 0)),
    ];
    let ports = [origins[0].addr.port(), origins[1].addr.port()];
    let mut clients = Clients::start(&scratch, "clients");
    let ids: Vec<String> = (0..CLIENTS).map(|i| format!("c{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        // Half start on long-polling (the default), half WebSocket-only.
        let opts = if i % 2 == 0 {
            json!({})
        } else {
            json!({"transports": ["websocket"]})
        };
        let ack = clients.connect_tracked(id, &origins[i % 2].url(), opts, "orders", "seq");
        assert_eq!(ack, json!({"ok": true}), "{id}");
    }

    let sent = Arc::new(AtomicU64::new(0));
    let publishing = thread::spawn({
        let sent = sent.clone();
        let app = test_app();
        let addr = publisher.addr;
        move || publish_all(addr, app, sent)
    });

    let mut dice = Dice(0x5eed_cafe);
    let mut kills = 0;
    let mut drops = 0;
    let mut restarted = [false, false];
    let started = Instant::now();
    while !publishing.is_finished() {
        thread::sleep(Duration::from_millis(200)); // the fault schedule's tick
        let ticks = started.elapsed().as_millis() / 200;
        // Cut a random client's transport every tick.
        clients.drop_transport(&ids[dice.below(CLIENTS)]);
        drops += 1;
        // SIGKILL a random worker every 2 s.
        if ticks % 10 == 5 {
            let origin = &origins[dice.below(2)];
            let workers = children_of(origin.pid());
            if !workers.is_empty() {
                signal_pid(workers[dice.below(workers.len())], "KILL");
                kills += 1;
            }
        }
        // Restart origin A at 1/3 of the run, origin B at 2/3.
        let progress = sent.load(Ordering::Relaxed);
        for (i, at) in [(0, EVENTS / 3), (1, 2 * EVENTS / 3)] {
            if !restarted[i] && progress >= at {
                restarted[i] = true;
                let status = origins[i].stop();
                assert!(
                    status.is_some_and(|s| s.success()),
                    "origin {i} stopped cleanly"
                );
                origins[i] = Origin::start(
                    &scratch,
                    &format!("origin-{i}-again"),
                    origin_options(&redis, ports[i]),
                );
            }
        }
    }
    publishing.join().expect("the publisher finished");
    assert!(
        kills >= 5 && drops >= 50 && restarted == [true, true],
        "faults: {kills} kills, {drops} drops"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let summary = loop {
        let summary = clients.tracked_summary();
        let behind: Vec<String> = ids
            .iter()
            .filter_map(|id| {
                let state = &summary[id];
                let got = state["received"].as_array().map_or(0, Vec::len);
                (got < EVENTS as usize).then(|| {
                    let acks = state["acks"].as_array().map_or(0, Vec::len);
                    let last_ack = state["acks"].as_array().and_then(|a| a.last()).cloned();
                    format!(
                        "{id}: {got} events, {} connections, {acks} acks, last {last_ack:?}, last n {:?}, refused {}",
                        state["connections"],
                        state["received"].as_array().and_then(|r| r.last()),
                        state["refusals"]
                    )
                })
            })
            .collect();
        if behind.is_empty() {
            break summary;
        }
        assert!(
            Instant::now() < deadline,
            "{} clients never caught up:\n{}",
            behind.len(),
            behind.join("\n")
        );
        thread::sleep(Duration::from_millis(250)); // polling with a deadline
    };
    let expected: Vec<Value> = (1..=EVENTS).map(|n| json!(n)).collect();
    let mut reconnections = 0;
    for id in &ids {
        let state = &summary[id];
        let received = state["received"].as_array().expect("received");
        if received != &expected {
            let first_bad = received
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(expected.len().min(received.len()));
            let around =
                &received[first_bad.saturating_sub(3)..(first_bad + 3).min(received.len())];
            panic!(
                "{id}: {} events, first difference at index {first_bad}: …{around:?}… (in order, no duplicates expected); acks {}; repeats {}",
                received.len(),
                state["acks"],
                state["repeats"]
            );
        }
        let acks = state["acks"].as_array().expect("acks");
        for ack in &acks[1..] {
            assert_eq!(
                ack,
                &json!({"ok": true, "recovered": true}),
                "{id} re-subscribed"
            );
        }
        reconnections += acks.len() - 1;
    }
    eprintln!(
        "nothing lost: {kills} worker kills, {drops} transport drops, 2 origin restarts, {reconnections} recoveries"
    );
    assert!(
        reconnections >= CLIENTS,
        "the faults reached the clients: {reconnections}"
    );
}
