//! Delivery: envelopes arriving from the broker become Socket.IO events on local sockets.

use pushwire_shared::Envelope;
use pushwire_shared::delivery::{DeliveryMeta, client_data};
use pushwire_shared::envelope::redis_channel;
use socketioxide::SocketIo;
use tokio::sync::mpsc;

/// Delivers every inbound payload, in arrival order, until the broker side closes.
///
/// Each subscriber of the envelope's channel receives the event `event` with the
/// arguments `(data, {channel, id, ts})`; the envelope's `exclude` socket is left out.
pub(crate) async fn run(mut inbound: mpsc::Receiver<Vec<u8>>, io: SocketIo) {
    while let Some(payload) = inbound.recv().await {
        let envelope = match Envelope::decode(&payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(error = %e, "dropping an undecodable envelope");
                continue;
            }
        };
        tracing::trace!(event_id = %envelope.id, channel = %envelope.channel, "delivering");
        let room = redis_channel(&envelope.app, &envelope.channel);
        let data = client_data(&envelope.data);
        let meta = DeliveryMeta {
            channel: envelope.channel.as_str(),
            id: &envelope.id,
            ts: envelope.ts,
        };
        let mut target = io.to(room);
        if let Some(excluded) = &envelope.exclude {
            // Every socket is in a room named by its socket id (see handlers).
            target = target.except(excluded.to_string());
        }
        if let Err(e) = target.emit(envelope.event.as_str(), &(data, meta)).await {
            tracing::debug!(event_id = %envelope.id, error = %e, "some sockets missed a delivery");
        }
    }
}
