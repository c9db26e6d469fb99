//! A cache channel's subscribe on a Pusher connection: after
//! `subscription_succeeded`, the channel's last event (or `pusher:cache_miss`)
//! and the live frames queued meanwhile, with the last event sent once.

use pushwire_shared::keys::KeySpace;
use pushwire_shared::{ChannelName, Envelope};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frames;
use crate::worker::session::SocketSession;
use crate::worker::{WorkerContext, cache};

/// What follows a cache channel's `subscription_succeeded`: its last event, or
/// `pusher:cache_miss`, then the live frames queued since the connection
/// joined the room, unless the last event is among them (then it is sent only
/// there, in its place).
pub(super) async fn after_subscribe(
    ctx: &WorkerContext,
    session: &SocketSession,
    channel: &ChannelName,
    queued: &mut mpsc::Receiver<Utf8Bytes>,
) -> Vec<Utf8Bytes> {
    let room = KeySpace::DEFAULT.channel(&session.app.id, channel);
    let last = match cache::last_event(ctx, &session.app.id, channel, &room).await {
        Ok(last) => last,
        Err(e) => {
            // Subscribed all the same; the client just gets no cached event.
            tracing::debug!(socket_id = %session.socket_id, %channel, error = %e, "cache read failed");
            return vec![frames::error(None, &e.message).into()];
        }
    };
    // After the barrier, an event of the history that reached this worker after
    // the join is in the queue: drained here, to find it and keep the order.
    if let Err(e) = ctx.broker.barrier().await {
        tracing::debug!(socket_id = %session.socket_id, %channel, error = %e, "cache barrier failed");
    }
    let mut pending = Vec::new();
    while let Ok(frame) = queued.try_recv() {
        pending.push(frame);
    }
    if last.is_none() {
        cache::report_miss(ctx, &session.app.id, channel).await;
    }
    with_cached(channel, last.as_ref(), pending)
}

/// `pending` (frames queued since the join) preceded by the cached event, or
/// by a miss when there is none; the cached event is left out when it is
/// already among `pending`, which holds it in its place.
fn with_cached(
    channel: &ChannelName,
    last: Option<&Envelope>,
    pending: Vec<Utf8Bytes>,
) -> Vec<Utf8Bytes> {
    let first = match last {
        Some(envelope)
            if pending
                .iter()
                .any(|f| frames::is_event(f, channel, &envelope.id)) =>
        {
            None
        }
        Some(envelope) => Some(frames::event(envelope)),
        None => Some(frames::cache_miss(channel)),
    };
    first
        .map(Utf8Bytes::from)
        .into_iter()
        .chain(pending)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::pusher::frames::fixtures::{envelope, frame, ids};

    #[test]
    fn the_cached_event_goes_first_once() {
        let channel = ChannelName::new("cache-a").unwrap();
        let other = ChannelName::new("cache-b").unwrap();
        let (last, next) = (envelope("e1", &channel), envelope("e2", &channel));
        let elsewhere = envelope("e1", &other);

        // Not queued: sent first, before what was queued.
        let sent = with_cached(&channel, Some(&last), vec![frame(&elsewhere), frame(&next)]);
        assert_eq!(
            ids(&sent),
            ids(&[frame(&last), frame(&elsewhere), frame(&next)])
        );
        // Queued already (it arrived live during the subscribe): only there.
        let queued = vec![frame(&last), frame(&next)];
        let sent = with_cached(&channel, Some(&last), queued.clone());
        assert_eq!(ids(&sent), ids(&queued));
        // Nothing cached: a miss, then the queue.
        let sent = with_cached(&channel, None, vec![frame(&next)]);
        assert_eq!(sent[0].as_str(), frames::cache_miss(&channel));
        assert_eq!(sent.len(), 2);
    }
}
