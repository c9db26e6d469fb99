//! The live demo page, in a real browser: headless Chromium shows an event
//! triggered with the exact command the page displays, with no click first.

use std::process::{Command, Stdio};

use pushwire_tests::origin::{OriginOptions, pushwire_bin};
use pushwire_tests::{Origin, Reporter, Scratch, http};

#[test]
fn demo_page_shows_an_event_triggered_with_its_own_command() {
    let scratch = Scratch::new("demo");
    // The README's run command: no apps configured, so the development app.
    let mut options = OriginOptions::embedded();
    options.apps = String::new();
    let origin = Origin::start(&scratch, "origin", options);

    let page = http::request(origin.addr, "GET", "/", b"");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("app-key") && !page.body.contains("app-secret"),
        "the page must not carry the secret"
    );
    let client = http::request(origin.addr, "GET", "/demo/socket.io.min.js", b"");
    assert!(
        client.status == 200 && client.body.contains("Socket.IO v4"),
        "socket.io-client is served locally"
    );

    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    let mut cmd = Command::new("node");
    cmd.arg(js.join("browser.js"))
        .arg(format!("{}/", origin.url()))
        .arg("browser-demo")
        .current_dir(&js)
        .env("SCREENSHOT", scratch.file("demo.png"));
    let browser = Reporter::spawn(&scratch, "browser", cmd);

    // Untouched, the page subscribes to its default channel; then the
    // Subscribe button switches it to another. On each, the command the page
    // shows, run as it is, delivers an event the page displays.
    for channel in ["demo", "browser-demo"] {
        let ready = browser.next(&format!("the page to subscribe to {channel}"));
        assert_eq!(ready["type"], "ready", "{ready}");
        assert_eq!(ready["channel"], channel, "{ready}");
        assert!(
            !ready["html"]
                .as_str()
                .unwrap_or_default()
                .contains("app-secret")
        );

        // After `cargo run --release`, no `pushwire` is on the PATH: the page
        // names the binary that serves it, which works from any directory.
        let command = ready["command"].as_str().expect("command text");
        let binary = pushwire_bin();
        assert!(
            command.starts_with(&format!("{} trigger ", binary.display()))
                && command.contains(&format!("--channel {channel} ")),
            "{command}"
        );
        let out = Command::new("sh")
            .args(["-c", command])
            .current_dir(scratch.path())
            .env_remove("PUSHWIRE_APPS")
            .env_remove("PUSHWIRE_URL")
            .stdin(Stdio::null())
            .output()
            .expect("run the page's command");
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let event = browser.next("the page to show the event");
        assert_eq!(event["type"], "event", "{event}");
        let cells = &event["cells"];
        assert_eq!(cells["channel"], channel);
        assert_eq!(cells["name"], "greeting");
        assert_eq!(cells["data"], r#"{"hello":"world"}"#);
        assert!(
            cells["latency"]
                .as_str()
                .is_some_and(|l| l.ends_with(" ms")),
            "{cells}"
        );
    }
}
