//! Webhooks as pushwire encodes and signs them (`pushwire_shared::webhook`),
//! checked by the stock SDKs app backends validate them with: the npm `pusher`
//! package's `webhook(request).isValid()` and the PyPI `pusher` package's
//! `validate_webhook`. A batch of every event kind must pass both, with
//! Pusher's field names as the SDKs read them; one byte changed must fail both.

mod https;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushwire_shared::webhook::{CONTENT_TYPE, SignedWebhook, WebhookEvent};
use pushwire_shared::{App, ChannelName, EventName};
use pushwire_tests::Scratch;
use pushwire_tests::clients::TEST_APP;
use pushwire_tests::http::{self, Response};
use pushwire_tests::webhook_receiver::{Answers, RECEIVE_TIMEOUT, Sdk, WebhookReceiver};
use serde_json::json;

fn now_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since_epoch.as_millis()).expect("milliseconds fit in u64")
}

fn test_app() -> App {
    App {
        id: TEST_APP.id.into(),
        key: TEST_APP.key.into(),
        secret: TEST_APP.secret.into(),
        limits: Default::default(),
    }
}

/// One event of every kind, client events with and without a `user_id`, and
/// data that needs escaping.
fn every_kind() -> Vec<WebhookEvent> {
    let room = ChannelName::new("presence-room").unwrap();
    vec![
        WebhookEvent::ChannelOccupied {
            channel: room.clone(),
        },
        WebhookEvent::MemberAdded {
            channel: room.clone(),
            user_id: "u1".into(),
        },
        WebhookEvent::ClientEvent {
            channel: room.clone(),
            event: EventName::new("client-typing").unwrap(),
            data: r#"{"text":"héllo \"there\"\n"}"#.into(),
            socket_id: "123.456".parse().unwrap(),
            user_id: Some("u1".into()),
        },
        WebhookEvent::ClientEvent {
            channel: ChannelName::new("private-chat").unwrap(),
            event: EventName::new("client-ping").unwrap(),
            data: "plain text".into(),
            socket_id: "7.8".parse().unwrap(),
            user_id: None,
        },
        WebhookEvent::MemberRemoved {
            channel: room.clone(),
            user_id: "u1".into(),
        },
        WebhookEvent::ChannelVacated { channel: room },
        WebhookEvent::CacheMiss {
            channel: ChannelName::new("cache-prices").unwrap(),
        },
    ]
}

/// POSTs `body` with `hook`'s headers, and no others that could change what
/// the receiver decides.
fn post(receiver: &WebhookReceiver, hook: &SignedWebhook, body: &[u8]) -> Response {
    post_with(receiver, &hook.headers(), body)
}

fn post_with(receiver: &WebhookReceiver, headers: &[(&str, &str)], body: &[u8]) -> Response {
    http::request_exact(receiver.addr(), "POST", "/webhooks", body, headers)
}

/// `body` with one byte changed inside a string, so it is still JSON and only
/// the signature can tell.
fn one_byte_changed(body: &str) -> Vec<u8> {
    let mut bytes = body.as_bytes().to_vec();
    let at = body
        .find("presence-room")
        .expect("a presence channel in the body")
        + 9;
    bytes[at] ^= 1;
    assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok());
    bytes
}

#[test]
fn the_npm_pusher_sdk_accepts_pushwire_webhooks_and_refuses_a_changed_byte() {
    stock_sdk_validates(Sdk::Node);
}

#[test]
fn the_pypi_pusher_sdk_accepts_pushwire_webhooks_and_refuses_a_changed_byte() {
    stock_sdk_validates(Sdk::Python);
}

fn stock_sdk_validates(sdk: Sdk) {
    let scratch = Scratch::new(&format!("webhooks-{sdk:?}"));
    // The first answer fails, as a receiver that is down would: a retry of
    // the same batch, stamped and signed anew, must pass as well.
    let mut receiver = WebhookReceiver::start(&scratch, sdk, TEST_APP, Answers::fail_first(1, 503));
    let app = test_app();
    let events = every_kind();
    let first = SignedWebhook::new(&app, now_ms(), &events);
    assert_eq!(post(&receiver, &first, first.body().as_bytes()).status, 503);
    let retry = SignedWebhook::new(&app, now_ms() + 1, &events);
    assert_eq!(post(&receiver, &retry, retry.body().as_bytes()).status, 200);
    post(&receiver, &retry, &one_byte_changed(retry.body()));

    // Another key than the app's, with a body signed by the right secret.
    let [content_type, _, signature] = retry.headers();
    let wrong_key = [content_type, ("X-Pusher-Key", "other-key"), signature];
    post_with(&receiver, &wrong_key, retry.body().as_bytes());

    let received = receiver.received(4);
    let validity: Vec<bool> = received.iter().map(|r| r.valid).collect();
    assert_eq!(
        validity,
        [true, true, false, false],
        "{sdk:?}: {received:#?}"
    );
    assert_eq!(received[0].body, first.body());
    assert_eq!(received[1].body, retry.body());
    let expected = serde_json::to_value(&events).unwrap();
    for valid in &received[..2] {
        assert_eq!(valid.events.as_ref(), Some(&expected), "{sdk:?}");
    }
    assert_eq!(expected[2]["user_id"], "u1");
    assert!(expected[3].get("user_id").is_none());
    assert_eq!(
        expected[1],
        json!({"name": "member_added", "channel": "presence-room", "user_id": "u1"})
    );
}

