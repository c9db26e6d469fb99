//! A broker fault under load, shared by the Redis Cluster and Sentinel tests:
//! 100 stock socket.io-client sockets using the recovery helper, two per
//! channel, on 50 channels, spread over two origins of two workers each,
//! receive 2,000 numbered events (event `n` on channel `n % 50`) published at
//! a steady rate by a third origin, while a fault strikes the broker a third
//! of the way through.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use pushwire_shared::ChannelName;
use pushwire_shared::keys::KeySpace;
use pushwire_shared::slot::key_slot;
use pushwire_tests::http::KeepAlive;
use pushwire_tests::origin::{OriginOptions, test_app};
use pushwire_tests::redis::command_at;
use pushwire_tests::redis_cluster::RedisCluster;
use pushwire_tests::sentinel::SentinelSetup;
use pushwire_tests::{Clients, Origin, Scratch, http, wait};
use serde_json::json;

/// A broker the scenario runs on.
pub(crate) trait FaultyBroker {
    /// The Redis URL origins are given.
    fn url(&self) -> String;
    /// Checks, once every client is done, that each channel's subscriptions
    /// are where they belong.
    fn check_subscriptions(&self, _channels: &[String]) {}
}

impl FaultyBroker for RedisCluster {
    fn url(&self) -> String {
        self.seeds()
    }

    /// Each channel's subscriptions (one per origin) sit on the shard that
    /// owns its slot now, and nowhere else.
    fn check_subscriptions(&self, channels: &[String]) {
        for channel in channels {
            let name = KeySpace::DEFAULT.channel("1000001", &ChannelName::new(channel).unwrap());
            let owner = self.primary_for_slot(slot_of(channel));
            for port in self.primaries() {
                let reply =
                    command_at(port, &["PUBSUB", "SHARDNUMSUB", &name]).expect("SHARDNUMSUB");
                let expected = if port == owner { ":2" } else { ":0" };
                assert!(
                    reply.ends_with(expected),
                    "{channel} on {port} (owner {owner}): {reply}"
                );
            }
        }
    }
}

impl FaultyBroker for SentinelSetup {
    fn url(&self) -> String {
        SentinelSetup::url(self)
    }
}

const EVENTS: u64 = 2_000;
const CLIENTS_PER_CHANNEL: usize = 2;
/// Steady publishing rate: 2,000 events over about 8 seconds.
const PUBLISH_EVERY: Duration = Duration::from_millis(4);
/// How long one event may keep being refused (a failover, a slot moving).
const REFUSED_AT_MOST: Duration = Duration::from_secs(30);

/// The slot of `app` 1000001's `channel` (every one of its keys shares it).
pub(crate) fn slot_of(channel: &str) -> u16 {
    let channel = ChannelName::new(channel).expect("a channel name");
    key_slot(KeySpace::DEFAULT.channel("1000001", &channel).as_bytes())
}

fn origin_options(broker: &impl FaultyBroker, workers: usize) -> OriginOptions {
    let mut options = OriginOptions::redis(&broker.url());
    options.workers = workers;
    options
}

/// Publishes events 1..=EVENTS, event `n` on `channels[n % len]`, at a
/// steady rate, retrying each until it is accepted. A `503` during a
/// failover means the script did not run (the connection is refused or the
/// cluster answers `CLUSTERDOWN`/`MOVED`), so a retry publishes it once. A
/// `504` (a connection lost with the publish in flight) may have published
/// it: the channel's history says whether to publish again.
fn publish_all(
    publisher: std::net::SocketAddr,
    channels: Arc<Vec<String>>,
    sent: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) {
    let app = test_app();
    let mut conn = KeepAlive::connect(publisher);
    let start = Instant::now();
    for n in 1..=EVENTS {
        let due = start + PUBLISH_EVERY * n as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait); // pacing the load, not synchronising
        }
        let channel = &channels[n as usize % channels.len()];
        let data = format!("{{\"n\":{n}}}");
        let body = json!({"name": "seq", "channel": channel, "data": data});
        let body = body.to_string();
        let deadline = Instant::now() + REFUSED_AT_MOST;
        loop {
            let response = conn.signed_post("/apps/1000001/events", body.as_bytes(), &app);
            if response.status == 200 {
                break;
            }
            if response.status == 504 && in_history(publisher, channel, &data) {
                break;
            }
            assert!(
                [503, 504].contains(&response.status),
                "event {n}: {response:?}"
            );
            refused.fetch_add(1, Ordering::Relaxed);
            assert!(Instant::now() < deadline, "event {n} refused: {response:?}");
            thread::sleep(Duration::from_millis(20)); // a client's retry pause
        }
        sent.store(n, Ordering::Relaxed);
    }
}

/// Whether `channel`'s history holds an event whose data is `data`, read
/// from `origin` (again until the read succeeds: the broker may be failing
/// over still).
fn in_history(origin: std::net::SocketAddr, channel: &str, data: &str) -> bool {
    let path = format!("/apps/1000001/channels/{channel}/history");
    wait::until(
        &format!("{channel}'s history to be read"),
        REFUSED_AT_MOST,
        || {
            let response = http::signed_with(origin, "GET", &path, &[], b"", &test_app());
            (response.status == 200).then(|| {
                response.json()["events"]
                    .as_array()
                    .expect("events")
                    .iter()
                    .any(|event| event["data"] == data)
            })
        },
    )
}

