//! `RedisDirectory`: cluster-wide channel state in Redis (see `directory`).
//!
//! Keys (`pushwire_shared::keys::KeySpace` builds them, `PROTOCOL.md`
//! documents them):
//!
//! - `nodes`: sorted set, node → its last heartbeat (ms);
//! - `node_subs(node)`: hash, `{app}:{channel}` → the node's local socket
//!   count; written before each change's ack (see [`heartbeat`]), rewritten
//!   whole at each heartbeat, expires after 3 timeouts;
//! - `node_presence(node)`: hash, `{app}:{channel}` → the node's member
//!   sockets there, at least (so a dead node's channels can be found);
//! - `members(app, channel)`: hash, user id → user_info JSON;
//! - `member_sockets(app, channel)`: hash, user id → sockets, cluster-wide;
//! - `node_members(app, channel, node)`: hash, user id → the node's sockets.
//!
//! Joins, leaves and the removal of a dead node's members run as Lua scripts
//! on the channel's slot (`presence_scripts`), which publish the member events
//! themselves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pushwire_shared::ChannelName;
use pushwire_shared::directory::{self, ChannelStats, Found, Read, Reply, channel_field};
use pushwire_shared::history::HistoryPolicy;
use pushwire_shared::keys::KeySpace;
use pushwire_shared::publishing::{PubSubMode, retention_args};
use pushwire_shared::webhook::{WebhookEvent, WebhookEventKind};
use tokio::sync::{mpsc, oneshot};

use super::directory::{JoinOutcome, NODE_HEARTBEAT, NODE_TIMEOUT, PresenceChange};
use super::presence_scripts::{JOIN_SCRIPT, LEAVE_SCRIPT, UNINDEX_SCRIPT, channel_keys};
use super::redis_reaper::Reaper;
use super::redis_webhooks::{OUTBOX_CAP, OccupancyReporter, RedisWebhooks, event_json};
use super::slot_scripts::NODE_COUNTS_SCRIPT;
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

/// One count report: the `node_subs` field, its new count, and who waits for
/// it to be written.
#[derive(Debug)]
struct CountUpdate {
    field: String,
    count: usize,
    written: oneshot::Sender<Result<(), BrokerError>>,
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

/// Every [`NODE_HEARTBEAT`]: marks the node alive, rewrites its counts, and
/// removes the presence members of nodes silent for [`NODE_TIMEOUT`].
///
/// Count changes in between are written at once: everything queued by then is
/// drained, coalesced per channel (the last count wins) and written in one
/// pipeline, and only then are their reports confirmed, so a socket's ack
/// follows the write of its count. A failed write is confirmed too, with its
/// error (the caller logs it and acks anyway: the subscription itself is in
/// place); the node's counts are then right again at the next heartbeat.
async fn heartbeat(
    conn: Arc<CommandConnection>,
    node: String,
    reaper: Reaper,
    mut updates: mpsc::UnboundedReceiver<CountUpdate>,
    mut occupancy: Option<OccupancyReporter>,
) {
    let subs = KeySpace::DEFAULT.node_subs(&node);
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut beat = tokio::time::interval(NODE_HEARTBEAT);
    let mut failing = false;
    loop {
        tokio::select! {
            update = updates.recv() => {
                let Some(first) = update else { return };
                let mut batch = CountBatch::default();
                batch.add(first);
                while batch.waiting.len() < MAX_COUNT_BATCH {
                    let Ok(next) = updates.try_recv() else { break };
                    batch.add(next);
                }
                if let Some(occupancy) = &mut occupancy {
                    for (field, &count) in &batch.latest {
                        if (count > 0) != counts.contains_key(field) {
                            occupancy.changed(field, count > 0);
                        }
                    }
                }
                // Each waiting report logs a failure (the registry does).
                let written = batch.write(&conn, &subs, &mut counts).await;
                // Before the acks: a channel's `channel_occupied` is then
                // queued ahead of anything its first socket does there (a
                // member_added, a client event).
                if let Some(occupancy) = &mut occupancy {
                    occupancy.flush(&conn).await;
                }
                batch.confirm(&written);
            }
            _ = beat.tick() => {
                // A node that stops beating is reaped by the others: the first
                // failure is worth a warning, the ones after it are not.
                if let Some(occupancy) = &mut occupancy {
                    occupancy.flush(&conn).await;
                }
                match beat_once(&conn, &node, &subs, &counts, &reaper).await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("directory heartbeat works again");
                    }
                    Ok(()) => {}
                    Err(e) if failing => tracing::debug!(error = %e, "directory heartbeat failed"),
                    Err(e) => {
                        failing = true;
                        tracing::warn!(error = %e, "directory heartbeat failed; other nodes will count this one dead if it keeps failing");
                    }
                }
            }
        }
    }
}

