//! Events a socket causes (presence changes, client events), made into the
//! message the broker publishes like a trigger's, never delivered back to it.

use pushwire_shared::envelope::ENVELOPE_VERSION;
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
    let envelope = Envelope {
        v: ENVELOPE_VERSION,
        id: ctx.event_ids.next(ts),
        app: session.app.id.clone(),
        channel: channel.clone(),
        event,
        data,
        exclude: Some(session.socket_id.clone()),
        ts,
        pos: None,
    };
    PublishMessage::of(&envelope)
}
