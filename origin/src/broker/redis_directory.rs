//! `RedisDirectory`: cluster-wide channel state in Redis (see `directory`).
//!
//! Keys (`pushwire_shared::keys::KeySpace` builds them, `PROTOCOL.md`
//! documents them):
//!
//! - `nodes`: sorted set, node → its last heartbeat (ms);
//! - `node_subs(node)`: hash, `{app}:{channel}` → the node's local socket
//!   count; written before each change's ack (see `redis_heartbeat`),
//!   rewritten whole at each heartbeat, expires after 3 timeouts;
//! - `node_presence(node)`: hash, `{app}:{channel}` → the node's member
//!   sockets there, at least (so a dead node's channels can be found);
//! - `members(app, channel)`: hash, user id → user_info JSON;
//! - `member_sockets(app, channel)`: hash, user id → sockets, cluster-wide;
//! - `node_members(app, channel, node)`: hash, user id → the node's sockets.
//!
//! Joins, leaves and the removal of a dead node's members run as Lua scripts
//! on the channel's slot (`presence_scripts`), which publish the member events
//! themselves and queue their webhooks (`redis_webhooks`). The heartbeat
//! (`redis_heartbeat`) and the removal of dead nodes (`redis_reaper`) have
//! their own modules.

use std::sync::Arc;

use pushwire_shared::ChannelName;
use pushwire_shared::directory::{self, ChannelStats, Found, Read, Reply, channel_field};
use pushwire_shared::history::HistoryPolicy;
use pushwire_shared::keys::KeySpace;
use pushwire_shared::publishing::{PubSubMode, retention_args};
use pushwire_shared::webhook::{WebhookEvent, WebhookEventKind};
use tokio::sync::{mpsc, oneshot};

use super::directory::{JoinOutcome, PresenceChange};
use super::presence_scripts::{JOIN_SCRIPT, LEAVE_SCRIPT, UNINDEX_SCRIPT, channel_keys};
use super::redis_heartbeat::{CountUpdate, heartbeat};
use super::redis_reaper::Reaper;
use super::redis_webhooks::{OUTBOX_CAP, OccupancyReporter, RedisWebhooks, event_json};
use super::{BrokerError, BrokerFuture, epoch_candidate};
use crate::clock::now_ms;
use crate::redis_connection::{COMMAND_TIMEOUT, CommandConnection, RedisConn, within};

/// This node's view of the directory in Redis.
#[derive(Debug)]
pub(super) struct RedisDirectory {
    conn: Arc<CommandConnection>,
    node: String,
    policy: HistoryPolicy,
    mode: PubSubMode,
    counts: mpsc::UnboundedSender<CountUpdate>,
    webhooks: Option<Arc<RedisWebhooks>>,
}

impl RedisDirectory {
    /// Starts reporting as `node` (heartbeat, counts, reaping dead nodes),
    /// queueing the webhooks of what it sees change with `webhooks`.
    pub(super) fn start(
        conn: Arc<CommandConnection>,
        node: String,
        policy: HistoryPolicy,
        mode: PubSubMode,
        webhooks: Option<Arc<RedisWebhooks>>,
    ) -> Self {
        let (counts, rx) = mpsc::unbounded_channel();
        let reaper = Reaper::new(policy, mode, webhooks.clone());
        let occupancy = webhooks
            .clone()
            .map(|webhooks| OccupancyReporter::new(node.clone(), webhooks));
        tokio::spawn(heartbeat(conn.clone(), node.clone(), reaper, rx, occupancy));
        RedisDirectory {
            conn,
            node,
            policy,
            mode,
            counts,
            webhooks,
        }
    }

