//! Delivery: envelopes arriving from the broker become events on local
//! subscribers, Socket.IO sockets and Pusher-protocol connections alike.
//!
//! One task per worker delivers everything, in arrival order. Per channel it
//! remembers the position of the last event it delivered, which gives it two
//! duties besides broadcasting:
//!
//! - an event at or before that position is a duplicate and is dropped;
//! - a subscriber whose bounded send buffer is full is a slow consumer: it is
//!   taken out of every room at once (so it can never receive a later event
//!   after a missed one) and disconnected (see [`LocalSubscribers`]); its
//!   client then recovers from the last event it received;
//! - when the broker's subscriber reconnected ([`Inbound::Resubscribed`], or
//!   [`Inbound::ChannelResubscribed`] for one channel of a Redis Cluster), it
//!   reads each channel's history from that position and delivers what was
//!   published while the subscription was down. When the history cannot reach
//!   back (Redis restarted empty, a failover lost the event), cannot be read,
//!   or the channel has no position yet (nothing delivered on it), it tells
//!   the channel's sockets so (`pushwire:history_lost`) instead of letting
//!   them miss events silently.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushwire_shared::envelope::EnvelopeError;
use pushwire_shared::event;
use pushwire_shared::history::{self, Position, Recovery};
use pushwire_shared::keys::KeySpace;
use pushwire_shared::{ChannelName, Envelope};
use tokio::sync::mpsc;

use super::catch_up::{CatchUpCommand, CatchUpState};
use super::pusher::PusherRooms;
use super::subscribers::{LocalSubscribers, SocketIoSubscribers};
use crate::backoff::Backoff;
use crate::broker::{Broker, Inbound};

/// How often the worker reports envelopes it could not decode: each one is an
/// event some subscribers never get, so it is an error, but a flood of them
/// (anything may be published to a channel) must not flood the log.
const UNDECODABLE_REPORT_EVERY: Duration = Duration::from_secs(60);

/// Counts envelopes dropped because they do not decode, and says when to report
/// them: the first at once, then at most once per [`UNDECODABLE_REPORT_EVERY`].
#[derive(Debug, Default)]
struct UndecodableEnvelopes {
    dropped_since_report: u64,
    last_report: Option<Instant>,
}

impl UndecodableEnvelopes {
    /// Counts one dropped envelope; `Some(n)` when it is time to report the
    /// `n` dropped since the last report.
    fn dropped(&mut self, now: Instant) -> Option<u64> {
        self.dropped_since_report += 1;
        let due = self
            .last_report
            .is_none_or(|last| now.duration_since(last) >= UNDECODABLE_REPORT_EVERY);
        if !due {
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.dropped_since_report))
    }

    /// Counts and, when due, reports an envelope that did not decode; delivery
    /// goes on with the next one, so the channel stays usable.
    fn report(&mut self, payload: &[u8], error: &EnvelopeError) {
        if let Some(dropped) = self.dropped(Instant::now()) {
            // What was published is event data, and a JSON error may quote
            // it: both are shown at debug level only.
            let kind = match error {
                EnvelopeError::Malformed(e) => format!(
                    "malformed envelope ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
                other => other.to_string(),
            };
            tracing::error!(
                dropped,
                error = %kind,
                bytes = payload.len(),
                "dropping envelopes that do not decode: their subscribers miss these events"
            );
            let start: String = String::from_utf8_lossy(payload).chars().take(120).collect();
            tracing::debug!(error = %error, payload = %start, "the last envelope dropped");
        }
    }
}

/// Attempts at reading a channel's history after a reconnection.
const GAP_READ_ATTEMPTS: u32 = 6;
/// Pauses between those attempts.
const GAP_READ_BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));

/// How often positions of channels without local sockets are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The last event delivered on one channel.
#[derive(Debug)]
struct Delivered {
    app: String,
    channel: ChannelName,
    last: Position,
}

