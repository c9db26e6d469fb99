//! Browser pages of other origins (CORS): a real page in headless Chromium, and
//! the headers a browser checks before it lets a page read a long-polling answer,
//! sent through the cluster master like any client's requests.

use std::net::SocketAddr;
use std::process::Command;

use pushwire_tests::origin::{OriginOptions, test_app};
use pushwire_tests::{Clients, Origin, RedisServer, Reporter, Scratch, http};
use serde_json::{Value, json};

const PAGE: &str = "https://app.example.test";
/// A page served by `tests/js/cross-origin-page.js` on its own loopback port (so
/// another origin than pushwire's), connected to `origin` with socket.io-client's
/// default transports and subscribed to `channel` in its handshake.
fn open_page(scratch: &Scratch, origin: &Origin, channel: &str) -> Reporter {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    let mut cmd = Command::new("node");
    cmd.arg(js.join("cross-origin-page.js"))
        .arg(origin.url())
        .arg(channel)
        .current_dir(&js);
    Reporter::spawn(scratch, "browser", cmd)
}

fn from_page(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
    page: &str,
    extra: &[(&str, &str)],
) -> http::Response {
    let mut headers = vec![("Origin".to_owned(), page.to_owned())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    http::request_with_headers(addr, method, target, body, &headers)
}

/// A page's first long-poll: the one that opens an Engine.IO session.
fn polling_open(addr: SocketAddr, page: &str) -> http::Response {
    from_page(
        addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        b"",
        page,
        &[],
    )
}

/// Whether a long-poll's payload carries the namespace's answer to a join (`40{…}`).
fn has_join_answer(poll: &http::Response) -> bool {
    poll.body.split('\u{1e}').any(|p| p.starts_with("40{"))
}

#[test]
fn a_page_of_another_origin_can_long_poll() {
    let scratch = Scratch::new("cors-any");
    let redis = RedisServer::start(&scratch);
    let origin = Origin::start(&scratch, "origin", OriginOptions::redis(&redis.url()));
    let addr = origin.addr;
    let allowed = |r: &http::Response| {
        assert_eq!(r.header("access-control-allow-origin"), Some(PAGE), "{r:?}");
        assert_eq!(r.header("access-control-allow-credentials"), None, "{r:?}");
    };

    let open = polling_open(addr, PAGE);
    assert_eq!(open.status, 200, "{open:?}");
    allowed(&open);
    let sid = http::open_packet_sid(&open.body);
    let session = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");

    // A client with its own headers makes the browser ask first.
    let preflight = from_page(
        addr,
        "OPTIONS",
        &session,
        b"",
        PAGE,
        &[
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type,x-client"),
        ],
    );
    assert_eq!(preflight.status, 204, "{preflight:?}");
    allowed(&preflight);
    assert!(
        preflight
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST")),
        "{preflight:?}"
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("content-type,x-client")
    );

    // Joining the namespace and reading the answer go to the session's worker.
    let join = from_page(addr, "POST", &session, b"40", PAGE, &[]);
    assert_eq!((join.status, join.body.as_str()), (200, "ok"), "{join:?}");
    allowed(&join);
    // A long-poll answers with whatever is queued first (a heartbeat ping may come
    // before the namespace's answer), so poll as a client does, a few times at most.
    let mut polls = Vec::new();
    while polls.len() < 5 {
        let answer = from_page(addr, "GET", &session, b"", PAGE, &[]);
        assert_eq!(answer.status, 200, "{answer:?}");
        allowed(&answer);
        let joined = has_join_answer(&answer);
        polls.push(answer);
        if joined {
            break;
        }
    }
    assert!(
        polls.last().is_some_and(has_join_answer),
        "no namespace answer in {polls:?}"
    );

    // The trigger API is for servers: no CORS headers there.
    let api = from_page(addr, "GET", "/apps/1000001/channels", b"", PAGE, &[]);
    assert_eq!(api.header("access-control-allow-origin"), None, "{api:?}");

    // A real page: opens its session over long-polling (the upgrade needs the
    // session id the polling answer carries), joins, upgrades to WebSocket, and
    // receives an event. Joining and upgrading may be reported in either order.
    let page = open_page(&scratch, &origin, "cross");
    let mut steps: Vec<Value> = (0..2).map(|_| page.next("joining and upgrading")).collect();
    steps.sort_by_key(|s| s["type"].as_str().unwrap_or_default().to_owned());
    assert_eq!(steps[0]["type"], "established", "{steps:?}");
    assert_eq!(
        steps[1],
        json!({"type": "upgrade", "transport": "websocket"})
    );
    let body = json!({"name": "hello", "channel": "cross", "data": "{\"n\":1}"}).to_string();
    let trigger = http::signed(
        addr,
        "POST",
        "/apps/1000001/events",
        body.as_bytes(),
        &test_app(),
    );
    assert_eq!(trigger.status, 200, "{trigger:?}");
    let event = page.next("the event");
    assert_eq!(event["type"], "event", "{event}");
    assert_eq!(
        (&event["name"], &event["data"]),
        (&json!("hello"), &json!({"n": 1}))
    );
    assert_eq!(event["meta"]["channel"], "cross", "{event}");
}

#[test]
fn pages_of_origins_not_listed_are_refused() {
    let scratch = Scratch::new("cors-listed");
    let redis = RedisServer::start(&scratch);
    let mut options = OriginOptions::redis(&redis.url());
    options.args = vec!["--allowed-origins".into(), PAGE.into()];
    let origin = Origin::start(&scratch, "origin", options);
    let addr = origin.addr;

    let open = polling_open(addr, PAGE);
    assert_eq!(open.status, 200, "{open:?}");
    assert_eq!(open.header("access-control-allow-origin"), Some(PAGE));
    assert_eq!(
        open.header("access-control-allow-credentials"),
        Some("true")
    );

    let other = "https://elsewhere.example.test";
    let refused = polling_open(addr, other);
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(
        refused.json()["error"].as_str().unwrap().contains(other),
        "{refused:?}"
    );
    assert_eq!(refused.header("access-control-allow-origin"), None);

    // Browsers apply no CORS to WebSocket, so the upgrade itself is refused.
    let upgrade = from_page(
        addr,
        "GET",
        "/socket.io/?EIO=4&transport=websocket",
        b"",
        other,
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    );
    assert_eq!(upgrade.status, 403, "{upgrade:?}");

    // A real page of an origin not listed cannot even open its session.
    let page = open_page(&scratch, &origin, "cross");
    let refused = page.next("the refusal");
    assert_eq!(refused["type"], "connect_error", "{refused}");

    // Clients that are not browser pages send no Origin and are served as before.
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("c", &origin.url(), json!({}));
    clients.subscribe("c", "news");
}
