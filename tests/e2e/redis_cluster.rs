//! The Redis Cluster harness itself: later tests rely on it to fail over and
//! reshard as a real deployment would, so that is checked here first.

use std::collections::BTreeSet;

use pushwire_tests::Scratch;
use pushwire_tests::redis::command_at;
use pushwire_tests::redis_cluster::RedisCluster;

/// Enough keys that the 100 slots a reshard moves hold some of them.
const KEYS: usize = 2000;

/// The slot of `key`, as the node on `port` computes it.
fn slot_of(port: u16, key: &str) -> u16 {
    let reply = command_at(port, &["CLUSTER", "KEYSLOT", key]).expect("CLUSTER KEYSLOT");
    reply
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("CLUSTER KEYSLOT {key}: {reply}"))
}

#[test]
fn the_test_cluster_fails_over_and_reshards() {
    let scratch = Scratch::new("redis-cluster");
    let mut cluster = RedisCluster::start(&scratch);
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    let ports = cluster.ports();
    assert_eq!(
        cluster.seeds(),
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
            ports[0], ports[1], ports[2]
        )
    );

    let keys: Vec<String> = (0..KEYS).map(|i| format!("key-{i}")).collect();
    let script: String = keys.iter().map(|k| format!("SET {k} v-{k}\n")).collect();
    let replies = cluster.cli_script(ports[0], &script);
    assert_eq!(
        replies.lines().filter(|l| *l == "OK").count(),
        KEYS,
        "{replies}"
    );

    // Failover: the slot's primary dies; its replica takes over, with the key.
    let slot = slot_of(primaries[0], "key-0");
    let old = cluster.primary_for_slot(slot);
    assert_eq!(command_at(old, &["GET", "key-0"]).unwrap(), "v-key-0");
    cluster.kill(old);
    cluster.wait_for_failover(old);
    let new = cluster.primary_for_slot(slot);
    assert_ne!(new, old);
    assert!(!primaries.contains(&new), "{new} was a replica");
    assert_eq!(command_at(new, &["GET", "key-0"]).unwrap(), "v-key-0");
    // redis-cli -c, asking the first live node, is redirected there too.
    assert_eq!(cluster.cli(&["GET", "key-0"]), "v-key-0");
    let after_failover = cluster.primaries();
    assert_eq!(after_failover.len(), 3, "{after_failover:?}");
    assert!(!after_failover.contains(&old), "{after_failover:?}");

    // Reshard: 100 slots move from one primary to another, keys with them.
    let (from, to) = (after_failover[0], after_failover[1]);
    let from_before: BTreeSet<u16> = cluster.slots_of(from).into_iter().collect();
    let to_before = cluster.slots_of(to).len();
    cluster.reshard(from, to, 100);
    let from_after: BTreeSet<u16> = cluster.slots_of(from).into_iter().collect();
    let moved: Vec<u16> = from_before.difference(&from_after).copied().collect();
    assert_eq!(moved.len(), 100, "{moved:?}");
    assert!(from_after.is_subset(&from_before));
    assert_eq!(cluster.slots_of(to).len(), to_before + 100);
    for &slot in &moved {
        assert_eq!(cluster.primary_for_slot(slot), to, "slot {slot}");
    }
    let moved_keys: Vec<&String> = keys
        .iter()
        .filter(|k| moved.contains(&slot_of(to, k)))
        .collect();
    assert!(
        !moved_keys.is_empty(),
        "no key in the moved slots {moved:?}"
    );
    // Any node that has served a cluster for seconds has used some CPU.
    assert!(cluster.cpu_seconds(to) > 0.0);
    for key in moved_keys {
        assert_eq!(command_at(to, &["GET", key]).unwrap(), format!("v-{key}"));
        assert!(
            command_at(from, &["GET", key])
                .unwrap()
                .starts_with("-MOVED")
        );
    }
}

/// The fault runs below: 100 stock socket.io-client sockets using the recovery
/// helper, two per channel, on 50 channels spread over every shard, spread
/// over two origins of two workers each, receive 2,000 numbered events
/// (event `n` on channel `n % 50`) published at a steady rate by a third
/// origin, while `fault` strikes the cluster at a third of the run.
mod fault_runs {
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
    use pushwire_tests::{Clients, Origin, Scratch};
    use serde_json::json;

    const EVENTS: u64 = 2_000;
    const CLIENTS_PER_CHANNEL: usize = 2;
    /// Steady publishing rate: 2,000 events over about 8 seconds.
    const PUBLISH_EVERY: Duration = Duration::from_millis(4);
    /// How long one event may keep being refused (a failover, a slot moving).
    const REFUSED_AT_MOST: Duration = Duration::from_secs(30);

