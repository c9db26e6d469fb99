//! The edge path end to end: the real worker under workerd, the bridge, Redis,
//! an origin cluster, the npm `pusher` SDK and stock socket.io-client subscribers.

use pushwire_shared::publishing::PUBLISH_SCRIPT_SHA1;
use pushwire_tests::bridge::Bridge;
use pushwire_tests::clients::{Credentials, TEST_APP};
use pushwire_tests::edge::EdgeWorker;
use pushwire_tests::origin::{OriginOptions, TEST_APPS};
use pushwire_tests::{Clients, Origin, RedisServer, Scratch};
use serde_json::json;

use crate::resilience::assert_a_slow_redis_delays_the_trigger;
use crate::trigger_api::bad_request_cases;

#[test]
fn triggers_at_the_edge_reach_subscribers_and_fail_closed() {
    let scratch = Scratch::new("edge");
    let redis = RedisServer::start(&scratch);
    let mut bridge = Bridge::start(&scratch, "bridge", &redis.url(), &[]);
    let origin = Origin::start(&scratch, "origin", OriginOptions::redis(&redis.url()));
    let bridge_url = bridge.url();
    let token = bridge.token.clone();
    let edge = EdgeWorker::start(
        &scratch,
        &[
            ("PUSHWIRE_APPS", TEST_APPS),
            ("PUSHWIRE_BRIDGE_URL", &bridge_url),
            ("PUSHWIRE_BRIDGE_TOKEN", &token),
            ("PUSHWIRE_BRIDGE_TIMEOUT_MS", "2000"),
        ],
    );

    let mut clients = Clients::start(&scratch, "clients");
    let sender = clients.connect(
        "polling",
        &origin.url(),
        json!({"auth": {"channels": ["edge-news", "edge-other"]}}),
    );
    clients.connect(
        "ws",
        &origin.url(),
        json!({"transports": ["websocket"], "auth": {"channels": ["edge-news"]}}),
    );

    // The Pusher SDK, pointed at the edge.
    let (status, body) = clients.trigger(
        edge.addr,
        TEST_APP,
        &["edge-news"],
        "flash",
        json!({"n": 1}),
        json!({}),
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    let mut positions = Vec::new();
    for id in ["polling", "ws"] {
        let args = clients.event(id, "flash");
        assert_eq!(
            (args[0].clone(), args[1]["channel"].clone()),
            (json!({"n": 1}), json!("edge-news")),
            "{id}"
        );
        // Appended to the channel's history by the edge's one publish script call.
        positions.push(args[1]["pos"].as_str().expect("a position").to_owned());
    }
    assert_eq!(positions[0], positions[1]);
    // Several channels in one trigger: one id, one bridge request.
    let (status, _) = clients.trigger(
        edge.addr,
        TEST_APP,
        &["edge-news", "edge-other"],
        "both",
        json!("x"),
        json!({}),
    );
    assert_eq!(status, 200);
    let first = clients.event("polling", "both");
    let second = clients.event("polling", "both");
    assert_eq!(first[1]["id"], second[1]["id"]);
    assert_eq!(clients.event("ws", "both")[1]["id"], first[1]["id"]);
    // A batch, and exclusion of the sender.
    let events = json!([
        {"channel": "edge-news", "name": "b1", "data": "1", "socket_id": sender},
        {"channel": "edge-news", "name": "b2", "data": "2"},
    ]);
    assert_eq!(clients.trigger_batch(edge.addr, TEST_APP, events).0, 200);
    let seen: Vec<String> = clients
        .events_through("polling", "b2")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(seen, ["b2"], "the sender is left out of b1");
    let seen: Vec<String> = clients
        .events_through("ws", "b2")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(seen, ["b1", "b2"]);

    // The same bad inputs get the same answers at the edge and at the origin.
    let at_edge = bad_request_cases(edge.addr);
    let at_origin = bad_request_cases(origin.addr);
    for ((case, edge_reply, expected), (_, origin_reply, _)) in at_edge.iter().zip(&at_origin) {
        assert_eq!(
            edge_reply.status, *expected,
            "edge, {case}: {}",
            edge_reply.body
        );
        assert_eq!(edge_reply.status, origin_reply.status, "{case}");
        assert_eq!(
            edge_reply.header("content-type"),
            Some("application/json"),
            "{case}"
        );
        assert!(
            edge_reply.json()["error"].is_string(),
            "{case}: {}",
            edge_reply.body
        );
    }
    // A wrong app secret is refused at the edge too (and nothing is published).
    let wrong = Credentials {
        secret: "not-the-secret",
        ..TEST_APP
    };
    assert_eq!(
        clients
            .trigger(
                edge.addr,
                wrong,
                &["edge-news"],
                "forged",
                json!(""),
                json!({})
            )
            .0,
        401
    );

    // The bridge goes away: 503, never 200, never a worker exception.
    let port = bridge.addr.port();
    bridge.stop();
    for i in 0..3 {
        let (status, body) = clients.trigger(
            edge.addr,
            TEST_APP,
            &["edge-news"],
            "lost",
            json!(i.to_string()),
            json!({}),
        );
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("unavailable"), "{body}");
    }
    // It comes back on the same address: delivery resumes.
    let _bridge =
        Bridge::start_with_token(&scratch, "bridge-again", &redis.url(), port, &token, &[]);
    let (status, body) = clients.trigger(
        edge.addr,
        TEST_APP,
        &["edge-news"],
        "back",
        json!("ok"),
        json!({}),
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    let seen = clients.events_through("ws", "back");
    assert_eq!(seen.len(), 1, "nothing refused was delivered: {seen:?}");
}

#[test]
fn misbehaving_bridges_give_503_within_the_timeout() {
    let scratch = Scratch::new("edge-misbehaving");
    let redis = RedisServer::start(&scratch);
    let bridge = Bridge::start(&scratch, "bridge", &redis.url(), &[]);
    // Accepts connections (the kernel does) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    let mut clients = Clients::start(&scratch, "clients");
    let cases = [
        (bridge.url(), "test-only-wrong-token", "401"),
        (silent_url, "test-only-token", "within 500 ms"),
        (
            format!("http://127.0.0.1:{}", pushwire_tests::process::free_port()),
            "test-only-token",
            "unreachable",
        ),
    ];
    for (i, (url, token, says)) in cases.iter().enumerate() {
        let dir = Scratch::new(&format!("edge-misbehaving-{i}"));
        let edge = EdgeWorker::start(
            &dir,
            &[
                ("PUSHWIRE_APPS", TEST_APPS),
                ("PUSHWIRE_BRIDGE_URL", url),
                ("PUSHWIRE_BRIDGE_TOKEN", token),
                ("PUSHWIRE_BRIDGE_TIMEOUT_MS", "500"),
            ],
        );
        let (status, body) =
            clients.trigger(edge.addr, TEST_APP, &["c"], "e", json!(""), json!({}));
        assert_eq!(status, 503, "{url}: {body}");
        assert!(
            body.contains(says),
            "{url}: the reason says {says:?}: {body}"
        );
    }
}

/// Redis, the bridge, a Redis-backed origin and the edge worker with its default
/// bridge timeout.
struct EdgeStack {
    redis: RedisServer,
    _bridge: Bridge,
    origin: Origin,
    edge: EdgeWorker,
}

impl EdgeStack {
    fn start(scratch: &Scratch) -> Self {
        let redis = RedisServer::start(scratch);
        let bridge = Bridge::start(scratch, "bridge", &redis.url(), &[]);
        let origin = Origin::start(scratch, "origin", OriginOptions::redis(&redis.url()));
        let bridge_url = bridge.url();
        let edge = EdgeWorker::start(
            scratch,
            &[
                ("PUSHWIRE_APPS", TEST_APPS),
                ("PUSHWIRE_BRIDGE_URL", &bridge_url),
                ("PUSHWIRE_BRIDGE_TOKEN", &bridge.token),
            ],
        );
        EdgeStack {
            redis,
            _bridge: bridge,
            origin,
            edge,
        }
    }
}

#[test]
fn an_edge_trigger_after_redis_forgot_the_script_is_published_once() {
    // The edge names the publish script by its digest; a Redis that restarted
    // (or flushed its scripts) answers NOSCRIPT having run nothing, and the edge
    // sends the script's text instead, once.
    let scratch = Scratch::new("edge-noscript");
    let stack = EdgeStack::start(&scratch);
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("c", &stack.origin.url(), json!({}));
    clients.subscribe("c", "scripts");
    let script_exists = || {
        stack
            .redis
            .command(&["SCRIPT", "EXISTS", PUBLISH_SCRIPT_SHA1])
            .expect("SCRIPT EXISTS")
    };

    clients.trigger_ok(stack.edge.addr, TEST_APP, &["scripts"], "first", json!("1"));
    assert_eq!(
        script_exists(),
        "*1\n:1",
        "the first trigger loaded the script"
    );
    stack
        .redis
        .command(&["SCRIPT", "FLUSH"])
        .expect("SCRIPT FLUSH");
    assert_eq!(script_exists(), "*1\n:0");
    stack
        .redis
        .command(&["CONFIG", "RESETSTAT"])
        .expect("RESETSTAT");
    clients.trigger_ok(
        stack.edge.addr,
        TEST_APP,
        &["scripts"],
        "forgotten",
        json!("2"),
    );
    assert_eq!(
        script_exists(),
        "*1\n:1",
        "the edge sent the script's text again"
    );
    clients.trigger_ok(stack.edge.addr, TEST_APP, &["scripts"], "after", json!("3"));
    let seen: Vec<String> = clients
        .events_through("c", "after")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(seen, ["first", "forgotten", "after"], "each once, in order");
    // Two triggers since the flush, one script text: the second went by digest.
    let stats = stack
        .redis
        .command(&["INFO", "commandstats"])
        .expect("INFO commandstats");
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("cmdstat_eval:calls=1,")),
        "{stats}"
    );
}

