//! A worker's local subscribers, whatever protocol they speak.
//!
//! The delivery task fans each event out once per worker; what differs between
//! a Socket.IO socket and a Pusher-protocol connection is only how one event is
//! framed and queued. [`LocalSubscribers`] is that difference: one
//! implementation per protocol, called in turn by the same delivery code, so
//! ordering, duplicate suppression, gap filling and exclusion by `socket_id`
//! are written once.

use std::sync::Arc;
use std::time::Duration;

use pushwire_shared::client_protocol::AckCode;
use pushwire_shared::delivery::{DeliveryMeta, client_data};
use pushwire_shared::event::{self, HISTORY_LOST, TERMINATED};
use pushwire_shared::{ChannelName, Envelope};
use serde_json::Value;
use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError, SocketIo};

/// The subscribers of channels (rooms named by `KeySpace::channel`) on this
/// worker, reached through one protocol.
pub(crate) trait LocalSubscribers {
    /// Queues `envelope` for every subscriber of `room` except its excluded
    /// socket; a subscriber whose queue is full is evicted (it must never
    /// receive a later event after a missed one). Returns how many took it.
    fn deliver(&self, room: &str, envelope: &Envelope) -> u64;

    /// Closes every connection in `room` (a user's channel) because the app's
    /// backend terminated the user's connections; returns how many. Nothing
    /// is delivered as an event.
    fn terminate(&self, room: &str) -> u64;

    /// Tells `room`'s subscribers that events of `channel` may have been missed
    /// (`pushwire:history_lost`); they stay subscribed.
    async fn tell_lost(&self, room: &str, channel: &ChannelName);

    /// The rooms with at least one subscriber here (rooms that are not
    /// channels may be included; callers skip what does not parse).
    async fn rooms(&self) -> Vec<String>;

    /// Whether `room` has a subscriber here.
    fn occupied(&self, room: &str) -> bool;
}

/// How often an evicted socket retries its disconnect packet.
const EVICT_RETRY: Duration = Duration::from_millis(50);

/// The two arguments every subscriber receives: the data and `{channel, id, ts, pos}`.
fn event_args(envelope: &Envelope) -> (Value, DeliveryMeta<'_>) {
    let meta = DeliveryMeta {
        channel: envelope.channel.as_str(),
        id: &envelope.id,
        ts: envelope.ts,
        pos: envelope.pos.as_ref().map(ToString::to_string),
    };
    (client_data(&envelope.data), meta)
}

/// Emits one envelope to one socket (history replay and catch-up flush),
/// honouring the envelope's `exclude` (an excluded socket counts as done).
/// An order to the servers read back from a history is not an event: it was
/// carried out when it was published, and is skipped.
pub(crate) fn emit_to_socket(socket: &SocketRef, envelope: &Envelope) -> Result<(), SendError> {
    if !event::reaches_clients(envelope.event.as_str()) {
        return Ok(());
    }
    let excluded = envelope.exclude.as_ref().is_some_and(|excluded| {
        socket
            .extensions
            .get::<Arc<super::SocketSession>>()
            .is_some_and(|session| &session.socket_id == excluded)
    });
    if excluded {
        return Ok(());
    }
    socket.emit(envelope.event.as_str(), &event_args(envelope))
}

fn to_raw(value: &impl serde::Serialize) -> serde_json::Result<Box<RawValue>> {
    RawValue::from_string(serde_json::to_string(value)?)
}

/// The slow-consumer policy: `socket` missed an event because its send buffer
/// is full. It leaves every room now, so it receives nothing after the gap, and
/// is disconnected once the disconnect packet fits (its heartbeat closes it
/// anyway if it never reads again).
pub(crate) fn evict(socket: SocketRef) {
    if socket.rooms().is_empty() {
        return; // already evicted
    }
    crate::metrics::worker().slow_consumer_evictions.inc();
    let session = socket.extensions.get::<Arc<super::SocketSession>>();
    tracing::info!(
        sid = %socket.id,
        socket_id = session.as_ref().map(|s| tracing::field::display(&s.socket_id)),
        app = session.as_ref().map(|s| s.app.id.as_str()),
        "slow consumer: send buffer full; disconnecting"
    );
    socket.leave_all();
    disconnect_soon(socket);
}

