//! `pushwire trigger` from the shell, and `pushwire serve` and `pushwire
//! bridge` refusing settings they cannot use, before they listen.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use pushwire_tests::bridge::test_token;
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

/// How long refusing a setting may take: it is checked before anything starts.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `pushwire <args>` with `env` and no other `PUSHWIRE_*` variable,
/// expecting it to exit within [`REFUSAL_TIMEOUT`]: returns its exit code and
/// what it printed.
fn refused(
    scratch: &Scratch,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let log = scratch.file(&format!("{name}.log"));
    let mut cmd = Command::new(pushwire_bin());
    cmd.args(args);
    for (variable, _) in std::env::vars_os() {
        if variable.to_string_lossy().starts_with("PUSHWIRE_") {
            cmd.env_remove(variable);
        }
    }
    cmd.envs(env.iter().copied());
    let mut guard = ChildGuard::spawn(name, cmd, &log, false);
    let status = guard.wait_exit(REFUSAL_TIMEOUT);
    (
        status.code(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

/// [`refused`] for `pushwire serve` on any free port.
fn serve_refused(scratch: &Scratch, name: &str, args: &[&str]) -> (Option<i32>, String) {
    serve_refused_with(scratch, name, args, &[])
}

/// [`serve_refused`] with environment variables.
fn serve_refused_with(
    scratch: &Scratch,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let serve = ["serve", "--port", "0"];
    refused(scratch, name, &[&serve[..], args].concat(), env)
}

/// Asserts that a refusal exited 2 having printed one message (clap adds its
/// usage lines to its own), whose first line holds every one of `expected`
/// (the setting, where it was given, what is wrong), and logged nothing else:
/// nothing was started.
fn assert_one_clear_message((code, output): (Option<i32>, String), expected: &[&str]) {
    assert_eq!(code, Some(2), "{output}");
    let messages: Vec<&str> = output
        .lines()
        .filter(|line| line.starts_with("pushwire: ") || line.starts_with("error: "))
        .collect();
    assert_eq!(messages.len(), 1, "one message:\n{output}");
    assert!(
        output.starts_with(messages[0]) && !output.contains(" INFO ") && !output.contains(" WARN "),
        "nothing before or besides the message:\n{output}"
    );
    for text in expected {
        assert!(messages[0].contains(text), "{text:?} not in {output}");
    }
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

/// A typo'd Redis URL (a port that is not a number) used to start an origin whose
/// workers then failed, every few hundred milliseconds, forever; now it is
/// refused before the port is bound, however it was given. An unreachable
/// but well-formed URL is not refused (the origin answers 503 until Redis is up).
#[test]
fn a_redis_url_that_does_not_parse_is_refused_before_listening() {
    let scratch = Scratch::new("bad-redis-url");
    let typo = "redis://127.0.0.1:notaport";
    let expected = ["not a Redis URL", "did not parse"];

    let flag = serve_refused(&scratch, "flag", &["--redis", typo]);
    assert_one_clear_message(
        flag,
        &[&["--redis / PUSHWIRE_REDIS_URL"], &expected[..]].concat(),
    );

    let env = serve_refused_with(&scratch, "env", &[], &[("PUSHWIRE_REDIS_URL", typo)]);
    assert_one_clear_message(
        env,
        &[&["--redis / PUSHWIRE_REDIS_URL"], &expected[..]].concat(),
    );

    let config = scratch.file("typo.json");
    std::fs::write(&config, format!(r#"{{"redis_url": "{typo}"}}"#)).expect("write the config");
    let config = config.to_string_lossy().into_owned();
    let file = serve_refused(&scratch, "file", &["--config", &config]);
    assert_one_clear_message(
        file,
        &[&["redis_url in the config file"], &expected[..]].concat(),
    );

    let bridge = refused(
        &scratch,
        "bridge",
        &["bridge", "--port", "0", "--redis", typo],
        &[("PUSHWIRE_BRIDGE_TOKEN", &test_token())],
    );
    assert_one_clear_message(
        bridge,
        &[&["--redis / PUSHWIRE_REDIS_URL"], &expected[..]].concat(),
    );

    // Well-formed but nothing listens there: served, and says so.
    let origin = Origin::start(
        &scratch,
        "unreachable",
        OriginOptions::redis("redis://127.0.0.1:1"),
    );
    assert_eq!(origin.health()["broker"]["connected"], false);
}

#[test]
fn a_config_file_that_cannot_be_used_is_refused_before_listening() {
    let scratch = Scratch::new("bad-config-file");
    let missing = scratch.file("missing.json").to_string_lossy().into_owned();
    assert_one_clear_message(
        serve_refused(&scratch, "missing", &["--config", &missing]),
        &[
            "cannot read config file",
            &missing,
            "--config / PUSHWIRE_CONFIG",
            "No such file",
        ],
    );

    let broken = scratch.file("broken.json");
    std::fs::write(&broken, r#"{"port": 3000,"#).expect("write the config");
    let broken = broken.to_string_lossy().into_owned();
    assert_one_clear_message(
        serve_refused_with(&scratch, "broken", &[], &[("PUSHWIRE_CONFIG", &broken)]),
        &[
            "invalid config file",
            &broken,
            "--config / PUSHWIRE_CONFIG",
            "EOF",
        ],
    );

    let misspelt = scratch.file("misspelt.json");
    std::fs::write(&misspelt, r#"{"redis": "redis://127.0.0.1:6379"}"#).expect("write the config");
    let misspelt = misspelt.to_string_lossy().into_owned();
    assert_one_clear_message(
        serve_refused(&scratch, "misspelt", &["--config", &misspelt]),
        &["invalid config file", "unknown field `redis`", "redis_url"],
    );

    // An impossible limit in the file, named by its key.
    let limit = scratch.file("limit.json");
    std::fs::write(&limit, r#"{"ping_interval_ms": 18446744073709551615}"#)
        .expect("write the config");
    let limit = limit.to_string_lossy().into_owned();
    assert_one_clear_message(
        serve_refused(&scratch, "limit", &["--config", &limit]),
        &[
            "ping_interval_ms in the config file",
            "must be at most 3600000",
        ],
    );
}

#[test]
fn an_invalid_app_or_limit_is_refused_before_listening() {
    let scratch = Scratch::new("bad-app");
    assert_one_clear_message(
        serve_refused(&scratch, "flag", &["--apps", "1000001:app-key:"]),
        &["--apps / PUSHWIRE_APPS", "secret is empty"],
    );
    assert_one_clear_message(
        serve_refused_with(
            &scratch,
            "env",
            &[],
            &[("PUSHWIRE_APPS", "a b:k:0123456789abcdef")],
        ),
        &["--apps / PUSHWIRE_APPS", "must be letters, digits"],
    );
    let config = scratch.file("apps.json");
    std::fs::write(
        &config,
        r#"{"apps": [{"id": "1", "key": "", "secret": "0123456789abcdef"}]}"#,
    )
    .expect("write the config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = config.to_string_lossy().into_owned();
    assert_one_clear_message(
        serve_refused(&scratch, "file", &["--config", &config]),
        &["invalid config file", "key is empty"],
    );

    // Impossible limits, on the command line, and at the bridge.
    assert_one_clear_message(
        serve_refused(&scratch, "workers", &["--workers", "0"]),
        &["--workers / PUSHWIRE_WORKERS", "at least 1"],
    );
    assert_one_clear_message(
        serve_refused_with(
            &scratch,
            "ping",
            &[],
            &[("PUSHWIRE_PING_TIMEOUT_MS", "3600001")],
        ),
        &[
            "--ping-timeout-ms / PUSHWIRE_PING_TIMEOUT_MS",
            "at most 3600000",
        ],
    );
    assert_one_clear_message(
        refused(
            &scratch,
            "bridge",
            &["bridge", "--port", "0", "--header-read-timeout-ms", "1"],
            &[("PUSHWIRE_BRIDGE_TOKEN", &test_token())],
        ),
        &[
            "--header-read-timeout-ms / PUSHWIRE_BRIDGE_HEADER_READ_TIMEOUT_MS",
            "must be at least 100",
        ],
    );
}

/// A single Redis may come up after the origin (which answers `503` until
/// then), but a cluster URL whose seeds do not answer, or that names a node
/// without cluster support, cannot work: refused at start, origin and bridge.
#[test]
fn a_cluster_url_that_names_no_cluster_is_refused_at_start() {
    let scratch = Scratch::new("bad-cluster-url");
    let nobody = format!(
        "redis+cluster://127.0.0.1:{}",
        pushwire_tests::process::free_port()
    );
    let single = pushwire_tests::RedisServer::start(&scratch);
    let not_a_cluster = single.url().replacen("redis://", "redis+cluster://", 1);
    for (name, url, says) in [
        (
            "unreachable",
            &nobody,
            "none of the Redis Cluster's seed nodes answered",
        ),
        ("single", &not_a_cluster, "is not a Redis Cluster node"),
    ] {
        let serve = serve_refused(&scratch, &format!("serve-{name}"), &["--redis", url]);
        assert_one_clear_message(serve, &["--redis / PUSHWIRE_REDIS_URL", says]);
        let bridge = refused(
            &scratch,
            &format!("bridge-{name}"),
            &["bridge", "--port", "0", "--redis", url],
            &[("PUSHWIRE_BRIDGE_TOKEN", &test_token())],
        );
        assert_one_clear_message(bridge, &["--redis / PUSHWIRE_REDIS_URL", says]);
    }
}

/// Webhooks pushwire could not send are refused before it listens: any
/// endpoint with Redis (only the embedded broker sends them so far), or a
/// URL that is not http(s).
#[test]
fn webhooks_that_could_not_be_sent_are_refused_at_start() {
    let scratch = Scratch::new("bad-webhooks");
    let not_a_url = serve_refused(&scratch, "ftp", &["--webhook-url", "ftp://127.0.0.1/hook"]);
    assert_one_clear_message(not_a_url, &["--webhook-url / PUSHWIRE_WEBHOOK_URL"]);
}
