//! Logs an aggregator can read: `--log-format json` makes every line of a
//! 2-worker origin (master and workers) and of the bridge one JSON object that
//! names its process, and no line carries an app secret, an auth signature, a
//! bridge token or event data, at the default level or at debug.

use std::path::Path;

use pushwire_shared::{App, AppList, channel_auth, signing};
use pushwire_tests::bridge::Bridge;
use pushwire_tests::http::{self, unix_now};
use pushwire_tests::origin::OriginOptions;
use pushwire_tests::{Clients, Origin, RedisServer, Scratch};
use serde_json::{Value, json};

/// The test's app: its secret is long and found nowhere else.
const ID: &str = "3000003";
const KEY: &str = "logs-key";
const SECRET: &str = "logs-secret-7c1e9a0f5b2d4e8a";

const PRIVATE: &str = "private-logs";
const PRESENCE: &str = "presence-logs";
const PUBLIC: &str = "public-logs";

fn app() -> App {
    AppList::parse(&format!("{ID}:{KEY}:{SECRET}"))
        .expect("the test app parses")
        .single()
        .expect("one app")
        .clone()
}

/// What no log line may hold: the secret, every signature the test sent, and
/// the recognisable parts of the event data and member info it sent.
#[derive(Debug, Default)]
struct Forbidden(Vec<String>);

impl Forbidden {
    /// A marker for data of `kind`, remembered as forbidden.
    fn marker(&mut self, kind: &str, round: &str) -> String {
        let marker = format!("payload-marker-{kind}-{round}");
        self.0.push(marker.clone());
        marker
    }

    /// The `auth_signature` of a signed query, remembered as forbidden.
    fn signature_of(&mut self, query: &str) {
        let signature = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("auth_signature="))
            .expect("a signed query has an auth_signature");
        self.0.push(signature.to_owned());
    }

    /// The signature of a channel `auth` (`key:signature`), remembered as forbidden.
    fn channel_auth(&mut self, auth: &str) {
        let (_, signature) = auth.split_once(':').expect("auth is key:signature");
        self.0.push(signature.to_owned());
    }
}

/// `POST path` signed for the test app; the signature is remembered.
fn post(origin: &Origin, path: &str, body: &Value, forbidden: &mut Forbidden) -> http::Response {
    let body = body.to_string();
    let query = signing::sign("POST", path, &[], body.as_bytes(), &app(), unix_now());
    forbidden.signature_of(&query);
    http::request(
        origin.addr,
        "POST",
        &format!("{path}?{query}"),
        body.as_bytes(),
    )
}

/// Subscribes client `id` (socket `socket_id`) to `channel` with a channel
/// auth of the test app (and `channel_data`); returns the ack.
fn subscribe_signed(
    clients: &mut Clients,
    id: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    forbidden: &mut Forbidden,
) -> Value {
    let auth = channel_auth::sign(&app(), socket_id, channel, channel_data);
    forbidden.channel_auth(&auth);
    let mut request = json!({"channel": channel, "auth": auth});
    if let Some(data) = channel_data {
        request["channel_data"] = json!(data);
    }
    clients.emit(id, "subscribe", json!([request]))
}