    /// The slot of `app` 1000001's `channel` (every one of its keys shares it).
    pub(super) fn slot_of(channel: &str) -> u16 {
        let channel = ChannelName::new(channel).expect("a channel name");
        key_slot(KeySpace::DEFAULT.channel("1000001", &channel).as_bytes())
    }

    fn origin_options(cluster: &RedisCluster, workers: usize) -> OriginOptions {
        let mut options = OriginOptions::redis(&cluster.seeds());
        options.workers = workers;
        options
    }

    /// Publishes events 1..=EVENTS, event `n` on `channels[n % len]`, at a
    /// steady rate, retrying each until it is accepted. A refusal during a
    /// failover comes before the script ran (the connection is refused or the
    /// cluster answers `CLUSTERDOWN`/`MOVED`), so a retry publishes it once.
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
            let body = json!({"name": "seq", "channel": channel, "data": format!("{{\"n\":{n}}}")});
            let body = body.to_string();
            let deadline = Instant::now() + REFUSED_AT_MOST;
            loop {
                let response = conn.signed_post("/apps/1000001/events", body.as_bytes(), &app);
                if response.status == 200 {
                    break;
                }
                assert_eq!(response.status, 503, "event {n}: {response:?}");
                refused.fetch_add(1, Ordering::Relaxed);
                assert!(Instant::now() < deadline, "event {n} refused: {response:?}");
                thread::sleep(Duration::from_millis(20)); // a client's retry pause
            }
            sent.store(n, Ordering::Relaxed);
        }
    }

    /// What a run saw: clients told they missed events, and refused triggers.
    #[derive(Debug)]
    pub(super) struct Outcome {
        pub told_lost: usize,
        pub refused: u64,
    }

    /// Runs the scenario on `channels`, calling `fault` once a third of the
    /// events went out, and checks every client: its events in order, exactly
    /// once, all of them, or (`losses_allowed`) fewer when it was told
    /// (`recovered: false`, which the helper also reports for
    /// `pushwire:history_lost`).
    pub(super) fn run(
        scratch: &Scratch,
        cluster: &mut RedisCluster,
        channels: Vec<String>,
        losses_allowed: bool,
        fault: impl FnOnce(&mut RedisCluster),
    ) -> Outcome {
        let all_channels = channels.clone();
        let channels = Arc::new(channels);
        let publisher = Origin::start(scratch, "publisher", origin_options(cluster, 1));
        let origins = [
            Origin::start(scratch, "origin-a", origin_options(cluster, 2)),
            Origin::start(scratch, "origin-b", origin_options(cluster, 2)),
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
        super::wait_until_sent(&sent, EVENTS / 3);
        fault(cluster);
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
        // Each channel's subscriptions (one per origin) sit on the shard that
        // owns its slot now, and nowhere else.
        for channel in &all_channels {
            let name = KeySpace::DEFAULT.channel("1000001", &ChannelName::new(channel).unwrap());
            let owner = cluster.primary_for_slot(slot_of(channel));
            for port in cluster.primaries() {
                let reply =
                    command_at(port, &["PUBSUB", "SHARDNUMSUB", &name]).expect("SHARDNUMSUB");
                let expected = if port == owner { ":2" } else { ":0" };
                assert!(
                    reply.ends_with(expected),
                    "{channel} on {port} (owner {owner}): {reply}"
                );
            }
        }
        Outcome {
            told_lost,
            refused: refused.load(Ordering::Relaxed),
        }
    }

    /// Channels named `{prefix}{i}`: `count` of them, chosen so that every
    /// one's slot satisfies `wanted`.
    pub(super) fn channels_where(
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
}

/// Polls until the publisher has sent `n` events (it runs on its own thread).
fn wait_until_sent(sent: &std::sync::atomic::AtomicU64, n: u64) {
    pushwire_tests::wait::until(
        "the publisher to get a third of the way",
        std::time::Duration::from_secs(60),
        || (sent.load(std::sync::atomic::Ordering::Relaxed) >= n).then_some(()),
    );
}

#[test]
fn a_killed_primary_loses_nothing_clients_are_not_told_of() {
    let scratch = Scratch::new("cluster-primary-killed");
    let mut cluster = RedisCluster::start(&scratch);
    let channels: Vec<String> = (0..50).map(|k| format!("c{k}")).collect();
    let owners: BTreeSet<u16> = channels
        .iter()
        .map(|c| cluster.primary_for_slot(fault_runs::slot_of(c)))
        .collect();
    assert_eq!(owners.len(), 3, "the channels span every shard: {owners:?}");
    let victim = cluster.primary_for_slot(fault_runs::slot_of("c0"));
    let outcome = fault_runs::run(&scratch, &mut cluster, channels, true, |cluster| {
        cluster.kill(victim);
        cluster.wait_for_failover(victim);
    });
    eprintln!("primary killed: {outcome:?}");
    assert!(
        outcome.refused > 0,
        "the kill reached the triggers: {outcome:?}"
    );
}

#[test]
fn a_resharding_under_load_loses_and_repeats_nothing() {
    let scratch = Scratch::new("cluster-reshard");
    let mut cluster = RedisCluster::start(&scratch);
    let primaries = cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    // `redis-cli --cluster reshard` moves the source's lowest slots first:
    // half the channels sit there, the other half anywhere else.
    let moving: BTreeSet<u16> = cluster.slots_of(from).into_iter().take(100).collect();
    let mut channels = fault_runs::channels_where("m", 25, |slot| moving.contains(&slot));
    channels.extend(fault_runs::channels_where("s", 25, |slot| {
        !moving.contains(&slot)
    }));
    let outcome = fault_runs::run(&scratch, &mut cluster, channels.clone(), false, |cluster| {
        cluster.reshard(from, to, 100);
    });
    eprintln!("resharded: {outcome:?}");
    assert_eq!(outcome.told_lost, 0, "nothing was lost: {outcome:?}");
    for channel in &channels[..25] {
        assert_eq!(
            cluster.primary_for_slot(fault_runs::slot_of(channel)),
            to,
            "{channel} moved"
        );
    }
}

/// The edge still speaks to one URL: a bridge in front of the cluster sends
/// each of its publish runs to its channel's shard (the first on each shard
/// answered `NOSCRIPT`, then sent with the script's text), publishes with
/// `SPUBLISH`, and answers the channel queries as the origins do.
#[test]
fn the_edge_publishes_and_queries_through_a_bridge_in_front_of_the_cluster() {
    use pushwire_shared::publishing::PUBLISH_SCRIPT_SHA1;
    use pushwire_tests::bridge::Bridge;
    use pushwire_tests::clients::TEST_APP;
    use pushwire_tests::edge::EdgeWorker;
    use pushwire_tests::origin::{OriginOptions, TEST_APPS};
    use pushwire_tests::{Clients, Origin};
    use serde_json::json;

    let scratch = Scratch::new("cluster-edge");
    let cluster = RedisCluster::start(&scratch);
    let bridge = Bridge::start(&scratch, "bridge", &cluster.seeds(), &[]);
    let origins = [
        Origin::start(&scratch, "origin-a", OriginOptions::redis(&cluster.seeds())),
        Origin::start(&scratch, "origin-b", OriginOptions::redis(&cluster.seeds())),
    ];
    let edge = EdgeWorker::start(
        &scratch,
        &[
            ("PUSHWIRE_APPS", TEST_APPS),
            ("PUSHWIRE_BRIDGE_URL", &bridge.url()),
            ("PUSHWIRE_BRIDGE_TOKEN", &bridge.token),
        ],
    );
    // One channel on each shard.
    let primaries = cluster.primaries();
    let channels: Vec<String> = primaries
        .iter()
        .map(|&port| {
            fault_runs::channels_where(&format!("e{port}-"), 1, |slot| {
                cluster.primary_for_slot(slot) == port
            })
            .remove(0)
        })
        .collect();
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    let mut clients = Clients::start(&scratch, "clients");
    for (id, origin) in [("a", &origins[0]), ("b", &origins[1])] {
        clients.connect(id, &origin.url(), json!({"auth": {"channels": names}}));
    }
    let (status, body) = clients.trigger(edge.addr, TEST_APP, &names, "all", json!("x"), json!({}));
    assert_eq!((status, body.as_str()), (200, "{}"));
    for id in ["a", "b"] {
        let mut got: Vec<(String, serde_json::Value)> = (0..channels.len())
            .map(|_| {
                let args = clients.event(id, "all");
                (
                    args[1]["channel"].as_str().unwrap().to_owned(),
                    args[1]["id"].clone(),
                )
            })
            .collect();
        got.sort_by(|x, y| x.0.cmp(&y.0));
        let mut expected = channels.clone();
        expected.sort();
        assert_eq!(
            got.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
            expected,
            "{id}"
        );
        assert!(
            got.iter().all(|(_, event_id)| *event_id == got[0].1),
            "one id: {got:?}"
        );
    }
    for &port in &primaries {
        // Loaded on every shard by the run that found it missing there.
        assert_eq!(
            command_at(port, &["SCRIPT", "EXISTS", PUBLISH_SCRIPT_SHA1]).unwrap(),
            "*1\n:1",
            "{port}"
        );
        // Sharded pub/sub only: no classic channel anywhere.
        assert_eq!(
            command_at(port, &["PUBSUB", "CHANNELS"]).unwrap(),
            "*0",
            "{port}"
        );
    }
    crate::edge::assert_queries_at_the_edge_match_the_origin(&scratch, &origins[0], &edge);
}
