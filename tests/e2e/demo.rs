//! The live demo page, in a real browser: headless Chromium shows an event
//! triggered with the exact command the page displays.

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
    let ready = browser.next("the page to subscribe");
    assert_eq!(ready["type"], "ready", "{ready}");
    assert!(
        !ready["html"]
            .as_str()
            .unwrap_or_default()
            .contains("app-secret")
    );

    // Run exactly what the page tells the user to run, with `pushwire` on the PATH.
    let command = ready["command"].as_str().expect("command text");
    assert!(
        command.starts_with("pushwire trigger") && command.contains("--channel browser-demo"),
        "{command}"
    );
    let bin_dir = pushwire_bin().parent().expect("bin dir").to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-c", command])
        .env("PATH", path)
        .env_remove("PUSHWIRE_APPS")
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
    assert_eq!(cells["channel"], "browser-demo");
    assert_eq!(cells["name"], "greeting");
    assert_eq!(cells["data"], r#"{"hello":"world"}"#);
    assert!(
        cells["latency"]
            .as_str()
            .is_some_and(|l| l.ends_with(" ms")),
        "{cells}"
    );
}
