//! Redis pub/sub broker.
//!
//! Publishing goes through one auto-reconnecting multiplexed connection; the
//! messages of one channel are one run of the publish script
//! ([`pushwire_shared::publishing::PUBLISH_SCRIPT`]), which appends each to the
//! channel's history stream and publishes it with its position, so an event is
//! in a channel's history exactly when it was published there. The runs of a
//! multi-channel trigger go out together and are not atomic together: each
//! is awaited to its end and the caller is told what they did together
//! (`publish_outcome`: `503` only when no channel got the event).
//!
//! Subscribing is owned by one task holding the pub/sub connection. It remembers
//! every subscribed channel, and when the connection drops it reconnects with
//! back-off and subscribes to all of them again, so delivery resumes by itself
//! after a Redis restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::PubSubSink;
use tokio::sync::{mpsc, oneshot};

use pushwire_shared::ChannelName;
use pushwire_shared::directory::ChannelStats;
use pushwire_shared::history::{HistoryPolicy, StreamId};
use pushwire_shared::keys::KeySpace;
use pushwire_shared::publishing::{self, PubSubMode};

use super::directory::{JoinOutcome, PresenceChange};
use super::publish_outcome;
use super::redis_directory::RedisDirectory;
use super::redis_webhooks::{RedisWebhooks, WebhookSettings};
use super::slot_scripts::HISTORY_READ_SCRIPT;
use crate::webhook::DispatchStats;
use pushwire_shared::webhook::WebhookEvent;

use super::{
    Broker, BrokerError, BrokerFuture, BrokerHealth, HistorySnapshot, Inbound, InboundSender,
    MAX_HISTORY_READ, Outbound,
};
use crate::backoff::Backoff;
use crate::redis_connection::{
    self, COMMAND_TIMEOUT, CONNECT_TIMEOUT, CommandConnection, PrimaryAddr, RedisTarget,
    SENTINEL_RECHECK,
};

/// Pauses between the subscriber's reconnection attempts.
const RECONNECT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

pub(super) async fn within<T>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, BrokerError> {
    redis_connection::within(limit, what, fut)
        .await
        .map_err(BrokerError::from)
}

/// A request to the task owning the pub/sub connection.
pub(super) enum Command {
    Subscribe(String, oneshot::Sender<Result<(), BrokerError>>),
    Unsubscribe(String, oneshot::Sender<Result<(), BrokerError>>),
    /// Queue an [`Inbound::Barrier`] behind everything Redis sent so far.
    Barrier(
        oneshot::Sender<()>,
        oneshot::Sender<Result<(), BrokerError>>,
    ),
}

/// A [`Broker`] over Redis pub/sub.
#[derive(Debug)]
pub(crate) struct RedisBroker {
    publisher: Arc<CommandConnection>,
    directory: RedisDirectory,
    policy: HistoryPolicy,
    mode: PubSubMode,
    /// [`publishing::PUBLISH_SCRIPT`], invoked by its digest.
    publish_script: redis::Script,
    commands: mpsc::Sender<Command>,
    connected: Arc<AtomicBool>,
    /// Where webhook events are queued, when any endpoint is configured.
    webhooks: Option<Arc<RedisWebhooks>>,
}

impl RedisBroker {
    /// Builds the broker and starts its subscriber and directory tasks, reporting
    /// as `node`, and the webhook senders of `webhooks`; does not wait for
    /// Redis, which may come up later.
    pub(crate) fn start(
        url: &str,
        node: String,
        policy: HistoryPolicy,
        inbound: InboundSender,
        webhooks: Option<WebhookSettings>,
    ) -> Result<Self, BrokerError> {
        let target = RedisTarget::parse(url).map_err(unavailable)?;
        let (commands, rx) = mpsc::channel(1024);
        let connected = Arc::new(AtomicBool::new(false));
        match &target {
            RedisTarget::Cluster(seeds) => {
                tokio::spawn(super::redis_sharded::run_sharded_subscriber(
                    seeds.clone(),
                    rx,
                    inbound,
                    connected.clone(),
                ));
            }
            _ => {
                tokio::spawn(run_subscriber(
                    target.clone(),
                    rx,
                    inbound,
                    connected.clone(),
                ));
            }
        }
        let mode = target.pubsub_mode();
        let publisher = Arc::new(CommandConnection::new(target));
        let webhooks =
            webhooks.and_then(|settings| RedisWebhooks::start(settings, publisher.clone()));
        Ok(RedisBroker {
            directory: RedisDirectory::start(
                publisher.clone(),
                node,
                policy,
                mode,
                webhooks.clone(),
            ),
            webhooks,
            publisher,
            policy,
            mode,
            publish_script: redis::Script::new(publishing::PUBLISH_SCRIPT),
            commands,
            connected,
        })
    }

