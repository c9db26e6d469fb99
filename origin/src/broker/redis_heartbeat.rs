//! The node's heartbeat: every [`NODE_HEARTBEAT`] it marks the node alive,
//! rewrites its counts and reaps dead nodes; in between it writes each count
//! change (and, with webhooks, each occupancy change) before the change's ack.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pushwire_shared::keys::KeySpace;
use tokio::sync::{mpsc, oneshot};

use super::BrokerError;
use super::directory::{NODE_HEARTBEAT, NODE_TIMEOUT};
use super::redis_reaper::Reaper;
use super::redis_webhooks::OccupancyReporter;
use super::slot_scripts::NODE_COUNTS_SCRIPT;
use crate::redis_connection::{COMMAND_TIMEOUT, CommandConnection, within};

/// One count report: the `node_subs` field, its new count, and who waits for
/// it to be written.
#[derive(Debug)]
pub(super) struct CountUpdate {
    pub(super) field: String,
    pub(super) count: usize,
    pub(super) written: oneshot::Sender<Result<(), BrokerError>>,
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
pub(super) async fn heartbeat(
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
