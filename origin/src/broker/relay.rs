//! The worker side of the embedded broker: publishes and subscriptions go to
//! the master over the control socket; the master relays payloads back as
//! `Deliver` frames, which the worker's control reader feeds to delivery.

use std::sync::Arc;

use super::{Broker, BrokerError, BrokerFuture, BrokerHealth, Outbound};
use crate::cluster::ControlClient;
use crate::cluster::ipc::{IpcError, ToMaster};

/// A [`Broker`] whose hub is the cluster master.
#[derive(Debug)]
pub struct RelayBroker {
    control: Arc<ControlClient>,
}

impl RelayBroker {
    /// A broker talking to the master through `control`.
    pub fn new(control: Arc<ControlClient>) -> Self {
        RelayBroker { control }
    }
}

fn closed(_: IpcError) -> BrokerError {
    BrokerError::Closed
}

impl Broker for RelayBroker {
    fn publish<'a>(&'a self, messages: &'a [Outbound]) -> BrokerFuture<'a, ()> {
        Box::pin(async move {
            self.control
                .request(|id| ToMaster::Publish(id, messages.to_vec()))
                .await
                .map_err(closed)
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        Box::pin(async move {
            self.control
                .request(|id| ToMaster::Subscribe(id, channel.to_owned()))
                .await
                .map_err(closed)
        })
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        Box::pin(async move {
            self.control
                .request(|id| ToMaster::Unsubscribe(id, channel.to_owned()))
                .await
                .map_err(closed)
        })
    }

    fn health(&self) -> BrokerHealth {
        BrokerHealth {
            kind: "embedded",
            connected: true,
        }
    }
}