    /// The outbox ids of the endpoints wanting `kind` on the change's
    /// channel, the change's webhook event as JSON, and their keys.
    fn member_webhook(&self, change: &PresenceChange, kind: WebhookEventKind) -> MemberWebhook<'_> {
        let Some(webhooks) = &self.webhooks else {
            return MemberWebhook::default();
        };
        let ids = webhooks.outboxes(&change.app, kind, &change.channel);
        let (channel, user_id) = (change.channel.clone(), change.member.user_id.clone());
        let event = match kind {
            WebhookEventKind::MemberAdded => WebhookEvent::MemberAdded { channel, user_id },
            _ => WebhookEvent::MemberRemoved { channel, user_id },
        };
        let keys = ids
            .iter()
            .map(|id| KeySpace::DEFAULT.webhook_outbox(&change.app, &change.channel, id))
            .collect();
        MemberWebhook {
            json: if ids.is_empty() {
                String::new()
            } else {
                event_json(&event)
            },
            ids,
            keys,
        }
    }

    /// After a script that queued `queued` webhook events (and found full
    /// outboxes `dropped` times): marks the channel due.
    async fn queued(
        &self,
        conn: &mut RedisConn,
        change: &PresenceChange,
        webhook: &MemberWebhook<'_>,
        queued: u64,
        dropped: u64,
    ) {
        if let Some(webhooks) = &self.webhooks {
            webhooks.count_dropped(dropped);
            if queued > 0 {
                webhooks
                    .mark_due(conn, &change.app, &change.channel, &webhook.ids)
                    .await;
            }
        }
    }

    async fn conn(&self) -> Result<RedisConn, BrokerError> {
        Ok(self.conn.get().await?)
    }

    /// See `Broker::report_count`: queued now, written by [`heartbeat`].
    pub(super) fn report_count(
        &self,
        app: &str,
        channel: &ChannelName,
        count: usize,
    ) -> BrokerFuture<'static, ()> {
        let (written, confirmed) = oneshot::channel();
        let update = CountUpdate {
            field: channel_field(app, channel),
            count,
            written,
        };
        let queued = self.counts.send(update).map_err(|_| BrokerError::Closed);
        Box::pin(async move {
            queued?;
            confirmed.await.map_err(|_| BrokerError::Closed)?
        })
    }

    fn presence_keys(&self, change: &PresenceChange) -> [String; 5] {
        channel_keys(&KeySpace::DEFAULT, &change.app, &change.channel, &self.node)
    }

    fn retention(&self) -> [String; 5] {
        retention_args(&self.policy, now_ms(), &epoch_candidate(), self.mode)
    }

    /// Lowers this node's index entry for the change's channel after a leave
    /// (or a join that did not happen). A failure leaves it too high, which
    /// only costs a reaper an idle script run.
    async fn unindex(&self, conn: &mut RedisConn, change: &PresenceChange) {
        let mut unindex = UNINDEX_SCRIPT.prepare_invoke();
        unindex
            .key(KeySpace::DEFAULT.node_presence(&self.node))
            .arg(channel_field(&change.app, &change.channel));
        let lowered = within(
            COMMAND_TIMEOUT,
            "presence unindex",
            unindex.invoke_async::<u8>(conn),
        )
        .await;
        if let Err(e) = lowered {
            tracing::debug!(error = %e, "could not lower the node's presence index");
        }
    }

    /// See `Broker::presence_join`.
    pub(super) async fn join(&self, change: &PresenceChange) -> Result<JoinOutcome, BrokerError> {
        let mut conn = self.conn().await?;
        // Indexed first: should this node die right after the join, the
        // reaper finds the channel.
        within(
            COMMAND_TIMEOUT,
            "presence index",
            redis::cmd("HINCRBY")
                .arg(KeySpace::DEFAULT.node_presence(&self.node))
                .arg(channel_field(&change.app, &change.channel))
                .arg(1)
                .query_async::<i64>(&mut conn),
        )
        .await?;
        let webhook = self.member_webhook(change, WebhookEventKind::MemberAdded);
        let mut join = JOIN_SCRIPT.prepare_invoke();
        join.key(&self.presence_keys(change)[..])
            .key(&webhook.keys[..])
            .arg(&self.retention()[..])
            .arg(&change.member.user_id)
            .arg(&change.member.user_info)
            .arg(change.max_members)
            .arg(&change.event.channel)
            .arg(&change.event.envelope)
            .arg(OUTBOX_CAP)
            .arg(&webhook.json);
        let (joined, members, queued, dropped): (u8, Option<Vec<String>>, u64, u64) = within(
            COMMAND_TIMEOUT,
            "presence join",
            join.invoke_async(&mut conn),
        )
        .await?;
        self.queued(&mut conn, change, &webhook, queued, dropped)
            .await;
        if joined == 0 {
            self.unindex(&mut conn, change).await;
            return Ok(JoinOutcome::Full);
        }
        let members = members.unwrap_or_default();
        Ok(JoinOutcome::Joined(
            members
                .chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect(),
        ))
    }

    /// See `Broker::presence_leave`.
    pub(super) async fn leave(&self, change: &PresenceChange) -> Result<(), BrokerError> {
        let mut conn = self.conn().await?;
        let webhook = self.member_webhook(change, WebhookEventKind::MemberRemoved);
        let mut leave = LEAVE_SCRIPT.prepare_invoke();
        leave
            .key(&self.presence_keys(change)[..])
            .key(&webhook.keys[..])
            .arg(&self.retention()[..])
            .arg(&change.member.user_id)
            .arg(&change.event.channel)
            .arg(&change.event.envelope)
            .arg(OUTBOX_CAP)
            .arg(&webhook.json);
        let (queued, dropped): (u64, u64) = within(
            COMMAND_TIMEOUT,
            "presence leave",
            leave.invoke_async(&mut conn),
        )
        .await?;
        self.queued(&mut conn, change, &webhook, queued, dropped)
            .await;
        self.unindex(&mut conn, change).await;
        Ok(())
    }

    /// Runs a directory read (`pushwire_shared::directory`). Each step's
    /// commands go out together on the multiplexed connection (one round
    /// trip), each on its own: they read keys of many slots, which a Redis
    /// Cluster answers from many shards.
    async fn read(&self, app: &str, read: Read) -> Result<Found, BrokerError> {
        let conn = self.conn().await?;
        let found = directory::run(app, read, now_ms(), |commands| {
            let conn = conn.clone();
            async move {
                let each = commands.iter().map(|words| {
                    let mut conn = conn.clone();
                    let mut cmd = redis::cmd(&words[0]);
                    for word in &words[1..] {
                        cmd.arg(word);
                    }
                    async move {
                        within(
                            COMMAND_TIMEOUT,
                            "directory read",
                            cmd.query_async::<redis::Value>(&mut conn),
                        )
                        .await
                    }
                });
                let values = futures_util::future::try_join_all(each).await?;
                Ok::<_, BrokerError>(values.into_iter().map(reply).collect())
            }
        })
        .await?;
        found.map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    /// See `Broker::channel_stats`.
    pub(super) async fn stats(
        &self,
        app: &str,
        channels: &[ChannelName],
    ) -> Result<Vec<ChannelStats>, BrokerError> {
        match self.read(app, Read::Stats(channels.to_vec())).await? {
            Found::Stats(stats) => Ok(stats),
            other => Err(BrokerError::Unavailable(format!("unexpected {other:?}"))),
        }
    }

    /// See `Broker::occupied_channels`.
    pub(super) async fn occupied(
        &self,
        app: &str,
        prefix: &str,
    ) -> Result<Vec<(ChannelName, ChannelStats)>, BrokerError> {
        match self.read(app, Read::Occupied(prefix.to_owned())).await? {
            Found::Occupied(channels) => Ok(channels),
            other => Err(BrokerError::Unavailable(format!("unexpected {other:?}"))),
        }
    }

    /// See `Broker::presence_members`.
    pub(super) async fn members(
        &self,
        app: &str,
        channel: &ChannelName,
    ) -> Result<Vec<(String, String)>, BrokerError> {
        match self.read(app, Read::Members(channel.clone())).await? {
            Found::Members(members) => Ok(members),
            other => Err(BrokerError::Unavailable(format!("unexpected {other:?}"))),
        }
    }
}

/// A member event's webhook as a presence script queues it.
#[derive(Debug, Default)]
struct MemberWebhook<'a> {
    /// The outbox ids of the endpoints wanting it.
    ids: Vec<&'a str>,
    /// Their outboxes in the channel's slot.
    keys: Vec<String>,
    /// The event's JSON (empty when no endpoint wants it).
    json: String,
}

/// A redis-rs reply in the shared form.
fn reply(value: redis::Value) -> Reply {
    match value {
        redis::Value::Int(n) => Reply::Int(n),
        redis::Value::BulkString(bytes) => {
            Reply::Text(String::from_utf8_lossy(&bytes).into_owned())
        }
        redis::Value::SimpleString(text) => Reply::Text(text),
        redis::Value::Okay => Reply::Text("OK".into()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            Reply::List(items.into_iter().map(reply).collect())
        }
        redis::Value::Map(pairs) => Reply::List(
            pairs
                .into_iter()
                .flat_map(|(k, v)| [reply(k), reply(v)])
                .collect(),
        ),
        _ => Reply::Nil,
    }
}
