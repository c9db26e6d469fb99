//! Webhooks from origins sharing a Redis (and a Redis Cluster): each
//! transition reported once whichever origin's socket makes it, in order per
//! channel; a dead origin's channels and members vacated once by the others;
//! a batch a killed worker was sending sent by another; a receiver that never
//! answers holding up nobody else.

use std::net::TcpListener;
use std::time::Duration;

use pushwire_tests::clients::TEST_APP;
use pushwire_tests::http;
use pushwire_tests::origin::OriginOptions;
use pushwire_tests::process::{children_of, signal_pid};
use pushwire_tests::webhook_receiver::{Answers, Sdk, WebhookReceiver};
use pushwire_tests::{Clients, Deployment, Fanout, Origin, each_shared_broker};
use serde_json::json;

use super::webhooks::{accepted_events, event, wait_for_events, wait_for_events_within};

/// Long enough for a dead node to be found (10 s of silence, checked at
/// each 2 s heartbeat) or a dead sender's lease (15 s) to run out.
const AFTER_A_DEATH: Duration = Duration::from_secs(30);

/// `events` of `channel`, in order.
fn of(channel: &str, events: &[(String, String, String)]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|(_, c, _)| c == channel)
        .cloned()
        .collect()
}

/// Origin options of `deployment` with the webhook config file `config`.
fn with_config(deployment: &Deployment, config: serde_json::Value) -> OriginOptions {
    let path = deployment.scratch.file("webhooks.json");
    std::fs::write(&path, config.to_string()).expect("write the config");
    let mut options = deployment.options();
    options.args = vec!["--config".into(), path.to_string_lossy().into_owned()];
    options
}

/// Joins `socket_id` (client `id`) to `channel` as `user`.
pub(crate) fn join(clients: &mut Clients, id: &str, socket_id: &str, channel: &str, user: &str) {
    let data = json!({"user_id": user});
    let auth = clients.authorize(TEST_APP, socket_id, channel, Some(data));
    let ack = clients.emit(
        id,
        "subscribe",
        json!([{"channel": channel, "auth": auth["auth"], "channel_data": auth["channel_data"]}]),
    );
    assert_eq!(ack["ok"], true, "{ack}");
}

/// SIGKILLs `origin`'s workers and then its master.
fn kill(origin: &Origin) {
    for worker in children_of(origin.pid()) {
        signal_pid(worker, "KILL");
    }
    signal_pid(origin.pid(), "KILL");
}

#[test]
fn origins_sharing_redis_report_each_transition_once_in_order() {
    each_shared_broker("webhooks-shared", shared_transitions);
}