/// Real traffic against `origin`: private and presence channel auth (and a
/// refused one), triggers and a batch carrying markers (and a refused
/// trigger), a client event, a recovery from history and a signed query.
fn drive(scratch: &Scratch, origin: &Origin, round: &str) -> Forbidden {
    let mut forbidden = Forbidden::default();
    let mut clients = Clients::start(scratch, "clients");
    let url = origin.url();
    let opts = json!({"auth": {"app_key": KEY}});
    let a = clients.connect("a", &url, opts.clone());
    let mut ws = opts.clone();
    ws["transports"] = json!(["websocket"]);
    let b = clients.connect("b", &url, ws);

    for (id, socket_id) in [("a", &a), ("b", &b)] {
        let ack = subscribe_signed(&mut clients, id, socket_id, PRIVATE, None, &mut forbidden);
        assert_eq!(ack, json!({"ok": true}), "{id} on {PRIVATE}");
    }
    let member = json!({
        "user_id": "member-b",
        "user_info": {"note": forbidden.marker("user-info", round)},
    })
    .to_string();
    let ack = subscribe_signed(
        &mut clients,
        "b",
        &b,
        PRESENCE,
        Some(&member),
        &mut forbidden,
    );
    assert_eq!(ack["ok"], true, "presence: {ack}");
    // A signature that does not match: refused, and not logged either.
    let forged = format!("{KEY}:{}", "deadbeef".repeat(8));
    forbidden.channel_auth(&forged);
    let ack = clients.emit(
        "a",
        "subscribe",
        json!([{"channel": "private-other", "auth": forged}]),
    );
    assert_eq!(ack["error"]["code"], 4009, "{ack}");
    clients.subscribe("a", PUBLIC);

    let events = format!("/apps/{ID}/events");
    let first = forbidden.marker("trigger", round);
    let response = post(
        origin,
        &events,
        &json!({"name": "logged", "channels": [PRIVATE, PRESENCE, PUBLIC], "data": first}),
        &mut forbidden,
    );
    assert_eq!(response.status, 200, "{}", response.body);
    // "a" is on the private and the public channel: one copy each, each with
    // its channel's own position; the late subscriber recovers the public one.
    let copies: Vec<Vec<serde_json::Value>> =
        (0..2).map(|_| clients.event("a", "logged")).collect();
    assert!(
        copies.iter().all(|args| args[0] == json!(first)),
        "{copies:?}"
    );
    let public = copies
        .iter()
        .find(|args| args[1]["channel"] == PUBLIC)
        .expect("the public channel's copy");
    let since = public[1]["pos"].as_str().expect("meta.pos").to_owned();
    assert_eq!(clients.event("b", "logged")[0], json!(first));

    let batch = json!({"batch": [
        {"name": "batched", "channel": PUBLIC, "data": forbidden.marker("batch", round)},
        {"name": "batched", "channel": PRIVATE, "data": forbidden.marker("batch-private", round)},
    ]});
    let response = post(
        origin,
        &format!("/apps/{ID}/batch_events"),
        &batch,
        &mut forbidden,
    );
    assert_eq!(response.status, 200, "{}", response.body);
    clients.event("a", "batched");

    // Signed with the wrong secret: refused.
    let wrong = App {
        secret: format!("{SECRET}-but-wrong"),
        ..app()
    };
    let body =
        json!({"name": "refused", "channel": PUBLIC, "data": forbidden.marker("refused", round)})
            .to_string();
    let query = signing::sign("POST", &events, &[], body.as_bytes(), &wrong, unix_now());
    forbidden.signature_of(&query);
    forbidden.0.push(wrong.secret.clone());
    let response = http::request(
        origin.addr,
        "POST",
        &format!("{events}?{query}"),
        body.as_bytes(),
    );
    assert_eq!(response.status, 401, "{}", response.body);

    let note = forbidden.marker("client-event", round);
    let ack = clients.emit(
        "a",
        "client-typing",
        json!([{"channel": PRIVATE, "data": {"note": note}}]),
    );
    assert_eq!(ack, json!({"ok": true}));
    assert_eq!(
        clients.event("b", "client-typing")[0],
        json!({"note": note})
    );

    // A late subscriber recovers the batch from the history.
    clients.connect("late", &url, opts);
    let ack = clients.emit(
        "late",
        "subscribe",
        json!([{"channel": PUBLIC, "since": since}]),
    );
    assert_eq!(ack["recovered"], true, "{ack}");
    clients.event("late", "batched");

    let path = format!("/apps/{ID}/channels");
    let extra = [("filter_by_prefix", "presence-"), ("info", "user_count")];
    let query = signing::sign("GET", &path, &extra, b"", &app(), unix_now());
    forbidden.signature_of(&query);
    let response = http::request(origin.addr, "GET", &format!("{path}?{query}"), b"");
    assert_eq!(response.json()["channels"][PRESENCE]["user_count"], 1);

    forbidden.0.push(SECRET.to_owned());
    forbidden
}

/// Every line of `log`, parsed: each must be a JSON object with the fields
/// every line has, and `role` one of `roles`.
fn json_lines(log: &Path, text: &str, roles: &[&str]) -> Vec<Value> {
    assert!(!text.is_empty(), "{} is empty", log.display());
    text.lines()
        .map(|line| {
            let parsed: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", log.display()));
            assert!(parsed.is_object(), "not an object: {line}");
            for field in ["timestamp", "level", "message", "target"] {
                assert!(parsed[field].is_string(), "no {field}: {line}");
            }
            assert!(parsed["pid"].is_u64(), "no pid: {line}");
            let role = parsed["role"].as_str().unwrap_or_default();
            assert!(roles.contains(&role), "role {role:?}: {line}");
            if role == "worker" {
                assert!(
                    parsed["worker"].is_u64(),
                    "a worker line without its id: {line}"
                );
            }
            parsed
        })
        .collect()
}

/// No line of `text` holds any of `forbidden`.
fn assert_nothing_forbidden(log: &Path, text: &str, forbidden: &Forbidden) {
    for secret in &forbidden.0 {
        let found: Vec<&str> = text.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            found.is_empty(),
            "{} holds {secret:?}:\n{}",
            log.display(),
            found.join("\n")
        );
    }
}

