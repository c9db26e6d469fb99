//! Webhooks to `https://` receivers: the Node receiver serves TLS with a
//! certificate of a CA made for the test (`openssl`), and pushwire trusts that
//! CA only when `SSL_CERT_FILE` in its environment names it.

use std::time::Duration;

use pushwire_tests::clients::TEST_APP;
use pushwire_tests::origin::OriginOptions;
use pushwire_tests::test_ca::TestCa;
use pushwire_tests::webhook_receiver::{Answers, Sdk, WebhookReceiver};
use pushwire_tests::{Clients, Origin, Scratch, http, wait};
use serde_json::json;

use super::{event, wait_for_events};

/// How long a log line or a count may take to show.
const SEEN_WITHIN: Duration = Duration::from_secs(15);

/// An embedded-broker origin with `SSL_CERT_FILE=cert_file` and debug logs
/// (the retries this file checks are logged at debug), sending to the
/// endpoints of `webhooks` (the config file's `webhooks` value).
fn origin(scratch: &Scratch, cert_file: &std::path::Path, webhooks: serde_json::Value) -> Origin {
    let config = scratch.file("webhooks.json");
    std::fs::write(&config, json!({ "webhooks": webhooks }).to_string()).expect("write the config");
    let mut options = OriginOptions::embedded();
    options.args = vec!["--config".into(), config.to_string_lossy().into_owned()];
    options.env = vec![
        (
            "SSL_CERT_FILE".into(),
            cert_file.to_string_lossy().into_owned(),
        ),
        ("RUST_LOG".into(), "pushwire_origin=debug,warn".into()),
    ];
    Origin::start(scratch, "origin", options)
}

