//! `pushwire trigger` from the shell, and `pushwire serve` refusing to start.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use pushwire_tests::origin::{OriginOptions, TEST_APPS, pushwire_bin};
use pushwire_tests::process::ChildGuard;
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

/// Runs `pushwire serve` with `args` and no `PUSHWIRE_*` variable, expecting it
/// to refuse to start: returns its exit code and what it printed.
fn serve_refused(scratch: &Scratch, name: &str, args: &[&str]) -> (Option<i32>, String) {
    let log = scratch.file(&format!("{name}.log"));
    let mut cmd = Command::new(pushwire_bin());
    cmd.arg("serve")
        .args(["--port", "0", "--workers", "1"])
        .args(args);
    for (variable, _) in std::env::vars_os() {
        if variable.to_string_lossy().starts_with("PUSHWIRE_") {
            cmd.env_remove(variable);
        }
    }
    let mut guard = ChildGuard::spawn(name, cmd, &log, false);
    let status = guard.wait_exit(Duration::from_secs(15));
    (
        status.code(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[test]
fn serve_refuses_to_expose_the_dev_app_or_a_bad_app() {
    let scratch = Scratch::new("serve-refusals");

    // The development app's secret is public: not on every interface.
    let (code, output) = serve_refused(&scratch, "dev-app-public", &["--host", "0.0.0.0"]);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("development app")
            && output.contains("PUSHWIRE_APPS")
            && output.contains("--allow-dev-app"),
        "{output}"
    );

    // A config file app with an empty secret, readable by others.
    let config = scratch.file("empty-secret.json");
    std::fs::write(
        &config,
        r#"{"apps": [{"id": "1", "key": "k", "secret": ""}]}"#,
    )
    .expect("write the config file");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644))
        .expect("chmod the config file");
    let config = config.to_string_lossy().into_owned();
    let (code, output) = serve_refused(&scratch, "empty-secret", &["--config", &config]);
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("the secret is empty"), "{output}");

    // A valid config file others can read: served, with a warning.
    let readable = scratch.file("readable.json");
    std::fs::write(
        &readable,
        r#"{"apps": [{"id": "1000001", "key": "app-key", "secret": "app-secret"}]}"#,
    )
    .expect("write the config file");
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644))
        .expect("chmod the config file");
    let mut options = OriginOptions::embedded();
    options.args = vec!["--config".into(), readable.to_string_lossy().into_owned()];
    let origin = Origin::start(&scratch, "readable-config", options);
    assert!(origin.log().contains("chmod 600"), "{}", origin.log());
    drop(origin);

    // An id that would break the key layout, given on the command line.
    let (code, output) = serve_refused(&scratch, "bad-id", &["--apps", "a/b:k:0123456789abcdef"]);
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("must be letters, digits"), "{output}");
}
