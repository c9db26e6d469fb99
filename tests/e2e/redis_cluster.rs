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

#[test]
fn a_killed_primary_loses_nothing_clients_are_not_told_of() {
    let scratch = Scratch::new("cluster-primary-killed");
    let mut cluster = RedisCluster::start(&scratch);
    let channels: Vec<String> = (0..50).map(|k| format!("c{k}")).collect();
    let owners: BTreeSet<u16> = channels
        .iter()
        .map(|c| cluster.primary_for_slot(crate::fault_runs::slot_of(c)))
        .collect();
    assert_eq!(owners.len(), 3, "the channels span every shard: {owners:?}");
    let victim = cluster.primary_for_slot(crate::fault_runs::slot_of("c0"));
    let outcome = crate::fault_runs::run(&scratch, &mut cluster, channels, true, |cluster| {
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
    let mut channels = crate::fault_runs::channels_where("m", 25, |slot| moving.contains(&slot));
    channels.extend(crate::fault_runs::channels_where("s", 25, |slot| {
        !moving.contains(&slot)
    }));
    let outcome =
        crate::fault_runs::run(&scratch, &mut cluster, channels.clone(), false, |cluster| {
            cluster.reshard(from, to, 100);
        });
    eprintln!("resharded: {outcome:?}");
    assert_eq!(outcome.told_lost, 0, "nothing was lost: {outcome:?}");
    for channel in &channels[..25] {
        assert_eq!(
            cluster.primary_for_slot(crate::fault_runs::slot_of(channel)),
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
            crate::fault_runs::channels_where(&format!("e{port}-"), 1, |slot| {
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
