//! Cache channels: a new subscriber gets the channel's last event at once,
//! or a cache miss — through pusher-js and through Socket.IO alike.

use pushwire_tests::clients::TEST_APP;
use pushwire_tests::webhook_receiver::{Answers, Sdk, WebhookReceiver};
use pushwire_tests::{Clients, Deployment, Origin, each_fanout};

use crate::webhooks::{event, wait_for_events};
use serde_json::{Value, json};

fn succeeded(outcome: &Value) {
    assert_eq!(
        outcome["event"], "pusher:subscription_succeeded",
        "{outcome}"
    );
}

/// The frames client `id` got after `channel`'s subscription_succeeded, up to
/// and including the first one matching `last`.
fn frames_after_subscribe(
    clients: &mut Clients,
    id: &str,
    channel: &str,
    last: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    clients.pusher_frame(id, "subscription_succeeded", |f| {
        f["event"] == "pusher_internal:subscription_succeeded" && f["channel"] == channel
    });
    let mut seen = Vec::new();
    loop {
        let frame =
            clients.pusher_frame(id, "a frame after subscribing", |f| f["channel"] == channel);
        let done = last(&frame);
        seen.push(frame);
        if done {
            return seen;
        }
    }
}

#[test]
fn cache_channels_send_the_last_event_or_a_miss() {
    each_fanout("pusher-cache", cache_channels);
}

fn cache_channels(deployment: &Deployment) {
    // Every miss is also reported to the app's backend (Pusher's `cache_miss`
    // webhook), through a receiver validating with the PyPI SDK.
    let scratch = &deployment.scratch;
    let mut misses = WebhookReceiver::start(scratch, Sdk::Python, TEST_APP, Answers::OK);
    let config = scratch.file("webhooks.json");
    let endpoints = json!({"webhooks": {TEST_APP.id: [
        {"url": misses.url("/misses"), "events": ["cache_miss"]},
    ]}});
    std::fs::write(&config, endpoints.to_string()).expect("write the config");
    let mut options = deployment.options();
    options.args = vec!["--config".into(), config.to_string_lossy().into_owned()];
    let origin = Origin::start(scratch, "origin", options);
    let mut clients = Clients::start(scratch, "clients");

    // Nothing published yet: a miss, for pusher-js and for Socket.IO.
    clients.pusher_connect("p", origin.addr, TEST_APP, None);
    succeeded(&clients.pusher_subscribe("p", "cache-prices"));
    let miss = clients.pusher_event("p", "cache-prices", "pusher:cache_miss");
    assert_eq!(miss["data"], Value::Null, "{miss}");
    clients.connect("s", &origin.url(), json!({}));
    let ack = clients.emit("s", "subscribe", json!([{"channel": "cache-prices"}]));
    assert_eq!(ack, json!({"ok": true, "cache_miss": true}));

    for v in [1, 2] {
        clients.trigger_ok(
            origin.addr,
            TEST_APP,
            &["cache-prices"],
            "price",
            json!({"v": v}),
        );
        assert_eq!(
            clients.pusher_event("p", "cache-prices", "price")["data"]["v"],
            v
        );
        assert_eq!(clients.event("s", "price")[0]["v"], v);
    }

    // A new pusher-js subscriber gets the last event right after
    // subscription_succeeded, once, then live events.
    clients.pusher_connect("q", origin.addr, TEST_APP, None);
    succeeded(&clients.pusher_subscribe("q", "cache-prices"));
    let cached = clients.pusher_event("q", "cache-prices", "price");
    assert_eq!(cached["data"], json!({"v": 2}), "{cached}");
    clients.trigger_ok(
        origin.addr,
        TEST_APP,
        &["cache-prices"],
        "after",
        json!("x"),
    );
    let frames =
        frames_after_subscribe(&mut clients, "q", "cache-prices", |f| f["event"] == "after");
    let events: Vec<&Value> = frames.iter().map(|f| &f["event"]).collect();
    assert_eq!(events, ["price", "after"], "{frames:#?}");
    clients.pusher_event("q", "cache-prices", "after");

    // A new Socket.IO subscriber gets it too, before its ack, with its id.
    clients.connect("s2", &origin.url(), json!({}));
    let ack = clients.emit("s2", "subscribe", json!([{"channel": "cache-prices"}]));
    assert_eq!(ack, json!({"ok": true}));
    let events = clients.events_through("s2", "after");
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["after"],
        "the last event is now `after`: {events:?}"
    );

    // private-cache: authorized like any private channel.
    succeeded(&clients.pusher_subscribe("p", "private-cache-room"));
    clients.pusher_event("p", "private-cache-room", "pusher:cache_miss");
    clients.trigger_ok(
        origin.addr,
        TEST_APP,
        &["private-cache-room"],
        "secret",
        json!("s1"),
    );
    clients.pusher_event("p", "private-cache-room", "secret");
    succeeded(&clients.pusher_subscribe("q", "private-cache-room"));
    let cached = clients.pusher_event("q", "private-cache-room", "secret");
    assert_eq!(cached["data"], "s1", "{cached}");

    // presence-cache: a member like any presence channel's, and the cache.
    let member = json!({"user_id": "m", "user_info": null});
    clients.pusher_connect("m", origin.addr, TEST_APP, Some(member));
    succeeded(&clients.pusher_subscribe("m", "presence-cache-lobby"));
    clients.pusher_event("m", "presence-cache-lobby", "pusher:cache_miss");
    clients.trigger_ok(
        origin.addr,
        TEST_APP,
        &["presence-cache-lobby"],
        "hi",
        json!("h"),
    );
    clients.pusher_event("m", "presence-cache-lobby", "hi");
    let member = json!({"user_id": "n", "user_info": null});
    clients.pusher_connect("n", origin.addr, TEST_APP, Some(member));
    succeeded(&clients.pusher_subscribe("n", "presence-cache-lobby"));
    assert_eq!(
        clients.pusher_event("n", "presence-cache-lobby", "hi")["data"],
        "h"
    );

    // One webhook event per miss, whichever protocol met it; none for hits.
    let mut reported = wait_for_events(&mut misses, 4);
    reported.sort();
    assert_eq!(
        reported,
        [
            event("cache_miss", "cache-prices", ""),
            event("cache_miss", "cache-prices", ""),
            event("cache_miss", "presence-cache-lobby", ""),
            event("cache_miss", "private-cache-room", ""),
        ]
    );

    // Nothing was delivered twice.
    clients.trigger_ok(
        origin.addr,
        TEST_APP,
        &["cache-prices", "private-cache-room"],
        "end",
        json!(0),
    );
    clients.pusher_event("q", "cache-prices", "end");
    clients.pusher_event("q", "private-cache-room", "end");
    clients.event("s2", "end");
    let twice: Vec<&Value> = clients
        .pending_reports()
        .iter()
        .filter(|r| {
            (r["type"] == "pusher_event" || r["type"] == "event")
                && ["price", "after", "secret"].contains(&r["event"].as_str().unwrap_or(""))
                && (r["id"] == "q" || r["id"] == "s2")
        })
        .collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
}
