//! Delivery: envelopes arriving from the broker become Socket.IO events on local sockets.

use pushwire_shared::Envelope;
use pushwire_shared::delivery::{DeliveryMeta, client_data};
use pushwire_shared::envelope::redis_channel;
use serde_json::Value;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketIo};
use tokio::sync::mpsc;

use super::catch_up::{CatchUpCommand, CatchUpState};
use crate::broker::Inbound;

/// The two arguments every subscriber receives: the data and `{channel, id, ts, pos}`.
fn event_args(envelope: &Envelope) -> (Value, DeliveryMeta<'_>) {
    let meta = DeliveryMeta {
        channel: envelope.channel.as_str(),
        id: &envelope.id,
        ts: envelope.ts,
        pos: envelope.pos.as_ref().map(ToString::to_string),
    };
    (client_data(&envelope.data), meta)
}

/// Emits one envelope to one socket (history replay and catch-up flush),
/// honouring the envelope's `exclude` (an excluded socket counts as done).
pub(crate) fn emit_to_socket(socket: &SocketRef, envelope: &Envelope) -> Result<(), SendError> {
    let excluded = envelope.exclude.as_ref().is_some_and(|excluded| {
        socket
            .extensions
            .get::<std::sync::Arc<super::SocketSession>>()
            .is_some_and(|session| &session.socket_id == excluded)
    });
    if excluded {
        return Ok(());
    }
    socket.emit(envelope.event.as_str(), &event_args(envelope))
}

/// Delivers every inbound payload, in arrival order, until the broker side closes,
/// and runs the catch-up commands between deliveries.
///
/// Each subscriber of the envelope's channel receives the event `event` with the
/// arguments `(data, {channel, id, ts, pos})`; the envelope's `exclude` socket is left out.
pub(crate) async fn run(
    mut inbound: mpsc::Receiver<Inbound>,
    mut catch_ups: mpsc::UnboundedReceiver<CatchUpCommand>,
    io: SocketIo,
) {
    let mut state = CatchUpState::default();
    loop {
        let payload = tokio::select! {
            // Commands first: a `begin` must take effect before the events that
            // are already queued, which the history read may not contain.
            biased;
            Some(command) = catch_ups.recv() => {
                state.apply(command);
                continue;
            }
            inbound = inbound.recv() => match inbound {
                Some(Inbound::Payload(payload)) => payload,
                Some(Inbound::Barrier(reached)) => {
                    let _ = reached.send(());
                    continue;
                }
                None => return,
            },
        };
        let envelope = match Envelope::decode(&payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(error = %e, "dropping an undecodable envelope");
                continue;
            }
        };
        tracing::trace!(event_id = %envelope.id, channel = %envelope.channel, "delivering");
        let room = redis_channel(&envelope.app, &envelope.channel);
        state.keep(&room, &envelope);
        let mut target = io.to(room);
        if let Some(excluded) = &envelope.exclude {
            // Every socket is in a room named by its socket id (see handlers).
            target = target.except(excluded.to_string());
        }
        if let Err(e) = target
            .emit(envelope.event.as_str(), &event_args(&envelope))
            .await
        {
            tracing::debug!(event_id = %envelope.id, error = %e, "some sockets missed a delivery");
        }
    }
}