/// The delivery task's state.
struct Deliverer {
    socket_io: SocketIoSubscribers,
    pusher: Arc<PusherRooms>,
    broker: Arc<dyn Broker>,
    catch_ups: CatchUpState,
    delivered: HashMap<String, Delivered>,
    undecodable: UndecodableEnvelopes,
}

/// Delivers every inbound payload, in arrival order, until the broker side closes,
/// and runs the catch-up commands between deliveries.
///
/// Each subscriber of the envelope's channel receives it, framed by its own
/// protocol ([`LocalSubscribers`]); the envelope's `exclude` socket is left out.
pub(crate) async fn run(
    mut inbound: mpsc::Receiver<Inbound>,
    mut catch_ups: mpsc::UnboundedReceiver<CatchUpCommand>,
    socket_io: SocketIoSubscribers,
    pusher: Arc<PusherRooms>,
    broker: Arc<dyn Broker>,
) {
    let mut deliverer = Deliverer {
        socket_io,
        pusher,
        broker,
        catch_ups: CatchUpState::default(),
        delivered: HashMap::new(),
        undecodable: UndecodableEnvelopes::default(),
    };
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            // Commands first: a `begin` must take effect before the events that
            // are already queued, which the history read may not contain.
            biased;
            Some(command) = catch_ups.recv() => deliverer.catch_ups.apply(command),
            _ = prune.tick() => deliverer.prune(),
            inbound = inbound.recv() => match inbound {
                Some(Inbound::Payload(payload)) => match Envelope::decode(&payload) {
                    Ok(envelope) => deliverer.deliver(envelope).await,
                    Err(e) => deliverer.undecodable.report(&payload, &e),
                },
                Some(Inbound::Barrier(reached)) => {
                    let _ = reached.send(());
                }
                Some(Inbound::Resubscribed) => deliverer.fill_gaps().await,
                Some(Inbound::ChannelResubscribed(room)) => deliverer.fill_gap(room).await,
                None => return,
            },
        }
    }
}

impl Deliverer {
    async fn deliver(&mut self, envelope: Envelope) {
        let room = KeySpace::DEFAULT.channel(&envelope.app, &envelope.channel);
        if let Some(pos) = &envelope.pos {
            match self.delivered.get_mut(&room) {
                Some(d) if d.last.epoch == pos.epoch && pos.id <= d.last.id => {
                    tracing::trace!(event_id = %envelope.id, "dropping a duplicate");
                    return;
                }
                Some(d) => d.last = pos.clone(),
                None => {
                    self.delivered.insert(
                        room.clone(),
                        Delivered {
                            app: envelope.app.clone(),
                            channel: envelope.channel.clone(),
                            last: pos.clone(),
                        },
                    );
                }
            }
        }
        if !event::reaches_clients(envelope.event.as_str()) {
            // An order, not an event: it closes the user's connections here
            // (live or read from the history after a reconnection) and is
            // never sent to a client.
            let closed = self.socket_io.terminate(&room) + self.pusher.terminate(&room);
            tracing::debug!(app = %envelope.app, channel = %envelope.channel, closed, "terminated a user's connections");
            return;
        }
        tracing::trace!(
            event_id = %envelope.id,
            app = %envelope.app,
            channel = %envelope.channel,
            "delivering"
        );
        self.catch_ups.keep(&room, &envelope);
        let delivered =
            self.socket_io.deliver(&room, &envelope) + self.pusher.deliver(&room, &envelope);
        crate::metrics::worker()
            .messages_delivered
            .inc_by(delivered);
    }

    /// After a broker reconnection: delivers, per channel, what was published
    /// after its last delivered event, or disconnects its sockets when that
    /// cannot be known.
    async fn fill_gaps(&mut self) {
        let positioned: HashSet<String> = self.delivered.keys().cloned().collect();
        for room in &positioned {
            self.fill_gap(room.clone()).await;
        }
        // The channels it delivered nothing on yet have no position to read
        // from: nothing vouches for the time the subscription was down.
        let mut local = self.socket_io.rooms().await;
        local.extend(self.pusher.rooms().await);
        local.sort_unstable();
        local.dedup();
        for room in local {
            if !positioned.contains(&room) {
                self.tell_lost(room).await;
            }
        }
    }

