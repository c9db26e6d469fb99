//! The worker side of the embedded broker: publishes and subscriptions go to
//! the master over the control socket; the master relays payloads back as
//! `Deliver` frames, which the worker's control reader feeds to delivery.

use std::sync::Arc;

use pushwire_shared::history::StreamId;

use super::{
    Broker, BrokerError, BrokerFuture, BrokerHealth, HistorySnapshot, Inbound, InboundSender,
    Outbound,
};
use crate::cluster::ControlClient;
use crate::cluster::ipc::{IpcError, ToMaster, ToWorker};

/// A [`Broker`] whose hub is the cluster master.
#[derive(Debug)]
pub struct RelayBroker {
    control: Arc<ControlClient>,
    inbound: InboundSender,
}

impl RelayBroker {
    /// A broker talking to the master through `control`; `inbound` is where
    /// the worker's control reader queues the master's deliveries.
    pub fn new(control: Arc<ControlClient>, inbound: InboundSender) -> Self {
        RelayBroker { control, inbound }
    }
}

fn closed(_: IpcError) -> BrokerError {
    BrokerError::Closed
}

impl Broker for RelayBroker {
    fn publish<'a>(&'a self, messages: &'a [Outbound]) -> BrokerFuture<'a, ()> {
        Box::pin(async move {
            self.control
                .request(|id| {
                    // The master keeps the history: it needs the channel and envelope only.
                    let pairs = messages
                        .iter()
                        .map(|m| (m.channel.clone(), m.envelope.clone()))
                        .collect();
                    ToMaster::Publish(id, pairs)
                })
                .await
                .map_err(closed)?;
            Ok(())
        })
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        _history_key: &'a str,
        from: StreamId,
    ) -> BrokerFuture<'a, HistorySnapshot> {
        Box::pin(async move {
            let answer = self
                .control
                .request(|id| ToMaster::History(id, channel.to_owned(), from.to_string()))
                .await
                .map_err(closed)?;
            let ToWorker::History(_, epoch, entries) = answer else {
                return Err(BrokerError::Unavailable(
                    "the master answered a history request with something else".into(),
                ));
            };
            Ok(HistorySnapshot {
                epoch: Some(epoch).filter(|e| !e.is_empty()),
                entries: entries
                    .into_iter()
                    .filter_map(|(id, envelope)| Some((id.parse().ok()?, envelope)))
                    .collect(),
            })
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        Box::pin(async move {
            self.control
                .request(|id| ToMaster::Subscribe(id, channel.to_owned()))
                .await
                .map_err(closed)?;
            Ok(())
        })
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        Box::pin(async move {
            self.control
                .request(|id| ToMaster::Unsubscribe(id, channel.to_owned()))
                .await
                .map_err(closed)?;
            Ok(())
        })
    }

    fn barrier(&self) -> BrokerFuture<'_, ()> {
        Box::pin(async move {
            // The master answers in order with the deliveries it relayed to us,
            // and the control reader queues each before reading the next frame.
            self.control
                .request(ToMaster::Barrier)
                .await
                .map_err(closed)?;
            let (reached, delivered) = tokio::sync::oneshot::channel();
            self.inbound
                .send(Inbound::Barrier(reached))
                .await
                .map_err(|_| BrokerError::Closed)?;
            delivered.await.map_err(|_| BrokerError::Closed)
        })
    }

    fn health(&self) -> BrokerHealth {
        BrokerHealth {
            kind: "embedded",
            connected: true,
        }
    }
}
