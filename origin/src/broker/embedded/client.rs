//! The embedded broker's worker side: every operation is a request to the
//! server in the master; the server's deliveries reach the worker's delivery
//! task through the [`InboundSender`] the transport feeds.

use std::sync::Arc;

use pushwire_shared::ChannelName;
use pushwire_shared::directory::ChannelStats;
use pushwire_shared::history::StreamId;
use pushwire_shared::webhook::WebhookEvent;

use super::protocol::{DirectoryReply, DirectoryRequest, Reply, Request};
use crate::broker::directory::{JoinOutcome, PresenceChange};
use crate::broker::{
    Broker, BrokerError, BrokerFuture, BrokerHealth, HistorySnapshot, Inbound, InboundSender,
    Outbound,
};

/// How the client reaches the server (the cluster's control socket).
///
/// The transport queues each delivery the server pushes into the client's
/// [`InboundSender`] before it reads the next message, so a reply arrives after
/// the deliveries sent before it.
pub(crate) trait Transport: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `request` at once, so requests reach the server (which answers
    /// them one by one) in the order of the calls, and returns the wait for
    /// the server's reply; [`BrokerError::Closed`] when the request could not
    /// be sent (the server is gone), [`BrokerError::OutcomeUnknown`] when it
    /// was sent and the server went away before answering.
    fn request(&self, request: Request) -> BrokerFuture<'_, Reply>;
}

/// A [`Broker`] whose server is the cluster master.
#[derive(Debug)]
pub(crate) struct EmbeddedBroker {
    transport: Arc<dyn Transport>,
    inbound: InboundSender,
}

impl EmbeddedBroker {
    /// A broker talking to the server through `transport`; `inbound` is where
    /// the transport queues the server's deliveries.
    pub(crate) fn new(transport: Arc<dyn Transport>, inbound: InboundSender) -> Self {
        EmbeddedBroker { transport, inbound }
    }

    /// Sends `request`, expecting [`Reply::Done`].
    async fn done(&self, request: Request) -> Result<(), BrokerError> {
        match self.transport.request(request).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other.kind())),
        }
    }

    async fn directory(&self, request: DirectoryRequest) -> Result<DirectoryReply, BrokerError> {
        match self.transport.request(Request::Directory(request)).await? {
            Reply::Directory(reply) => Ok(reply),
            other => Err(unexpected(other.kind())),
        }
    }
}

/// An answer of the wrong kind, named by its kind only (see [`Reply::kind`]).
fn unexpected(kind: &str) -> BrokerError {
    BrokerError::Unavailable(format!("the embedded broker answered {kind}"))
}

impl Broker for EmbeddedBroker {
    fn publish<'a>(&'a self, messages: &'a [Outbound]) -> BrokerFuture<'a, ()> {
        Box::pin(async move {
            // The server keeps the history: it needs the channel and envelope only.
            let pairs = messages
                .iter()
                .map(|m| (m.channel.clone(), m.envelope.clone()))
                .collect();
            self.done(Request::Publish(pairs)).await
        })
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        _history_key: &'a str,
        from: StreamId,
    ) -> BrokerFuture<'a, HistorySnapshot> {
        Box::pin(async move {
            let request = Request::History {
                channel: channel.to_owned(),
                from: from.to_string(),
            };
            let Reply::History { epoch, entries } = self.transport.request(request).await? else {
                return Err(BrokerError::Unavailable(
                    "the embedded broker answered a history request with something else".into(),
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
        Box::pin(self.done(Request::Subscribe(channel.to_owned())))
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        Box::pin(self.done(Request::Unsubscribe(channel.to_owned())))
    }

    fn webhook<'a>(&'a self, app: &'a str, event: WebhookEvent) -> BrokerFuture<'a, ()> {
        Box::pin(self.done(Request::Webhook {
            app: app.to_owned(),
            event,
        }))
    }

    fn barrier(&self) -> BrokerFuture<'_, ()> {
        Box::pin(async move {
            // The server answers in order with the deliveries it sent us, and
            // the transport queues each before reading the next message.
            self.done(Request::Barrier).await?;
            let (reached, delivered) = tokio::sync::oneshot::channel();
            self.inbound
                .send(Inbound::Barrier(reached))
                .await
                .map_err(|_| BrokerError::Closed)?;
            delivered.await.map_err(|_| BrokerError::Closed)
        })
    }

    fn report_count(&self, app: &str, channel: &ChannelName, count: usize) -> BrokerFuture<'_, ()> {
        let request = DirectoryRequest::Count {
            app: app.to_owned(),
            channel: channel.to_string(),
            count,
        };
        // Sent now, in the caller's order; the server answers once its
        // directory holds the count.
        let reply = self.transport.request(Request::Directory(request));
        Box::pin(async move {
            match reply.await? {
                Reply::Directory(DirectoryReply::Done) => Ok(()),
                other => Err(unexpected(other.kind())),
            }
        })
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
                other => Err(unexpected(other.kind())),
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
                other => Err(unexpected(other.kind())),
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
                other => Err(unexpected(other.kind())),
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
                other => Err(unexpected(other.kind())),
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
