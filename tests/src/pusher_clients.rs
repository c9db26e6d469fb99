//! npm `pusher-js` clients, driven through the same driver as the Socket.IO
//! sockets (`tests/js/pusher-clients.js`), so one test can mix both kinds.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::clients::{Clients, Credentials};

impl Clients {
    /// Connects pusher-js client `id` to `addr` as `app` (presence channels
    /// as `presence`: `{"user_id", "user_info"}`); returns its socket id.
    pub fn pusher_connect(
        &mut self,
        id: &str,
        addr: SocketAddr,
        app: Credentials<'_>,
        presence: Option<Value>,
    ) -> String {
        self.pusher_start(id, addr, app, presence, None);
        self.pusher_connected(id)
    }

    /// Connects pusher-js client `id` like [`Clients::pusher_connect`], with
    /// the served recovery helper (`trackPusher`) tracking it; a channel the
    /// helper reports lost arrives as a `pusher_lost` report.
    pub fn pusher_connect_recovering(
        &mut self,
        id: &str,
        addr: SocketAddr,
        app: Credentials<'_>,
    ) -> String {
        self.send(json!({
            "op": "pusher_connect", "id": id,
            "host": addr.ip().to_string(), "port": addr.port(),
            "appId": app.id, "key": app.key, "secret": app.secret, "recover": true,
        }));
        self.pusher_connected(id)
    }

    /// Waits for pusher-js client `id` to connect; returns its socket id.
    pub fn pusher_connected(&mut self, id: &str) -> String {
        let report = self.wait_for(&format!("pusher-js {id} to connect"), |r| {
            r["id"] == id && (r["type"] == "pusher_connected" || r["type"] == "pusher_error")
        });
        assert_eq!(report["type"], "pusher_connected", "{report}");
        report["socket_id"].as_str().expect("socket_id").to_owned()
    }

    /// [`Clients::pusher_connect`] with a backend whose server SDK holds
    /// `master_key` (`encryptionMasterKeyBase64`), as `private-encrypted-*`
    /// channels need: its authorizations carry the channel's `shared_secret`.
    pub fn pusher_connect_encrypted(
        &mut self,
        id: &str,
        addr: SocketAddr,
        app: Credentials<'_>,
        master_key: &str,
    ) -> String {
        self.send(json!({
            "op": "pusher_connect", "id": id,
            "host": addr.ip().to_string(), "port": addr.port(),
            "appId": app.id, "key": app.key, "secret": app.secret,
            "encryptionMasterKeyBase64": master_key,
        }));
        let report = self.wait_for(&format!("pusher-js {id} to connect"), |r| {
            r["id"] == id && (r["type"] == "pusher_connected" || r["type"] == "pusher_error")
        });
        assert_eq!(report["type"], "pusher_connected", "{report}");
        report["socket_id"].as_str().expect("socket_id").to_owned()
    }

    /// Triggers with the npm pusher SDK created with `master_key`, which
    /// encrypts `data` for a `private-encrypted-*` channel; status and body.
    pub fn trigger_encrypted(
        &mut self,
        addr: SocketAddr,
        app: Credentials<'_>,
        master_key: &str,
        channel: &str,
        event: &str,
        data: Value,
    ) -> (u16, String) {
        let req = self.sdk_request(
            "trigger",
            addr,
            app,
            json!({
                "channels": [channel], "event": event, "data": data, "params": {},
                "encryptionMasterKeyBase64": master_key,
            }),
        );
        self.trigger_result(&req)
    }

    /// The npm pusher SDK's `authorizeChannel` by a backend holding `master_key`.
    pub fn authorize_encrypted(
        &mut self,
        app: Credentials<'_>,
        master_key: &str,
        socket_id: &str,
        channel: &str,
    ) -> Value {
        let nowhere = SocketAddr::from(([127, 0, 0, 1], 1));
        let req = self.sdk_request(
            "authorize",
            nowhere,
            app,
            json!({
                "socketId": socket_id, "channel": channel, "encryptionMasterKeyBase64": master_key,
            }),
        );
        self.wait_for("authorization", |r| r["req"] == req.as_str())["auth"].clone()
    }

    /// Opens an encrypted channel's `sealed` data (`{nonce, ciphertext}`)
    /// with `shared_secret` (NaCl secretbox, npm `tweetnacl`), as a Socket.IO
    /// app does; the JSON inside, or `null` if it does not open.
    pub fn open_sealed(&mut self, shared_secret: &Value, sealed: &Value) -> Value {
        let req = format!("open-{}", sealed["nonce"].as_str().unwrap_or_default());
        self.send(json!({
            "op": "open_sealed", "req": req, "sharedSecret": shared_secret, "sealed": sealed,
        }));
        self.wait_for("a sealed box opened", |r| {
            r["type"] == "opened" && r["req"] == req.as_str()
        })["data"]
            .clone()
    }

