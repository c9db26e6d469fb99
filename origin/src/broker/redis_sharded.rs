//! The subscriber on a Redis Cluster: sharded pub/sub (`SSUBSCRIBE`), each
//! channel on the shard that owns its slot, so a shard carries only its own
//! channels' traffic.
//!
//! The cluster connection keeps the subscriptions itself: when a node's
//! connection drops, or the slot map changes (a failover, a resharding), it
//! subscribes again on the node that now owns each channel's slot. What it does
//! not do is follow a server that drops a subscription on its own (`sunsubscribe`
//! pushed when the slot moved away): that is answered here by subscribing again,
//! which reaches the new owner. Every subscription confirmed a second time is a
//! channel whose events may have been missed in between, so delivery then fills
//! the gap from the history ([`Inbound::Resubscribed`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{PushInfo, PushKind};
use tokio::sync::{mpsc, oneshot};

use super::redis::{Command, RECONNECT_BACKOFF, refuse_while_down, within};
use super::{BrokerError, Inbound, InboundSender};
use crate::redis_connection::{COMMAND_TIMEOUT, CONNECT_TIMEOUT, ClusterSeeds};

/// How long re-confirmed subscriptions are gathered before delivery is told:
/// a failover re-confirms a shard's channels one by one, and one gap filling
/// covers them all.
const GAP_GATHERING: Duration = Duration::from_millis(100);

/// Owns the cluster's pub/sub connection: answers subscribe, unsubscribe and
/// barrier commands, forwards messages, and reconnects when the whole
/// connection is gone.
pub(super) async fn run_sharded_subscriber(
    seeds: Arc<ClusterSeeds>,
    mut commands: mpsc::Receiver<Command>,
    inbound: InboundSender,
    connected: Arc<AtomicBool>,
) {
    let mut wanted: HashSet<String> = HashSet::new();
    let mut attempt = 0u32;
    loop {
        match connect(&seeds, &wanted).await {
            Ok((conn, pushes)) => {
                if attempt > 0 {
                    crate::metrics::worker().broker_reconnects.inc();
                    tracing::info!(
                        channels = wanted.len(),
                        "reconnected to the Redis Cluster and re-subscribed"
                    );
                    if inbound.send(Inbound::Resubscribed).await.is_err() {
                        return;
                    }
                }
                attempt = 0;
                connected.store(true, Ordering::Relaxed);
                let mut shard = ShardedSubscriber {
                    conn,
                    pushes,
                    inbound: inbound.clone(),
                    confirmed: HashSet::new(),
                    gap_since: None,
                };
                if !shard.serve(&mut commands, &mut wanted).await {
                    return;
                }
                connected.store(false, Ordering::Relaxed);
                tracing::warn!("lost the Redis Cluster pub/sub connection; reconnecting");
            }
            Err(e) => {
                connected.store(false, Ordering::Relaxed);
                if attempt == 0 {
                    tracing::warn!(error = %e, "cannot reach the Redis Cluster for pub/sub; retrying");
                }
            }
        }
        let pause = tokio::time::sleep(RECONNECT_BACKOFF.pause(attempt));
        attempt = attempt.saturating_add(1);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(cmd) => refuse_while_down(cmd, &mut wanted),
                },
            }
        }
    }
}

async fn connect(
    seeds: &ClusterSeeds,
    wanted: &HashSet<String>,
) -> Result<(ClusterConnection, mpsc::UnboundedReceiver<PushInfo>), BrokerError> {
    let (tx, pushes) = mpsc::unbounded_channel();
    let client = seeds.pubsub_client(tx)?;
    let mut conn = within(
        CONNECT_TIMEOUT * 2,
        "connect",
        client.get_async_connection(),
    )
    .await?;
    for channel in wanted {
        within(COMMAND_TIMEOUT, "SSUBSCRIBE", conn.ssubscribe(channel)).await?;
    }
    Ok((conn, pushes))
}

/// One connection's life.
struct ShardedSubscriber {
    conn: ClusterConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    inbound: InboundSender,
    /// Channels confirmed at least once on this connection.
    confirmed: HashSet<String>,
    /// When the first re-confirmation not yet reported arrived.
    gap_since: Option<tokio::time::Instant>,
}

