//! Pages in headless Chromium using the npm `pusher-js` and `laravel-echo`
//! browser builds, with the small app backend that authorizes their channels
//! (`tests/js/pusher-browser.js`, `tests/js/pusher-page.html`).

use std::io::Write;
use std::net::SocketAddr;
use std::process::{ChildStdin, Command};
use std::time::Duration;

use serde_json::{Value, json};

use crate::clients::{Credentials, js_dir};
use crate::process::Scratch;
use crate::reporter::Reporter;

/// How long any single expected report may take (a browser starts slower than Node).
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// The browser, its pages and the backend, and the reports not yet read.
#[derive(Debug)]
pub struct BrowserPages {
    stdin: ChildStdin,
    reports: Reporter,
    backlog: Vec<Value>,
}

impl BrowserPages {
    /// Starts the backend (authorizing as `app`, with `master_key` as the
    /// server SDK's `encryptionMasterKeyBase64`) and Chromium.
    pub fn start(scratch: &Scratch, app: Credentials<'_>, master_key: &str) -> Self {
        let dir = js_dir();
        assert!(
            dir.join("node_modules/laravel-echo").exists()
                && dir.join("node_modules/playwright-core").exists(),
            "node packages missing: run `npm ci` in {} (the README test command does)",
            dir.display()
        );
        let config = json!({
            "appId": app.id, "key": app.key, "secret": app.secret,
            "encryptionMasterKeyBase64": master_key,
        });
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("pusher-browser.js"))
            .arg(config.to_string())
            .current_dir(&dir);
        let mut reports = Reporter::spawn(scratch, "browser", cmd);
        let mut pages = BrowserPages {
            stdin: reports.take_stdin(),
            reports,
            backlog: Vec::new(),
        };
        pages.wait_for("the browser and backend to start", |r| r["type"] == "ready");
        pages
    }

    fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").expect("write to the browser driver");
        self.stdin
            .flush()
            .expect("flush the browser driver's stdin");
    }

    /// Opens page `page`, signed in as `user`, whose clients connect to `origin`;
    /// waits until its scripts loaded.
    pub fn open(&mut self, page: &str, origin: SocketAddr, user: &str) {
        self.send(json!({
            "op": "open", "page": page, "host": origin.ip().to_string(),
            "port": origin.port(), "user": user,
        }));
        let loaded = self.report(page, "loaded");
        assert_eq!(
            (&loaded["pusher"], &loaded["echo"]),
            (&json!("function"), &json!("object")),
            "{loaded}"
        );
    }

    /// Runs `window.pw[function](args)` in `page`.
    pub fn call(&mut self, page: &str, function: &str, args: Value) {
        self.send(json!({"op": "call", "page": page, "fn": function, "args": args}));
    }

    /// Closes `page`: its connections close with it.
    pub fn close(&mut self, page: &str) {
        self.send(json!({"op": "close", "page": page}));
    }

    /// Waits for `page`'s next report of type `kind`.
    pub fn report(&mut self, page: &str, kind: &str) -> Value {
        self.wait_for(&format!("{kind} on page {page}"), |r| {
            r["page"] == page && r["type"] == kind
        })
    }

    /// Waits until the client `client` of `page` is connected; returns its socket id.
    pub fn connected(&mut self, page: &str, client: &str) -> String {
        let report = self.wait_for(&format!("{client} on page {page} to connect"), |r| {
            r["page"] == page
                && r["type"] == "state"
                && r["client"] == client
                && r["state"] == "connected"
        });
        report["socket_id"].as_str().expect("socket_id").to_owned()
    }

    /// Waits for `client` of `page` to report its subscription to `channel`:
    /// `subscribed` or `subscription_error`.
    pub fn subscription(&mut self, page: &str, client: &str, channel: &str) -> Value {
        self.wait_for(
            &format!("{client} on page {page} to subscribe to {channel}"),
            |r| {
                r["page"] == page
                    && r["client"] == client
                    && r["channel"] == channel
                    && (r["type"] == "subscribed" || r["type"] == "subscription_error")
            },
        )
    }

    /// Waits for `event` on `channel` as `client` of `page` handed it to the
    /// app's listener; returns its data.
    pub fn event(&mut self, page: &str, client: &str, channel: &str, event: &str) -> Value {
        self.wait_for(&format!("{event} on {channel} in page {page}"), |r| {
            r["page"] == page
                && r["type"] == "event"
                && r["client"] == client
                && r["channel"] == channel
                && r["event"] == event
        })["data"]
            .clone()
    }

    /// Removes and returns the first report matching `pred`, waiting up to
    /// [`REPORT_TIMEOUT`]; a driver error or a page's uncaught error fails the test.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.reports
            .wait_in(&mut self.backlog, REPORT_TIMEOUT, what, pred, |r| {
                ["error", "garbage", "page_error"].contains(&r["type"].as_str().unwrap_or(""))
            })
    }
}