    /// Starts pusher-js client `id` without waiting for anything; with
    /// `activity_timeout_ms`, it pings the server after that much silence.
    pub fn pusher_start(
        &mut self,
        id: &str,
        addr: SocketAddr,
        app: Credentials<'_>,
        presence: Option<Value>,
        activity_timeout_ms: Option<u64>,
    ) {
        self.send(json!({
            "op": "pusher_connect", "id": id,
            "host": addr.ip().to_string(), "port": addr.port(),
            "appId": app.id, "key": app.key, "secret": app.secret,
            "presence": presence, "activityTimeout": activity_timeout_ms,
        }));
    }

    /// Subscribes pusher-js client `id` to `channel`; returns the outcome as
    /// pusher-js reports it: the `pusher:subscription_succeeded` or
    /// `pusher:subscription_error` event.
    pub fn pusher_subscribe(&mut self, id: &str, channel: &str) -> Value {
        self.send(json!({"op": "pusher_subscribe", "id": id, "channel": channel}));
        self.wait_for(&format!("{id}'s subscription to {channel}"), |r| {
            r["type"] == "pusher_event"
                && r["id"] == id
                && r["channel"] == channel
                && (r["event"] == "pusher:subscription_succeeded"
                    || r["event"] == "pusher:subscription_error")
        })
    }

    /// Unsubscribes pusher-js client `id` from `channel`.
    pub fn pusher_unsubscribe(&mut self, id: &str, channel: &str) {
        self.send(json!({"op": "pusher_unsubscribe", "id": id, "channel": channel}));
    }

    /// Waits for client `id` to receive `event` on `channel` through pusher-js;
    /// returns the report (`data` as pusher-js decoded it).
    pub fn pusher_event(&mut self, id: &str, channel: &str, event: &str) -> Value {
        self.wait_for(&format!("{id} to receive {event} on {channel}"), |r| {
            r["type"] == "pusher_event"
                && r["id"] == id
                && r["channel"] == channel
                && r["event"] == event
        })
    }

    /// Waits until client `id` receives `sentinel` on `channel`, and returns
    /// every event pusher-js handed it on `channel` up to and including it,
    /// in order (the `pusher_event` reports).
    pub fn pusher_events_through(&mut self, id: &str, channel: &str, sentinel: &str) -> Vec<Value> {
        let mine =
            |r: &Value| r["type"] == "pusher_event" && r["id"] == id && r["channel"] == channel;
        let last = self.wait_for(&format!("{id} to receive {sentinel} on {channel}"), |r| {
            mine(r) && r["event"] == sentinel
        });
        // Everything before it arrived before it.
        let mut taken = self.take_backlog(mine);
        taken.push(last);
        taken
    }

    /// Waits for the next raw frame client `id` received matching `pred`.
    pub fn pusher_frame(&mut self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(what, |r| {
            r["type"] == "pusher_frame" && r["id"] == id && pred(&r["frame"])
        })["frame"]
            .clone()
    }

    /// Waits for a connection error on client `id`; returns what pusher-js reported.
    pub fn pusher_error(&mut self, id: &str) -> Value {
        self.wait_for(&format!("an error on {id}"), |r| {
            r["type"] == "pusher_error" && r["id"] == id
        })["error"]
            .clone()
    }

    /// Sends client event `event` with `data` on `channel` (pusher-js's
    /// `channel.trigger`); asserts pusher-js sent it.
    pub fn pusher_client_event(&mut self, id: &str, channel: &str, event: &str, data: Value) {
        let sent = self.pusher_try_client_event(id, channel, event, data);
        assert_eq!(sent, true, "{sent}");
    }

    /// Tries pusher-js's `channel.trigger`: what it returned (`true` when
    /// sent), or the message of the error it threw.
    pub fn pusher_try_client_event(
        &mut self,
        id: &str,
        channel: &str,
        event: &str,
        data: Value,
    ) -> Value {
        self.send(json!({
            "op": "pusher_client_event", "id": id, "channel": channel, "event": event, "data": data,
        }));
        self.wait_for("a client event sent", |r| {
            r["type"] == "pusher_triggered" && r["id"] == id
        })["sent"]
            .clone()
    }

    /// Sends `text` as one frame on client `id`'s connection, as is.
    pub fn pusher_raw(&mut self, id: &str, text: &str) {
        self.send(json!({"op": "pusher_raw", "id": id, "text": text}));
    }

    /// Closes pusher-js client `id`'s connection; it keeps its channels.
    pub fn pusher_disconnect(&mut self, id: &str) {
        self.send(json!({"op": "pusher_disconnect", "id": id}));
    }

    /// Has pusher-js client `id` connect again (it subscribes its channels again).
    pub fn pusher_reconnect(&mut self, id: &str) {
        self.send(json!({"op": "pusher_reconnect", "id": id}));
    }

    /// Disconnects pusher-js client `id`.
    pub fn pusher_close(&mut self, id: &str) {
        self.send(json!({"op": "pusher_close", "id": id}));
    }
}