    /// Tells `room`'s sockets that events of its channel may have been missed
    /// (`pushwire:history_lost`); they stay subscribed. Rooms that are not
    /// channels (each socket's own) are left alone.
    async fn tell_lost(&mut self, room: String) {
        let Some((app, channel)) = KeySpace::DEFAULT.parse_channel(&room) else {
            return;
        };
        tracing::warn!(
            app = %app,
            %channel,
            "events may have been missed while disconnected: telling the channel's sockets"
        );
        self.delivered.remove(&room);
        self.socket_io.tell_lost(&room, &channel).await;
        self.pusher.tell_lost(&room, &channel).await;
    }

    /// Delivers what `room`'s channel got in its history after the last event
    /// delivered on it, or tells its sockets the history was lost: the
    /// subscription was down, events may have been published meanwhile. A
    /// history that cannot be read counts as lost: never a quiet gap.
    async fn fill_gap(&mut self, room: String) {
        let Some(d) = self.delivered.get(&room) else {
            return self.tell_lost(room).await;
        };
        let (app, channel, last) = (d.app.clone(), d.channel.clone(), d.last.clone());
        let key = KeySpace::DEFAULT.history(&app, &channel);
        let recovery = match self.read_history(&room, &key, &last, &app, &channel).await {
            Some(snapshot) => {
                tracing::debug!(
                    app = %app,
                    %channel,
                    since = %last,
                    read = snapshot.entries.len(),
                    "filling a gap from the history"
                );
                history::recover(&last, snapshot.epoch.as_deref(), snapshot.entries)
            }
            None => Recovery::Lost,
        };
        match recovery {
            Recovery::Recovered(missed) => {
                if !missed.is_empty() {
                    tracing::info!(
                        app = %app,
                        %channel,
                        missed = missed.len(),
                        "delivering events published while disconnected"
                    );
                }
                for (id, json) in missed {
                    let mut envelope = match Envelope::decode(json.as_bytes()) {
                        Ok(envelope) => envelope,
                        Err(e) => {
                            self.undecodable.report(json.as_bytes(), &e);
                            continue;
                        }
                    };
                    envelope.pos = Some(Position {
                        epoch: last.epoch.clone(),
                        id,
                    });
                    self.deliver(envelope).await;
                }
            }
            Recovery::Lost => self.tell_lost(room).await,
        }
    }

    /// Reads a channel's history after a reconnection, retrying a few times: the
    /// command connection may still hold the broken link the subscriber just
    /// replaced. `None` after the last attempt (logged; the channel's next
    /// reconnection tries again).
    async fn read_history(
        &self,
        room: &str,
        key: &str,
        last: &Position,
        app: &str,
        channel: &ChannelName,
    ) -> Option<crate::broker::HistorySnapshot> {
        let mut attempt = 0;
        loop {
            match self.broker.history(room, key, last.id).await {
                Ok(snapshot) => return Some(snapshot),
                Err(e) if attempt + 1 >= GAP_READ_ATTEMPTS => {
                    tracing::warn!(app, %channel, error = %e, "cannot read history after reconnecting");
                    return None;
                }
                Err(_) => {
                    tokio::time::sleep(GAP_READ_BACKOFF.pause(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Forgets channels no local subscriber is on any more.
    fn prune(&mut self) {
        let (socket_io, pusher) = (&self.socket_io, &self.pusher);
        self.delivered
            .retain(|room, _| socket_io.occupied(room) || pusher.occupied(room));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_envelopes_are_reported_at_once_then_once_a_minute() {
        let mut undecodable = UndecodableEnvelopes::default();
        let start = Instant::now();
        assert_eq!(undecodable.dropped(start), Some(1));
        for n in 1..=5 {
            assert_eq!(undecodable.dropped(start + Duration::from_secs(n)), None);
        }
        let later = start + UNDECODABLE_REPORT_EVERY;
        assert_eq!(undecodable.dropped(later), Some(6));
        assert_eq!(undecodable.dropped(later), None);
    }
}
