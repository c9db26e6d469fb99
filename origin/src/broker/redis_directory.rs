//! `RedisDirectory`: cluster-wide channel state in Redis (see `directory`).
//!
//! Keys (`pushwire_shared::keys::KeySpace` builds them, `PROTOCOL.md`
//! documents them):
//!
//! - `nodes`: sorted set, node → its last heartbeat (ms);
//! - `node_subs(node)`: hash, `{app}:{channel}` → the node's local socket
//!   count; rewritten whole at each heartbeat, expires after 3 timeouts;
//! - `node_presence(node)`: hash, `{app}:{channel}:{user_id}` → the node's
//!   sockets of that member (so a dead node's members can be removed);
//! - `members(app, channel)`: hash, user id → user_info JSON;
//! - `member_sockets(app, channel)`: hash, user id → sockets, cluster-wide.
//!
//! Joins, leaves and the removal of a dead node's members run as Lua scripts
//! (`presence_scripts`), which publish the member events themselves.

use std::collections::HashMap;
use std::sync::Arc;

use pushwire_shared::ChannelName;
use pushwire_shared::directory::{self, ChannelStats, Found, Read, Reply, channel_field};
use pushwire_shared::history::HistoryPolicy;
use pushwire_shared::keys::KeySpace;
use pushwire_shared::publishing::retention_args;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::directory::{JoinOutcome, NODE_HEARTBEAT, NODE_TIMEOUT, PresenceChange};
use super::presence_scripts::{JOIN_SCRIPT, LEAVE_SCRIPT, REAP_SCRIPT, reap_args};
use super::{BrokerError, epoch_candidate};
use crate::clock::now_ms;
use crate::redis_connection::{COMMAND_TIMEOUT, CommandConnection, within};

/// This node's view of the directory in Redis.
#[derive(Debug)]
pub(super) struct RedisDirectory {
    conn: Arc<CommandConnection>,
    node: String,
    policy: HistoryPolicy,
    counts: mpsc::UnboundedSender<(String, usize)>,
}

impl RedisDirectory {
    /// Starts reporting as `node` (heartbeat, counts, reaping dead nodes).
    pub(super) fn start(conn: Arc<CommandConnection>, node: String, policy: HistoryPolicy) -> Self {
        let (counts, rx) = mpsc::unbounded_channel();
        tokio::spawn(heartbeat(conn.clone(), node.clone(), policy, rx));
        RedisDirectory {
            conn,
            node,
            policy,
            counts,
        }
    }

    async fn conn(&self) -> Result<ConnectionManager, BrokerError> {
        Ok(self.conn.get().await?)
    }

    /// See `Broker::report_count`.
    pub(super) fn report_count(&self, app: &str, channel: &ChannelName, count: usize) {
        let _ = self.counts.send((channel_field(app, channel), count));
    }

    fn presence_keys(&self, change: &PresenceChange) -> [String; 5] {
        let keys = KeySpace::DEFAULT;
        [
            keys.epoch(),
            keys.members(&change.app, &change.channel),
            keys.member_sockets(&change.app, &change.channel),
            keys.node_presence(&self.node),
            change.event.history_key.clone(),
        ]
    }

    fn node_field(change: &PresenceChange) -> String {
        format!(
            "{}:{}",
            channel_field(&change.app, &change.channel),
            change.member.user_id
        )
    }

