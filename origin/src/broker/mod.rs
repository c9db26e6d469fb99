//! The pub/sub backend that carries events between processes.
//!
//! A [`Broker`] publishes envelopes on named channels and delivers what arrives
//! on the channels this process subscribed to into the [`InboundSender`] it was
//! built with. Two implementations:
//!
//! - [`RedisBroker`]: Redis pub/sub, the engine that scales past one process and one machine;
//! - [`EmbeddedBroker`]: the embedded broker ([`embedded`]), whose server runs in
//!   the cluster master, for a single machine with no Redis configured.

pub(crate) mod directory;
pub(crate) mod embedded;
mod presence_scripts;
mod publish_outcome;
mod redis;
mod redis_directory;
mod redis_heartbeat;
mod redis_reaper;
mod redis_sharded;
pub(crate) mod redis_webhooks;
mod slot_scripts;

use std::future::Future;
use std::pin::Pin;

use pushwire_shared::ChannelName;
use pushwire_shared::directory::ChannelStats;
use pushwire_shared::history::StreamId;
use pushwire_shared::webhook::WebhookEvent;

use self::directory::{JoinOutcome, PresenceChange};

pub(crate) use self::embedded::EmbeddedBroker;
pub(crate) use self::redis::RedisBroker;

/// A fresh random token for a new history epoch (see `pushwire_shared::history`):
/// the embedded broker's, or the one a publishing script sets when Redis has none.
pub(crate) fn epoch_candidate() -> String {
    format!("{:x}", rand::random::<u64>())
}

/// A boxed future returned by [`Broker`] methods (keeps the trait object-safe).
pub(crate) type BrokerFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send + 'a>>;

/// What a broker hands to the worker's delivery task, in arrival order.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A payload published on a subscribed channel.
    Payload(Vec<u8>),
    /// A [`Broker::barrier`] marker: answered by the delivery task when it
    /// reaches it, so everything queued before it has been delivered.
    Barrier(tokio::sync::oneshot::Sender<()>),
    /// The subscription was lost and is back: messages published in between
    /// never arrived (delivery fills the gap from the history).
    Resubscribed,
    /// The subscription to this pub/sub channel was lost and is back (on a
    /// Redis Cluster: on the shard now owning its slot), ahead of any message
    /// it carries from now on: those published in between never arrived.
    ChannelResubscribed(String),
}

/// Where a broker delivers what arrives on subscribed channels, in arrival order.
pub(crate) type InboundSender = tokio::sync::mpsc::Sender<Inbound>;

/// One message to publish: its pub/sub channel, history stream and envelope.
pub(crate) type Outbound = pushwire_shared::history::PublishMessage;

/// The most history entries one read returns (a policy larger than this is
/// read only this far: recovery then reports `recovered: false`).
pub(crate) const MAX_HISTORY_READ: usize = 10_000;

/// A channel's retained history, read at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HistorySnapshot {
    /// The history epoch; `None` when nothing was ever published since the
    /// backend started empty.
    pub epoch: Option<String>,
    /// Entries from the requested id on, oldest first: the id and the envelope
    /// JSON as published (without `pos`).
    pub entries: Vec<(StreamId, String)>,
}

/// Why the broker could not do what was asked. Always the backend's fault, never the
/// caller's: HTTP answers 503 (504 for a publish of unknown outcome) and
/// sockets get ack code 4200.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The backend is not reachable, or refused: nothing was done, so the
    /// caller may retry.
    #[error("the event broker is unavailable: {0}")]
    Unavailable(String),
    /// The request reached the backend and its reply did not come back (lost
    /// with the connection, or later than the caller waits), or a publish was
    /// done on some channels only: what was done is unknown to this process.
    /// A read may simply be retried; a publish must not be, blindly.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// The broker was shut down.
    #[error("the event broker is shutting down")]
    Closed,
}

