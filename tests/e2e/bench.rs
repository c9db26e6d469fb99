//! `pushwire bench` measures correctly: against a real cluster, every expected
//! delivery is counted once, and the server processes are found.

use std::process::Command;

use pushwire_tests::origin::{OriginOptions, TEST_APPS, pushwire_bin};
use pushwire_tests::{Origin, Scratch};
use serde_json::Value;

#[test]
fn bench_counts_every_delivery_and_measures_the_server() {
    let scratch = Scratch::new("bench");
    let mut options = OriginOptions::embedded();
    options.workers = 2;
    let origin = Origin::start(&scratch, "origin", options);
    let out = Command::new(pushwire_bin())
        .args([
            "bench",
            "--url",
            &origin.url(),
            "-c",
            "40",
            "-k",
            "4",
            "-r",
            "50",
            "-d",
            "1",
            "--json",
        ])
        .args([
            "--source-ips",
            "127.0.0.1-127.0.0.2",
            "--server-pid",
            &origin.pid().to_string(),
        ])
        .env("PUSHWIRE_APPS", TEST_APPS)
        .output()
        .expect("run pushwire bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["connected"], 40, "{report}");
    assert_eq!(report["triggers_accepted"], 50, "{report}");
    // 4 channels × 10 subscribers each: every trigger reaches 10 sockets.
    assert_eq!(report["expected_deliveries"], 500, "{report}");
    assert_eq!(report["delivered"], 500, "{report}");
    assert_eq!(
        (report["lost"].as_u64(), report["duplicates"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(report["latency"]["count"], 500);
    assert_eq!(
        report["server_processes"], 3,
        "master and two workers: {report}"
    );
    assert!(report["server_rss_connected_bytes"].as_u64() > Some(0));
}
