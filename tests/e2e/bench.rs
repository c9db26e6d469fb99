//! `pushwire-bench` measures correctly: against a real cluster, every expected
//! delivery is counted once, and the server processes are found; with churn,
//! the counts stay exact across reconnects that recover through `since`.

use std::process::Command;

use pushwire_tests::origin::{OriginOptions, TEST_APPS, pushwire_bench_bin};
use pushwire_tests::{Origin, RedisServer, Scratch};
use serde_json::Value;

#[test]
fn bench_counts_every_delivery_and_measures_the_server() {
    let scratch = Scratch::new("bench");
    let mut options = OriginOptions::embedded();
    options.workers = 2;
    let origin = Origin::start(&scratch, "origin", options);
    let pid = origin.pid().to_string();
    let report = bench(
        &origin,
        &[
            "-c",
            "40",
            "-k",
            "4",
            "-r",
            "50",
            "-d",
            "1",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(report["triggers_accepted"], 50, "{report}");
    // 4 channels × 10 subscribers each: every trigger reaches 10 sockets.
    assert_every_delivery(&report, 40, 500);
    assert_eq!(report["latency"]["count"], 500);
    assert_eq!(
        report["server_processes"], 3,
        "master and two workers: {report}"
    );
    assert!(report["server_rss_connected_bytes"].as_u64() > Some(0));
}

/// `--protocol pusher` speaks Pusher Channels protocol 7 to the same cluster:
/// every connection is established and subscribed, every triggered event is
/// counted once (its sequence and send time read from the event's data string),
/// and a bad app key is a connect failure, not a hang.
#[test]
fn bench_speaks_the_pusher_protocol() {
    let scratch = Scratch::new("bench-pusher");
    let mut options = OriginOptions::embedded();
    options.workers = 2;
    let origin = Origin::start(&scratch, "origin", options);
    let report = bench(
        &origin,
        &[
            "--protocol",
            "pusher",
            "-c",
            "40",
            "-k",
            "4",
            "-r",
            "50",
            "-d",
            "1",
        ],
    );
    assert_eq!(report["triggers_accepted"], 50, "{report}");
    // 4 channels × 10 subscribers each: every trigger reaches 10 sockets.
    assert_every_delivery(&report, 40, 500);
    assert_eq!(report["latency"]["count"], 500, "{report}");

    let out = Command::new(pushwire_bench_bin())
        .args(["--url", &origin.url(), "--json", "--protocol", "pusher"])
        .args(["-c", "2", "-k", "1", "-r", "0", "-d", "1"])
        .env("PUSHWIRE_APPS", "1:no-such-key:secret")
        .output()
        .expect("run pushwire-bench");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["connect_failures"], 2, "{report}");
}

/// `--polling-first` opens each session over long-polling and upgrades it to
/// WebSocket, as stock clients do: on a two-worker cluster every upgrade must
/// reach the worker holding its session, and every delivery must arrive. With
/// `--browser-headers` each request carries a browser's headers, `Origin`
/// included, which a server that lists other origins refuses.
#[test]
fn polling_first_sessions_upgrade_and_receive_everything() {
    let scratch = Scratch::new("bench-polling-first");
    let mut options = OriginOptions::embedded();
    options.workers = 2;
    options.args = vec!["--allowed-origins".into(), "https://app.example.com".into()];
    let origin = Origin::start(&scratch, "origin", options.clone());
    let report = bench(
        &origin,
        &[
            "-c",
            "40",
            "-k",
            "4",
            "-r",
            "20",
            "-d",
            "1",
            "--polling-first",
            "--browser-headers",
        ],
    );
    assert_eq!(report["connect_failures"], 0, "{report}");
    // 4 channels × 10 subscribers each: every trigger reaches 10 sockets.
    assert_every_delivery(&report, 40, 200);

    options.args = vec![
        "--allowed-origins".into(),
        "https://elsewhere.example".into(),
    ];
    let elsewhere = Origin::start(&scratch, "elsewhere", options);
    for handshake in [
        &["--browser-headers"][..],
        &["--browser-headers", "--polling-first"],
    ] {
        let mut args = vec!["-c", "4", "-k", "1", "-r", "0", "-d", "1"];
        args.extend_from_slice(handshake);
        let report = bench(&elsewhere, &args);
        assert_eq!(report["connect_failures"], 4, "{handshake:?}: {report}");
        assert!(
            report["first_connect_error"]
                .as_str()
                .is_some_and(|e| e.contains("403")),
            "{handshake:?}: {report}"
        );
    }
}

/// Started from a shell whose soft open-file limit is low (a login shell's is
/// often 1,024), the origin raises it to the hard limit, so one worker holds
/// more connections than the limit it was started with.
#[test]
fn the_origin_raises_a_low_soft_open_file_limit() {
    let scratch = Scratch::new("open-file-limit");
    let mut options = OriginOptions::embedded();
    options.workers = 1;
    options.soft_open_files = Some(128);
    let origin = Origin::start(&scratch, "origin", options);
    let report = bench(&origin, &["-c", "400", "-k", "1", "-r", "0", "-d", "1"]);
    assert_eq!(report["connect_failures"], 0, "{report}");
    assert_eq!(report["connected"], 400, "{report}");
}

/// All `connections` connected, and the report expected `deliveries` and counted
/// each exactly once.
fn assert_every_delivery(report: &Value, connections: u64, deliveries: u64) {
    assert_eq!(report["connected"], connections, "{report}");
    assert_eq!(report["expected_deliveries"], deliveries, "{report}");
    assert_eq!(report["delivered"], deliveries, "{report}");
    assert_eq!(
        (report["lost"].as_u64(), report["duplicates"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
}

/// Runs `pushwire-bench --json` against `origin` with `args` and returns the report.
fn bench(origin: &Origin, args: &[&str]) -> Value {
    let out = Command::new(pushwire_bench_bin())
        .args(["--url", &origin.url(), "--json"])
        .args(["--source-ips", "127.0.0.1-127.0.0.2"])
        .args(args)
        .env("PUSHWIRE_APPS", TEST_APPS)
        .output()
        .expect("run pushwire-bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

/// 40 connections over 4 channels, 50 triggers/s for 2 s, 20 reconnects/s.
/// Each bench connection is on one channel and is only picked once it has a
/// `pos` there, so every reconnect makes exactly one subscribe with `since`,
/// which must recover: nothing lost, nothing twice, one recovered ack (and one
/// recovery latency sample) per reconnect.
fn assert_churn_is_exact(origin: &Origin) {
    let report = bench(
        origin,
        &[
            "-c", "40", "-k", "4", "-r", "50", "-d", "2", "--churn", "20",
        ],
    );
    assert_eq!(report["triggers_accepted"], 100, "{report}");
    assert_every_delivery(&report, 40, 1000);
    let reconnects = report["churn_reconnects"]
        .as_u64()
        .expect("churn_reconnects");
    assert!(reconnects > 0, "{report}");
    assert_eq!(report["churn_failures"], 0, "{report}");
    assert_eq!(
        report["churn_recovered"].as_u64(),
        Some(reconnects),
        "{report}"
    );
    assert_eq!(report["churn_not_recovered"], 0, "{report}");
    assert_eq!(
        report["churn_recovery_latency"]["count"].as_u64(),
        Some(reconnects),
        "{report}"
    );
}

#[test]
fn bench_churn_recovers_every_reconnect_embedded() {
    let scratch = Scratch::new("bench-churn-embedded");
    let mut options = OriginOptions::embedded();
    options.workers = 2;
    let origin = Origin::start(&scratch, "origin", options);
    assert_churn_is_exact(&origin);
}

#[test]
fn bench_churn_recovers_every_reconnect_redis() {
    let scratch = Scratch::new("bench-churn-redis");
    let redis = RedisServer::start(&scratch);
    let mut options = OriginOptions::redis(&redis.url());
    options.workers = 2;
    let origin = Origin::start(&scratch, "origin", options);
    assert_churn_is_exact(&origin);
}