/// Disconnects `socket` once its disconnect packet fits its send buffer.
fn disconnect_soon(socket: SocketRef) {
    tokio::spawn(async move {
        while socket.connected() {
            match socket.clone().disconnect() {
                Err(SocketError::InternalChannelFull) => tokio::time::sleep(EVICT_RETRY).await,
                _ => break,
            }
        }
    });
}

/// Socket.IO sockets: each is in a socketioxide room per channel, and in one
/// named by its socket id (see the handlers).
#[derive(Debug, Clone)]
pub(crate) struct SocketIoSubscribers {
    io: SocketIo,
}

impl SocketIoSubscribers {
    /// The sockets of `io`'s `/` namespace.
    pub(crate) fn new(io: SocketIo) -> Self {
        SocketIoSubscribers { io }
    }

    /// The sockets in `room`; `None` once the server is closing (its namespace
    /// is gone, and `SocketIo::to` would panic).
    fn room(&self, room: String) -> Option<socketioxide::operators::BroadcastOperators> {
        self.io.of("/").map(|root| root.to(room))
    }
}

impl LocalSubscribers for SocketIoSubscribers {
    fn terminate(&self, room: &str) -> u64 {
        let Some(target) = self.room(room.to_owned()) else {
            return 0;
        };
        let notice = serde_json::json!({
            "code": AckCode::Unauthorized as u16,
            "message": super::users::TERMINATED_MESSAGE,
        });
        let mut terminated = 0;
        for socket in target.sockets() {
            // The notice goes first on the socket's queue, the disconnect
            // packet after it; socket.io-client does not reconnect after a
            // disconnect by the server. Out of its rooms at once, so nothing
            // reaches it after the order.
            if let Err(e) = socket.emit(TERMINATED, &notice) {
                tracing::debug!(sid = %socket.id, error = %e, "a terminated socket missed the notice");
            }
            socket.leave_all();
            disconnect_soon(socket);
            terminated += 1;
        }
        terminated
    }

    fn deliver(&self, room: &str, envelope: &Envelope) -> u64 {
        let Some(mut target) = self.room(room.to_owned()) else {
            return 0;
        };
        // Serialised once; each socket's packet only copies these bytes.
        let (data, meta) = event_args(envelope);
        let (Ok(data), Ok(meta)) = (to_raw(&data), to_raw(&meta)) else {
            tracing::error!(event_id = %envelope.id, "cannot serialise an event");
            return 0;
        };
        let args = (&*data, &*meta);
        if let Some(excluded) = &envelope.exclude {
            target = target.except(excluded.to_string());
        }
        // One socket at a time, unlike socketioxide's broadcast, to know which
        // socket could not take the event.
        let mut delivered = 0;
        for socket in target.sockets() {
            match socket.emit(envelope.event.as_str(), &args) {
                Ok(()) => delivered += 1,
                Err(SendError::Socket(SocketError::InternalChannelFull)) => evict(socket),
                Err(e) => {
                    tracing::debug!(event_id = %envelope.id, error = %e, "a socket missed a delivery")
                }
            }
        }
        delivered
    }

    async fn tell_lost(&self, room: &str, channel: &ChannelName) {
        let notice = serde_json::json!({ "channel": channel.as_str() });
        if let Some(target) = self.room(room.to_owned()) {
            let _ = target.emit(HISTORY_LOST, &notice).await;
        }
    }

    async fn rooms(&self) -> Vec<String> {
        let Some(root) = self.io.of("/") else {
            return Vec::new();
        };
        root.rooms()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|room| room.into_owned())
            .collect()
    }

    fn occupied(&self, room: &str) -> bool {
        self.room(room.to_owned())
            .is_some_and(|target| !target.sockets().is_empty())
    }
}
