//! Catch-ups: a socket replaying a channel's history joins the channel's room
//! only once the replay is done, with no gap and no duplicate at the seam.
//!
//! The delivery task owns the catch-ups, so "keep the live events" and "flush
//! and join the room" are ordered with every broadcast:
//!
//! 1. the handler subscribes the worker to the channel, then [`CatchUps::begin`]:
//!    from the moment the delivery task answers, every live event of the
//!    channel is also kept for the socket;
//! 2. the handler reads the history (which holds everything delivered before
//!    step 1) and sends the socket the entries after `since`;
//! 3. it [`CatchUps::drain`]s what was kept meanwhile and sends it too, until
//!    only a few events are left;
//! 4. [`CatchUps::finish`]: the delivery task sends those few, then puts the
//!    socket in the room, between two broadcasts.
//!
//! Steps 2 and 3 wait for the socket's bounded send buffer to drain when it is
//! full ([`send_paced`]), so a long replay reaches a slow (e.g. long-polling)
//! client whole instead of overflowing its buffer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pushwire_shared::Envelope;
use pushwire_shared::client_protocol::AckError;
use pushwire_shared::history::StreamId;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError};
use tokio::sync::{mpsc, oneshot};

use super::subscribers::{emit_to_socket, evict};

/// The most live events kept for one socket between two drains; past this the
/// catch-up fails (the client may subscribe again).
pub(super) const MAX_KEPT_EVENTS: usize = 10_000;

/// A drain this small ends the catch-up: the rest is sent by the delivery task,
/// which cannot wait for a full buffer, so it must fit.
const FINAL_FLUSH: usize = 16;

/// How often a replay retries a socket whose send buffer is full.
const PACE: Duration = Duration::from_millis(2);

/// Why a catch-up stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CatchUpError {
    /// Live events arrived faster than the socket took the replay.
    #[error("more than {MAX_KEPT_EVENTS} events arrived during the replay; subscribe again")]
    Overflow,
    /// The socket's buffer stayed full for too long, or it disconnected.
    #[error("the socket is not reading ({0}); it is disconnected and may recover on reconnect")]
    NotReading(String),
}

/// A request to the delivery task.
#[derive(Debug)]
pub(crate) enum CatchUpCommand {
    /// Start keeping `room`'s events for `sid`; answered once in effect.
    Begin(String, Sid, oneshot::Sender<()>),
    /// Hand over (and forget) what was kept so far.
    Drain(
        String,
        Sid,
        oneshot::Sender<Result<Vec<Envelope>, CatchUpError>>,
    ),
    /// Send the kept events after the id (all when `None`) and put the socket
    /// in the room.
    Finish {
        room: String,
        socket: SocketRef,
        after: Option<StreamId>,
        done: oneshot::Sender<Result<(), CatchUpError>>,
    },
    /// Forget the catch-up (the replay failed).
    Abort(String, Sid),
}

/// The handlers' side: sends [`CatchUpCommand`]s to the delivery task.
#[derive(Debug, Clone)]
pub(crate) struct CatchUps(mpsc::UnboundedSender<CatchUpCommand>);

/// The delivery task has stopped: the worker is shutting down.
fn stopping() -> CatchUpError {
    CatchUpError::NotReading("the worker is shutting down".into())
}

impl CatchUps {
    /// A handle and the receiver the delivery task reads.
    pub(crate) fn channel() -> (Self, mpsc::UnboundedReceiver<CatchUpCommand>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (CatchUps(tx), rx)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, CatchUpError>>) -> CatchUpCommand,
    ) -> Result<T, CatchUpError> {
        let (tx, rx) = oneshot::channel();
        self.0.send(make(tx)).map_err(|_| stopping())?;
        rx.await.map_err(|_| stopping())?
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

    /// Hands over (and forgets) the events kept for `sid` on `room` so far.
    pub(crate) async fn drain(&self, room: &str, sid: Sid) -> Result<Vec<Envelope>, CatchUpError> {
        self.ask(|tx| CatchUpCommand::Drain(room.to_owned(), sid, tx))
            .await
    }

    /// Steps 3 and 4: sends what is kept (newer than `last`) until little is
    /// left, then has the delivery task send the rest and join the room.
    pub(crate) async fn complete(
        &self,
        room: &str,
        socket: &SocketRef,
        mut last: Option<StreamId>,
        patience: Duration,
    ) -> Result<(), CatchUpError> {
        loop {
            let kept = self.drain(room, socket.id).await?;
            let few = kept.len() <= FINAL_FLUSH;
            for envelope in &kept {
                if is_newer(envelope, last) {
                    send_paced(socket, envelope, patience).await?;
                    last = envelope.pos.as_ref().map(|p| p.id).or(last);
                }
            }
            if few {
                break;
            }
        }
        self.ask(|done| CatchUpCommand::Finish {
            room: room.to_owned(),
            socket: socket.clone(),
            after: last,
            done,
        })
        .await
    }

    /// A whole catch-up of `socket` on `room`: begins it, awaits `send` (which
    /// sends the socket what it must see before the room's live events, and
    /// returns its outcome with the position after which kept events are new),
    /// then completes it with `patience`; a failed `send` forgets it instead.
    pub(crate) async fn run<T>(
        &self,
        room: &str,
        socket: &SocketRef,
        patience: Duration,
        send: impl Future<Output = Result<(T, Option<StreamId>), AckError>>,
    ) -> Result<T, AckError> {
        self.begin(room, socket.id).await;
        let (outcome, after) = match send.await {
            Ok(sent) => sent,
            Err(e) => {
                self.abort(room, socket.id);
                return Err(e);
            }
        };
        self.complete(room, socket, after, patience)
            .await
            .map_err(AckError::unavailable)?;
        Ok(outcome)
    }

    /// Forgets the catch-up of `sid` on `room`.
    pub(crate) fn abort(&self, room: &str, sid: Sid) {
        let _ = self.0.send(CatchUpCommand::Abort(room.to_owned(), sid));
    }
}

