//! Webhook receivers written as app backends write them, with the stock Pusher
//! SDKs: `tests/js/webhook-receiver.js` (npm `pusher`, `webhook().isValid()`)
//! and `tests/python/webhook_receiver.py` (PyPI `pusher`, `validate_webhook`).
//!
//! Each listens on a loopback port it picks itself, says which, and reports
//! every request it got: whether its SDK found it valid, the body, and the
//! status it answered, which a test can set to fail the first requests. The
//! Node one also serves `https://` with a certificate of a
//! [`TestCa`](crate::test_ca::TestCa), and then
//! reports each TLS handshake a client broke off.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::clients::{Credentials, js_dir, python};
use crate::process::Scratch;
use crate::reporter::Reporter;
use crate::test_ca::ServerCert;

/// How long [`WebhookReceiver::received`] waits for the requests it expects.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// Which stock SDK validates the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    /// The npm `pusher` package (Node.js).
    Node,
    /// The PyPI `pusher` package (Python).
    Python,
}

/// What the receiver answers: `fail_status` to the first `fail_first`
/// requests, `200` to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answers {
    /// How many requests, from the first, get `fail_status`.
    pub fail_first: usize,
    /// The status they get.
    pub fail_status: u16,
}

impl Answers {
    /// `200` to every request.
    pub const OK: Answers = Answers {
        fail_first: 0,
        fail_status: 500,
    };

    /// `status` to the first `count` requests, then `200`.
    pub fn fail_first(count: usize, status: u16) -> Self {
        Answers {
            fail_first: count,
            fail_status: status,
        }
    }
}

/// One request as a receiver saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedWebhook {
    /// Whether the SDK found it valid (signature, key, and for Python `time_ms`).
    pub valid: bool,
    /// The status the receiver answered.
    pub status: u16,
    /// The raw body.
    pub body: String,
    /// The events as the SDK read them, when valid.
    pub events: Option<Value>,
}

/// A running receiver; its process group is stopped on drop.
#[derive(Debug)]
pub struct WebhookReceiver {
    reports: Reporter,
    addr: SocketAddr,
    scheme: &'static str,
    received: Vec<ReceivedWebhook>,
    tls_errors: Vec<String>,
}

impl WebhookReceiver {
    /// Starts the receiver of `sdk` for `app`, answering as `answers` says,
    /// and waits until it listens.
    pub fn start(scratch: &Scratch, sdk: Sdk, app: Credentials<'_>, answers: Answers) -> Self {
        Self::start_with(scratch, sdk, app, answers, None, 0)
    }

    /// Starts the Node receiver for `app` on `addr` (where an earlier one
    /// listened: a receiver coming back after an outage), answering `200`.
    pub fn start_on(scratch: &Scratch, app: Credentials<'_>, addr: SocketAddr) -> Self {
        Self::start_with(scratch, Sdk::Node, app, Answers::OK, None, addr.port())
    }

    /// Starts the Node receiver serving `https://` with `cert` (see
    /// [`TestCa::issue`](crate::test_ca::TestCa::issue)), answering as `answers` says, and waits until it listens.
    pub fn start_https(
        scratch: &Scratch,
        app: Credentials<'_>,
        answers: Answers,
        cert: &ServerCert,
    ) -> Self {
        Self::start_with(scratch, Sdk::Node, app, answers, Some(cert), 0)
    }

    fn start_with(
        scratch: &Scratch,
        sdk: Sdk,
        app: Credentials<'_>,
        answers: Answers,
        tls: Option<&ServerCert>,
        port: u16,
    ) -> Self {
        let (name, cmd) = match sdk {
            Sdk::Node => {
                let dir = js_dir();
                assert!(
                    dir.join("node_modules/pusher").exists(),
                    "node packages missing: run `npm ci` in {} (the README test command does)",
                    dir.display()
                );
                let mut options = json!({"appId": app.id, "key": app.key, "secret": app.secret,
                                         "failFirst": answers.fail_first, "failStatus": answers.fail_status,
                                         "port": port});
                if let Some(tls) = tls {
                    options["tls"] = json!({"cert": tls.cert, "key": tls.key});
                }
                let mut cmd = Command::new("node");
                cmd.arg(dir.join("webhook-receiver.js"))
                    .arg(options.to_string())
                    .current_dir(&dir);
                ("webhook-receiver-node", cmd)
            }
            Sdk::Python => {
                assert!(
                    tls.is_none() && port == 0,
                    "only the Node receiver serves https or takes a port"
                );
                let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python");
                let options = json!({"app_id": app.id, "key": app.key, "secret": app.secret,
                                     "fail_first": answers.fail_first, "fail_status": answers.fail_status});
                let mut cmd = Command::new(python());
                cmd.arg(dir.join("webhook_receiver.py"))
                    .arg(options.to_string())
                    .current_dir(&dir);
                ("webhook-receiver-python", cmd)
            }
        };
        let reports = Reporter::spawn(scratch, name, cmd);
        let ready = reports.next("the webhook receiver to listen");
        let port = ready["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|_| ready["type"] == "ready")
            .unwrap_or_else(|| panic!("{name} did not report its port: {ready}"));
        WebhookReceiver {
            reports,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            scheme: if tls.is_some() { "https" } else { "http" },
            received: Vec::new(),
            tls_errors: Vec::new(),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its URL with `path` (which starts with `/`), as an endpoint's config
    /// names it: `https://` when it serves TLS.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// Every request received so far, once there are at least `count`;
    /// panics, listing those that came, after [`RECEIVE_TIMEOUT`].
    pub fn received(&mut self, count: usize) -> &[ReceivedWebhook] {
        self.received_within(count, RECEIVE_TIMEOUT)
    }

    /// [`received`](Self::received), waiting up to `timeout`.
    pub fn received_within(&mut self, count: usize, timeout: Duration) -> &[ReceivedWebhook] {
        self.wait_until(&format!("{count} webhook requests"), timeout, |r| {
            r.received.len() >= count
        });
        &self.received
    }

    /// The message of every TLS handshake that failed so far, once there are
    /// at least `count`; panics after [`RECEIVE_TIMEOUT`].
    pub fn tls_errors(&mut self, count: usize) -> &[String] {
        self.wait_until(
            &format!("{count} failed TLS handshakes"),
            RECEIVE_TIMEOUT,
            |r| r.tls_errors.len() >= count,
        );
        &self.tls_errors
    }

    /// Reads reports until `done`; panics, listing what came, after `timeout`.
    fn wait_until(&mut self, what: &str, timeout: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(report) = self.reports.recv_timeout(left) else {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; got {:#?} and TLS errors {:#?}",
                    self.received, self.tls_errors
                );
            };
            if report["type"] == "tls_error" {
                let message = report["message"].as_str().unwrap_or_default();
                self.tls_errors.push(message.to_owned());
                continue;
            }
            assert_eq!(
                report["type"], "request",
                "the receiver reported a problem: {report}"
            );
            self.received.push(ReceivedWebhook {
                valid: report["valid"] == true,
                status: report["status"]
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or_else(|| panic!("no status in {report}")),
                body: report["body"].as_str().unwrap_or_default().to_owned(),
                events: Some(report["events"].clone()).filter(|e| !e.is_null()),
            });
        }
    }
}