/// An origin of 2 workers on Redis, logging JSON at the default level (or at
/// debug), driven with real traffic then stopped: its whole log is checked.
fn json_origin_round(debug: bool) {
    let round = if debug { "debug" } else { "info" };
    let scratch = Scratch::new(&format!("json-logs-{round}"));
    let redis = RedisServer::start(&scratch);
    let mut options = OriginOptions::redis(&redis.url());
    options.workers = 2;
    options.apps = format!("{ID}:{KEY}:{SECRET}");
    options.default_log_level = !debug;
    if debug {
        // The config file's key, where the info round uses the flag.
        let config = scratch.file("config.json");
        std::fs::write(&config, r#"{"log_format": "json"}"#).expect("write the config file");
        options.args = vec!["--config".into(), config.to_string_lossy().into_owned()];
    } else {
        options.args = vec!["--log-format".into(), "json".into()];
    }
    let mut origin = Origin::start(&scratch, "origin", options);
    let forbidden = drive(&scratch, &origin, round);
    origin.stop();

    let log = scratch.file("origin.log");
    let text = origin.log();
    let lines = json_lines(&log, &text, &["master", "worker"]);
    let listening = lines
        .iter()
        .find(|l| l["role"] == "master" && l["message"] == "listening")
        .expect("the master logs where it listens");
    assert_eq!(listening["workers"], 2, "{listening}");
    for id in [0, 1] {
        assert!(
            lines
                .iter()
                .any(|l| l["role"] == "worker" && l["worker"] == id),
            "no line from worker {id}:\n{text}"
        );
    }
    if debug {
        // App and channel are fields of their own, not words of the message.
        let refused = lines
            .iter()
            .find(|l| l["message"] == "subscribe refused")
            .unwrap_or_else(|| panic!("no refused subscribe logged:\n{text}"));
        assert_eq!(refused["app"], ID, "{refused}");
        assert_eq!(refused["channel"], "private-other", "{refused}");
        assert!(refused["socket_id"].is_string(), "{refused}");
    }
    assert_nothing_forbidden(&log, &text, &forbidden);
}

#[test]
fn json_logs_at_the_default_level_name_their_process_and_hold_no_secret() {
    json_origin_round(false);
}

#[test]
fn json_logs_at_debug_hold_no_secret_either() {
    json_origin_round(true);
}

#[test]
fn the_bridge_logs_json_without_its_token() {
    let scratch = Scratch::new("json-logs-bridge");
    let mut redis = RedisServer::start(&scratch);
    let mut bridge = Bridge::start(&scratch, "bridge", &redis.url(), &["--log-format", "json"]);
    let marker = "payload-marker-bridge";
    let publish = json!(["PING", marker]).to_string();
    assert_eq!(bridge.post("/", &publish, None).status, 200);
    let unauthorized = http::request_with_headers(
        bridge.addr,
        "POST",
        "/",
        publish.as_bytes(),
        &[("Authorization".into(), "Bearer not-the-token".into())],
    );
    assert_eq!(unauthorized.status, 401);
    // Redis gone: a warning, still JSON.
    redis.stop();
    assert_eq!(bridge.post("/", &publish, None).status, 503);
    bridge.stop();

    let log = scratch.file("bridge.log");
    let text = std::fs::read_to_string(&log).expect("bridge log");
    let lines = json_lines(&log, &text, &["bridge"]);
    assert!(
        lines.iter().any(|l| l["message"] == "bridge listening"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "WARN" && l["message"] == "bridge request failed"),
        "{text}"
    );
    let forbidden = Forbidden(vec![bridge.token.clone(), marker.to_owned()]);
    assert_nothing_forbidden(&log, &text, &forbidden);
}

/// The harness's own guard: a pushwire log holding a secret the test gave it
/// fails the test (at its end, see `Scratch::watch_log`).
#[test]
fn the_harness_finds_a_secret_in_a_watched_log() {
    let scratch = Scratch::new("leak-guard");
    let log = scratch.file("some-origin.log");
    std::fs::write(&log, "a line\nanother with logs-secret-x in it\n").expect("write a log");
    scratch.watch_log(&log, ["logs-secret-x".to_owned()]);
    let leaks = scratch.leaks();
    assert_eq!(leaks.len(), 1, "{leaks:?}");
    assert_eq!(
        (leaks[0].line, leaks[0].secret.as_str()),
        (2, "logs-secret-x")
    );
    // Cleared, so that this test's own scratch directory passes its check.
    std::fs::write(&log, "").expect("clear the log");
}
