//! What a trigger's answer says about its event, with many triggers in flight
//! on one worker from many threads (and, while Redis is slow, sockets to
//! deliver them to) while Redis is slow, silent or refusing:
//! `200` means the event is in each channel's history exactly once, `503`
//! that it is in none, and `504` (outcome unknown) comes only when Redis
//! really did not answer in time.
//!
//! Redis is held with `CLIENT PAUSE <ms> WRITE`: it reads the publish
//! scripts and runs them when the pause ends, as a Redis too busy to answer
//! would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use pushwire_tests::clients::TEST_APP;
use pushwire_tests::http::{self, KeepAlive};
use pushwire_tests::origin::{OriginOptions, test_app};
use pushwire_tests::redis::command_at;
use pushwire_tests::redis_cluster::RedisCluster;
use pushwire_tests::{Clients, Origin, RedisServer, Scratch, wait};
use serde_json::{Value, json};

/// Triggers in flight at once, each from its own connection and thread.
const THREADS: usize = 8;
/// Triggers each thread sends, one after the other.
const PER_THREAD: usize = 6;
/// Sockets subscribed to the shared channel while Redis is slow.
const SOCKETS: usize = 10;
/// Longer than the origin's wait for a publish's reply (10 s).
const PATIENCE: Duration = Duration::from_secs(30);

/// One trigger and its answer.
#[derive(Debug)]
struct Answer {
    channels: Vec<String>,
    data: String,
    status: u16,
    body: String,
    took: Duration,
}