    async fn command(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), BrokerError>>) -> Command,
    ) -> Result<(), BrokerError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| BrokerError::Closed)?;
        rx.await.map_err(|_| BrokerError::Closed)?
    }
}

impl Broker for RedisBroker {
    fn publish<'a>(&'a self, messages: &'a [Outbound]) -> BrokerFuture<'a, ()> {
        Box::pin(async move {
            // No connection: nothing was sent, so `Unavailable` (503).
            let conn = self.publisher.get_for_publish().await?;
            let calls = publishing::publish_calls(
                &self.policy,
                crate::clock::now_ms(),
                &super::epoch_candidate(),
                self.mode,
                messages,
            );
            // Sent together on the multiplexed connection: one round trip.
            // Each run is awaited to its own end, none dropped when another
            // fails: the caller is told what every channel got.
            let runs = calls
                .iter()
                .map(|call| publish_outcome::run(conn.clone(), &self.publish_script, call));
            let outcomes = futures_util::future::join_all(runs).await;
            let channels: Vec<String> = calls.iter().map(publish_outcome::channel_of).collect();
            let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
            publish_outcome::combine(&channels, &outcomes)
        })
    }

    fn history<'a>(
        &'a self,
        _channel: &'a str,
        history_key: &'a str,
        from: StreamId,
    ) -> BrokerFuture<'a, HistorySnapshot> {
        Box::pin(async move {
            let keys = KeySpace::DEFAULT;
            let Some((app, channel)) = keys.parse_history(history_key) else {
                return Err(unavailable(format_args!(
                    "{history_key} is not a history stream"
                )));
            };
            let mut conn = self.publisher.get().await?;
            // One script on the channel's slot: the epoch and the entries
            // belong to the same instant.
            let mut read = HISTORY_READ_SCRIPT.prepare_invoke();
            read.key(keys.epoch(app, &channel))
                .key(history_key)
                .arg(from.to_string())
                .arg(MAX_HISTORY_READ);
            let (epoch, raw): (Option<String>, Vec<(String, Vec<String>)>) =
                within(COMMAND_TIMEOUT, "XRANGE", read.invoke_async(&mut conn)).await?;
            let entries = raw
                .into_iter()
                .filter_map(|(id, fields)| {
                    let id = id.parse().ok()?;
                    // Fields are `e <envelope>`.
                    let envelope = fields.into_iter().nth(1)?;
                    Some((id, envelope))
                })
                .collect();
            Ok(HistorySnapshot { epoch, entries })
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        Box::pin(self.command(|tx| Command::Subscribe(channel.to_owned(), tx)))
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        Box::pin(self.command(|tx| Command::Unsubscribe(channel.to_owned(), tx)))
    }

    fn barrier(&self) -> BrokerFuture<'_, ()> {
        Box::pin(async move {
            let (reached, delivered) = oneshot::channel();
            self.command(|tx| Command::Barrier(reached, tx)).await?;
            delivered.await.map_err(|_| BrokerError::Closed)
        })
    }

    fn report_count(&self, app: &str, channel: &ChannelName, count: usize) -> BrokerFuture<'_, ()> {
        self.directory.report_count(app, channel, count)
    }

    fn webhook<'a>(&'a self, app: &'a str, event: WebhookEvent) -> BrokerFuture<'a, ()> {
        Box::pin(async move {
            let Some(webhooks) = &self.webhooks else {
                return Ok(());
            };
            let mut conn = self.publisher.get().await?;
            webhooks.queue(&mut conn, app, &event).await
        })
    }

    fn webhook_stats(&self) -> Option<DispatchStats> {
        self.webhooks.as_ref().map(|webhooks| webhooks.stats())
    }

    fn presence_join<'a>(&'a self, change: &'a PresenceChange) -> BrokerFuture<'a, JoinOutcome> {
        Box::pin(self.directory.join(change))
    }

    fn presence_leave<'a>(&'a self, change: &'a PresenceChange) -> BrokerFuture<'a, ()> {
        Box::pin(self.directory.leave(change))
    }

    fn channel_stats<'a>(
        &'a self,
        app: &'a str,
        channels: &'a [ChannelName],
    ) -> BrokerFuture<'a, Vec<ChannelStats>> {
        Box::pin(self.directory.stats(app, channels))
    }

    fn occupied_channels<'a>(
        &'a self,
        app: &'a str,
        prefix: &'a str,
    ) -> BrokerFuture<'a, Vec<(ChannelName, ChannelStats)>> {
        Box::pin(self.directory.occupied(app, prefix))
    }

    fn presence_members<'a>(
        &'a self,
        app: &'a str,
        channel: &'a ChannelName,
    ) -> BrokerFuture<'a, Vec<(String, String)>> {
        Box::pin(self.directory.members(app, channel))
    }

    fn health(&self) -> BrokerHealth {
        BrokerHealth {
            kind: "redis",
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

/// Owns the pub/sub connection: answers subscribe/unsubscribe commands, forwards
/// messages, and reconnects (re-subscribing everything) when the connection drops.
async fn run_subscriber(
    target: RedisTarget,
    mut commands: mpsc::Receiver<Command>,
    inbound: InboundSender,
    connected: Arc<AtomicBool>,
) {
    let mut channels: HashSet<String> = HashSet::new();
    let mut attempt = 0u32;
    loop {
        match connect(&target, &channels).await {
            Ok((mut sink, mut stream, primary)) => {
                if attempt > 0 {
                    crate::metrics::worker().broker_reconnects.inc();
                    tracing::info!(
                        channels = channels.len(),
                        "reconnected to Redis and re-subscribed"
                    );
                    if inbound.send(Inbound::Resubscribed).await.is_err() {
                        return;
                    }
                }
                attempt = 0;
                connected.store(true, Ordering::Relaxed);
                // Behind Sentinel, a primary cut off from the sentinels keeps its
                // subscribers while triggers go to the one they promoted: ask them.
                let mut recheck = tokio::time::interval_at(
                    tokio::time::Instant::now() + SENTINEL_RECHECK,
                    SENTINEL_RECHECK,
                );
                recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = recheck.tick(), if primary.is_some() => {
                            if let Some(addr) = &primary
                                && !target.still_primary(addr).await
                            {
                                tracing::warn!("the sentinels name another primary; moving the pub/sub connection");
                                break;
                            }
                        },
                        msg = stream.next() => match msg {
                            Some(msg) => {
                                if inbound.send(Inbound::Payload(msg.get_payload_bytes().to_vec())).await.is_err() {
                                    return;
                                }
                            }
                            None => break,
                        },
                        cmd = commands.recv() => match cmd {
                            None => return,
                            Some(cmd) => {
                                if !apply(cmd, &mut sink, &mut stream, &inbound, &mut channels).await {
                                    break;
                                }
                            }
                        },
                    }
                }
                connected.store(false, Ordering::Relaxed);
                tracing::warn!("lost the Redis pub/sub connection; reconnecting");
            }
            Err(e) => {
                connected.store(false, Ordering::Relaxed);
                if attempt == 0 {
                    tracing::warn!(error = %e, "cannot reach Redis for pub/sub; retrying");
                }
            }
        }
        if !pause_answering(&mut attempt, &mut commands, &mut channels).await {
            return;
        }
    }
}

