//! Catch-ups: a socket replaying a channel's history joins the channel's room
//! only once the replay is done, with no gap and no duplicate at the seam.
//!
//! The delivery task owns the catch-ups, so "buffer the live events" and "flush
//! the buffer and join the room" are ordered with every broadcast:
//!
//! 1. the handler subscribes the worker to the channel, then [`CatchUps::begin`]:
//!    from the moment the delivery task answers, every live event of the
//!    channel is also kept for the socket;
//! 2. the handler reads the history (which holds everything delivered before
//!    step 1) and emits the entries after `since` to the socket;
//! 3. [`CatchUps::finish`]: the delivery task emits the kept events newer than
//!    the last replayed one, then puts the socket in the room, between two
//!    broadcasts.

use std::collections::HashMap;

use pushwire_shared::Envelope;
use pushwire_shared::history::StreamId;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use tokio::sync::{mpsc, oneshot};

use super::delivery::emit_to_socket;

/// The most live events kept for one socket while it replays; past this the
/// catch-up fails (the client may subscribe again).
pub const MAX_CATCH_UP_EVENTS: usize = 10_000;

/// The catch-up could not keep up with the live events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more than {MAX_CATCH_UP_EVENTS} events arrived during the replay; subscribe again")]
pub struct CatchUpOverflow;

/// A request to the delivery task.
#[derive(Debug)]
pub(crate) enum CatchUpCommand {
    /// Start keeping `room`'s events for `sid`; answered once in effect.
    Begin(String, Sid, oneshot::Sender<()>),
    /// Emit the kept events after the id (all when `None`) to the socket and
    /// put it in the room.
    Finish {
        room: String,
        socket: SocketRef,
        after: Option<StreamId>,
        done: oneshot::Sender<Result<(), CatchUpOverflow>>,
    },
    /// Forget the catch-up (the replay failed).
    Abort(String, Sid),
}

/// The handlers' side: sends [`CatchUpCommand`]s to the delivery task.
#[derive(Debug, Clone)]
pub(crate) struct CatchUps(mpsc::UnboundedSender<CatchUpCommand>);

impl CatchUps {
    /// A handle and the receiver the delivery task reads.
    pub(crate) fn channel() -> (Self, mpsc::UnboundedReceiver<CatchUpCommand>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (CatchUps(tx), rx)
    }

    /// Step 1: resolves once every later event of `room` is kept for `sid`.
    pub(crate) async fn begin(&self, room: &str, sid: Sid) {
        let (tx, rx) = oneshot::channel();
        if self
            .0
            .send(CatchUpCommand::Begin(room.to_owned(), sid, tx))
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Step 3: flushes what was kept after `after` and joins the room.
    pub(crate) async fn finish(
        &self,
        room: &str,
        socket: SocketRef,
        after: Option<StreamId>,
    ) -> Result<(), CatchUpOverflow> {
        let (done, rx) = oneshot::channel();
        let command = CatchUpCommand::Finish {
            room: room.to_owned(),
            socket,
            after,
            done,
        };
        if self.0.send(command).is_err() {
            // Delivery has stopped: the worker is shutting down.
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    /// Forgets the catch-up of `sid` on `room`.
    pub(crate) fn abort(&self, room: &str, sid: Sid) {
        let _ = self.0.send(CatchUpCommand::Abort(room.to_owned(), sid));
    }
}

/// What one socket kept so far.
#[derive(Debug, Default)]
struct Kept {
    events: Vec<Envelope>,
    overflowed: bool,
}

/// The delivery task's side: the catch-ups in progress, by room.
#[derive(Debug, Default)]
pub(crate) struct CatchUpState {
    rooms: HashMap<String, HashMap<Sid, Kept>>,
}

impl CatchUpState {
    /// Applies one command.
    pub(crate) fn apply(&mut self, command: CatchUpCommand) {
        match command {
            CatchUpCommand::Begin(room, sid, ready) => {
                self.rooms
                    .entry(room)
                    .or_default()
                    .insert(sid, Kept::default());
                let _ = ready.send(());
            }
            CatchUpCommand::Finish {
                room,
                socket,
                after,
                done,
            } => {
                let kept = self.take(&room, socket.id).unwrap_or_default();
                if kept.overflowed {
                    let _ = done.send(Err(CatchUpOverflow));
                    return;
                }
                for envelope in &kept.events {
                    let newer = match (after, &envelope.pos) {
                        (Some(after), Some(pos)) => pos.id > after,
                        _ => true,
                    };
                    if newer {
                        emit_to_socket(&socket, envelope);
                    }
                }
                socket.join(room);
                let _ = done.send(Ok(()));
            }
            CatchUpCommand::Abort(room, sid) => {
                self.take(&room, sid);
            }
        }
    }

    /// Keeps `envelope` for every socket catching up on `room`.
    pub(crate) fn keep(&mut self, room: &str, envelope: &Envelope) {
        let Some(sockets) = self.rooms.get_mut(room) else {
            return;
        };
        for kept in sockets.values_mut() {
            if kept.overflowed {
                continue;
            }
            if kept.events.len() >= MAX_CATCH_UP_EVENTS {
                kept.overflowed = true;
                kept.events = Vec::new();
            } else {
                kept.events.push(envelope.clone());
            }
        }
    }

    fn take(&mut self, room: &str, sid: Sid) -> Option<Kept> {
        let sockets = self.rooms.get_mut(room)?;
        let kept = sockets.remove(&sid);
        if sockets.is_empty() {
            self.rooms.remove(room);
        }
        kept
    }
}