fn shared_transitions(deployment: &Deployment) {
    let scratch = &deployment.scratch;
    let mut every =
        WebhookReceiver::start(scratch, Sdk::Node, TEST_APP, Answers::fail_first(1, 500));
    let mut members = WebhookReceiver::start(scratch, Sdk::Python, TEST_APP, Answers::OK);
    // Accepts connections (the kernel's backlog does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let options = with_config(
        deployment,
        json!({"webhooks": {TEST_APP.id: [
            {"url": every.url("/all"),
             "events": ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event"]},
            {"url": members.url("/members"), "events": ["member_added", "member_removed"],
             "channel_prefix": "presence-"},
            {"url": format!("http://{}/never", silent.local_addr().expect("addr")),
             "events": ["channel_occupied", "member_added", "client_event"]},
        ]}}),
    );
    let one = Origin::start(scratch, "one", options.clone());
    let two = Origin::start(scratch, "two", options);

    let mut clients = Clients::start(scratch, "clients");
    let no_retry = json!({"reconnection": false});
    clients.connect("a", &one.url(), json!({}));
    clients.connect("b", &two.url(), json!({}));
    // Two subscribers on two origins: one channel_occupied.
    clients.subscribe("a", "news");
    clients.subscribe("b", "news");
    // One user with a socket on each origin: one member_added.
    let c = clients.connect("c", &one.url(), json!({}));
    let d = clients.connect("d", &two.url(), json!({}));
    join(&mut clients, "c", &c, "presence-room", "u1");
    join(&mut clients, "d", &d, "presence-room", "u1");
    let ack = clients.emit(
        "d",
        "client-typing",
        json!([{"channel": "presence-room", "data": "hi"}]),
    );
    assert_eq!(ack, json!({"ok": true}));
    clients.unsubscribe("c", "presence-room");
    clients.unsubscribe("d", "presence-room");
    clients.unsubscribe("a", "news");
    clients.unsubscribe("b", "news");

    let news = [
        event("channel_occupied", "news", ""),
        event("channel_vacated", "news", ""),
    ];
    let room = [
        event("channel_occupied", "presence-room", ""),
        event("member_added", "presence-room", "u1"),
        event("client_event", "presence-room", "u1"),
        event("member_removed", "presence-room", "u1"),
        event("channel_vacated", "presence-room", ""),
    ];
    let got = wait_for_events(&mut every, news.len() + room.len());
    assert_eq!(got.len(), news.len() + room.len(), "{got:#?}");
    assert_eq!(of("news", &got), news);
    assert_eq!(of("presence-room", &got), room);
    assert_eq!(
        every.received(1)[0].status,
        500,
        "the first request was refused and sent again"
    );
    let typed = accepted_events(&mut every, 1)
        .into_iter()
        .find(|e| e["name"] == "client_event")
        .expect("the client event");
    assert_eq!(
        (&typed["data"], &typed["socket_id"]),
        (&json!("hi"), &json!(d))
    );
    assert_eq!(
        wait_for_events(&mut members, 2),
        [
            event("member_added", "presence-room", "u1"),
            event("member_removed", "presence-room", "u1"),
        ]
    );

    // An origin dies holding a member and a channel: the other removes and
    // vacates them, once.
    let e = clients.connect("e", &two.url(), no_retry.clone());
    join(&mut clients, "e", &e, "presence-gone", "u9");
    clients.connect("f", &one.url(), no_retry);
    clients.subscribe("f", "kept");
    // Killed once every batch so far was answered: a batch still in flight
    // would be sent again by another worker (at least once), which is what
    // the killed-sender test below is about, not this one.
    let so_far = news.len() + room.len() + 3;
    wait_for_events(&mut every, so_far);
    pushwire_tests::wait::until("every webhook answered", Duration::from_secs(10), || {
        (delivered_total(&[&one, &two]) >= so_far as u64).then_some(())
    });
    kill(&two);
    let gone = [
        event("channel_occupied", "presence-gone", ""),
        event("member_added", "presence-gone", "u9"),
        event("member_removed", "presence-gone", "u9"),
        event("channel_vacated", "presence-gone", ""),
    ];
    let all = news.len() + room.len() + gone.len() + 1;
    let got = wait_for_events_within(&mut every, all, AFTER_A_DEATH);
    assert_eq!(of("presence-gone", &got), gone, "{got:#?}");
    assert_eq!(of("kept", &got), [event("channel_occupied", "kept", "")]);
    assert_eq!(got.len(), all, "{got:#?}");
    drop(one);
}

#[test]
fn a_batch_a_killed_worker_was_sending_is_sent_by_another() {
    if pushwire_tests::origin::test_workers() < 2 {
        return;
    }
    let deployment = Deployment::start("webhooks-killed-sender", Fanout::Redis);
    let scratch = &deployment.scratch;
    // Refused three times: the batch is still being retried when its sender dies.
    let mut receiver =
        WebhookReceiver::start(scratch, Sdk::Node, TEST_APP, Answers::fail_first(3, 503));
    let options = with_config(
        &deployment,
        json!({"webhooks": {TEST_APP.id: [
            {"url": receiver.url("/all"), "events": ["channel_occupied", "channel_vacated"]},
        ]}}),
    );
    let one = Origin::start(scratch, "one", options.clone());
    let two = Origin::start(scratch, "two", options);
    let mut clients = Clients::start(scratch, "clients");
    clients.connect("a", &one.url(), json!({"reconnection": false}));
    clients.subscribe("a", "pending");
    assert_eq!(receiver.received(1)[0].status, 503);
    // Every sender dies; the masters start new workers, which find the
    // batch once its lease runs out, and the dead node's channel vacated.
    for origin in [&one, &two] {
        for worker in children_of(origin.pid()) {
            signal_pid(worker, "KILL");
        }
    }
    let got = wait_for_events_within(&mut receiver, 2, AFTER_A_DEATH);
    assert_eq!(
        got,
        [
            event("channel_occupied", "pending", ""),
            event("channel_vacated", "pending", ""),
        ]
    );
    let attempts = receiver.received(1).len();
    let duplicates = receiver
        .received(attempts)
        .iter()
        .filter(|r| r.status == 200 && r.body.contains("channel_occupied"))
        .count()
        - 1;
    eprintln!("{attempts} requests, {duplicates} duplicate deliveries of the pending batch");
    assert!(
        duplicates <= 1,
        "more duplicates than batches in flight: {duplicates}"
    );
}

