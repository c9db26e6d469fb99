//! `pusher:subscribe` on a Pusher connection: the same admission as a
//! Socket.IO subscribe ([`crate::worker::subscription`]), the room join, and
//! what follows the reply on a recovery or a cache channel.

use pushwire_shared::ChannelKind;
use pushwire_shared::client_protocol::{AckCode, AckError, SubscribeRequest};
use pushwire_shared::keys::KeySpace;
use pushwire_shared::presence::summary;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frames;
use super::rooms::{PusherRooms, Subscriber};
use super::{cached, recovery};
use crate::worker::WorkerContext;
use crate::worker::session::SocketSession;
use crate::worker::subscription::admit;

/// `pusher:subscribe`: the same admission as a Socket.IO subscribe, then the
/// connection joins the channel's room. With `since` the frames after the
/// reply are the events missed since then (see [`recovery`]); on a cache
/// channel, the cached event or a cache miss (see [`cached`]); either way
/// followed by what was queued meanwhile.
pub(super) async fn subscribe(
    data: &Value,
    ctx: &WorkerContext,
    session: &SocketSession,
    rooms: &PusherRooms,
    subscriber: &Subscriber,
    queued: &mut mpsc::Receiver<Utf8Bytes>,
) -> Vec<Utf8Bytes> {
    let req = match SubscribeRequest::parse(Some(data)) {
        Ok(req) => req,
        Err(e) => return vec![frames::error(None, &e.message).into()],
    };
    let channel = req.channel.clone();
    let since = req.since.clone();
    let presence = match admit_and_join(req, ctx, session, rooms, subscriber).await {
        Admission::Answered(reply) => return vec![reply.into()],
        Admission::Joined(presence) => presence,
    };
    let (recovered, after) = match &since {
        Some(since) => {
            let recovered = recovery::after_subscribe(ctx, session, &channel, since, queued).await;
            (Some(recovered.complete), recovered.frames)
        }
        None if channel.is_cache() => (
            None,
            cached::after_subscribe(ctx, session, &channel, queued).await,
        ),
        None => (None, Vec::new()),
    };
    let reply = frames::subscription_succeeded(&channel, presence.as_ref(), recovered);
    std::iter::once(Utf8Bytes::from(reply))
        .chain(after)
        .collect()
}

/// How a subscribe was admitted.
enum Admission {
    /// Refused, or a repeat: this is the whole answer.
    Answered(String),
    /// The connection joined the channel's room just now; the members of a
    /// presence channel.
    Joined(Option<Value>),
}

/// Admits `req` and joins its room, or answers a repeat or a refusal.
async fn admit_and_join(
    req: SubscribeRequest,
    ctx: &WorkerContext,
    session: &SocketSession,
    rooms: &PusherRooms,
    subscriber: &Subscriber,
) -> Admission {
    let mut channels = session.channels.lock().await;
    if channels.contains(&req.channel) {
        // Already subscribed: answered again, with the members on a presence
        // channel (pusher-js reads them from every subscription_succeeded).
        // It has missed nothing since it subscribed: nothing to recover.
        let presence = match req.channel.kind() {
            ChannelKind::Presence => match ctx
                .broker
                .presence_members(&session.app.id, &req.channel)
                .await
            {
                Ok(members) => Some(summary(members)),
                Err(e) => {
                    let e = AckError::unavailable(e);
                    return Admission::Answered(frames::subscription_error(
                        &req.channel,
                        status(&e),
                        &e.message,
                    ));
                }
            },
            _ => None,
        };
        let recovered = req.since.is_some().then_some(true);
        return Admission::Answered(frames::subscription_succeeded(
            &req.channel,
            presence.as_ref(),
            recovered,
        ));
    }
    match admit(&channels, &req, ctx, session).await {
        Ok(presence) => {
            let room = KeySpace::DEFAULT.channel(&session.app.id, &req.channel);
            rooms.join(room, session.socket_id.clone(), subscriber.clone());
            channels.insert(req.channel);
            Admission::Joined(presence)
        }
        Err(e) => {
            crate::metrics::worker().subscribe_refused(&session.app.id, e.code as u16);
            tracing::debug!(
                socket_id = %session.socket_id,
                app = %session.app.id,
                channel = %req.channel,
                error = %e,
                "pusher subscribe refused"
            );
            Admission::Answered(frames::subscription_error(
                &req.channel,
                status(&e),
                &e.message,
            ))
        }
    }
}

/// The HTTP-like status pusher-js expects in a subscription error.
fn status(e: &AckError) -> u16 {
    match e.code {
        AckCode::Unauthorized => 401,
        AckCode::Unavailable => 503,
        AckCode::OverLimit
        | AckCode::TooManyChannels
        | AckCode::SubscribeRateLimited
        | AckCode::ClientEventRateLimited => 429,
        AckCode::Malformed | AckCode::InvalidChannel => 400,
    }
}
