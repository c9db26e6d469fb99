//! The trigger API's answers to good and bad requests (SPEC §1), checked byte
//! for byte from Rust so every malformed variant can be produced.

use pushwire_shared::signing;
use std::net::SocketAddr;

use pushwire_tests::http::{self, Response, unix_now};
use pushwire_tests::origin::{OriginOptions, test_app};
use pushwire_tests::{Deployment, Origin, Scratch, each_fanout};
use serde_json::json;

const EVENTS: &str = "/apps/1000001/events";
const BATCH: &str = "/apps/1000001/batch_events";

/// A request signed with custom parameters (for tampering).
fn signed_with(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    ts: u64,
    tamper: impl Fn(String) -> String,
) -> Response {
    let query = tamper(signing::sign("POST", path, &[], body, &test_app(), ts));
    http::request(addr, "POST", &format!("{path}?{query}"), body)
}

fn assert_error(resp: &Response, status: u16, case: &str) {
    assert_eq!(resp.status, status, "{case}: body {}", resp.body);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{case}"
    );
    let message = resp.json()["error"].as_str().map(str::to_owned);
    assert!(
        message.is_some_and(|m| !m.is_empty()),
        "{case}: no error message in {}",
        resp.body
    );
}

#[test]
fn every_bad_input_gets_its_status_and_the_server_keeps_serving() {
    each_fanout("bad-inputs", bad_inputs);
}

/// Every bad input of SPEC §1 sent to `addr`: `(case, response, expected status)`.
/// The edge test sends the same table to the edge and to an origin.
pub(crate) fn bad_request_cases(addr: SocketAddr) -> Vec<(&'static str, Response, u16)> {
    let app = test_app();
    let now = unix_now();
    let ok_body = json!({"name": "e", "channel": "c", "data": "{}"}).to_string();
    let ok = ok_body.as_bytes();

    // Signing (401, or 400 for an undecodable query).
    let cases: Vec<(&str, Response, u16)> = vec![
        ("no signature", http::request(addr, "POST", EVENTS, ok), 401),
        (
            "bad signature",
            signed_with(addr, EVENTS, ok, now, |q| {
                q.replace("auth_signature=", "auth_signature=00")
            }),
            401,
        ),
        (
            "timestamp 601 s old",
            signed_with(addr, EVENTS, ok, now - 601, |q| q),
            401,
        ),
        (
            "timestamp 700 s ahead",
            signed_with(addr, EVENTS, ok, now + 700, |q| q),
            401,
        ),
        (
            "auth_version 2.0",
            signed_with(addr, EVENTS, ok, now, |q| {
                q.replace("auth_version=1.0", "auth_version=2.0")
            }),
            401,
        ),
        (
            "wrong key",
            signed_with(addr, EVENTS, ok, now, |q| {
                q.replace("auth_key=app-key", "auth_key=other")
            }),
            401,
        ),
        (
            "body_md5 mismatch",
            signed_with(addr, EVENTS, ok, now, |q| {
                q.replace("body_md5=", "body_md5=0")
            }),
            401,
        ),
        (
            "body_md5 missing",
            signed_with(addr, EVENTS, ok, now, |q| {
                q.split('&')
                    .filter(|p| !p.starts_with("body_md5"))
                    .collect::<Vec<_>>()
                    .join("&")
            }),
            401,
        ),
        (
            "duplicate query key",
            signed_with(addr, EVENTS, ok, now, |q| format!("{q}&auth_key=app-key")),
            400,
        ),
        (
            "bad query escape",
            signed_with(addr, EVENTS, ok, now, |q| format!("{q}&x=%zz")),
            400,
        ),
        (
            "signed for another path",
            http::request(
                addr,
                "POST",
                &format!(
                    "{EVENTS}?{}",
                    signing::sign("POST", BATCH, &[], ok, &app, now)
                ),
                ok,
            ),
            401,
        ),
        (
            "unknown app",
            http::signed(addr, "POST", "/apps/999/events", ok, &app),
            404,
        ),
        (
            "unknown route",
            http::signed(addr, "POST", "/nope", ok, &app),
            404,
        ),
        (
            "GET on a trigger route",
            http::request(addr, "GET", EVENTS, b""),
            404,
        ),
    ];
    // Content (400, 413 for data).
    let long_name = "n".repeat(201);
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let content = [
        ("not JSON", "{nope".to_owned(), 400),
        ("array body", "[]".to_owned(), 400),
        ("empty body", String::new(), 400),
        (
            "missing name",
            json!({"channel": "c", "data": ""}).to_string(),
            400,
        ),
        (
            "missing data",
            json!({"name": "e", "channel": "c"}).to_string(),
            400,
        ),
        (
            "missing channel",
            json!({"name": "e", "data": ""}).to_string(),
            400,
        ),
        (
            "name not a string",
            json!({"name": 1, "channel": "c", "data": ""}).to_string(),
            400,
        ),
        (
            "channel and channels",
            json!({"name": "e", "channel": "c", "channels": ["d"], "data": ""}).to_string(),
            400,
        ),
        (
            "empty channels",
            json!({"name": "e", "channels": [], "data": ""}).to_string(),
            400,
        ),
        (
            "101 channels",
            json!({"name": "e", "channels": many, "data": ""}).to_string(),
            400,
        ),
        (
            "invalid channel",
            json!({"name": "e", "channel": "a b", "data": ""}).to_string(),
            400,
        ),
        (
            "channel 201 chars",
            json!({"name": "e", "channel": "c".repeat(201), "data": ""}).to_string(),
            400,
        ),
        (
            "event name 201 bytes",
            json!({"name": long_name, "channel": "c", "data": ""}).to_string(),
            400,
        ),
        (
            "event name with a NUL",
            json!({"name": "a\u{0}b", "channel": "c", "data": ""}).to_string(),
            400,
        ),
        (
            "event name with a newline",
            json!({"name": "a\nb", "channel": "c", "data": ""}).to_string(),
            400,
        ),
        (
            "empty event name",
            json!({"name": "", "channel": "c", "data": ""}).to_string(),
            400,
        ),
        (
            "pushwire: event",
            json!({"name": "pushwire:x", "channel": "c", "data": ""}).to_string(),
            400,
        ),
        (
            "pusher: event",
            json!({"name": "pusher:x", "channel": "c", "data": ""}).to_string(),
            400,
        ),
        (
            "pusher_internal: event",
            json!({"name": "pusher_internal:x", "channel": "c", "data": ""}).to_string(),
            400,
        ),
        (
            "connect event",
            json!({"name": "connect", "channel": "c", "data": ""}).to_string(),
            400,
        ),
        (
            "disconnecting event",
            json!({"name": "disconnecting", "channel": "c", "data": ""}).to_string(),
            400,
        ),
        (
            "newListener event",
            json!({"name": "newListener", "channel": "c", "data": ""}).to_string(),
            400,
        ),
        (
            "bad socket_id",
            json!({"name": "e", "channel": "c", "data": "", "socket_id": "abc"}).to_string(),
            400,
        ),
        (
            "user_count on public channel",
            json!({"name": "e", "channel": "c", "data": "", "info": "user_count"}).to_string(),
            400,
        ),
        (
            "data over 10 KiB",
            json!({"name": "e", "channel": "c", "data": "x".repeat(10 * 1024 + 1)}).to_string(),
            413,
        ),
    ];
    let mut cases = cases;
    for (case, body, status) in &content {
        cases.push((
            case,
            http::signed(addr, "POST", EVENTS, body.as_bytes(), &app),
            *status,
        ));
    }
    let item = json!({"name": "e", "channel": "c", "data": ""});
    let batch = [
        ("empty batch", json!({"batch": []}), 400),
        ("11 events", json!({"batch": vec![item.clone(); 11]}), 400),
        ("batch not an array", json!({"batch": {}}), 400),
        (
            "bad batch item",
            json!({"batch": [item, {"name": "e", "channel": "a b", "data": ""}]}),
            400,
        ),
        (
            "batch item data over 10 KiB",
            json!({"batch": [{"name": "e", "channel": "c", "data": "x".repeat(10_241)}]}),
            413,
        ),
    ];
    for (case, body, status) in &batch {
        cases.push((
            case,
            http::signed(addr, "POST", BATCH, body.to_string().as_bytes(), &app),
            *status,
        ));
    }
    // Size: the request cap comes first, then the signature, then content.
    let huge = json!({"name": "e", "channel": "c", "data": "x".repeat(300 * 1024)}).to_string();
    cases.push((
        "body over 256 KiB, signed",
        http::signed(addr, "POST", EVENTS, huge.as_bytes(), &app),
        413,
    ));
    cases.push((
        "body over 256 KiB, unsigned",
        http::request(addr, "POST", EVENTS, huge.as_bytes()),
        413,
    ));
    let big_data = json!({"name": "e", "channel": "c", "data": "x".repeat(20 * 1024)}).to_string();
    cases.push((
        "oversized data with a bad signature",
        signed_with(addr, EVENTS, big_data.as_bytes(), now, |q| {
            q.replace("auth_signature=", "auth_signature=0")
        }),
        401,
    ));
    cases
}