/// An endpoint of every event kind at `url`.
fn every_kind(url: String) -> serde_json::Value {
    json!({"url": url, "events":
        ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event"]})
}

/// The value of `pushwire_webhook_events_dropped_total{reason}` now, as the
/// master (which sends with the embedded broker) reports it.
fn dropped(origin: &Origin, reason: &str) -> Option<u64> {
    let metrics = http::request(origin.metrics_addr(), "GET", "/metrics", b"").body;
    let name =
        format!("pushwire_webhook_events_dropped_total{{worker=\"master\",reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&name)?.trim().parse().ok())
}

/// A client subscribes to `channel` and leaves it: one `channel_occupied` and
/// one `channel_vacated` for every endpoint.
fn occupy_and_vacate(scratch: &Scratch, origin: &Origin, channel: &str) -> Clients {
    let mut clients = Clients::start(scratch, "clients");
    clients.connect("a", &origin.url(), json!({}));
    clients.subscribe("a", channel);
    clients.unsubscribe("a", channel);
    clients
}

/// Certificate chain and host name verified against the CA that
/// `SSL_CERT_FILE` names: the stock SDK receives and validates every event,
/// a retried batch included (its first answer is `500`).
#[test]
fn an_https_receiver_whose_ca_is_trusted_gets_signed_webhooks() {
    let scratch = Scratch::new("webhooks-https");
    let ca = TestCa::new(&scratch, "ca");
    let cert = ca.issue(&scratch, "receiver");
    let mut receiver =
        WebhookReceiver::start_https(&scratch, TEST_APP, Answers::fail_first(1, 500), &cert);
    assert!(receiver.url("/").starts_with("https://127.0.0.1:"));
    let origin = origin(
        &scratch,
        ca.cert(),
        json!({TEST_APP.id: [every_kind(receiver.url("/hooks?token=t"))]}),
    );
    let _clients = occupy_and_vacate(&scratch, &origin, "news");

    assert_eq!(
        wait_for_events(&mut receiver, 2),
        [
            event("channel_occupied", "news", ""),
            event("channel_vacated", "news", ""),
        ]
    );
    let received = receiver.received(2);
    assert_eq!(received[0].status, 500, "the first attempt was refused");
    assert!(received.iter().all(|r| r.valid), "{received:#?}");
    assert!(receiver.tls_errors(0).is_empty());
    let log = origin.log();
    assert!(
        log.lines()
            .any(|l| l.contains("verified against these root certificates")
                && l.contains("roots=1 ")
                && l.contains("SSL_CERT_FILE=")),
        "the roots were not loaded from SSL_CERT_FILE alone:\n{log}"
    );
}

/// A receiver whose certificate no trusted root signed, and one whose
/// certificate is for another name, get nothing: every handshake is broken
/// off by pushwire, and the batches are retried (a certificate is often
/// mended within minutes) while another endpoint's webhooks go on and the
/// origin stays healthy.
#[test]
fn https_receivers_whose_certificate_does_not_verify_get_nothing() {
    let scratch = Scratch::new("webhooks-https-refused");
    // Another CA than the receiver's, not the machine's store: what the
    // machine trusts must not change the outcome.
    let trusted = TestCa::new(&scratch, "trusted-ca");
    let unknown = TestCa::new(&scratch, "unknown-ca");
    let unknown_cert = unknown.issue(&scratch, "unknown-issuer");
    let misnamed_cert = trusted.issue_for(&scratch, "misnamed", "DNS:elsewhere.example");
    let mut unknown_issuer =
        WebhookReceiver::start_https(&scratch, TEST_APP, Answers::OK, &unknown_cert);
    let mut misnamed =
        WebhookReceiver::start_https(&scratch, TEST_APP, Answers::OK, &misnamed_cert);
    let mut plain = WebhookReceiver::start(&scratch, Sdk::Node, TEST_APP, Answers::OK);
    let origin = origin(
        &scratch,
        trusted.cert(),
        json!({TEST_APP.id: [
            every_kind(unknown_issuer.url("/hooks")),
            every_kind(misnamed.url("/hooks")),
            every_kind(plain.url("/hooks")),
        ]}),
    );
    let _clients = occupy_and_vacate(&scratch, &origin, "news");

    assert_eq!(wait_for_events(&mut plain, 2).len(), 2);
    for (receiver, why) in [
        (&mut unknown_issuer, "UnknownIssuer"),
        (&mut misnamed, "not valid for name"),
    ] {
        // The first attempt and at least one retry.
        assert_eq!(receiver.tls_errors(2).len(), 2, "{why}");
        assert!(
            receiver.received(0).is_empty(),
            "{why}: a request got through"
        );
        wait::until(&format!("{why} retried in the log"), SEEN_WITHIN, || {
            origin
                .log()
                .lines()
                .any(|l| l.contains("webhook batch will be retried") && l.contains(why))
                .then_some(())
        });
    }
    assert_eq!(origin.health()["status"], "ok");
    // Still retrying: nothing was dropped.
    assert_eq!(dropped(&origin, "not_sendable"), Some(0));
    assert_eq!(dropped(&origin, "given_up"), Some(0));
}

/// With no root certificate to verify against (`SSL_CERT_FILE` names an
/// empty file), https endpoints cannot be sent to: the error is logged at
/// start, and their batches are dropped at once and counted as not sendable,
/// without a connection; http endpoints are served as ever.
#[test]
fn without_a_root_certificate_https_webhooks_are_dropped_and_counted() {
    let scratch = Scratch::new("webhooks-https-no-roots");
    let ca = TestCa::new(&scratch, "ca");
    let cert = ca.issue(&scratch, "receiver");
    let mut https = WebhookReceiver::start_https(&scratch, TEST_APP, Answers::OK, &cert);
    let mut plain = WebhookReceiver::start(&scratch, Sdk::Node, TEST_APP, Answers::OK);
    let empty = scratch.file("empty.pem");
    std::fs::write(&empty, "").expect("write an empty bundle");
    let origin = origin(
        &scratch,
        &empty,
        json!({TEST_APP.id: [every_kind(https.url("/hooks")), every_kind(plain.url("/hooks"))]}),
    );
    wait::until("the missing roots in the log", SEEN_WITHIN, || {
        origin
            .log()
            .lines()
            .any(|l| {
                l.contains("https webhook endpoints will get nothing")
                    && l.contains("no root certificate could be loaded from SSL_CERT_FILE=")
            })
            .then_some(())
    });
    let _clients = occupy_and_vacate(&scratch, &origin, "news");

    assert_eq!(wait_for_events(&mut plain, 2).len(), 2);
    wait::until("both events dropped as not sendable", SEEN_WITHIN, || {
        (dropped(&origin, "not_sendable")? >= 2).then_some(())
    });
    assert!(https.received(0).is_empty());
    assert!(https.tls_errors(0).is_empty(), "pushwire connected anyway");
    assert_eq!(origin.health()["status"], "ok");
}
