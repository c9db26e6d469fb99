//! User authentication through stock clients: the npm `pusher` SDK's
//! `authenticateUser`, `sendToUser` and `terminateUserConnections`, and
//! pusher-js clients that sign in (`pusher.signin()` with a
//! `userAuthentication.customHandler` calling the SDK).

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::clients::{Clients, Credentials};

impl Clients {
    /// Connects pusher-js client `id` to `addr` as `app`, able to sign in as
    /// `user` (`{"id", …}`, the SDK's `userData`); with `bad_signature`, its
    /// sign-in carries a signature with one character changed. Returns its
    /// socket id.
    pub fn pusher_connect_user(
        &mut self,
        id: &str,
        addr: SocketAddr,
        app: Credentials<'_>,
        user: Value,
        bad_signature: bool,
    ) -> String {
        self.send(json!({
            "op": "pusher_connect", "id": id,
            "host": addr.ip().to_string(), "port": addr.port(),
            "appId": app.id, "key": app.key, "secret": app.secret,
            "user": user, "badSignin": bad_signature,
        }));
        let report = self.wait_for(&format!("pusher-js {id} to connect"), |r| {
            r["id"] == id && (r["type"] == "pusher_connected" || r["type"] == "pusher_error")
        });
        assert_eq!(report["type"], "pusher_connected", "{report}");
        report["socket_id"].as_str().expect("socket_id").to_owned()
    }

    /// `pusher.signin()` on client `id`, without waiting.
    pub fn pusher_signin_start(&mut self, id: &str) {
        self.send(json!({"op": "pusher_signin", "id": id}));
    }

    /// `pusher.signin()` on client `id`; returns the `pusher:signin_success`
    /// frame once it arrived and pusher-js asked for its user's channel (it
    /// subscribes to it right after the success, and is answered).
    pub fn pusher_signin(&mut self, id: &str) -> Value {
        self.pusher_signin_start(id);
        let success = self.pusher_frame(id, &format!("{id}'s signin_success"), |f| {
            f["event"] == "pusher:signin_success" || f["event"] == "pusher:error"
        });
        assert_eq!(success["event"], "pusher:signin_success", "{success}");
        let joined = self.pusher_frame(id, &format!("{id}'s user channel"), |f| {
            f["channel"]
                .as_str()
                .is_some_and(|c| c.starts_with("#server-to-user-"))
                && (f["event"] == "pusher_internal:subscription_succeeded"
                    || f["event"] == "pusher:subscription_error")
        });
        assert_eq!(
            joined["event"], "pusher_internal:subscription_succeeded",
            "{joined}"
        );
        success
    }

    /// Waits for pusher-js client `id` to hand `event` to `pusher.user.bind`;
    /// returns its data.
    pub fn pusher_user_event(&mut self, id: &str, event: &str) -> Value {
        self.wait_for(&format!("{id}'s user to receive {event}"), |r| {
            r["type"] == "pusher_user_event" && r["id"] == id && r["event"] == event
        })["data"]
            .clone()
    }

    /// Waits until pusher-js client `id` reports connection state `state`.
    pub fn pusher_state_change(&mut self, id: &str, state: &str) {
        self.wait_for(&format!("{id} to become {state}"), |r| {
            r["type"] == "pusher_state" && r["id"] == id && r["state"] == state
        });
    }

    /// pusher-js client `id`'s connection state now (`connected`, `disconnected`, …).
    pub fn pusher_state_now(&mut self, id: &str) -> String {
        let req = self.req_id();
        self.send(json!({"op": "pusher_state", "id": id, "req": req}));
        self.wait_for("a connection state", |r| {
            r["type"] == "pusher_state_now" && r["req"] == req.as_str()
        })["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The npm pusher SDK's `authenticateUser(socket_id, user)`: `{auth, user_data}`.
    pub fn authenticate_user(
        &mut self,
        app: Credentials<'_>,
        socket_id: &str,
        user: Value,
    ) -> Value {
        // Signing only: the SDK makes no request, so the address is never used.
        let nowhere = SocketAddr::from(([127, 0, 0, 1], 1));
        let req = self.sdk_request(
            "authenticate_user",
            nowhere,
            app,
            json!({"socketId": socket_id, "user": user}),
        );
        self.wait_for("user authentication", |r| r["req"] == req.as_str())["auth"].clone()
    }

    /// The npm pusher SDK's `sendToUser(user_id, event, data)` against `addr`:
    /// the status (0 if no response) and the body.
    pub fn send_to_user(
        &mut self,
        addr: SocketAddr,
        app: Credentials<'_>,
        user_id: &str,
        event: &str,
        data: Value,
    ) -> (u16, String) {
        let req = self.sdk_request(
            "send_to_user",
            addr,
            app,
            json!({"userId": user_id, "event": event, "data": data}),
        );
        self.trigger_result(&req)
    }

    /// The npm pusher SDK's `terminateUserConnections(user_id)` against `addr`.
    pub fn terminate_user(
        &mut self,
        addr: SocketAddr,
        app: Credentials<'_>,
        user_id: &str,
    ) -> (u16, String) {
        let req = self.sdk_request("terminate_user", addr, app, json!({"userId": user_id}));
        self.trigger_result(&req)
    }
}