/// Webhook events a receiver accepted, summed over `origins`' workers.
fn delivered_total(origins: &[&Origin]) -> u64 {
    let prefix = "pushwire_webhook_events_delivered_total{";
    origins
        .iter()
        .flat_map(|origin| {
            let metrics = http::request(origin.metrics_addr(), "GET", "/metrics", b"").body;
            metrics
                .lines()
                .filter(|line| line.starts_with(prefix))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// How long the receiver stays down.
const OUTAGE: Duration = Duration::from_secs(20);

#[test]
fn a_receiver_down_for_20_s_gets_everything_afterwards_in_order() {
    if pushwire_tests::origin::test_workers() < 2 {
        return;
    }
    let deployment = Deployment::start("webhooks-outage", Fanout::Redis);
    let scratch = &deployment.scratch;
    let mut receiver = WebhookReceiver::start(scratch, Sdk::Node, TEST_APP, Answers::OK);
    let addr = receiver.addr();
    let options = with_config(
        &deployment,
        json!({"webhooks": {TEST_APP.id: [{"url": receiver.url("/all"),
            "events": ["channel_occupied", "channel_vacated", "member_added", "member_removed"]}]}}),
    );
    let one = Origin::start(scratch, "one", options.clone());
    let two = Origin::start(scratch, "two", options);
    let mut clients = Clients::start(scratch, "clients");
    clients.connect("a", &one.url(), json!({}));
    clients.subscribe("a", "before");
    assert_eq!(
        wait_for_events(&mut receiver, 1),
        [event("channel_occupied", "before", "")]
    );

    // Once its sender has the answer (else it sends the event again: at
    // least once), the receiver goes away (its port refuses connections)
    // while channels fill and empty on both origins.
    pushwire_tests::wait::until(
        "the first webhook's answer",
        Duration::from_secs(10),
        || (delivered_total(&[&one, &two]) >= 1).then_some(()),
    );
    drop(receiver);
    let b = clients.connect("b", &two.url(), json!({}));
    let mut expected = Vec::new();
    for round in 0..5 {
        let channel = format!("presence-down-{round}");
        join(&mut clients, "b", &b, &channel, "u1");
        clients.unsubscribe("b", &channel);
        expected.extend([
            event("channel_occupied", &channel, ""),
            event("member_added", &channel, "u1"),
            event("member_removed", &channel, "u1"),
            event("channel_vacated", &channel, ""),
        ]);
    }
    clients.unsubscribe("a", "before");
    expected.push(event("channel_vacated", "before", ""));
    // The outage itself, not a wait for something to happen.
    std::thread::sleep(OUTAGE);

    let mut back = WebhookReceiver::start_on(scratch, TEST_APP, addr);
    // Retries back off up to 32 s by now (16 s doubled, jittered).
    let got = wait_for_events_within(&mut back, expected.len(), Duration::from_secs(60));
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for round in 0..5 {
        let channel = format!("presence-down-{round}");
        assert_eq!(of(&channel, &got), of(&channel, &expected), "{got:#?}");
    }
    assert_eq!(of("before", &got), [event("channel_vacated", "before", "")]);
}