/// What a run saw: clients told they missed events, and refused triggers.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub told_lost: usize,
    pub refused: u64,
}

/// Runs the scenario on `channels`, calling `fault` once a third of the
/// events went out, and checks every client: its events in order, exactly
/// once, all of them, or (`losses_allowed`) fewer when it was told
/// (`recovered: false`, which the helper also reports for
/// `pushwire:history_lost`).
pub(crate) fn run<B: FaultyBroker>(
    scratch: &Scratch,
    broker: &mut B,
    channels: Vec<String>,
    losses_allowed: bool,
    fault: impl FnOnce(&mut B),
) -> Outcome {
    let all_channels = channels.clone();
    let channels = Arc::new(channels);
    let publisher = Origin::start(scratch, "publisher", origin_options(broker, 1));
    let origins = [
        Origin::start(scratch, "origin-a", origin_options(broker, 2)),
        Origin::start(scratch, "origin-b", origin_options(broker, 2)),
    ];
    let mut clients = Clients::start(scratch, "clients");
    let mut ids = Vec::new();
    for (k, channel) in channels.iter().enumerate() {
        for c in 0..CLIENTS_PER_CHANNEL {
            let id = format!("{channel}-{c}");
            let origin = &origins[(k + c) % 2];
            let ack = clients.connect_tracked(
                &id,
                &origin.url(),
                json!({"transports": ["websocket"]}),
                channel,
                "seq",
            );
            assert_eq!(ack, json!({"ok": true}), "{id}");
            ids.push((id, k));
        }
    }

    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let publishing = thread::spawn({
        let (channels, sent, refused) = (channels.clone(), sent.clone(), refused.clone());
        let addr = publisher.addr;
        move || publish_all(addr, channels, sent, refused)
    });
    wait_until_sent(&sent, EVENTS / 3);
    fault(broker);
    publishing.join().expect("the publisher finished");

    let expected = |k: usize| -> Vec<u64> {
        (1..=EVENTS)
            .filter(|n| *n as usize % channels.len() == k)
            .collect()
    };
    // Done when every client has its channel's last event.
    let deadline = Instant::now() + Duration::from_secs(60);
    let summary = loop {
        let summary = clients.tracked_summary();
        let behind: Vec<&str> = ids
            .iter()
            .filter(|(id, k)| {
                let last = summary[id]["received"]
                    .as_array()
                    .and_then(|r| r.last())
                    .cloned();
                last != expected(*k).last().map(|n| json!(n))
            })
            .map(|(id, _)| id.as_str())
            .collect();
        if behind.is_empty() {
            break summary;
        }
        assert!(
            Instant::now() < deadline,
            "{} clients never got their last event: {behind:?}",
            behind.len()
        );
        thread::sleep(Duration::from_millis(250)); // polling with a deadline
    };

    let mut told_lost = 0;
    for (id, k) in &ids {
        let state = &summary[id];
        let received: Vec<u64> = state["received"]
            .as_array()
            .expect("received")
            .iter()
            .map(|n| n.as_u64().expect("n"))
            .collect();
        let expected = expected(*k);
        let wanted: BTreeSet<u64> = expected.iter().copied().collect();
        assert!(
            received.windows(2).all(|w| w[0] < w[1]),
            "{id}: out of order or repeated: {received:?}; repeats {}",
            state["repeats"]
        );
        assert!(
            received.iter().all(|n| wanted.contains(n)),
            "{id}: another channel's events: {received:?}"
        );
        let told = state["acks"]
            .as_array()
            .expect("acks")
            .iter()
            .any(|ack| ack["recovered"] == json!(false));
        if received != expected {
            let missing: Vec<u64> = wanted
                .difference(&received.iter().copied().collect())
                .copied()
                .collect();
            assert!(
                losses_allowed && told,
                "{id} missed {missing:?} without being told; got {received:?}; acks {}",
                state["acks"]
            );
        }
        told_lost += usize::from(told);
    }
    for origin in &origins {
        assert_eq!(origin.health()["status"], "ok", "no origin was restarted");
    }
    broker.check_subscriptions(&all_channels);
    Outcome {
        told_lost,
        refused: refused.load(Ordering::Relaxed),
    }
}

/// Channels named `{prefix}{i}`: `count` of them, chosen so that every
/// one's slot satisfies `wanted`.
pub(crate) fn channels_where(
    prefix: &str,
    count: usize,
    wanted: impl Fn(u16) -> bool,
) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|name| wanted(slot_of(name)))
        .take(count)
        .collect()
}

/// Polls until the publisher has sent `n` events (it runs on its own thread).
fn wait_until_sent(sent: &AtomicU64, n: u64) {
    pushwire_tests::wait::until(
        "the publisher to get a third of the way",
        std::time::Duration::from_secs(60),
        || (sent.load(Ordering::Relaxed) >= n).then_some(()),
    );
}
