//! `pushwire trigger` from the shell.

use std::process::Command;

use pushwire_tests::origin::{OriginOptions, TEST_APPS, pushwire_bin};
use pushwire_tests::{Clients, Origin, Scratch};
use serde_json::json;

fn trigger(origin: &Origin, apps: &str, args: &[&str]) -> std::process::Output {
    Command::new(pushwire_bin())
        .arg("trigger")
        .args(["--url", &origin.url()])
        .args(args)
        .env("PUSHWIRE_APPS", apps)
        .output()
        .expect("run pushwire trigger")
}

#[test]
fn trigger_command_delivers_and_reports_refusals() {
    let scratch = Scratch::new("cli");
    let origin = Origin::start(&scratch, "origin", OriginOptions::embedded());
    let mut clients = Clients::start(&scratch, "clients");
    clients.connect("c", &origin.url(), json!({}));
    clients.subscribe("c", "shell");

    let out = trigger(
        &origin,
        TEST_APPS,
        &[
            "--channel",
            "shell",
            "--event",
            "hello",
            "--data",
            r#"{"x":1}"#,
        ],
    );
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{}");
    assert_eq!(clients.event("c", "hello")[0], json!({"x": 1}));

    let out = trigger(
        &origin,
        "1000001:app-key:wrong-secret",
        &["--channel", "shell", "--event", "hello"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("invalid auth_signature"),
        "{stderr}"
    );

    let out = trigger(
        &origin,
        TEST_APPS,
        &["--channel", "bad channel", "--event", "hello"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("400") && stderr.contains("bad channel"),
        "{stderr}"
    );
}
