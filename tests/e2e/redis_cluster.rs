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
