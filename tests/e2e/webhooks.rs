//! Webhooks as pushwire encodes and signs them (`pushwire_shared::webhook`),
//! checked by the stock SDKs app backends validate them with: the npm `pusher`
//! package's `webhook(request).isValid()` and the PyPI `pusher` package's
//! `validate_webhook`. A batch of every event kind must pass both, with
//! Pusher's field names as the SDKs read them; one byte changed must fail both.

use std::time::{SystemTime, UNIX_EPOCH};

use pushwire_shared::webhook::{CONTENT_TYPE, SignedWebhook, WebhookEvent};
use pushwire_shared::{App, ChannelName, EventName};
use pushwire_tests::Scratch;
use pushwire_tests::clients::TEST_APP;
use pushwire_tests::http::{self, Response};
use pushwire_tests::webhook_receiver::{Answers, Sdk, WebhookReceiver};
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
