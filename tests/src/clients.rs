//! Stock clients, driven through `tests/js/driver.js`: npm `socket.io-client`
//! sockets, npm `pusher-js` clients (see [`crate::pusher_clients`]) and the
//! npm `pusher` server SDK.
//!
//! Commands go to the driver's stdin as JSON lines; its reports come back as
//! JSON lines and wait in a backlog until a test asks for them.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ChildStdin, Command};
use std::time::Duration;

use serde_json::{Value, json};

use crate::process::Scratch;
use crate::reporter::Reporter;

/// How long any single expected report may take.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(15);

/// The test app's credentials as the Pusher SDK takes them.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// App id.
    pub id: &'a str,
    /// App key.
    pub key: &'a str,
    /// App secret.
    pub secret: &'a str,
}

/// The credentials of [`crate::origin::TEST_APPS`].
pub const TEST_APP: Credentials<'static> = Credentials {
    id: "1000001",
    key: "app-key",
    secret: "app-secret",
};

/// `tests/js`: the Node.js scripts and their `node_modules`.
pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// The Python of `tests/python/.venv`, where the PyPI clients are installed.
pub fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/.venv/bin/python");
    assert!(
        venv.exists(),
        "Python clients missing: create {} with tests/python/requirements.txt (the README test command does)",
        venv.display()
    );
    venv
}

/// A running driver process and the reports it has sent.
#[derive(Debug)]
pub struct Clients {
    stdin: ChildStdin,
    reports: Reporter,
    backlog: Vec<Value>,
    next_req: u64,
}

