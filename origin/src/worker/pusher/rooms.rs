//! `PusherRooms`: the Pusher-protocol connections of this worker, by channel —
//! the second implementation of [`LocalSubscribers`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use pushwire_shared::event::HISTORY_LOST;
use pushwire_shared::{ChannelName, Envelope, SocketId};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frames::{self, ErrorCode};
use crate::worker::subscribers::LocalSubscribers;
use crate::worker::users::TERMINATED_MESSAGE;

/// How one connection is reached: its bounded send queue, and the signals
/// that it must close.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    /// Frames waiting for the connection's task to write them.
    pub queue: mpsc::Sender<Utf8Bytes>,
    /// Notified once when the connection is evicted as a slow consumer.
    pub evicted: Arc<Notify>,
    /// Set when the connection must close with a Pusher error code: a
    /// refused sign-in, or its user's connections were terminated.
    pub close: Arc<CloseOrder>,
}

/// An order to close a connection with a code and a reason; the first order wins.
#[derive(Debug, Default)]
pub(crate) struct CloseOrder {
    reason: Mutex<Option<(ErrorCode, String)>>,
    given: Notify,
}

impl CloseOrder {
    /// Orders the close (a later order keeps the first one's reason).
    pub(crate) fn order(&self, code: ErrorCode, text: impl Into<String>) {
        let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if reason.is_none() {
            *reason = Some((code, text.into()));
        }
        drop(reason);
        self.given.notify_one();
    }

    /// Waits for an order; returns its code and reason.
    pub(crate) async fn given(&self) -> (ErrorCode, String) {
        loop {
            self.given.notified().await;
            let reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(reason) = reason.clone() {
                return reason;
            }
        }
    }
}

/// Connections per room (`KeySpace::channel`), each by its socket id.
#[derive(Debug, Default)]
pub(crate) struct PusherRooms {
    rooms: Mutex<HashMap<String, HashMap<SocketId, Subscriber>>>,
}

impl PusherRooms {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<SocketId, Subscriber>>> {
        // Inserts and removes only: a poisoned map is still consistent.
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the connection `socket_id` to `room`.
    pub(crate) fn join(&self, room: String, socket_id: SocketId, subscriber: Subscriber) {
        self.lock()
            .entry(room)
            .or_default()
            .insert(socket_id, subscriber);
    }

    /// Takes the connection `socket_id` out of `room`.
    pub(crate) fn leave(&self, room: &str, socket_id: &SocketId) {
        let mut rooms = self.lock();
        if let Some(members) = rooms.get_mut(room) {
            members.remove(socket_id);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Queues `frame` for every connection in `room` except `excluded`;
    /// evicts those whose queue is full. Returns how many took it.
    fn send(&self, room: &str, frame: Utf8Bytes, excluded: Option<&SocketId>) -> u64 {
        let mut rooms = self.lock();
        let Some(members) = rooms.get(room) else {
            return 0;
        };
        let mut delivered = 0;
        let mut behind = Vec::new();
        for (socket_id, subscriber) in members {
            if Some(socket_id) == excluded {
                continue;
            }
            match subscriber.queue.try_send(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    behind.push((socket_id.clone(), subscriber.evicted.clone()));
                }
                // The connection is closing; its own cleanup takes it out.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        for (socket_id, evicted) in behind {
            // Out of every room at once, so it never gets an event after a gap.
            rooms.retain(|_, members| {
                members.remove(&socket_id);
                !members.is_empty()
            });
            crate::metrics::worker().slow_consumer_evictions.inc();
            tracing::info!(%socket_id, "slow consumer: send queue full; disconnecting");
            evicted.notify_one();
        }
        delivered
    }
}

impl LocalSubscribers for PusherRooms {
    fn terminate(&self, room: &str) -> u64 {
        let rooms = self.lock();
        let Some(members) = rooms.get(room) else {
            return 0;
        };
        // Each connection leaves its rooms itself, as it closes.
        for subscriber in members.values() {
            subscriber
                .close
                .order(ErrorCode::Unauthorized, TERMINATED_MESSAGE);
        }
        members.len() as u64
    }

    fn deliver(&self, room: &str, envelope: &Envelope) -> u64 {
        if !self.occupied(room) {
            return 0; // no need to frame it
        }
        // Framed once; each connection's queue holds the same bytes.
        let frame = Utf8Bytes::from(frames::event(envelope));
        self.send(room, frame, envelope.exclude.as_ref())
    }

    async fn tell_lost(&self, room: &str, channel: &ChannelName) {
        let data = serde_json::json!({ "channel": channel.as_str() }).to_string();
        let frame = frames::message(HISTORY_LOST, Some(channel), &data);
        self.send(room, Utf8Bytes::from(frame), None);
    }

    async fn rooms(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn occupied(&self, room: &str) -> bool {
        self.lock().contains_key(room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriber(capacity: usize) -> (Subscriber, mpsc::Receiver<Utf8Bytes>) {
        let (queue, rx) = mpsc::channel(capacity);
        let evicted = Arc::new(Notify::new());
        let close = Arc::default();
        (
            Subscriber {
                queue,
                evicted,
                close,
            },
            rx,
        )
    }

    #[tokio::test]
    async fn delivers_except_the_excluded_and_evicts_the_full() {
        let rooms = PusherRooms::default();
        let (a, mut a_rx) = subscriber(8);
        let (b, _b_rx) = subscriber(1);
        let (ida, idb): (SocketId, SocketId) = ("1.1".parse().unwrap(), "1.2".parse().unwrap());
        rooms.join("r".into(), ida.clone(), a);
        rooms.join("r".into(), idb.clone(), b.clone());
        rooms.join("other".into(), idb.clone(), b.clone());
        assert_eq!(rooms.send("r", "x".into(), Some(&ida)), 1);
        assert!(a_rx.try_recv().is_err(), "the excluded socket got nothing");
        // b's queue (1) is full now: the next event evicts it from every room.
        assert_eq!(rooms.send("r", "y".into(), None), 1);
        b.evicted.notified().await;
        assert!(!rooms.occupied("other"));
        assert_eq!(a_rx.try_recv().unwrap().as_str(), "y");
        rooms.leave("r", &ida);
        assert!(rooms.rooms().await.is_empty());
    }

    #[tokio::test]
    async fn terminating_orders_each_connection_of_the_room_to_close() {
        let rooms = PusherRooms::default();
        let (a, _a_rx) = subscriber(8);
        let (b, _b_rx) = subscriber(8);
        rooms.join("user".into(), "1.1".parse().unwrap(), a.clone());
        rooms.join("other".into(), "1.2".parse().unwrap(), b.clone());
        assert_eq!(rooms.terminate("user"), 1);
        let (code, text) = a.close.given().await;
        assert_eq!(
            (code, text.as_str()),
            (ErrorCode::Unauthorized, TERMINATED_MESSAGE)
        );
        // The first order's reason stands.
        a.close.order(ErrorCode::Reconnect, "later");
        assert_eq!(a.close.given().await.0, ErrorCode::Unauthorized);
        assert_eq!(rooms.terminate("nobody"), 0);
        assert!(b.close.reason.lock().unwrap().is_none());
    }
}