/// Where the two SDKs differ, and why pushwire sends what it sends: the npm
/// SDK reads a body only under exactly `Content-Type: application/json`, and
/// the PyPI SDK refuses a `time_ms` more than 300 s from its clock, so a
/// retried batch is stamped at each attempt.
#[test]
fn what_each_sdk_refuses_beyond_the_signature() {
    let scratch = Scratch::new("webhooks-sdk-differences");
    let app = test_app();
    let events = every_kind();
    for (sdk, charset_ok, stale_ok) in [(Sdk::Node, false, true), (Sdk::Python, true, false)] {
        let mut receiver = WebhookReceiver::start(&scratch, sdk, TEST_APP, Answers::OK);
        let hook = SignedWebhook::new(&app, now_ms(), &events);
        let [_, key, signature] = hook.headers();
        let charset = ("Content-Type", "application/json; charset=utf-8");
        post_with(
            &receiver,
            &[charset, key, signature],
            hook.body().as_bytes(),
        );

        let stale = SignedWebhook::new(&app, now_ms() - 301_000, &events);
        post(&receiver, &stale, stale.body().as_bytes());

        let validity: Vec<bool> = receiver.received(2).iter().map(|r| r.valid).collect();
        assert_eq!(validity, [charset_ok, stale_ok], "{sdk:?}");
    }
    assert_eq!(CONTENT_TYPE, "application/json");
}