impl Clients {
    /// Starts the driver and waits until it is ready.
    pub fn start(scratch: &Scratch, name: &str) -> Self {
        let dir = js_dir();
        assert!(
            dir.join("node_modules/socket.io-client").exists()
                && dir.join("node_modules/pusher").exists()
                && dir.join("node_modules/pusher-js").exists(),
            "node packages missing: run `npm ci` in {} (the README test command does)",
            dir.display()
        );
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("driver.js")).current_dir(&dir);
        let mut reports = Reporter::spawn(scratch, name, cmd);
        let mut clients = Clients {
            stdin: reports.take_stdin(),
            reports,
            backlog: Vec::new(),
            next_req: 0,
        };
        clients.wait_for("driver ready", |r| r["type"] == "ready");
        clients
    }

    pub(crate) fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").expect("write to driver");
        self.stdin.flush().expect("flush driver stdin");
    }

    pub(crate) fn req_id(&mut self) -> String {
        self.next_req += 1;
        format!("r{}", self.next_req)
    }

    /// Removes and returns the first report matching `pred`, waiting up to [`REPORT_TIMEOUT`].
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.reports
            .wait_in(&mut self.backlog, REPORT_TIMEOUT, what, pred, |r| {
                r["type"] == "error" || r["type"] == "garbage"
            })
    }

    /// Removes and returns, in arrival order, the reports received so far
    /// that match `pred`.
    pub fn take_backlog(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        while let Some(report) = self.reports.try_recv() {
            self.backlog.push(report);
        }
        let (taken, rest) = std::mem::take(&mut self.backlog)
            .into_iter()
            .partition(pred);
        self.backlog = rest;
        taken
    }

    /// Waits for socket `id`'s connection outcome: `connected` or `connect_error`.
    fn connect_outcome(&mut self, id: &str) -> Value {
        self.wait_for(&format!("{id} to connect or be refused"), |r| {
            r["id"] == id && (r["type"] == "connected" || r["type"] == "connect_error")
        })
    }

    /// Connects socket `id` to `url` with `io(url, opts)`; returns its socket_id
    /// once `pushwire:connection_established` arrived.
    pub fn connect(&mut self, id: &str, url: &str, opts: Value) -> String {
        let report = self.connect_all(&[id.to_owned()], url, opts).remove(0);
        report["socket_id"]
            .as_str()
            .expect("socket_id string")
            .to_owned()
    }

    /// Connects every socket in `ids` at once (same `url` and `opts`) and waits
    /// until all are established; returns their `connected` reports in `ids` order.
    pub fn connect_all(&mut self, ids: &[String], url: &str, opts: Value) -> Vec<Value> {
        for id in ids {
            self.send(json!({"op": "connect", "id": id, "url": url, "opts": opts}));
        }
        ids.iter()
            .map(|id| {
                let report = self.connect_outcome(id);
                assert_eq!(
                    report["type"], "connected",
                    "{id} could not connect: {report}"
                );
                report
            })
            .collect()
    }

    /// Reports not yet consumed by a `wait_for`, after reading whatever has arrived.
    pub fn pending_reports(&mut self) -> &[Value] {
        while let Some(report) = self.reports.try_recv() {
            self.backlog.push(report);
        }
        &self.backlog
    }

    /// Connects socket `id` expecting a `connect_error`; returns its message.
    pub fn connect_refused(&mut self, id: &str, url: &str, mut opts: Value) -> String {
        opts["reconnection"] = json!(false);
        self.send(json!({"op": "connect", "id": id, "url": url, "opts": opts}));
        let report = self.connect_outcome(id);
        assert_eq!(
            report["type"], "connect_error",
            "{id} was not refused: {report}"
        );
        report["message"].as_str().unwrap_or_default().to_owned()
    }

    /// Emits `event` with `args` and an ack callback; returns the ack.
    pub fn emit(&mut self, id: &str, event: &str, args: Value) -> Value {
        let req = self.req_id();
        self.send(json!({"op": "emit", "id": id, "req": req, "event": event, "args": args}));
        let report = self.wait_for(&format!("ack of {event} from {id}"), |r| {
            r["req"] == req.as_str()
        });
        assert_eq!(report["type"], "ack", "no ack for {event}: {report}");
        report["ack"].clone()
    }

    /// Emits every `(id, event, args)` at once, each with an ack callback, and
    /// waits for all the acks; returns them in the same order.
    pub fn emit_all(&mut self, emits: &[(&str, &str, Value)]) -> Vec<Value> {
        let reqs: Vec<String> = emits
            .iter()
            .map(|(id, event, args)| {
                let req = self.req_id();
                self.send(
                    json!({"op": "emit", "id": id, "req": req, "event": event, "args": args}),
                );
                req
            })
            .collect();
        reqs.iter()
            .zip(emits)
            .map(|(req, (id, event, _))| {
                let report = self.wait_for(&format!("ack of {event} from {id}"), |r| {
                    r["req"] == req.as_str()
                });
                assert_eq!(report["type"], "ack", "no ack for {event}: {report}");
                report["ack"].clone()
            })
            .collect()
    }

    /// Emits `event` with `args` and no ack callback.
    pub fn emit_without_ack(&mut self, id: &str, event: &str, args: Value) {
        self.send(json!({"op": "emit_no_ack", "id": id, "event": event, "args": args}));
    }

    /// Subscribes `id` to `channel` and asserts `{"ok": true}`.
    pub fn subscribe(&mut self, id: &str, channel: &str) {
        let ack = self.emit(id, "subscribe", json!([{"channel": channel}]));
        assert_eq!(ack, json!({"ok": true}), "subscribe {id} to {channel}");
    }

    /// Unsubscribes `id` from `channel` and asserts `{"ok": true}`.
    pub fn unsubscribe(&mut self, id: &str, channel: &str) {
        let ack = self.emit(id, "unsubscribe", json!([{"channel": channel}]));
        assert_eq!(ack, json!({"ok": true}), "unsubscribe {id} from {channel}");
    }

    /// Waits for socket `id` to receive `event`; returns its arguments.
    pub fn event(&mut self, id: &str, event: &str) -> Vec<Value> {
        let report = self.wait_for(&format!("{id} to receive {event}"), |r| {
            r["type"] == "event" && r["id"] == id && r["event"] == event
        });
        report["args"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until socket `id` receives `sentinel`, and returns every event it
    /// received up to and including it, in order (`(name, args)`).
    pub fn events_through(&mut self, id: &str, sentinel: &str) -> Vec<(String, Vec<Value>)> {
        self.event_seen(id, sentinel);
        let mut taken = Vec::new();
        let mut rest = Vec::new();
        let mut done = false;
        for r in self.backlog.drain(..) {
            if !done && r["type"] == "event" && r["id"] == id {
                done = r["event"] == sentinel;
                taken.push((
                    r["event"].as_str().unwrap_or_default().to_owned(),
                    r["args"].as_array().cloned().unwrap_or_default(),
                ));
            } else {
                rest.push(r);
            }
        }
        self.backlog = rest;
        taken
    }

    fn event_seen(&mut self, id: &str, event: &str) {
        let report = self.wait_for(&format!("{id} to receive {event}"), |r| {
            r["type"] == "event" && r["id"] == id && r["event"] == event
        });
        // Put it back where it was found: at the end of what has arrived so far.
        self.backlog.push(report);
    }

    /// Connects socket `id` through the recovery helper (`pushwire-recovery.js`)
    /// subscribed to `channel`, recording the `n` of every `event`; waits for the
    /// first subscribe ack and returns it.
    pub fn connect_tracked(
        &mut self,
        id: &str,
        url: &str,
        opts: Value,
        channel: &str,
        event: &str,
    ) -> Value {
        self.send(
            json!({"op": "connect_tracked", "id": id, "url": url, "opts": opts,
                         "channel": channel, "event": event}),
        );
        self.wait_for(&format!("{id} to subscribe"), |r| {
            r["type"] == "tracked_subscribed" && r["id"] == id
        })["ack"]
            .clone()
    }

    /// What every tracked socket recorded: `{id: {received: [n…], acks: […], connections}}`.
    pub fn tracked_summary(&mut self) -> Value {
        let req = self.req_id();
        self.send(json!({"op": "tracked_summary", "req": req}));
        self.wait_for("tracked summary", |r| r["req"] == req.as_str())["clients"].clone()
    }

    /// Kills socket `id`'s transport; the client reconnects by itself.
    pub fn drop_transport(&mut self, id: &str) {
        self.send(json!({"op": "drop_transport", "id": id}));
    }

    /// Closes socket `id`.
    pub fn close(&mut self, id: &str) {
        self.send(json!({"op": "close", "id": id}));
    }

    /// Triggers with the Pusher SDK (`pusher.trigger(channels, event, data, params)`);
    /// returns the status (0 if no response) and the body.
    pub fn trigger(
        &mut self,
        addr: SocketAddr,
        app: Credentials<'_>,
        channels: &[&str],
        event: &str,
        data: Value,
        params: Value,
    ) -> (u16, String) {
        let req = self.sdk_request(
            "trigger",
            addr,
            app,
            json!({"channels": channels, "event": event, "data": data, "params": params}),
        );
        self.trigger_result(&req)
    }

    /// [`Clients::trigger`] with no extra parameters, asserting `200 {}`.
    pub fn trigger_ok(
        &mut self,
        addr: SocketAddr,
        app: Credentials<'_>,
        channels: &[&str],
        event: &str,
        data: Value,
    ) {
        let (status, body) = self.trigger(addr, app, channels, event, data, json!({}));
        assert_eq!(
            (status, body.as_str()),
            (200, "{}"),
            "trigger {event} on {channels:?}"
        );
    }

    /// Triggers a batch with the Pusher SDK (`pusher.triggerBatch(events)`).
    pub fn trigger_batch(
        &mut self,
        addr: SocketAddr,
        app: Credentials<'_>,
        events: Value,
    ) -> (u16, String) {
        let req = self.sdk_request("batch", addr, app, json!({"events": events}));
        self.trigger_result(&req)
    }

    /// The npm pusher SDK's `authorizeChannel(socket_id, channel, presence)`:
    /// `{auth}`, plus `channel_data` for presence channels.
    pub fn authorize(
        &mut self,
        app: Credentials<'_>,
        socket_id: &str,
        channel: &str,
        presence: Option<Value>,
    ) -> Value {
        // Signing only: the SDK makes no request, so the address is never used.
        let nowhere = SocketAddr::from(([127, 0, 0, 1], 1));
        let req = self.sdk_request(
            "authorize",
            nowhere,
            app,
            json!({"socketId": socket_id, "channel": channel, "presence": presence}),
        );
        self.wait_for("authorization", |r| r["req"] == req.as_str())["auth"].clone()
    }

    /// The npm pusher SDK's `get({path, params})` against `addr`: status and JSON body.
    pub fn get(
        &mut self,
        addr: SocketAddr,
        app: Credentials<'_>,
        path: &str,
        params: Value,
    ) -> (u16, Value) {
        let req = self.sdk_request("get", addr, app, json!({"path": path, "params": params}));
        let report = self.wait_for("get result", |r| r["req"] == req.as_str());
        let body = report["body"].as_str().unwrap_or_default();
        (
            report["status"].as_u64().unwrap_or(0) as u16,
            serde_json::from_str(body).unwrap_or_else(|_| json!(body)),
        )
    }

    /// Sends a pusher SDK command `op` for `app` against `addr`, with the
    /// command's own fields `extra`; returns its request id.
    pub(crate) fn sdk_request(
        &mut self,
        op: &str,
        addr: SocketAddr,
        app: Credentials<'_>,
        extra: Value,
    ) -> String {
        let req = self.req_id();
        let mut cmd = json!({
            "op": op, "req": req, "host": addr.ip().to_string(), "port": addr.port(),
            "appId": app.id, "key": app.key, "secret": app.secret,
        });
        if let (Some(cmd), Value::Object(extra)) = (cmd.as_object_mut(), extra) {
            cmd.extend(extra);
        }
        self.send(cmd);
        req
    }

    pub(crate) fn trigger_result(&mut self, req: &str) -> (u16, String) {
        let report = self.wait_for("trigger result", |r| r["req"] == req);
        let status = report["status"].as_u64().unwrap_or(0) as u16;
        (
            status,
            report["body"].as_str().unwrap_or_default().to_owned(),
        )
    }
}