fn is_newer(envelope: &Envelope, after: Option<StreamId>) -> bool {
    match (after, &envelope.pos) {
        (Some(after), Some(pos)) => pos.id > after,
        _ => true,
    }
}

/// Sends one envelope, waiting while the socket's send buffer is full, for at
/// most `patience` (then the socket is treated as a slow consumer).
pub(crate) async fn send_paced(
    socket: &SocketRef,
    envelope: &Envelope,
    patience: Duration,
) -> Result<(), CatchUpError> {
    let deadline = Instant::now() + patience;
    loop {
        match emit_to_socket(socket, envelope) {
            Ok(()) => return Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull))
                if Instant::now() < deadline =>
            {
                // socketioxide offers no "drained" notification: retry shortly.
                tokio::time::sleep(PACE).await;
            }
            Err(e) => return Err(CatchUpError::NotReading(e.to_string())),
        }
    }
}

/// What one socket kept so far.
#[derive(Debug, Default)]
struct Kept {
    events: Vec<Envelope>,
    overflowed: bool,
}

impl Kept {
    fn take(&mut self) -> Result<Vec<Envelope>, CatchUpError> {
        if self.overflowed {
            return Err(CatchUpError::Overflow);
        }
        Ok(std::mem::take(&mut self.events))
    }
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
            CatchUpCommand::Drain(room, sid, reply) => {
                let kept = match self.rooms.get_mut(&room).and_then(|s| s.get_mut(&sid)) {
                    Some(kept) => kept.take(),
                    None => Ok(Vec::new()),
                };
                let _ = reply.send(kept);
            }
            CatchUpCommand::Finish {
                room,
                socket,
                after,
                done,
            } => {
                let result = self
                    .remove(&room, socket.id)
                    .unwrap_or_default()
                    .take()
                    .and_then(|kept| flush(&socket, &kept, after));
                match &result {
                    Ok(()) => socket.join(room),
                    // Its client will recover from its last position on reconnect.
                    Err(_) => evict(socket.clone()),
                }
                let _ = done.send(result);
            }
            CatchUpCommand::Abort(room, sid) => {
                self.remove(&room, sid);
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
            if kept.events.len() >= MAX_KEPT_EVENTS {
                kept.overflowed = true;
                kept.events = Vec::new();
            } else {
                kept.events.push(envelope.clone());
            }
        }
    }

    fn remove(&mut self, room: &str, sid: Sid) -> Option<Kept> {
        let sockets = self.rooms.get_mut(room)?;
        let kept = sockets.remove(&sid);
        if sockets.is_empty() {
            self.rooms.remove(room);
        }
        kept
    }
}

/// The last few kept events, without waiting (this runs in the delivery task).
fn flush(
    socket: &SocketRef,
    kept: &[Envelope],
    after: Option<StreamId>,
) -> Result<(), CatchUpError> {
    for envelope in kept.iter().filter(|e| is_newer(e, after)) {
        emit_to_socket(socket, envelope).map_err(|e| CatchUpError::NotReading(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushwire_shared::history::Position;

    fn envelope(ms: u64) -> Envelope {
        let raw = format!(
            r#"{{"v":1,"id":"e{ms}","app":"1","channel":"c","event":"x","data":"","ts":{ms},"pos":"ep:{ms}-0"}}"#
        );
        Envelope::decode(raw.as_bytes()).unwrap()
    }

    #[test]
    fn keeps_for_catching_up_sockets_only_and_caps() {
        let mut state = CatchUpState::default();
        let sid = Sid::new();
        let (tx, _rx) = oneshot::channel();
        state.apply(CatchUpCommand::Begin("room".into(), sid, tx));
        state.keep("room", &envelope(1));
        state.keep("other", &envelope(2));
        let kept = state.rooms["room"][&sid].events.len();
        assert_eq!(kept, 1);
        for ms in 0..MAX_KEPT_EVENTS as u64 {
            state.keep("room", &envelope(ms));
        }
        let (tx, mut rx) = oneshot::channel();
        state.apply(CatchUpCommand::Drain("room".into(), sid, tx));
        assert_eq!(rx.try_recv().unwrap(), Err(CatchUpError::Overflow));
        state.apply(CatchUpCommand::Abort("room".into(), sid));
        assert!(state.rooms.is_empty());
    }

    #[test]
    fn newer_means_after_the_last_replayed_position() {
        let last: Position = "ep:5-0".parse().unwrap();
        assert!(!is_newer(&envelope(5), Some(last.id)));
        assert!(is_newer(&envelope(6), Some(last.id)));
        assert!(is_newer(&envelope(1), None));
    }
}