impl ShardedSubscriber {
    /// Serves until the connection is gone (`true`: reconnect) or the broker
    /// is dropped (`false`).
    async fn serve(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        wanted: &mut HashSet<String>,
    ) -> bool {
        loop {
            let gap_due = self.gap_since.map(|since| since + GAP_GATHERING);
            tokio::select! {
                _ = tokio::time::sleep_until(gap_due.unwrap_or_else(tokio::time::Instant::now)), if gap_due.is_some() => {
                    self.gap_since = None;
                    if self.inbound.send(Inbound::Resubscribed).await.is_err() {
                        return false;
                    }
                }
                push = self.pushes.recv() => match push {
                    Some(push) => {
                        if !self.on_push(push, wanted).await {
                            return false;
                        }
                    }
                    None => return true,
                },
                cmd = commands.recv() => match cmd {
                    None => return false,
                    Some(cmd) => {
                        if !self.apply(cmd, wanted).await {
                            return false;
                        }
                    }
                },
            }
        }
    }

    /// Handles one push; `false` when delivery is gone.
    async fn on_push(&mut self, push: PushInfo, wanted: &HashSet<String>) -> bool {
        let channel = push.data.first().and_then(text);
        match push.kind {
            PushKind::SMessage => {
                if let Some(redis::Value::BulkString(payload)) = push.data.into_iter().nth(1) {
                    return self.inbound.send(Inbound::Payload(payload)).await.is_ok();
                }
            }
            PushKind::SSubscribe => {
                if let Some(channel) = channel
                    && !self.confirmed.insert(channel)
                {
                    self.gap_since.get_or_insert_with(tokio::time::Instant::now);
                }
            }
            PushKind::SUnsubscribe => {
                // Not asked for: the slot moved away. Subscribing again reaches
                // its new owner (the connection refreshes its slot map on the
                // `MOVED` answer); the confirmation then counts as a gap.
                if let Some(channel) = channel.filter(|c| wanted.contains(c)) {
                    tracing::info!(%channel, "a shard dropped a subscription; subscribing on its new owner");
                    if let Err(e) = within(
                        COMMAND_TIMEOUT,
                        "SSUBSCRIBE",
                        self.conn.ssubscribe(&channel),
                    )
                    .await
                    {
                        tracing::warn!(%channel, error = %e, "could not subscribe again; retrying at the next slot refresh");
                    }
                }
            }
            _ => {}
        }
        true
    }

    /// Applies one command; `false` when delivery is gone.
    async fn apply(&mut self, cmd: Command, wanted: &mut HashSet<String>) -> bool {
        match cmd {
            Command::Subscribe(channel, reply) => {
                if wanted.contains(&channel) {
                    let _ = reply.send(Ok(()));
                    return true;
                }
                let result = within(
                    COMMAND_TIMEOUT,
                    "SSUBSCRIBE",
                    self.conn.ssubscribe(&channel),
                )
                .await;
                if result.is_ok() {
                    wanted.insert(channel);
                }
                let _ = reply.send(result);
            }
            Command::Unsubscribe(channel, reply) => {
                wanted.remove(&channel);
                self.confirmed.remove(&channel);
                if let Err(e) = within(
                    COMMAND_TIMEOUT,
                    "SUNSUBSCRIBE",
                    self.conn.sunsubscribe(&channel),
                )
                .await
                {
                    tracing::debug!(%channel, error = %e, "SUNSUBSCRIBE failed");
                }
                let _ = reply.send(Ok(()));
            }
            Command::Barrier(reached, reply) => {
                let result = self.barrier(reached, wanted).await;
                let delivery_gone = matches!(result, Err(BrokerError::Closed));
                let _ = reply.send(result);
                return !delivery_gone;
            }
        }
        true
    }

    /// Queues `reached` behind every message any primary sent before now: each
    /// node's connection carries its pushes and its replies in order, so once
    /// every primary answered a PING, what preceded it is in `pushes`.
    async fn barrier(
        &mut self,
        reached: oneshot::Sender<()>,
        wanted: &HashSet<String>,
    ) -> Result<(), BrokerError> {
        let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        within(
            COMMAND_TIMEOUT,
            "PING",
            self.conn.route_command(redis::cmd("PING"), all),
        )
        .await?;
        while let Ok(push) = self.pushes.try_recv() {
            if !self.on_push(push, wanted).await {
                return Err(BrokerError::Closed);
            }
        }
        self.inbound
            .send(Inbound::Barrier(reached))
            .await
            .map_err(|_| BrokerError::Closed)
    }
}

fn text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
