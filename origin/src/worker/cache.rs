//! Cache channels (`cache-*`, `private-cache-*`, `presence-cache-*`): a new
//! subscriber gets the channel's last event at once, or a cache miss. The
//! last event is the newest entry of the channel's history, so it lives as
//! long as the history retains it, on every broker, across worker restarts.

use pushwire_shared::client_protocol::AckError;
use pushwire_shared::event::SERVER_EVENTS;
use pushwire_shared::history::{Position, StreamId};
use pushwire_shared::keys::KeySpace;
use pushwire_shared::webhook::{WebhookEvent, WebhookEventKind};
use pushwire_shared::{ChannelName, Envelope};
use socketioxide::extract::SocketRef;

use super::WorkerContext;
use super::catch_up::send_paced;
use super::session::SocketSession;

/// The event a cache channel's subscriber gets when there is nothing cached:
/// Pusher's name, which pusher-js hands to `channel.bind("pusher:cache_miss")`.
pub(crate) const CACHE_MISS: &str = "pusher:cache_miss";

/// The newest retained event of `channel` other than a presence change, with
/// its position, or `None` when the history holds none (never published,
/// expired, or pushed out by presence changes).
///
/// The caller must have joined (or begun catching up on) `room` before the
/// call and await [`Broker::barrier`](crate::broker::Broker::barrier) after
/// it, so the returned event is either already delivered or on its way to the
/// socket, never both unnoticed.
pub(crate) async fn last_event(
    ctx: &WorkerContext,
    app: &str,
    channel: &ChannelName,
    room: &str,
) -> Result<Option<Envelope>, AckError> {
    let snapshot = ctx
        .broker
        .history(
            room,
            &KeySpace::DEFAULT.history(app, channel),
            StreamId::default(),
        )
        .await
        .map_err(AckError::unavailable)?;
    // The newest decodable entry: an undecodable one (another version's) is
    // skipped, and so are presence changes, which share a presence channel's
    // history but are no event of the app's to hand a new subscriber.
    Ok(snapshot.entries.into_iter().rev().find_map(|(id, json)| {
        let mut envelope = Envelope::decode(json.as_bytes()).ok()?;
        if SERVER_EVENTS.contains(&envelope.event.as_str()) {
            return None;
        }
        envelope.pos = snapshot.epoch.clone().map(|epoch| Position { epoch, id });
        Some(envelope)
    }))
}

/// Tells the app's webhook endpoints that wants it that a subscriber of
/// `channel` found nothing cached (Pusher's `cache_miss`), so its backend can
/// trigger the channel's current state. A failure costs only the report.
pub(crate) async fn report_miss(ctx: &WorkerContext, app: &str, channel: &ChannelName) {
    if !ctx.wants_webhook(app, WebhookEventKind::CacheMiss) {
        return;
    }
    let event = WebhookEvent::CacheMiss {
        channel: channel.clone(),
    };
    if let Err(e) = ctx.broker.webhook(app, event).await {
        tracing::warn!(app, %channel, error = %e, "a cache miss's webhook was not queued");
    }
}

/// Sends a Socket.IO subscriber of a cache channel the channel's last event,
/// then puts it in the channel's room with no duplicate at the seam (the
/// catch-up of a one-event replay, see `catch_up`). Returns whether there was
/// an event to send.
///
/// The events kept since the catch-up began are all sent, in order: when the
/// last event is among them it is sent there, in its place, and not first; when
/// it is not, it was delivered before the catch-up began, so everything kept
/// is newer. Skipping kept events by position instead would drop a presence
/// change kept before a newer trigger (presence changes are never "the last event").
pub(crate) async fn serve(
    s: &SocketRef,
    ctx: &WorkerContext,
    session: &SocketSession,
    channel: &ChannelName,
    room: &str,
) -> Result<bool, AckError> {
    let send = async {
        let last = last_event(ctx, &session.app.id, channel, room).await?;
        ctx.broker.barrier().await.map_err(AckError::unavailable)?;
        let kept = ctx
            .catch_ups
            .drain(room, s.id)
            .await
            .map_err(AckError::unavailable)?;
        let first = last
            .as_ref()
            .filter(|last| !kept.iter().any(|e| e.id == last.id));
        for envelope in first.into_iter().chain(&kept) {
            send_paced(s, envelope, ctx.replay_patience)
                .await
                .map_err(AckError::unavailable)?;
        }
        if last.is_none() {
            report_miss(ctx, &session.app.id, channel).await;
        }
        // Everything kept so far was sent: what is kept from now on is new.
        Ok((last.is_some(), None))
    };
    ctx.catch_ups.run(room, s, ctx.replay_patience, send).await
}