#[test]
fn a_slow_redis_delays_an_edge_trigger_instead_of_refusing_an_event_it_publishes() {
    // With its default bound the edge waits for the bridge, and the bridge for
    // Redis, longer than Redis stays frozen here: the answer is the outcome.
    let scratch = Scratch::new("edge-slow-redis");
    let stack = EdgeStack::start(&scratch);
    assert_a_slow_redis_delays_the_trigger(&scratch, &stack.redis, &stack.origin, stack.edge.addr);
}

#[test]
fn channel_queries_and_info_at_the_edge_match_the_origin() {
    let scratch = Scratch::new("edge-queries");
    let EdgeStack { origin, edge, .. } = &EdgeStack::start(&scratch);
    assert_queries_at_the_edge_match_the_origin(&scratch, origin, edge);
}

/// Fills a presence channel and another channel through `origin`, then asks
/// the edge and the origin the same channel queries and a trigger's `info`:
/// the answers must be the same.
pub(crate) fn assert_queries_at_the_edge_match_the_origin(
    scratch: &Scratch,
    origin: &Origin,
    edge: &EdgeWorker,
) {
    let mut clients = Clients::start(scratch, "query-clients");
    for (id, user) in [("a", "u1"), ("b", "u2"), ("c", "u2")] {
        let socket_id = clients.connect(id, &origin.url(), json!({}));
        let data = json!({"user_id": user});
        let auth = clients.authorize(TEST_APP, &socket_id, "presence-lobby", Some(data));
        let ack = clients.emit(
            id,
            "subscribe",
            json!([{"channel": "presence-lobby", "auth": auth["auth"], "channel_data": auth["channel_data"]}]),
        );
        assert_eq!(ack["ok"], true, "{ack}");
    }
    clients.subscribe("a", "news");
    // Every ack followed its count's write: the origin agrees at once.
    let channel = "/channels/presence-lobby";
    let params = json!({"info": "subscription_count,user_count"});
    let expected = json!({"occupied": true, "subscription_count": 3, "user_count": 2});
    assert_eq!(
        clients.get(origin.addr, TEST_APP, channel, params.clone()),
        (200, expected)
    );
    for (path, params) in [
        (channel.to_owned(), params.clone()),
        (
            "/channels".to_owned(),
            json!({"filter_by_prefix": "presence-", "info": "user_count"}),
        ),
        ("/channels".to_owned(), json!({})),
        (format!("{channel}/users"), json!({})),
    ] {
        let at_origin = clients.get(origin.addr, TEST_APP, &path, params.clone());
        let at_edge = clients.get(edge.addr, TEST_APP, &path, params);
        assert_eq!(at_edge, at_origin, "GET {path}");
        assert_eq!(at_edge.0, 200, "GET {path}: {}", at_edge.1);
    }
    let (status, body) = clients.trigger(
        edge.addr,
        TEST_APP,
        &["presence-lobby"],
        "hello",
        json!(""),
        json!({"info": "user_count,subscription_count"}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"channels": {"presence-lobby": {"user_count": 2, "subscription_count": 3}}})
    );
    let (status, _) = clients.get(edge.addr, TEST_APP, "/channels/news/history", json!({}));
    assert_eq!(status, 404, "history is answered by the origins");
}
