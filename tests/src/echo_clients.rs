//! Laravel Echo clients in Node (`tests/js/echo-clients.js`), driven through
//! the same driver as the Socket.IO and pusher-js clients.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::clients::{Clients, Credentials};

/// The channels an Echo test listens on, as `(Echo method, Echo name,
/// Pusher channel, event to listen for)`: with a leading dot the event name is
/// used as is, without it Echo prefixes Laravel's event namespace
/// (`App\Events\`).
pub const ECHO_LISTENS: [(&str, &str, &str, &str); 3] = [
    ("channel", "orders", "orders", ".order.shipped"),
    ("private", "orders.1", "private-orders.1", "OrderShipped"),
    (
        "encryptedPrivate",
        "vault",
        "private-encrypted-vault",
        ".secret",
    ),
];

impl Clients {
    /// Connects Echo client `id` (its `pusher` broadcaster) to `addr` as
    /// `user`, its channels authorized for `app` by a backend holding
    /// `master_key`; returns its socket id.
    pub fn echo_connect(
        &mut self,
        id: &str,
        addr: SocketAddr,
        app: Credentials<'_>,
        user: &str,
        master_key: &str,
    ) -> String {
        self.send(json!({
            "op": "echo_connect", "id": id,
            "host": addr.ip().to_string(), "port": addr.port(),
            "appId": app.id, "key": app.key, "secret": app.secret, "user": user,
            "encryptionMasterKeyBase64": master_key,
        }));
        let report = self.wait_for(&format!("Echo {id} to connect"), |r| {
            r["type"] == "echo_connected" && r["id"] == id
        });
        report["socket_id"].as_str().expect("socket_id").to_owned()
    }

    /// Sends Echo command `op` (`echo_listen`, `echo_join`, `echo_whisper`,
    /// `echo_listen_for_whisper`, `echo_close`) for client `id` with `args`.
    pub fn echo(&mut self, id: &str, op: &str, args: Value) {
        let mut cmd = json!({"op": op, "id": id});
        if let (Some(cmd), Value::Object(args)) = (cmd.as_object_mut(), args) {
            cmd.extend(args);
        }
        self.send(cmd);
    }

    /// Waits for Echo client `id`'s next report of type `kind`.
    pub fn echo_report(&mut self, id: &str, kind: &str) -> Value {
        self.wait_for(&format!("{kind} from Echo {id}"), |r| {
            r["type"] == kind && r["id"] == id
        })
    }

    /// Waits until Echo client `id` is subscribed to `channel`.
    pub fn echo_subscribed(&mut self, id: &str, channel: &str) {
        self.wait_for(&format!("Echo {id} subscribed to {channel}"), |r| {
            r["type"] == "echo_subscribed" && r["id"] == id && r["channel"] == channel
        });
    }
}