fn bad_inputs(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let app = test_app();
    let ok_body = json!({"name": "e", "channel": "c", "data": "{}"}).to_string();
    let ok = ok_body.as_bytes();
    let cases = bad_request_cases(origin.addr);
    for (case, resp, status) in &cases {
        assert_error(resp, *status, case);
    }
    // A stale timestamp's refusal does not tell the caller the server's clock.
    let (_, stale, _) = cases
        .iter()
        .find(|(case, _, _)| *case == "timestamp 601 s old")
        .expect("the stale timestamp case");
    assert!(!stale.body.contains("601"), "{}", stale.body);

    // Still serving, and a good request is accepted.
    let resp = http::signed(origin.addr, "POST", EVENTS, ok, &app);
    assert_eq!((resp.status, resp.body.as_str()), (200, "{}"));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let resp = http::signed(
        origin.addr,
        "POST",
        BATCH,
        json!({"batch": [{"name": "e", "channel": "c", "data": ""}]})
            .to_string()
            .as_bytes(),
        &app,
    );
    assert_eq!((resp.status, resp.body.as_str()), (200, "{}"));
    assert_eq!(origin.health()["status"], "ok");
}

#[test]
fn json_data_and_replays_within_the_window_are_accepted() {
    let scratch = Scratch::new("accepts");
    let origin = Origin::start(&scratch, "origin", OriginOptions::embedded());
    let app = test_app();
    // Non-string data, Content-Type ignored, upper-case signature hex.
    let body = json!({"name": "e", "channels": ["c", "c"], "data": {"raw": [1, 2]}}).to_string();
    let query = signing::sign("POST", EVENTS, &[], body.as_bytes(), &app, unix_now());
    let (head, sig) = query.rsplit_once("auth_signature=").unwrap();
    let upper = format!("{head}auth_signature={}", sig.to_uppercase());
    let resp = http::request(
        origin.addr,
        "POST",
        &format!("{EVENTS}?{upper}"),
        body.as_bytes(),
    );
    assert_eq!((resp.status, resp.body.as_str()), (200, "{}"));
    // Pusher signing has no nonce: the same request replayed within the window is accepted (documented).
    let again = http::request(
        origin.addr,
        "POST",
        &format!("{EVENTS}?{upper}"),
        body.as_bytes(),
    );
    assert_eq!(again.status, 200);
}
