//! `pushwire bridge`: the Upstash REST dialect, checked byte for byte from Rust
//! and through the npm `@upstash/redis` client at its defaults.

use std::process::Command;

use pushwire_shared::ChannelName;
use pushwire_shared::history::{HistoryPolicy, PublishMessage};
use pushwire_shared::keys::KeySpace;
use pushwire_shared::publishing::{ScriptRef, publish_commands};
use pushwire_tests::bridge::Bridge;
use pushwire_tests::http::unix_now;
use pushwire_tests::{RedisServer, Scratch, http};
use serde_json::{Value, json};

#[test]
fn bridge_speaks_upstash_rest_and_refuses_what_it_must() {
    let scratch = Scratch::new("bridge-rest");
    let redis = RedisServer::start(&scratch);
    let bridge = Bridge::start(
        &scratch,
        "bridge",
        &redis.url(),
        &["--max-request-bytes", "4096"],
    );
    let mut sub = redis.subscribe("pushwire:v2:{1:ch}:ch");

    let one = bridge.post("/", r#"["publish","pushwire:v2:{1:ch}:ch","hello"]"#, None);
    assert_eq!((one.status, one.json()), (200, json!({"result": 1})));
    assert_eq!(sub.next_message(), "hello");

    let pipeline = bridge.post(
        "/pipeline",
        r#"[["PING"],["PUBLISH","pushwire:v2:{1:ch}:ch","p"],["PING","x"]]"#,
        None,
    );
    assert_eq!(pipeline.status, 200);
    assert_eq!(
        pipeline.json(),
        json!([{"result": "PONG"}, {"result": 1}, {"result": "x"}])
    );
    let multi = bridge.post(
        "/multi-exec",
        r#"[["PUBLISH","pushwire:v2:{1:ch}:ch","m1"],["PUBLISH","pushwire:v2:{1:ch}:ch","m2"]]"#,
        None,
    );
    assert_eq!(
        (multi.status, multi.json()),
        (200, json!([{"result": 1}, {"result": 1}]))
    );
    assert_eq!(
        (sub.next_message(), sub.next_message(), sub.next_message()),
        ("p".into(), "m1".into(), "m2".into())
    );

    // Base64 response encoding, as @upstash/redis asks for by default.
    let b64 = bridge.post("/", r#"["PING"]"#, Some(("Upstash-Encoding", "base64")));
    assert_eq!(b64.json(), json!({"result": "UE9ORw=="}));

    // A Redis error on a single command is a 400 with Redis's message; in a pipeline, an item.
    let wrong = bridge.post(
        "/",
        r#"["PUBLISH","pushwire:v2:{1:only-one-arg}:ch"]"#,
        None,
    );
    assert_eq!(wrong.status, 400);
    assert!(
        wrong.json()["error"]
            .as_str()
            .unwrap()
            .contains("wrong number of arguments"),
        "{}",
        wrong.body
    );
    let mixed = bridge.post(
        "/pipeline",
        r#"[["PUBLISH","pushwire:v2:{1:x}:ch"],["PING"]]"#,
        None,
    );
    assert_eq!(mixed.status, 200);
    assert!(mixed.json()[0]["error"].is_string() && mixed.json()[1] == json!({"result": "PONG"}));

    // Refusals, none of which runs anything: (path, body, status, what the error says).
    let long = format!(
        r#"["PUBLISH","pushwire:v2:{{1:ch}}:ch","{}"]"#,
        "x".repeat(5000)
    );
    let cases = [
        ("/", r#"["SET","k","v"]"#, 400, "not allowed"),
        (
            "/",
            r#"["PUBLISH","victim:orders","x"]"#,
            400,
            "not allowed",
        ),
        (
            "/pipeline",
            r#"[["PUBLISH","pushwire:v2:{1:ch}:ch","never"],["FLUSHALL"]]"#,
            400,
            "not allowed",
        ),
        (
            "/multi-exec",
            r#"[["publish","pushwire:v2:{1:ch}:ch","never"],["config","get","*"]]"#,
            400,
            "not allowed",
        ),
        ("/", r#"{"cmd":"PING"}"#, 400, "JSON array"),
        ("/", "not json", 400, "not JSON"),
        ("/pipeline", "[]", 400, "empty"),
        ("/", long.as_str(), 413, "limit"),
    ];
    for (path, body, status, says) in cases {
        let resp = bridge.post(path, body, None);
        assert_eq!(resp.status, status, "{path} {body}: {}", resp.body);
        assert!(
            resp.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains(says)),
            "{path}: {}",
            resp.body
        );
    }
    let wrong_token = http::request_with_headers(
        bridge.addr,
        "POST",
        "/",
        br#"["PING"]"#,
        &[("Authorization".into(), "Bearer wrong".into())],
    );
    assert_eq!(
        (wrong_token.status, wrong_token.json()),
        (401, json!({"error": "Unauthorized"}))
    );
    let no_token = http::request(bridge.addr, "POST", "/", br#"["PING"]"#);
    assert_eq!(no_token.status, 401);
    assert_eq!(
        redis.command(&["KEYS", "*"]).unwrap(),
        "*0",
        "nothing was written"
    );
    // Published nothing refused: the next message is the one sent now.
    bridge.post("/", r#"["PUBLISH","pushwire:v2:{1:ch}:ch","after"]"#, None);
    assert_eq!(sub.next_message(), "after");
}

#[test]
fn upstash_redis_client_works_against_the_bridge() {
    let scratch = Scratch::new("bridge-upstash-js");
    let redis = RedisServer::start(&scratch);
    let bridge = Bridge::start(&scratch, "bridge", &redis.url(), &[]);
    let mut sub = redis.subscribe("pushwire:v2:{1:upstash-ch}:ch");
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    let out = Command::new("node")
        .arg(js.join("upstash.js"))
        .args([bridge.url(), bridge.token.clone()])
        .current_dir(&js)
        .env("UPSTASH_DISABLE_TELEMETRY", "1")
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["ping"], json!({"ok": "PONG"}), "{report}");
    assert_eq!(report["publish"], json!({"ok": 1}), "{report}");
    assert_eq!(report["pipelined"], json!({"ok": [1, "PONG"]}), "{report}");
    assert_eq!(report["multi"], json!({"ok": [1, "PONG"]}), "{report}");
    assert!(
        report["not_allowed"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not allowed")),
        "{report}"
    );
    assert!(
        report["unauthorized"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Unauthorized")),
        "{report}"
    );
    assert_eq!(sub.next_message(), "héllo {\"x\":1}");
    assert_eq!(sub.next_message(), "second");
    assert_eq!(sub.next_message(), "third");
}

#[test]
fn bridge_answers_503_while_redis_is_down() {
    let scratch = Scratch::new("bridge-down");
    let mut redis = RedisServer::start(&scratch);
    let bridge = Bridge::start(&scratch, "bridge", &redis.url(), &[]);
    assert_eq!(bridge.post("/", r#"["PING"]"#, None).status, 200);
    redis.stop();
    for _ in 0..3 {
        let resp = bridge.post(
            "/multi-exec",
            r#"[["PUBLISH","pushwire:v2:{1:c}:ch","x"]]"#,
            None,
        );
        assert_eq!(resp.status, 503, "{}", resp.body);
    }
    redis.restart();
    pushwire_tests::wait::until(
        "the bridge to reach Redis again",
        std::time::Duration::from_secs(10),
        || (bridge.post("/", r#"["PING"]"#, None).status == 200).then_some(()),
    );
}

#[test]
fn the_publish_script_runs_only_with_pushwire_s_own_arguments() {
    let scratch = Scratch::new("bridge-publish-args");
    let redis = RedisServer::start(&scratch);
    let bridge = Bridge::start(&scratch, "bridge", &redis.url(), &[]);
    redis
        .command(&["XADD", "victim:orders", "*", "o", "1"])
        .unwrap();
    let (channel, edge_shaped) = publish_to_news(unix_now() * 1000);
    // (index, value): another app's stream, any channel, a ttl of years, a min
    // id trimming everything, an epoch that breaks every position.
    for (index, value) in [
        (4, "victim:orders"),
        (10, "victim:orders"),
        (7, "999999999999999"),
        (6, "99999999999999"),
        (8, "x\"}"),
        (9, "DEL"),
    ] {
        let mut bent = edge_shaped.clone();
        bent[index] = value.into();
        let resp = bridge.post("/", &json!(bent).to_string(), None);
        assert_eq!(resp.status, 400, "{index} = {value}: {}", resp.body);
        assert!(
            resp.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("not allowed")),
            "{}",
            resp.body
        );
    }
    assert_eq!(
        redis
            .command(&["EXISTS", "victim:orders", &news_epoch()])
            .unwrap(),
        ":1",
        "the victim's stream is intact and no epoch was set"
    );
    let mut sub = redis.subscribe(&channel);
    let ok = bridge.post("/", &json!(edge_shaped).to_string(), None);
    assert_eq!(
        (ok.status, ok.json()),
        (200, json!({"result": 1})),
        "{}",
        ok.body
    );
    assert!(sub.next_message().contains(r#""pos":"k3x:"#));
}

#[test]
fn the_publish_script_checks_its_own_arguments_and_repairs_a_broken_epoch() {
    let scratch = Scratch::new("publish-script-checks");
    let redis = RedisServer::start(&scratch);
    redis
        .command(&["XADD", "victim:orders", "*", "o", "1"])
        .unwrap();
    let (channel, good) = publish_to_news(0);
    // Straight to Redis, past any bridge: the script refuses by itself.
    for (index, value) in [
        (4, "victim:orders"),
        (10, "victim:orders"),
        (7, "years"),
        (8, "x\"}"),
        (3, "victim:orders"),
        (9, "DEL"),
    ] {
        let mut bent = good.clone();
        bent[index] = value.into();
        let args: Vec<&str> = bent.iter().map(String::as_str).collect();
        let reply = redis.command(&args).unwrap();
        assert!(
            reply.starts_with("-ERR pushwire publish"),
            "{index} = {value}: {reply}"
        );
    }
    assert_eq!(
        redis.command(&["DBSIZE"]).unwrap(),
        ":1",
        "nothing was written"
    );
    // An epoch broken before the checks existed is replaced on the next publish.
    redis.command(&["SET", &news_epoch(), "x\"}"]).unwrap();
    let mut sub = redis.subscribe(&channel);
    let args: Vec<&str> = good.iter().map(String::as_str).collect();
    assert_eq!(redis.command(&args).unwrap(), ":1");
    assert!(sub.next_message().contains(r#""pos":"k3x:"#));
    assert_eq!(redis.command(&["GET", &news_epoch()]).unwrap(), "k3x");
}

/// The publish command pushwire sends for one event on app 1000001's `news`
/// (epoch candidate `k3x`, history trimmed as of `now_ms`), with that
/// channel's pub/sub name.
fn publish_to_news(now_ms: u64) -> (String, Vec<String>) {
    let news = ChannelName::new("news").unwrap();
    let message = PublishMessage {
        channel: KeySpace::DEFAULT.channel("1000001", &news),
        history_key: KeySpace::DEFAULT.history("1000001", &news),
        epoch_key: news_epoch(),
        envelope: r#"{"event":"e","data":"{}"}"#.into(),
    };
    let mut commands = publish_commands(
        ScriptRef::Text,
        &HistoryPolicy::default(),
        now_ms,
        "k3x",
        std::slice::from_ref(&message),
    );
    (message.channel, commands.remove(0))
}

/// The epoch key of app 1000001's `news`.
fn news_epoch() -> String {
    KeySpace::DEFAULT.epoch("1000001", &ChannelName::new("news").unwrap())
}