/// The events of every request answered `200`, in order, as the SDK read
/// them; every such request must have passed the SDK's check.
pub(crate) fn accepted_events(
    receiver: &mut WebhookReceiver,
    requests: usize,
) -> Vec<serde_json::Value> {
    receiver
        .received(requests)
        .iter()
        .filter(|request| request.status == 200)
        .flat_map(|request| {
            assert!(request.valid, "the SDK refused {}", request.body);
            request
                .events
                .clone()
                .unwrap_or_default()
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// The events of every request answered `200`, in order, as
/// `(name, channel, user_id)`.
pub(crate) fn delivered(
    receiver: &mut WebhookReceiver,
    requests: usize,
) -> Vec<(String, String, String)> {
    accepted_events(receiver, requests)
        .into_iter()
        .map(|event| {
            let field = |name: &str| event[name].as_str().unwrap_or_default().to_owned();
            (field("name"), field("channel"), field("user_id"))
        })
        .collect()
}

/// Waits until the `200`-answered requests of `receiver` hold `count`
/// events, and returns them.
pub(crate) fn wait_for_events(
    receiver: &mut WebhookReceiver,
    count: usize,
) -> Vec<(String, String, String)> {
    wait_for_events_within(receiver, count, RECEIVE_TIMEOUT)
}

/// [`wait_for_events`], each request awaited up to `timeout`.
pub(crate) fn wait_for_events_within(
    receiver: &mut WebhookReceiver,
    count: usize,
    timeout: Duration,
) -> Vec<(String, String, String)> {
    let mut requests = 1;
    loop {
        receiver.received_within(requests, timeout);
        let events = delivered(receiver, requests);
        if events.len() >= count {
            return events;
        }
        requests = receiver.received(requests).len() + 1;
    }
}

pub(crate) fn event(name: &str, channel: &str, user: &str) -> (String, String, String) {
    (name.into(), channel.into(), user.into())
}

/// The embedded broker's master sees every worker's sockets, so it reports
/// each channel's first subscriber and last leaver, and each member's first
/// socket and last, once, in order, whichever worker they are on, and also
/// when a worker dies. A receiver answering `500` gets the batch again.
#[test]
fn the_embedded_broker_reports_channels_and_members_once_in_order() {
    use pushwire_tests::origin::{OriginOptions, test_workers};
    use pushwire_tests::process::{children_of, signal_pid};
    use pushwire_tests::{Clients, Origin};

    use super::webhooks_redis::join;

    let scratch = Scratch::new("webhooks-embedded");
    let mut every =
        WebhookReceiver::start(&scratch, Sdk::Node, TEST_APP, Answers::fail_first(1, 500));
    let mut members = WebhookReceiver::start(&scratch, Sdk::Python, TEST_APP, Answers::OK);
    let config = scratch.file("webhooks.json");
    let endpoints = json!({"webhooks": {TEST_APP.id: [
        {"url": every.url("/all"),
         "events": ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event"]},
        {"url": members.url("/members"), "events": ["member_added", "member_removed"],
         "channel_prefix": "presence-"},
    ]}});
    std::fs::write(&config, endpoints.to_string()).expect("write the config");
    let mut options = OriginOptions::embedded();
    options.args = vec!["--config".into(), config.to_string_lossy().into_owned()];
    let origin = Origin::start(&scratch, "origin", options);

    let mut clients = Clients::start(&scratch, "clients");
    let a = clients.connect("a", &origin.url(), json!({}));
    clients.subscribe("a", "news");
    // Two sockets of one user, on whichever workers they land.
    let b = clients.connect("b", &origin.url(), json!({"transports": ["websocket"]}));
    let c = clients.connect("c", &origin.url(), json!({}));
    join(&mut clients, "b", &b, "presence-room", "u1");
    join(&mut clients, "c", &c, "presence-room", "u1");
    let ack = clients.emit(
        "b",
        "client-typing",
        json!([{"channel": "presence-room", "data": {"x": 1}}]),
    );
    assert_eq!(ack, json!({"ok": true}));
    assert_eq!(clients.event("c", "client-typing")[0], json!({"x": 1}));
    clients.unsubscribe("b", "presence-room");
    clients.unsubscribe("c", "presence-room");
    clients.unsubscribe("a", "news");
    let _ = a;

    let expected = [
        event("channel_occupied", "news", ""),
        event("channel_occupied", "presence-room", ""),
        event("member_added", "presence-room", "u1"),
        event("client_event", "presence-room", "u1"),
        event("member_removed", "presence-room", "u1"),
        event("channel_vacated", "presence-room", ""),
        event("channel_vacated", "news", ""),
    ];
    assert_eq!(wait_for_events(&mut every, expected.len()), expected);
    let client_event = accepted_events(&mut every, 1)
        .into_iter()
        .find(|event| event["name"] == "client_event")
        .expect("the client event");
    assert_eq!(
        (
            &client_event["event"],
            &client_event["data"],
            &client_event["socket_id"]
        ),
        (&json!("client-typing"), &json!(r#"{"x":1}"#), &json!(b)),
        "{client_event}"
    );
    assert_eq!(
        every.received(1)[0].status,
        500,
        "the first request was refused and sent again"
    );
    assert_eq!(
        wait_for_events(&mut members, 2),
        [
            event("member_added", "presence-room", "u1"),
            event("member_removed", "presence-room", "u1"),
        ]
    );

    // A worker dies holding a member: removed and vacated once, by the master.
    let d = clients.connect("d", &origin.url(), json!({"reconnection": false}));
    join(&mut clients, "d", &d, "presence-gone", "u9");
    let workers = children_of(origin.pid());
    assert_eq!(workers.len(), test_workers(), "{workers:?}");
    for worker in workers {
        signal_pid(worker, "KILL");
    }
    let mut all = expected.to_vec();
    all.extend([
        event("channel_occupied", "presence-gone", ""),
        event("member_added", "presence-gone", "u9"),
        event("member_removed", "presence-gone", "u9"),
        event("channel_vacated", "presence-gone", ""),
    ]);
    assert_eq!(wait_for_events(&mut every, all.len()), all);
}

/// With a grace period a channel that empties and fills again within it is
/// reported as nothing; one that stays empty is vacated once the period ends.
/// The embedded broker's master holds the vacancy in memory; with Redis the
/// sender holds it in the channel's outbox.
#[test]
fn a_channel_refilled_within_the_grace_period_is_not_reported_vacated() {
    pushwire_tests::each_fanout("webhooks-grace", refilled_within_the_grace_period);
}

fn refilled_within_the_grace_period(deployment: &pushwire_tests::Deployment) {
    use pushwire_tests::{Clients, Origin};

    let scratch = &deployment.scratch;
    let mut receiver = WebhookReceiver::start(scratch, Sdk::Node, TEST_APP, Answers::OK);
    let mut options = deployment.options();
    options.args = vec![
        "--webhook-url".into(),
        receiver.url("/all"),
        "--webhook-grace-ms".into(),
        "1500".into(),
    ];
    let origin = Origin::start(scratch, "origin", options);
    let mut clients = Clients::start(scratch, "clients");
    clients.connect("a", &origin.url(), json!({}));
    clients.subscribe("a", "blink");
    // Emptied and filled again within the grace period: nothing to report.
    clients.unsubscribe("a", "blink");
    clients.subscribe("a", "blink");
    // Emptied for good: vacated once the period ends.
    clients.unsubscribe("a", "blink");
    let vacated = [
        event("channel_occupied", "blink", ""),
        event("channel_vacated", "blink", ""),
    ];
    assert_eq!(wait_for_events(&mut receiver, 2), vacated);
    // Nothing else came before or in between: the next event is the next one.
    clients.subscribe("a", "after");
    let mut all = vacated.to_vec();
    all.push(event("channel_occupied", "after", ""));
    assert_eq!(wait_for_events(&mut receiver, 3), all);
}