impl From<crate::redis_connection::RedisUnavailable> for BrokerError {
    fn from(e: crate::redis_connection::RedisUnavailable) -> Self {
        BrokerError::Unavailable(e.0)
    }
}

/// A pub/sub backend.
pub(crate) trait Broker: Send + Sync + std::fmt::Debug + 'static {
    /// Appends every message to its channel's history and publishes it with its
    /// position, all or none; resolves once the backend accepted them.
    fn publish<'a>(&'a self, messages: &'a [Outbound]) -> BrokerFuture<'a, ()>;
    /// Reads a channel's history from `from` (inclusive): `channel` is its
    /// pub/sub channel, `history_key` its history stream.
    fn history<'a>(
        &'a self,
        channel: &'a str,
        history_key: &'a str,
        from: StreamId,
    ) -> BrokerFuture<'a, HistorySnapshot>;
    /// Starts receiving `channel`; resolves once the backend confirmed. Idempotent.
    fn subscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()>;
    /// Stops receiving `channel`.
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()>;
    /// Resolves once every message published before the call on a subscribed
    /// channel has been handled by the delivery task: it queues an
    /// [`Inbound::Barrier`] behind them and waits for it. A history read
    /// followed by a barrier leaves no event "in the history but still in flight".
    fn barrier(&self) -> BrokerFuture<'_, ()>;
    /// Reports this node's number of local sockets on `(app, channel)` (0: none left)
    /// to the cluster-wide directory. The report is queued by the call itself, so
    /// reports made in order reach the directory in order, and the caller may
    /// await the future after releasing the lock it made them under. The future
    /// resolves once the directory holds the count (a channel query made after it
    /// sees it), or with the error that kept it from being written; the broker
    /// also re-reports every count periodically.
    fn report_count(&self, app: &str, channel: &ChannelName, count: usize) -> BrokerFuture<'_, ()>;
    /// Hands `app`'s `event` (a client event) to whoever sends the webhooks:
    /// the embedded broker's master, or Redis's outboxes. Resolves once it is
    /// queued; does nothing when no endpoint is configured.
    fn webhook<'a>(&'a self, app: &'a str, event: WebhookEvent) -> BrokerFuture<'a, ()>;
    /// What this process's webhook senders have done, when it runs any
    /// (with Redis, each worker sends; the embedded broker's master does).
    fn webhook_stats(&self) -> Option<crate::webhook::DispatchStats> {
        None
    }
    /// Adds a socket of `change.member` to a presence channel, atomically with
    /// publishing its `member_added` event if the user was not a member yet.
    fn presence_join<'a>(&'a self, change: &'a PresenceChange) -> BrokerFuture<'a, JoinOutcome>;
    /// Removes one socket of `change.member`, publishing its `member_removed`
    /// event if it was the user's last.
    fn presence_leave<'a>(&'a self, change: &'a PresenceChange) -> BrokerFuture<'a, ()>;
    /// Cluster-wide state of each of `channels` of `app`, in order.
    fn channel_stats<'a>(
        &'a self,
        app: &'a str,
        channels: &'a [ChannelName],
    ) -> BrokerFuture<'a, Vec<ChannelStats>>;
    /// The occupied channels of `app` whose name starts with `prefix`, sorted.
    fn occupied_channels<'a>(
        &'a self,
        app: &'a str,
        prefix: &'a str,
    ) -> BrokerFuture<'a, Vec<(ChannelName, ChannelStats)>>;
    /// A presence channel's members: `(user_id, user_info JSON)`.
    fn presence_members<'a>(
        &'a self,
        app: &'a str,
        channel: &'a ChannelName,
    ) -> BrokerFuture<'a, Vec<(String, String)>>;
    /// A short description for `/health`: the backend and whether it is connected.
    fn health(&self) -> BrokerHealth;
}

/// What `/health` reports about the broker.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct BrokerHealth {
    /// `"redis"` or `"embedded"`.
    pub kind: &'static str,
    /// Whether the subscriber side is connected (always true for `embedded`).
    pub connected: bool,
}
