//! The subscriber on a Redis Cluster: sharded pub/sub (`SSUBSCRIBE`), each
//! channel on the shard that owns its slot, so a shard carries only its own
//! channels' traffic.
//!
//! The cluster connection keeps the subscriptions itself: when a node's
//! connection drops, or the slot map changes (a failover, a resharding), it
//! subscribes again on the node that now owns each channel's slot. What it does
//! not do is follow a server that drops a subscription on its own (`sunsubscribe`
//! pushed when the slot moved away): that is answered here by subscribing again,
//! which reaches the new owner. Nor does it notice by itself that a shard's
//! primary died while nothing is sent to it: it learns the new slot map only
//! from a command's answer, so after a lost node connection this subscriber
//! sends a cheap keyed read into each part of the slot space until every one
//! is answered. Every subscription confirmed a second time is a channel whose
//! events may have been missed in between, so delivery then fills the gap from
//! the history ([`Inbound::ChannelResubscribed`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{PushInfo, PushKind};
use tokio::sync::{mpsc, oneshot};

use super::redis::{Command, pause_answering, within};
use super::{BrokerError, Inbound, InboundSender};
use pushwire_shared::slot::key_slot;

use crate::redis_connection::{COMMAND_TIMEOUT, CONNECT_TIMEOUT, ClusterSeeds};

/// How often the slot map is probed while a node connection is lost.
const REPAIR_EVERY: Duration = Duration::from_millis(500);

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Failed probes in a row after which the connection is given up and a new
/// one opened: whatever wedged it, a fresh client learns the slot map from
/// the seeds and subscribes everything again.
const PROBES_BEFORE_RECONNECT: u32 = 6;

/// Slots per part of the slot space a repair probes once: 64 probes at most.
const REPAIR_SLOTS_PER_PROBE: u16 = 256;

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
    // Whether a connection served and ended: its channels' gaps need filling
    // even when the next one opens at the first attempt.
    let mut lost = false;
    loop {
        match connect(&seeds, &wanted).await {
            Ok((conn, pushes)) => {
                if attempt > 0 || lost {
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
                    repair_due: None,
                    failed_probes: 0,
                };
                if !shard.serve(&mut commands, &mut wanted).await {
                    return;
                }
                lost = true;
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
        if !pause_answering(&mut attempt, &mut commands, &mut wanted).await {
            return;
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
    /// When to probe the slot map next, while a node connection is lost.
    repair_due: Option<tokio::time::Instant>,
    /// Probes that failed in a row.
    failed_probes: u32,
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
            let repair_due = self.repair_due;
            tokio::select! {
                _ = tokio::time::sleep_until(repair_due.unwrap_or_else(tokio::time::Instant::now)), if repair_due.is_some() => {
                    if self.probe_slot_map(wanted).await {
                        self.repair_due = None;
                        self.failed_probes = 0;
                    } else {
                        self.failed_probes += 1;
                        if self.failed_probes >= PROBES_BEFORE_RECONNECT {
                            tracing::warn!("the Redis Cluster pub/sub connection does not recover; opening a new one");
                            return true;
                        }
                        self.repair_due = Some(tokio::time::Instant::now() + REPAIR_EVERY);
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
        if push.kind != PushKind::SMessage {
            tracing::debug!(kind = ?push.kind, ?channel, "cluster push");
        }
        match push.kind {
            PushKind::SMessage => {
                if let Some(redis::Value::BulkString(payload)) = push.data.into_iter().nth(1) {
                    return self.inbound.send(Inbound::Payload(payload)).await.is_ok();
                }
            }
            PushKind::SSubscribe => {
                // Told now, in order: the shard's next messages on the channel
                // come after this confirmation, so the gap is filled first.
                if let Some(channel) = channel
                    && !self.confirmed.insert(channel.clone())
                {
                    let resubscribed = Inbound::ChannelResubscribed(channel);
                    return self.inbound.send(resubscribed).await.is_ok();
                }
            }
            PushKind::SUnsubscribe => {
                // Not asked for: the slot moved away. Subscribing again reaches
                // its new owner (the connection refreshes its slot map on the
                // `MOVED` answer); the confirmation then counts as a gap.
                if let Some(channel) = channel.filter(|c| wanted.contains(c)) {
                    tracing::info!(%channel, "a shard dropped a subscription; subscribing on its new owner");
                    // And checked a little later: the slot map is changing.
                    self.schedule_repair();
                    if let Err(e) = within(
                        COMMAND_TIMEOUT,
                        "SSUBSCRIBE",
                        self.conn.ssubscribe(&channel),
                    )
                    .await
                    {
                        tracing::warn!(%channel, error = %e, "could not subscribe again; retrying at the next slot refresh");
                        self.schedule_repair();
                    }
                }
            }
            PushKind::Disconnection => self.schedule_repair(),
            _ => {}
        }
        true
    }

    fn schedule_repair(&mut self) {
        self.repair_due
            .get_or_insert_with(|| tokio::time::Instant::now() + REPAIR_EVERY);
    }

    /// Sends one keyed read (`EXISTS` of a subscribed channel's name) into
    /// each part of the slot space that holds subscriptions, and once every
    /// one is answered, subscribes every channel again; `true` when done. A
    /// read routed to a dead node fails until the connection learnt the new
    /// owner from the cluster, and the connection does not move every
    /// subscription of a node it lost by itself. Subscribing a channel again
    /// where it already is only confirms it (and fills its gap, if any).
    async fn probe_slot_map(&mut self, wanted: &HashSet<String>) -> bool {
        let mut probes: BTreeMap<u16, &String> = BTreeMap::new();
        for channel in wanted {
            probes
                .entry(key_slot(channel.as_bytes()) / REPAIR_SLOTS_PER_PROBE)
                .or_insert(channel);
        }
        let reads = probes.into_values().map(|channel| {
            let mut conn = self.conn.clone();
            async move {
                within(
                    PROBE_TIMEOUT,
                    "slot probe",
                    redis::cmd("EXISTS")
                        .arg(channel)
                        .query_async::<i64>(&mut conn),
                )
                .await
            }
        });
        let answered = futures_util::future::join_all(reads)
            .await
            .iter()
            .all(Result::is_ok);
        if !answered {
            return false;
        }
        for channel in wanted {
            if let Err(e) = within(PROBE_TIMEOUT, "SSUBSCRIBE", self.conn.ssubscribe(channel)).await
            {
                tracing::debug!(%channel, error = %e, "subscribing again failed; probing again");
                return false;
            }
        }
        tracing::info!(
            channels = wanted.len(),
            "the Redis Cluster's slot map is known again; every subscription confirmed"
        );
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
