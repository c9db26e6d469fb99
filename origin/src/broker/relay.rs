//! The worker side of the embedded broker: publishes and subscriptions go to
//! the master over the control socket; the master relays payloads back as
//! `Deliver` frames, which the worker's control reader feeds to delivery.

use std::sync::Arc;

use pushwire_shared::ChannelName;
use pushwire_shared::channel_query::ChannelStats;
use pushwire_shared::history::StreamId;

use super::directory::{DirectoryReply, DirectoryRequest, JoinOutcome, PresenceChange};

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

fn to_json(request: &DirectoryRequest) -> String {
    serde_json::to_string(request).expect("a request always serialises")
}

fn unexpected(reply: &DirectoryReply) -> BrokerError {
    BrokerError::Unavailable(format!("the master answered {reply:?}"))
}

impl RelayBroker {
    async fn directory(&self, request: DirectoryRequest) -> Result<DirectoryReply, BrokerError> {
        let answer = self
            .control
            .request(|id| ToMaster::Directory(id, to_json(&request)))
            .await
            .map_err(closed)?;
        let ToWorker::Directory(_, json) = answer else {
            return Err(BrokerError::Unavailable(
                "the master answered a directory request with something else".into(),
            ));
        };
        serde_json::from_str(&json).map_err(|e| BrokerError::Unavailable(e.to_string()))
    }
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

    fn report_count(&self, app: &str, channel: &ChannelName, count: usize) {
        let request = DirectoryRequest::Count {
            app: app.to_owned(),
            channel: channel.to_string(),
            count,
        };
        // No answer awaited (id 0 matches no request): counts are advisory.
        let _ = self
            .control
            .send(&ToMaster::Directory(0, to_json(&request)));
    }

    fn presence_join<'a>(&'a self, change: &'a PresenceChange) -> BrokerFuture<'a, JoinOutcome> {
        Box::pin(async move {
            let request = DirectoryRequest::Join {
                app: change.app.clone(),
                channel: change.channel.to_string(),
                user_id: change.member.user_id.clone(),
                user_info: change.member.user_info.clone(),
                max_members: change.max_members,
                event_channel: change.event.channel.clone(),
                envelope: change.event.envelope.clone(),
            };
            match self.directory(request).await? {
                DirectoryReply::Joined(Some(members)) => Ok(JoinOutcome::Joined(members)),
                DirectoryReply::Joined(None) => Ok(JoinOutcome::Full),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn presence_leave<'a>(&'a self, change: &'a PresenceChange) -> BrokerFuture<'a, ()> {
        Box::pin(async move {
            let request = DirectoryRequest::Leave {
                app: change.app.clone(),
                channel: change.channel.to_string(),
                user_id: change.member.user_id.clone(),
                event_channel: change.event.channel.clone(),
                envelope: change.event.envelope.clone(),
            };
            self.directory(request).await.map(|_| ())
        })
    }

    fn channel_stats<'a>(
        &'a self,
        app: &'a str,
        channels: &'a [ChannelName],
    ) -> BrokerFuture<'a, Vec<ChannelStats>> {
        Box::pin(async move {
            let request = DirectoryRequest::Stats {
                app: app.to_owned(),
                channels: channels.iter().map(ToString::to_string).collect(),
            };
            match self.directory(request).await? {
                DirectoryReply::Stats(stats) => Ok(stats),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn occupied_channels<'a>(
        &'a self,
        app: &'a str,
        prefix: &'a str,
    ) -> BrokerFuture<'a, Vec<(ChannelName, ChannelStats)>> {
        Box::pin(async move {
            let request = DirectoryRequest::Occupied {
                app: app.to_owned(),
                prefix: prefix.to_owned(),
            };
            match self.directory(request).await? {
                DirectoryReply::Occupied(list) => Ok(list
                    .into_iter()
                    .filter_map(|(channel, stats)| Some((ChannelName::new(&channel).ok()?, stats)))
                    .collect()),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn presence_members<'a>(
        &'a self,
        app: &'a str,
        channel: &'a ChannelName,
    ) -> BrokerFuture<'a, Vec<(String, String)>> {
        Box::pin(async move {
            let request = DirectoryRequest::Members {
                app: app.to_owned(),
                channel: channel.to_string(),
            };
            match self.directory(request).await? {
                DirectoryReply::Members(members) => Ok(members),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn health(&self) -> BrokerHealth {
        BrokerHealth {
            kind: "embedded",
            connected: true,
        }
    }
}