/// The most count reports written in one pipeline: a crowd of subscribes
/// is written in a few round trips, none of them huge.
const MAX_COUNT_BATCH: usize = 1024;

/// Count updates drained from the queue together.
#[derive(Debug, Default)]
struct CountBatch {
    /// Field → its latest count (sorted: a deterministic pipeline).
    latest: BTreeMap<String, usize>,
    waiting: Vec<oneshot::Sender<Result<(), BrokerError>>>,
}

impl CountBatch {
    fn add(&mut self, update: CountUpdate) {
        self.latest.insert(update.field, update.count);
        self.waiting.push(update.written);
    }

    /// Applies the batch to the node's `counts`; returns the fields to set and
    /// those to delete (count 0).
    fn apply(&self, counts: &mut HashMap<String, usize>) -> (Vec<(&str, usize)>, Vec<&str>) {
        let (mut set, mut delete) = (Vec::new(), Vec::new());
        for (field, &count) in &self.latest {
            if count == 0 {
                counts.remove(field);
                delete.push(field.as_str());
            } else {
                counts.insert(field.clone(), count);
                set.push((field.as_str(), count));
            }
        }
        (set, delete)
    }

    /// Applies the batch to `counts` and writes it to the `subs` hash in one pipeline.
    async fn write(
        &self,
        conn: &CommandConnection,
        subs: &str,
        counts: &mut HashMap<String, usize>,
    ) -> Result<(), BrokerError> {
        let (set, delete) = self.apply(counts);
        let mut c = conn.get().await?;
        // Two commands on one key, not a pipeline: on a Redis Cluster each
        // follows the key's slot by itself.
        if !set.is_empty() {
            let mut hset = redis::cmd("HSET");
            hset.arg(subs).arg(&set);
            within(COMMAND_TIMEOUT, "counts", hset.query_async::<()>(&mut c)).await?;
        }
        if !delete.is_empty() {
            let mut hdel = redis::cmd("HDEL");
            hdel.arg(subs).arg(&delete);
            within(COMMAND_TIMEOUT, "counts", hdel.query_async::<()>(&mut c)).await?;
        }
        Ok(())
    }

    /// Tells every waiting report how the write went.
    fn confirm(self, written: &Result<(), BrokerError>) {
        for waiter in self.waiting {
            // A report nobody awaits any more (its socket is gone) is not an error.
            let _ = waiter.send(written.clone());
        }
    }
}

async fn beat_once(
    conn: &CommandConnection,
    node: &str,
    subs: &str,
    counts: &HashMap<String, usize>,
    reaper: &Reaper,
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
    // Only the counts expire: a dead node's presence entries stay until a live
    // node reaps them (and sends member_removed).
    let ttl = 3 * NODE_TIMEOUT.as_millis() as u64;
    let mut rewrite = NODE_COUNTS_SCRIPT.prepare_invoke();
    rewrite.key(subs).arg(ttl);
    for (field, count) in counts {
        rewrite.arg(field).arg(count);
    }
    within(
        COMMAND_TIMEOUT,
        "heartbeat",
        rewrite.invoke_async::<()>(&mut c),
    )
    .await?;
    let keys = KeySpace::DEFAULT;
    within(
        COMMAND_TIMEOUT,
        "heartbeat",
        redis::cmd("ZADD")
            .arg(keys.nodes())
            .arg(now)
            .arg(node)
            .query_async::<()>(&mut c),
    )
    .await?;

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
        reaper.reap(&mut c, &dead_node, now).await?;
    }
    reaper.retry_unmarked(&mut c).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_writes_each_channel_once_with_its_last_count_and_confirms_all() {
        let mut batch = CountBatch::default();
        let mut confirmations = Vec::new();
        let updates = [
            ("1:a", 1),
            ("1:b", 1),
            ("1:a", 2),
            ("1:b", 0),
            ("1:c", 3),
            ("1:c", 0),
            ("1:c", 1),
        ];
        for (field, count) in updates {
            let (written, confirmed) = oneshot::channel();
            batch.add(CountUpdate {
                field: field.into(),
                count,
                written,
            });
            confirmations.push(confirmed);
        }
        let mut counts = HashMap::from([("1:b".to_owned(), 4), ("1:d".to_owned(), 1)]);
        let (set, delete) = batch.apply(&mut counts);
        assert_eq!(set, [("1:a", 2), ("1:c", 1)]);
        assert_eq!(delete, ["1:b"]);
        let expected = [("1:a", 2), ("1:c", 1), ("1:d", 1)];
        assert_eq!(
            counts,
            expected
                .map(|(f, n)| (f.to_owned(), n))
                .into_iter()
                .collect()
        );

        batch.confirm(&Err(BrokerError::Unavailable("down".into())));
        for mut confirmed in confirmations {
            assert!(matches!(
                confirmed.try_recv(),
                Ok(Err(BrokerError::Unavailable(_)))
            ));
        }
    }
}
