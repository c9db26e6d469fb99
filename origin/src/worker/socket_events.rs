//! Events a socket causes (presence changes, client events), made into the
//! message the broker publishes like a trigger's, never delivered back to it.

use pushwire_shared::history::PublishMessage;
use pushwire_shared::{ChannelName, Envelope, EventName};
use serde_json::Value;

use super::WorkerContext;
use super::session::SocketSession;
use crate::clock::now_ms;

/// `event` with `data` on `channel`, from `session`'s socket (excluded from delivery).
pub(crate) fn message(
    ctx: &WorkerContext,
    session: &SocketSession,
    channel: &ChannelName,
    event: EventName,
    data: Value,
) -> PublishMessage {
    let ts = now_ms();
    let envelope = Envelope::new(
        ctx.event_ids.next(ts),
        session.app.id.clone(),
        channel.clone(),
        event,
        data,
        ts,
    )
    .excluding(Some(session.socket_id.clone()));
    PublishMessage::of(&envelope)
}