/// An origin with one worker (every trigger goes through it) on `redis`.
fn origin(scratch: &Scratch, redis: &RedisServer) -> Origin {
    let mut options = OriginOptions::redis(&redis.url());
    options.workers = 1;
    let origin = Origin::start(scratch, "origin", options);
    origin.wait_every_worker("connected to Redis", 1, |h| {
        h["broker"]["connected"] == true
    });
    // Redis learns the publish script now: a paused Redis would hold its
    // `SCRIPT LOAD`, and the publishes would wait for it unsent.
    let body = json!({"name": "n", "channel": "warm-up", "data": "0"}).to_string();
    let response = http::signed(
        origin.addr,
        "POST",
        "/apps/1000001/events",
        body.as_bytes(),
        &test_app(),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    origin
}

/// Sends `per_thread` triggers from each of [`THREADS`] threads at once:
/// thread `t` on channel `{tag}-{t}`, every third trigger also on
/// `{tag}-shared` (a multi-channel trigger).
fn fire(addr: SocketAddr, tag: &str, per_thread: usize) -> Vec<Answer> {
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let tag = tag.to_owned();
            thread::spawn(move || {
                let app = test_app();
                let mut conn = KeepAlive::connect(addr).with_read_timeout(PATIENCE);
                (0..per_thread)
                    .map(|i| {
                        let mut channels = vec![format!("{tag}-{t}")];
                        if i % 3 == 0 {
                            channels.push(format!("{tag}-shared"));
                        }
                        let data = format!("{tag}/{t}/{i}");
                        let body = json!({"name": "n", "channels": channels, "data": data});
                        let started = Instant::now();
                        let response = conn.signed_post(
                            "/apps/1000001/events",
                            body.to_string().as_bytes(),
                            &app,
                        );
                        Answer {
                            channels,
                            data,
                            status: response.status,
                            body: response.body,
                            took: started.elapsed(),
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("a trigger thread"))
        .collect()
}

/// How many times each `data` is in `channel`'s history.
fn history(addr: SocketAddr, channel: &str) -> HashMap<String, usize> {
    let path = format!("/apps/1000001/channels/{channel}/history");
    let response = http::signed_with(addr, "GET", &path, &[], b"", &test_app());
    assert_eq!(response.status, 200, "{channel}: {}", response.body);
    let mut counts = HashMap::new();
    for event in response.json()["events"].as_array().expect("events") {
        let data = event["data"].as_str().expect("string data").to_owned();
        *counts.entry(data).or_default() += 1;
    }
    counts
}

/// How many times each answer's event is in each of its channels' histories.
fn copies(addr: SocketAddr, answers: &[Answer]) -> Vec<Vec<usize>> {
    let mut histories: HashMap<String, HashMap<String, usize>> = HashMap::new();
    answers
        .iter()
        .map(|answer| {
            answer
                .channels
                .iter()
                .map(|channel| {
                    let history = histories
                        .entry(channel.clone())
                        .or_insert_with(|| history(addr, channel));
                    history.get(&answer.data).copied().unwrap_or(0)
                })
                .collect()
        })
        .collect()
}

/// Every `200` is in each of its channels exactly once, every `503` in none.
fn check_200_once_503_never(addr: SocketAddr, answers: &[Answer]) {
    for (answer, copies) in answers.iter().zip(copies(addr, answers)) {
        match answer.status {
            200 => assert!(copies.iter().all(|&n| n == 1), "{answer:?}: {copies:?}"),
            503 => assert!(copies.iter().all(|&n| n == 0), "{answer:?}: {copies:?}"),
            _ => {}
        }
    }
}

#[test]
fn a_slow_redis_ends_in_200s_each_published_once() {
    let scratch = Scratch::new("publish-slow");
    let redis = RedisServer::start(&scratch);
    let origin = origin(&scratch, &redis);
    // Sockets on the shared channel: the worker delivers every event to
    // each while it waits for the other publishes' replies.
    let mut clients = Clients::start(&scratch, "clients");
    let sockets: Vec<String> = (0..SOCKETS).map(|i| format!("s{i}")).collect();
    for id in &sockets {
        clients.connect(id, &origin.url(), json!({}));
        clients.subscribe(id, "slow-shared");
    }
    // Shorter than the origin's wait: slow, not lost.
    assert_eq!(
        redis
            .command(&["CLIENT", "PAUSE", "3000", "WRITE"])
            .unwrap(),
        "+OK"
    );
    let answers = fire(origin.addr, "slow", PER_THREAD);
    assert!(
        answers.iter().any(|a| a.took >= Duration::from_secs(1)),
        "no trigger waited for the paused Redis: {answers:?}"
    );
    for answer in &answers {
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    check_200_once_503_never(origin.addr, &answers);

    // Each socket got each event once: no trigger was published twice.
    clients.trigger_ok(origin.addr, TEST_APP, &["slow-shared"], "end", json!(""));
    let mut shared: Vec<String> = answers
        .iter()
        .filter(|a| a.channels.iter().any(|c| c == "slow-shared"))
        .map(|a| a.data.clone())
        .collect();
    shared.sort();
    for id in &sockets {
        let mut got: Vec<String> = clients
            .events_through(id, "end")
            .into_iter()
            .filter(|(name, _)| name == "n")
            .map(|(_, args)| args[0].as_str().expect("string data").to_owned())
            .collect();
        got.sort();
        assert_eq!(got, shared, "{id}");
    }
}

#[test]
fn a_reply_that_does_not_come_is_a_504_and_redis_may_still_publish() {
    let scratch = Scratch::new("publish-unknown");
    let redis = RedisServer::start(&scratch);
    let origin = origin(&scratch, &redis);
    // Longer than the origin's wait; lifted once every trigger was answered.
    assert_eq!(
        redis
            .command(&["CLIENT", "PAUSE", "60000", "WRITE"])
            .unwrap(),
        "+OK"
    );
    let answers = fire(origin.addr, "lost", 1);
    assert_eq!(redis.command(&["CLIENT", "UNPAUSE"]).unwrap(), "+OK");
    for answer in &answers {
        assert_eq!(answer.status, 504, "{answer:?}");
        let error = serde_json::from_str::<Value>(&answer.body).expect("a JSON body")["error"]
            .as_str()
            .expect("an error message")
            .to_owned();
        assert!(
            error.starts_with("the publish's outcome is unknown: ")
                && error.contains("no reply within 10s")
                && error.ends_with("read each channel's history (GET /apps/<app_id>/channels/<channel>/history at an origin) before retrying"),
            "{error}"
        );
    }
    // Redis read the scripts before the origin stopped waiting, and runs
    // them now: a caller that had retried on a 503 would have published twice.
    let all_once = wait::until(
        "the paused publishes to run",
        Duration::from_secs(10),
        || {
            let copies = copies(origin.addr, &answers);
            copies.iter().flatten().all(|&n| n >= 1).then_some(copies)
        },
    );
    assert!(all_once.iter().flatten().all(|&n| n == 1), "{all_once:?}");
}

#[test]
fn a_refused_publish_is_a_503_and_in_no_history() {
    let scratch = Scratch::new("publish-refused");
    let redis = RedisServer::start(&scratch);
    let origin = origin(&scratch, &redis);
    // No replica: Redis refuses the script's first write (NOREPLICAS).
    let set = |n: &str| {
        redis
            .command(&["CONFIG", "SET", "min-replicas-to-write", n])
            .unwrap()
    };
    assert_eq!(set("1"), "+OK");
    let refused = fire(origin.addr, "refused", PER_THREAD);
    for answer in &refused {
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(answer.body.contains("NOREPLICAS"), "{answer:?}");
    }
    check_200_once_503_never(origin.addr, &refused);
    assert_eq!(set("0"), "+OK");
    let accepted = fire(origin.addr, "accepted", 1);
    assert!(accepted.iter().all(|a| a.status == 200), "{accepted:?}");
    check_200_once_503_never(origin.addr, &accepted);
}

/// A trigger on two channels of two Redis Cluster shards, one of which
/// refuses writes: the other channel keeps the event, and the answer says so
/// (a `504` naming both), never a `503` a caller would retry on both.
#[test]
fn a_partial_publish_on_a_cluster_names_the_channels_that_have_the_event() {
    let scratch = Scratch::new("publish-partial");
    let cluster = RedisCluster::start(&scratch);
    let (accepting, refusing) = match cluster.primaries()[..] {
        [a, b, ..] => (a, b),
        ref primaries => panic!("two primaries wanted: {primaries:?}"),
    };
    let on = |port: u16, prefix: &str| {
        crate::fault_runs::channels_where(prefix, 1, |slot| cluster.primary_for_slot(slot) == port)
            .remove(0)
    };
    let (kept, refused) = (on(accepting, "kept-"), on(refusing, "refused-"));
    let mut options = OriginOptions::redis(&cluster.seeds());
    options.workers = 1;
    let origin = Origin::start(&scratch, "origin", options);
    origin.wait_every_worker("connected to the cluster", 1, |h| {
        h["broker"]["connected"] == true
    });
    let trigger = |channels: &[&str], data: &str| {
        let body = json!({"name": "n", "channels": channels, "data": data}).to_string();
        http::signed(
            origin.addr,
            "POST",
            "/apps/1000001/events",
            body.as_bytes(),
            &test_app(),
        )
    };
    // Both shards learn the script while they accept writes.
    let warm = trigger(&[&kept, &refused], "warm");
    assert_eq!(warm.status, 200, "{}", warm.body);

    // More replicas than it has: the shard refuses the script (NOREPLICAS).
    let set =
        |n: &str| command_at(refusing, &["CONFIG", "SET", "min-replicas-to-write", n]).unwrap();
    assert_eq!(set("9"), "+OK");
    let partial = trigger(&[&kept, &refused], "partial");
    let alone = trigger(&[&refused], "alone");
    assert_eq!(set("0"), "+OK");

    assert_eq!(partial.status, 504, "{}", partial.body);
    let error = partial.json()["error"]
        .as_str()
        .expect("a message")
        .to_owned();
    assert!(
        error.starts_with(&format!(
            "the publish's outcome is unknown: published on {kept}; not published on {refused} (redis publish script: "
        )) && error.contains("NOREPLICAS"),
        "{error}"
    );
    assert_eq!(alone.status, 503, "{}", alone.body);
    assert!(alone.body.contains("NOREPLICAS"), "{}", alone.body);
    assert_eq!(history(origin.addr, &kept).get("partial"), Some(&1));
    let refused_history = history(origin.addr, &refused);
    assert_eq!(refused_history.get("partial"), None, "{refused_history:?}");
    assert_eq!(refused_history.get("alone"), None, "{refused_history:?}");
}
