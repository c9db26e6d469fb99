//! Recovery on a Pusher connection: a `pusher:subscribe` with `since` gets
//! the channel's retained events after `since`, then the live frames queued
//! meanwhile, with no gap and no duplicate at the seam.
//!
//! The connection joined the channel's room before this runs and its task is
//! busy here, so every live event of the channel since the join waits in its
//! queue. The history read after the join holds everything published before
//! it; after the broker's barrier, an event of the history that reached this
//! worker after the join is in the queue too. So the queue's frames of the
//! channel are either in the replay (dropped there, by id) or newer than all
//! of it (sent after it, in order).

use std::collections::HashSet;

use pushwire_shared::history::{self, Position, Recovery};
use pushwire_shared::keys::KeySpace;
use pushwire_shared::{ChannelName, Envelope};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frames;
use crate::worker::WorkerContext;
use crate::worker::session::SocketSession;

/// What a recovering subscribe sends after its reply.
#[derive(Debug)]
pub(super) struct Recovered {
    /// Whether every event after `since` was still retained (and is in `frames`).
    pub complete: bool,
    /// The replayed events, then the live frames queued since the join.
    pub frames: Vec<Utf8Bytes>,
}

/// Reads `channel`'s history after `since` and returns it framed, followed by
/// the frames queued on `queued` since the connection joined the channel's
/// room, minus those the replay already holds.
///
/// When the history cannot be read the subscription stands and `complete` is
/// false: the client is told it may have missed events, as when the history
/// no longer reaches back to `since`.
pub(super) async fn after_subscribe(
    ctx: &WorkerContext,
    session: &SocketSession,
    channel: &ChannelName,
    since: &Position,
    queued: &mut mpsc::Receiver<Utf8Bytes>,
) -> Recovered {
    let app = session.app.id.as_str();
    let room = KeySpace::DEFAULT.channel(app, channel);
    let snapshot = ctx
        .broker
        .history(&room, &KeySpace::DEFAULT.history(app, channel), since.id)
        .await;
    let replay = match snapshot {
        Ok(snapshot) => {
            match history::recover(since, snapshot.epoch.as_deref(), snapshot.entries) {
                Recovery::Recovered(entries) => Some(decode(session, channel, since, entries)),
                Recovery::Lost => None,
            }
        }
        Err(e) => {
            tracing::debug!(socket_id = %session.socket_id, %channel, error = %e, "history read failed");
            None
        }
    };
    if let Err(e) = ctx.broker.barrier().await {
        tracing::debug!(socket_id = %session.socket_id, %channel, error = %e, "recovery barrier failed");
    }
    let mut pending = Vec::new();
    while let Ok(frame) = queued.try_recv() {
        pending.push(frame);
    }
    crate::metrics::worker()
        .history_replays
        .get_or_create(&crate::metrics::OutcomeLabels {
            outcome: if replay.is_some() {
                "recovered"
            } else {
                "not_recovered"
            },
        })
        .inc();
    let complete = replay.is_some();
    Recovered {
        complete,
        frames: seamed(channel, replay.unwrap_or_default(), pending),
    }
}

/// The history's entries as envelopes positioned in `since`'s epoch; an
/// undecodable entry (another version's) is skipped.
fn decode(
    session: &SocketSession,
    channel: &ChannelName,
    since: &Position,
    entries: Vec<(history::StreamId, String)>,
) -> Vec<Envelope> {
    entries
        .into_iter()
        .filter_map(|(id, json)| match Envelope::decode(json.as_bytes()) {
            // An order to the servers (a user's termination) is no event.
            Ok(envelope) if !pushwire_shared::event::reaches_clients(envelope.event.as_str()) => None,
            Ok(mut envelope) => {
                envelope.pos = Some(Position {
                    epoch: since.epoch.clone(),
                    id,
                });
                Some(envelope)
            }
            Err(_) => {
                tracing::warn!(app = %session.app.id, %channel, %id, "skipping an undecodable history entry");
                None
            }
        })
        .collect()
}

/// `replay` framed, then `pending` without the frames of `channel` whose
/// event the replay already holds.
fn seamed(channel: &ChannelName, replay: Vec<Envelope>, pending: Vec<Utf8Bytes>) -> Vec<Utf8Bytes> {
    let replayed: HashSet<&str> = replay.iter().map(|e| e.id.as_str()).collect();
    let live = pending.into_iter().filter(|frame| {
        frames::event_key(frame)
            .is_none_or(|(on, id)| on != channel.as_str() || !replayed.contains(id.as_str()))
    });
    replay
        .iter()
        .map(|envelope| Utf8Bytes::from(frames::event(envelope)))
        .chain(live)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::pusher::frames::fixtures::{envelope, frame, ids};

    #[test]
    fn the_replay_comes_first_and_the_queue_keeps_only_what_is_newer() {
        let channel = ChannelName::new("a").unwrap();
        let other = ChannelName::new("b").unwrap();
        let (e1, e2, e3) = (
            envelope("e1", &channel),
            envelope("e2", &channel),
            envelope("e3", &channel),
        );
        // e2 arrived live during the replay, and so did another channel's e2.
        let elsewhere = envelope("e2", &other);
        let sent = seamed(
            &channel,
            vec![e1.clone(), e2.clone()],
            vec![frame(&e2), frame(&elsewhere), frame(&e3)],
        );
        assert_eq!(
            ids(&sent),
            ids(&[frame(&e1), frame(&e2), frame(&elsewhere), frame(&e3)])
        );
        // Nothing to replay: the queue as it is.
        let queued = vec![frame(&e3)];
        assert_eq!(ids(&seamed(&channel, vec![], queued.clone())), ids(&queued));
    }
}
