//! Delivery to stock socket.io-client subscribers, triggered with the Pusher SDK.

use pushwire_shared::ChannelName;
use pushwire_shared::keys::KeySpace;
use pushwire_tests::clients::TEST_APP;
use pushwire_tests::origin::OriginOptions;
use pushwire_tests::{Clients, Deployment, Origin, RedisServer, Scratch, each_fanout};
use serde_json::{Value, json};

fn websocket_only() -> Value {
    json!({"transports": ["websocket"]})
}

#[test]
fn event_triggered_on_one_origin_reaches_subscribers_on_both() {
    let scratch = Scratch::new("two-origins");
    let redis = RedisServer::start(&scratch);
    let a = Origin::start(&scratch, "origin-a", OriginOptions::redis(&redis.url()));
    let b = Origin::start(&scratch, "origin-b", OriginOptions::redis(&redis.url()));
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("on-a", &a.url(), json!({}));
    clients.connect("on-b", &b.url(), json!({}));
    clients.connect("on-b-ws", &b.url(), websocket_only());
    for id in ["on-a", "on-b", "on-b-ws"] {
        clients.subscribe(id, "ticker-BTC");
    }

    let (status, body) = clients.trigger(
        a.addr,
        TEST_APP,
        &["ticker-BTC"],
        "price",
        json!({"p": 1}),
        json!({}),
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    let mut ids = Vec::new();
    for id in ["on-a", "on-b", "on-b-ws"] {
        let args = clients.event(id, "price");
        assert_eq!(args[0], json!({"p": 1}), "{id}");
        assert_eq!(args[1]["channel"], "ticker-BTC", "{id}");
        ids.push(args[1]["id"].as_str().expect("id is a string").to_owned());
    }
    assert!(
        ids.iter().all(|i| i == &ids[0]),
        "one id per event: {ids:?}"
    );

    // And the other way round.
    let (status, _) = clients.trigger(
        b.addr,
        TEST_APP,
        &["ticker-BTC"],
        "price",
        json!({"p": 2}),
        json!({}),
    );
    assert_eq!(status, 200);
    for id in ["on-a", "on-b", "on-b-ws"] {
        assert_eq!(clients.event(id, "price")[0], json!({"p": 2}), "{id}");
    }
}

#[test]
fn multi_channel_and_batch_triggers() {
    each_fanout("multi-batch", multi_channel_and_batch);
}

fn multi_channel_and_batch(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let mut clients = Clients::start(&deployment.scratch, "clients");
    clients.connect("both", &origin.url(), json!({}));
    clients.connect("two", &origin.url(), websocket_only());
    clients.subscribe("both", "one");
    clients.subscribe("both", "two");
    clients.subscribe("two", "two");

    // One event to two channels: one id, delivered once per channel, channel named each time.
    let (status, _) = clients.trigger(
        origin.addr,
        TEST_APP,
        &["one", "two"],
        "multi",
        json!("x"),
        json!({}),
    );
    assert_eq!(status, 200);
    let first = clients.event("both", "multi");
    let second = clients.event("both", "multi");
    let mut channels = [first[1]["channel"].clone(), second[1]["channel"].clone()];
    channels.sort_by_key(|c| c.to_string());
    assert_eq!(channels, [json!("one"), json!("two")]);
    assert_eq!(first[1]["id"], second[1]["id"]);
    let only = clients.event("two", "multi");
    assert_eq!(only[1]["channel"], "two");
    assert_eq!(only[1]["id"], first[1]["id"]);

    // A batch: each event its own id, in order.
    let (status, body) = clients.trigger_batch(
        origin.addr,
        TEST_APP,
        json!([
            {"channel": "one", "name": "b1", "data": "1"},
            {"channel": "two", "name": "b2", "data": "2"},
            {"channel": "two", "name": "b3", "data": "3"},
        ]),
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    let b1 = clients.event("both", "b1");
    let b2 = clients.event("both", "b2");
    assert_eq!(
        (b1[0].clone(), b1[1]["channel"].clone()),
        (json!(1), json!("one"))
    );
    assert_eq!(
        (b2[0].clone(), b2[1]["channel"].clone()),
        (json!(2), json!("two"))
    );
    assert_ne!(b1[1]["id"], b2[1]["id"]);
    let seen: Vec<String> = clients
        .events_through("two", "b3")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(seen, ["b2", "b3"], "per-channel order");
}

#[test]
fn trigger_socket_id_excludes_the_sender() {
    each_fanout("exclusion", exclusion);
}

fn exclusion(deployment: &Deployment) {
    // With Redis, across two origins; embedded, across the workers of one.
    let origins = deployment.origin_pair();
    let (a, b) = (origins.a(), origins.b());
    let mut clients = Clients::start(&deployment.scratch, "clients");
    let sender = clients.connect("sender", &a.url(), json!({}));
    clients.connect("peer-a", &a.url(), json!({}));
    clients.connect("peer-b", &b.url(), json!({}));
    for id in ["sender", "peer-a", "peer-b"] {
        clients.subscribe(id, "room");
    }
    let params = json!({"socket_id": sender});
    assert_eq!(
        clients
            .trigger(b.addr, TEST_APP, &["room"], "said", json!("hi"), params)
            .0,
        200
    );
    clients.trigger_ok(b.addr, TEST_APP, &["room"], "sentinel", json!(""));
    for peer in ["peer-a", "peer-b"] {
        let seen: Vec<String> = clients
            .events_through(peer, "sentinel")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(seen, ["said", "sentinel"], "{peer}");
    }
    // Same channel, same order: had "said" reached the sender, it would come before the sentinel.
    let seen: Vec<String> = clients
        .events_through("sender", "sentinel")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(seen, ["sentinel"]);
}

#[test]
fn unsubscribe_and_disconnect_stop_delivery_and_redis_subscriptions() {
    let scratch = Scratch::new("unsubscribe");
    let redis = RedisServer::start(&scratch);
    let origin = Origin::start(&scratch, "origin", OriginOptions::redis(&redis.url()));
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("leaver", &origin.url(), json!({}));
    clients.connect("stayer", &origin.url(), json!({}));
    clients.subscribe("leaver", "news");
    clients.subscribe("leaver", "other");
    clients.subscribe("stayer", "news");
    let numsub = |channel: &str| -> String {
        let key = KeySpace::DEFAULT.channel("1000001", &ChannelName::new(channel).unwrap());
        redis
            .command(&["PUBSUB", "NUMSUB", &key])
            .expect("PUBSUB NUMSUB")
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    };
    // One Redis subscription per channel per worker process holding subscribers of it.
    let workers = pushwire_tests::origin::test_workers();
    let count = |channel: &str| {
        numsub(channel)
            .trim_start_matches(':')
            .parse::<usize>()
            .expect("NUMSUB count")
    };
    assert!(
        (1..=workers.min(2)).contains(&count("news")),
        "news: {}",
        count("news")
    );

    clients.unsubscribe("leaver", "news");
    // Unsubscribing from a channel the socket is not on is fine too.
    clients.unsubscribe("leaver", "never-joined");
    // One batch, published in order: "gone" on news, then "sentinel" on other.
    let events = json!([
        {"channel": "news", "name": "gone", "data": ""},
        {"channel": "other", "name": "sentinel", "data": ""},
    ]);
    assert_eq!(clients.trigger_batch(origin.addr, TEST_APP, events).0, 200);
    clients.event("stayer", "gone");
    let seen: Vec<String> = clients
        .events_through("leaver", "sentinel")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(seen, ["sentinel"]);
    assert!(count("news") >= 1, "stayer still needs it");

    // The last local subscriber leaving (by disconnecting) drops the Redis subscription.
    clients.close("stayer");
    pushwire_tests::wait::until(
        "news to be unsubscribed in Redis",
        std::time::Duration::from_secs(10),
        || (count("news") == 0).then_some(()),
    );
    assert_eq!(count("other"), 1);
    clients.close("leaver");
    pushwire_tests::wait::until(
        "other to be unsubscribed in Redis",
        std::time::Duration::from_secs(10),
        || (count("other") == 0).then_some(()),
    );
}

#[test]
fn data_follows_the_pusher_js_json_rule() {
    each_fanout("json-rule", json_rule);
}

fn json_rule(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let mut clients = Clients::start(&deployment.scratch, "clients");
    clients.connect("c", &origin.url(), websocket_only());
    clients.subscribe("c", "data");
    let cases = [
        (json!("{\"a\":1}"), json!({"a": 1})),
        (json!("  [1, 2]\n"), json!([1, 2])),
        (json!("null"), json!(null)),
        (json!("42"), json!(42)),
        (json!("\"quoted\""), json!("quoted")),
        (json!("plain text"), json!("plain text")),
        (json!("{broken"), json!("{broken")),
        (json!(""), json!("")),
    ];
    for (i, (sent, received)) in cases.iter().enumerate() {
        let event = format!("d{i}");
        assert_eq!(
            clients
                .trigger(
                    origin.addr,
                    TEST_APP,
                    &["data"],
                    &event,
                    sent.clone(),
                    json!({})
                )
                .0,
            200
        );
        assert_eq!(&clients.event("c", &event)[0], received, "data {sent}");
    }
    // A non-string `data` (not what the SDKs send, but accepted) is delivered as that value.
    let app = pushwire_tests::origin::test_app();
    let body = json!({"name": "raw", "channel": "data", "data": {"n": [1, "2"]}}).to_string();
    let resp = pushwire_tests::http::signed(
        origin.addr,
        "POST",
        "/apps/1000001/events",
        body.as_bytes(),
        &app,
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(clients.event("c", "raw")[0], json!({"n": [1, "2"]}));
}

#[test]
fn embedded_broker_serves_without_redis() {
    let scratch = Scratch::new("embedded");
    let origin = Origin::start(&scratch, "origin", OriginOptions::embedded());
    assert_eq!(origin.health()["broker"]["kind"], "embedded");
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("polling", &origin.url(), json!({}));
    clients.connect("ws", &origin.url(), websocket_only());
    clients.subscribe("polling", "local");
    clients.subscribe("ws", "local");
    clients.trigger_ok(
        origin.addr,
        TEST_APP,
        &["local"],
        "hello",
        json!("{\"n\":1}"),
    );
    assert_eq!(clients.event("polling", "hello")[0], json!({"n": 1}));
    assert_eq!(clients.event("ws", "hello")[0], json!({"n": 1}));
}