    /// See `Broker::presence_join`.
    pub(super) async fn join(&self, change: &PresenceChange) -> Result<JoinOutcome, BrokerError> {
        let mut conn = self.conn().await?;
        let mut join = JOIN_SCRIPT.prepare_invoke();
        join.key(&self.presence_keys(change)[..])
            .arg(&retention_args(&self.policy, now_ms(), &epoch_candidate())[..])
            .arg(&change.member.user_id)
            .arg(&change.member.user_info)
            .arg(change.max_members)
            .arg(Self::node_field(change))
            .arg(&change.event.channel)
            .arg(&change.event.envelope);
        let (joined, members): (u8, Option<Vec<String>>) = within(
            COMMAND_TIMEOUT,
            "presence join",
            join.invoke_async(&mut conn),
        )
        .await?;
        if joined == 0 {
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
        let mut leave = LEAVE_SCRIPT.prepare_invoke();
        leave
            .key(&self.presence_keys(change)[..])
            .arg(&retention_args(&self.policy, now_ms(), &epoch_candidate())[..])
            .arg(&change.member.user_id)
            .arg(Self::node_field(change))
            .arg(&change.event.channel)
            .arg(&change.event.envelope);
        within(
            COMMAND_TIMEOUT,
            "presence leave",
            leave.invoke_async::<u8>(&mut conn),
        )
        .await?;
        Ok(())
    }

    /// Runs a directory read (`pushwire_shared::directory`), one pipeline per step.
    async fn read(&self, app: &str, read: Read) -> Result<Found, BrokerError> {
        let conn = self.conn().await?;
        let found = directory::run(app, read, now_ms(), |commands| {
            let mut conn = conn.clone();
            async move {
                let mut pipe = redis::pipe();
                for words in &commands {
                    let mut cmd = redis::cmd(&words[0]);
                    for word in &words[1..] {
                        cmd.arg(word);
                    }
                    pipe.add_command(cmd);
                }
                let values: Vec<redis::Value> = within(
                    COMMAND_TIMEOUT,
                    "directory read",
                    pipe.query_async(&mut conn),
                )
                .await?;
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

/// Every [`NODE_HEARTBEAT`]: marks the node alive, rewrites its counts, and
/// removes the presence members of nodes silent for [`NODE_TIMEOUT`]. Count
/// changes in between are written at once.
async fn heartbeat(
    conn: Arc<CommandConnection>,
    node: String,
    policy: HistoryPolicy,
    mut updates: mpsc::UnboundedReceiver<(String, usize)>,
) {
    let subs = KeySpace::DEFAULT.node_subs(&node);
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut beat = tokio::time::interval(NODE_HEARTBEAT);
    loop {
        tokio::select! {
            update = updates.recv() => {
                let Some((field, count)) = update else { return };
                let mut cmd = if count == 0 {
                    counts.remove(&field);
                    redis::cmd("HDEL")
                } else {
                    counts.insert(field.clone(), count);
                    redis::cmd("HSET")
                };
                cmd.arg(&subs).arg(&field);
                if count > 0 {
                    cmd.arg(count);
                }
                if let Ok(mut c) = conn.get().await {
                    // Best effort: the next heartbeat rewrites everything anyway.
                    let _ = within(COMMAND_TIMEOUT, "count", cmd.query_async::<()>(&mut c)).await;
                }
            }
            _ = beat.tick() => {
                if let Err(e) = beat_once(&conn, &node, &subs, &counts, &policy).await {
                    tracing::debug!(error = %e, "directory heartbeat failed");
                }
            }
        }
    }
}

async fn beat_once(
    conn: &CommandConnection,
    node: &str,
    subs: &str,
    counts: &HashMap<String, usize>,
    policy: &HistoryPolicy,
) -> Result<(), BrokerError> {
    let mut c = conn.get().await?;
    // Redis's clock, not ours: every node's heartbeat and every reaper's cutoff
    // are then on one clock, whatever the machines' clocks say.
    let (secs, micros): (u64, u64) = within(
        COMMAND_TIMEOUT,
        "TIME",
        redis::cmd("TIME").query_async(&mut c),
    )
    .await?;
    let now = secs * 1000 + micros / 1000;
    let mut pipe = redis::pipe();
    pipe.atomic().del(subs).ignore();
    if !counts.is_empty() {
        let fields: Vec<(&String, &usize)> = counts.iter().collect();
        pipe.hset_multiple(subs, &fields).ignore();
    }
    let ttl = 3 * NODE_TIMEOUT.as_millis() as i64;
    // Only the counts expire: a dead node's presence entries stay until a live
    // node reaps them (and sends member_removed).
    pipe.pexpire(subs, ttl).ignore();
    let keys = KeySpace::DEFAULT;
    pipe.zadd(keys.nodes(), node, now).ignore();
    within(COMMAND_TIMEOUT, "heartbeat", pipe.query_async::<()>(&mut c)).await?;

    let cutoff = now.saturating_sub(NODE_TIMEOUT.as_millis() as u64);
    let dead: Vec<String> = within(
        COMMAND_TIMEOUT,
        "ZRANGEBYSCORE",
        redis::cmd("ZRANGEBYSCORE")
            .arg(keys.nodes())
            .arg("-inf")
            .arg(format!("({cutoff}"))
            .arg("LIMIT")
            .arg(0)
            .arg(16)
            .query_async(&mut c),
    )
    .await?;
    for dead_node in dead {
        let mut reap = REAP_SCRIPT.prepare_invoke();
        reap.key(keys.epoch())
            .key(keys.nodes())
            .key(keys.node_presence(&dead_node))
            .key(keys.node_subs(&dead_node))
            .arg(&retention_args(policy, now, &epoch_candidate())[..])
            .arg(&reap_args(&keys, &dead_node, now)[..]);
        let removed: u64 = within(COMMAND_TIMEOUT, "reap", reap.invoke_async(&mut c)).await?;
        tracing::info!(node = %dead_node, removed, "removed a silent node's presence members");
    }
    Ok(())
}
