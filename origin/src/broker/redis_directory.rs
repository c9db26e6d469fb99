//! `RedisDirectory`: cluster-wide channel state in Redis (see `directory`).
//!
//! Keys (`PROTOCOL.md` documents them):
//!
//! - `pushwire:v1:nodes`: sorted set, node → its last heartbeat (ms);
//! - `pushwire:v1:node:{node}:subs`: hash, `{app}:{channel}` → the node's local
//!   socket count; rewritten whole at each heartbeat, expires after 3 timeouts;
//! - `pushwire:v1:node:{node}:presence`: hash, `{app}:{channel}:{user_id}` → the
//!   node's sockets of that member (so a dead node's members can be removed);
//! - `pushwire:v1:{app}:presence:{channel}`: hash, user id → user_info JSON;
//! - `pushwire:v1:{app}:presence:{channel}:sockets`: hash, user id → sockets,
//!   cluster-wide.
//!
//! Joins, leaves and the removal of a dead node's members are Lua scripts that
//! publish the member events themselves (with the history functions of every
//! publish), so "member changed" and "event sent" cannot come apart.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use pushwire_shared::ChannelName;
use pushwire_shared::channel_query::ChannelStats;
use pushwire_shared::directory::{
    self, Found, NODES_KEY, Read, Reply, channel_field, members_key, node_key,
};
use pushwire_shared::history::{EPOCH_KEY, HistoryPolicy};
use pushwire_shared::publishing::{PUBLISH_FUNCTIONS, retention_args};
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::directory::{JoinOutcome, NODE_HEARTBEAT, NODE_TIMEOUT, PresenceChange};
use super::{BrokerError, epoch_candidate};
use crate::clock::now_ms;
use crate::redis_connection::{COMMAND_TIMEOUT, CommandConnection, within};

/// KEYS: epoch, members, sockets, node presence, history stream.
/// ARGV: 4 retention args, user id, user_info, max members, node field,
/// pub/sub channel, member_added envelope.
static JOIN_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"local user = ARGV[5]
if redis.call('HEXISTS', KEYS[2], user) == 0 and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[7]) then
  return {0}
end
redis.call('HINCRBY', KEYS[4], ARGV[8], 1)
if redis.call('HINCRBY', KEYS[3], user, 1) == 1 then
  redis.call('HSET', KEYS[2], user, ARGV[6])
  publish(KEYS[5], ARGV[9], ARGV[10], ARGV[1], ARGV[2], ARGV[3], epoch_of(KEYS[1], ARGV[4]))
end
return {1, redis.call('HGETALL', KEYS[2])}
"#,
    )
});

/// KEYS: as [`JOIN_SCRIPT`]. ARGV: 4 retention args, user id, node field,
/// pub/sub channel, member_removed envelope.
static LEAVE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"local left = redis.call('HINCRBY', KEYS[4], ARGV[6], -1)
if left <= 0 then redis.call('HDEL', KEYS[4], ARGV[6]) end
if left < 0 then return 0 end
if redis.call('HINCRBY', KEYS[3], ARGV[5], -1) <= 0 then
  redis.call('HDEL', KEYS[3], ARGV[5])
  redis.call('HDEL', KEYS[2], ARGV[5])
  publish(KEYS[5], ARGV[7], ARGV[8], ARGV[1], ARGV[2], ARGV[3], epoch_of(KEYS[1], ARGV[4]))
  return 1
end
return 0
"#,
    )
});

/// KEYS: epoch, nodes. ARGV: 4 retention args, dead node, now (ms).
/// Removes the node's presence sockets; publishes member_removed for users left
/// with none. Only the reaper that removes the node from `nodes` does it.
static REAP_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"if redis.call('ZREM', KEYS[2], ARGV[5]) == 0 then return 0 end
local node = 'pushwire:v1:node:' .. ARGV[5]
local entries = redis.call('HGETALL', node .. ':presence')
local removed = 0
for i = 1, #entries, 2 do
  local app, channel, user = string.match(entries[i], '^([^:]*):([^:]*):(.*)$')
  if app then
    local base = 'pushwire:v1:' .. app .. ':presence:' .. channel
    if redis.call('HINCRBY', base .. ':sockets', user, -tonumber(entries[i + 1])) <= 0 then
      redis.call('HDEL', base .. ':sockets', user)
      redis.call('HDEL', base, user)
      removed = removed + 1
      local envelope = '{"v":1,"id":' .. cjson.encode('r' .. ARGV[5] .. '-' .. ARGV[6] .. '-' .. removed)
        .. ',"app":' .. cjson.encode(app) .. ',"channel":' .. cjson.encode(channel)
        .. ',"event":"pushwire:member_removed","data":' .. cjson.encode({user_id = user})
        .. ',"ts":' .. ARGV[6] .. '}'
      publish('pushwire:v1:' .. app .. ':hist:' .. channel, 'pushwire:v1:' .. app .. ':ch:' .. channel,
        envelope, ARGV[1], ARGV[2], ARGV[3], epoch_of(KEYS[1], ARGV[4]))
    end
  end
end
redis.call('DEL', node .. ':presence', node .. ':subs')
return removed
"#,
    )
});

/// A directory script: the history functions every publishing script shares
/// ([`PUBLISH_FUNCTIONS`]), then `body`. Run by digest (`EVALSHA`), loaded again
/// after a Redis restart.
fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PUBLISH_FUNCTIONS}{body}"))
}

/// This node's view of the directory in Redis.
#[derive(Debug)]
pub struct RedisDirectory {
    conn: Arc<CommandConnection>,
    node: String,
    policy: HistoryPolicy,
    counts: mpsc::UnboundedSender<(String, usize)>,
}

impl RedisDirectory {
    /// Starts reporting as `node` (heartbeat, counts, reaping dead nodes).
    pub fn start(conn: Arc<CommandConnection>, node: String, policy: HistoryPolicy) -> Self {
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
    pub fn report_count(&self, app: &str, channel: &ChannelName, count: usize) {
        let _ = self.counts.send((channel_field(app, channel), count));
    }

    fn presence_keys(&self, change: &PresenceChange) -> [String; 5] {
        let members = members_key(&change.app, &change.channel);
        [
            EPOCH_KEY.to_owned(),
            members.clone(),
            format!("{members}:sockets"),
            node_key(&self.node, "presence"),
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
    pub async fn join(&self, change: &PresenceChange) -> Result<JoinOutcome, BrokerError> {
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
    pub async fn leave(&self, change: &PresenceChange) -> Result<(), BrokerError> {
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
    pub async fn stats(
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
    pub async fn occupied(
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
    pub async fn members(
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
    let subs = node_key(&node, "subs");
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
    pipe.zadd(NODES_KEY, node, now).ignore();
    within(COMMAND_TIMEOUT, "heartbeat", pipe.query_async::<()>(&mut c)).await?;

    let cutoff = now.saturating_sub(NODE_TIMEOUT.as_millis() as u64);
    let dead: Vec<String> = within(
        COMMAND_TIMEOUT,
        "ZRANGEBYSCORE",
        redis::cmd("ZRANGEBYSCORE")
            .arg(NODES_KEY)
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
        reap.key(EPOCH_KEY)
            .key(NODES_KEY)
            .arg(&retention_args(policy, now, &epoch_candidate())[..])
            .arg(&dead_node)
            .arg(now);
        let removed: u64 = within(COMMAND_TIMEOUT, "reap", reap.invoke_async(&mut c)).await?;
        tracing::info!(node = %dead_node, removed, "removed a silent node's presence members");
    }
    Ok(())
}