/// Waits before the next connection attempt (back-off by `attempt`, which it
/// counts up), still answering commands meanwhile; `false` when the broker
/// was dropped.
pub(super) async fn pause_answering(
    attempt: &mut u32,
    commands: &mut mpsc::Receiver<Command>,
    channels: &mut HashSet<String>,
) -> bool {
    let pause = tokio::time::sleep(RECONNECT_BACKOFF.pause(*attempt));
    *attempt = attempt.saturating_add(1);
    tokio::pin!(pause);
    loop {
        tokio::select! {
            _ = &mut pause => return true,
            cmd = commands.recv() => match cmd {
                None => return false,
                Some(cmd) => refuse_while_down(cmd, channels),
            },
        }
    }
}

/// Answers a command while there is no pub/sub connection.
fn refuse_while_down(cmd: Command, channels: &mut HashSet<String>) {
    let down = || Err(BrokerError::Unavailable("not connected to Redis".into()));
    match cmd {
        Command::Subscribe(_, reply) | Command::Barrier(_, reply) => {
            let _ = reply.send(down());
        }
        Command::Unsubscribe(channel, reply) => {
            // Forgotten: the next connection will not subscribe it again.
            channels.remove(&channel);
            let _ = reply.send(Ok(()));
        }
    }
}

/// Opens the pub/sub connection to the primary, asking the sentinels for it
/// again at every attempt behind Sentinel, and subscribes to `channels`.
async fn connect(
    target: &RedisTarget,
    channels: &HashSet<String>,
) -> Result<(PubSubSink, redis::aio::PubSubStream, Option<PrimaryAddr>), BrokerError> {
    let (client, primary) = target.primary().await?;
    let pubsub = within(CONNECT_TIMEOUT, "connect", client.get_async_pubsub()).await?;
    let (mut sink, stream) = pubsub.split();
    for channel in channels {
        within(COMMAND_TIMEOUT, "SUBSCRIBE", sink.subscribe(channel)).await?;
    }
    Ok((sink, stream, primary))
}

/// Queues `reached` as an [`Inbound::Barrier`] behind every message Redis sent
/// before now. Redis answers a PING on the pub/sub connection in order with
/// the messages, so once the PONG is in, what preceded it is in `stream`.
async fn barrier(
    sink: &mut PubSubSink,
    stream: &mut redis::aio::PubSubStream,
    inbound: &InboundSender,
    reached: oneshot::Sender<()>,
) -> Result<(), BrokerError> {
    within(COMMAND_TIMEOUT, "PING", sink.ping::<redis::Value>()).await?;
    while let Some(Some(msg)) = stream.next().now_or_never() {
        inbound
            .send(Inbound::Payload(msg.get_payload_bytes().to_vec()))
            .await
            .map_err(|_| BrokerError::Closed)?;
    }
    inbound
        .send(Inbound::Barrier(reached))
        .await
        .map_err(|_| BrokerError::Closed)
}

/// Applies one command; returns false when the connection proved broken.
async fn apply(
    cmd: Command,
    sink: &mut PubSubSink,
    stream: &mut redis::aio::PubSubStream,
    inbound: &InboundSender,
    channels: &mut HashSet<String>,
) -> bool {
    match cmd {
        Command::Barrier(reached, reply) => {
            let result = barrier(sink, stream, inbound, reached).await;
            let healthy = result.is_ok();
            let _ = reply.send(result);
            healthy
        }
        Command::Subscribe(channel, reply) => {
            if channels.contains(&channel) {
                let _ = reply.send(Ok(()));
                return true;
            }
            let result = within(COMMAND_TIMEOUT, "SUBSCRIBE", sink.subscribe(&channel)).await;
            let healthy = result.is_ok();
            if healthy {
                channels.insert(channel);
            }
            let _ = reply.send(result);
            healthy
        }
        Command::Unsubscribe(channel, reply) => {
            channels.remove(&channel);
            let result = within(COMMAND_TIMEOUT, "UNSUBSCRIBE", sink.unsubscribe(&channel)).await;
            let healthy = result.is_ok();
            // Forgotten either way: a reconnect will not subscribe it again.
            let _ = reply.send(Ok(()));
            healthy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_digest_is_the_publish_scripts() {
        // The edge names the script by this constant; Redis by the digest of its text.
        assert_eq!(
            redis::Script::new(publishing::PUBLISH_SCRIPT).get_hash(),
            publishing::PUBLISH_SCRIPT_SHA1
        );
    }

    #[test]
    fn backoff_doubles_then_caps() {
        assert_eq!(RECONNECT_BACKOFF.pause(0), Duration::from_millis(100));
        assert_eq!(RECONNECT_BACKOFF.pause(1), Duration::from_millis(200));
        assert_eq!(RECONNECT_BACKOFF.pause(3), Duration::from_millis(800));
        assert_eq!(RECONNECT_BACKOFF.pause(5), Duration::from_secs(2));
        assert_eq!(RECONNECT_BACKOFF.pause(u32::MAX), Duration::from_secs(2));
    }
}
