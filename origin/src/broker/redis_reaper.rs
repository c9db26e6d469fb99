//! `Reaper`: what a live node does for a dead one (silent for
//! `NODE_TIMEOUT`): removes its presence members (`member_removed` for each
//! user left with no socket), takes its share out of each channel's
//! occupancy (`channel_vacated` where it was the last), and marks every
//! channel it touched due, so webhook events it queued but never marked due
//! are sent too.

use std::sync::Arc;

use pushwire_shared::directory::split_channel_field;
use pushwire_shared::event_id::reaped_member_id_prefix;
use pushwire_shared::history::HistoryPolicy;
use pushwire_shared::keys::KeySpace;
use pushwire_shared::publishing::{PubSubMode, retention_args};
use pushwire_shared::webhook::WebhookEventKind;

use super::presence_scripts::{REAP_CHANNEL_SCRIPT, channel_keys, reap_envelope, reap_webhook};
use super::redis_webhooks::{OUTBOX_CAP, RedisWebhooks, change_occupancy};
use super::{BrokerError, epoch_candidate};
use crate::redis_connection::{COMMAND_TIMEOUT, RedisConn, within};

/// Removes dead nodes' presence members and occupancy, one channel at a time.
#[derive(Debug, Clone)]
pub(super) struct Reaper {
    policy: HistoryPolicy,
    mode: PubSubMode,
    webhooks: Option<Arc<RedisWebhooks>>,
}

impl Reaper {
    /// A reaper publishing with `policy` in `mode`, queueing webhooks with `webhooks`.
    pub(super) fn new(
        policy: HistoryPolicy,
        mode: PubSubMode,
        webhooks: Option<Arc<RedisWebhooks>>,
    ) -> Self {
        Reaper {
            policy,
            mode,
            webhooks,
        }
    }

    /// Marks due again the channels whose webhooks this node queued while
    /// marking failed.
    pub(super) async fn retry_unmarked(&self, c: &mut RedisConn) {
        if let Some(webhooks) = &self.webhooks {
            webhooks.retry_unmarked(c).await;
        }
    }

    /// Removes `dead_node`'s members from every channel its index names, its
    /// share of every channel it occupied, then the node itself. Each step
    /// may run twice (two reapers, or one that failed half-way and tries
    /// again at its next heartbeat): a channel already reaped has no entry of
    /// the node left, so nothing is removed or announced twice, and the node
    /// leaves `nodes` only once all its channels are done.
    pub(super) async fn reap(
        &self,
        c: &mut RedisConn,
        dead_node: &str,
        now: u64,
    ) -> Result<(), BrokerError> {
        let keys = KeySpace::DEFAULT;
        let removed = self.reap_members(c, dead_node, now).await?;
        self.reap_occupancy(c, dead_node).await?;
        within(
            COMMAND_TIMEOUT,
            "DEL",
            redis::cmd("DEL")
                .arg(keys.node_presence(dead_node))
                .arg(keys.node_subs(dead_node))
                .arg(keys.node_occupied(dead_node))
                .query_async::<()>(&mut *c),
        )
        .await?;
        let gone: u8 = within(
            COMMAND_TIMEOUT,
            "ZREM",
            redis::cmd("ZREM")
                .arg(keys.nodes())
                .arg(dead_node)
                .query_async(&mut *c),
        )
        .await?;
        if gone == 1 || removed > 0 {
            tracing::info!(node = %dead_node, removed, "removed a silent node's presence members");
        }
        Ok(())
    }

    /// The presence half of [`reap`](Self::reap); returns how many members it removed.
    async fn reap_members(
        &self,
        c: &mut RedisConn,
        dead_node: &str,
        now: u64,
    ) -> Result<u64, BrokerError> {
        let keys = KeySpace::DEFAULT;
        let index = keys.node_presence(dead_node);
        let channels: Vec<String> = within(
            COMMAND_TIMEOUT,
            "HKEYS",
            redis::cmd("HKEYS").arg(&index).query_async(&mut *c),
        )
        .await?;
        let id_prefix = reaped_member_id_prefix(dead_node, now);
        let mut removed: u64 = 0;
        for field in channels {
            if let Some((app, channel)) = split_channel_field(&field) {
                let ids = match &self.webhooks {
                    Some(w) => w.outboxes(app, WebhookEventKind::MemberRemoved, &channel),
                    None => Vec::new(),
                };
                let mut reap = REAP_CHANNEL_SCRIPT.prepare_invoke();
                reap.key(&channel_keys(&keys, app, &channel, dead_node)[..]);
                for id in &ids {
                    reap.key(keys.webhook_outbox(app, &channel, id));
                }
                reap.arg(&retention_args(&self.policy, now, &epoch_candidate(), self.mode)[..])
                    .arg(&id_prefix)
                    .arg(removed)
                    .arg(keys.channel(app, &channel))
                    .arg(reap_envelope(app, &channel, now))
                    .arg(OUTBOX_CAP)
                    .arg(reap_webhook(&channel));
                let (here, _, dropped): (u64, u64, u64) =
                    within(COMMAND_TIMEOUT, "reap", reap.invoke_async(&mut *c)).await?;
                removed += here;
                if let Some(webhooks) = &self.webhooks {
                    webhooks.count_dropped(dropped);
                    // Every endpoint: the dead node may have queued other
                    // events here and died before marking them due.
                    webhooks
                        .mark_due(c, app, &channel, &webhooks.all_outboxes(app))
                        .await;
                }
            }
            within(
                COMMAND_TIMEOUT,
                "HDEL",
                redis::cmd("HDEL")
                    .arg(&index)
                    .arg(&field)
                    .query_async::<()>(&mut *c),
            )
            .await?;
        }
        Ok(removed)
    }

    /// The occupancy half of [`reap`](Self::reap): the dead node leaves each
    /// channel it held sockets on, vacating those where it was the last.
    async fn reap_occupancy(&self, c: &mut RedisConn, dead_node: &str) -> Result<(), BrokerError> {
        let Some(webhooks) = &self.webhooks else {
            return Ok(());
        };
        let index = KeySpace::DEFAULT.node_occupied(dead_node);
        let fields: Vec<String> = within(
            COMMAND_TIMEOUT,
            "SMEMBERS",
            redis::cmd("SMEMBERS").arg(&index).query_async(&mut *c),
        )
        .await?;
        for field in fields {
            if let Some((app, channel)) = split_channel_field(&field) {
                change_occupancy(c, webhooks, dead_node, app, &channel, false).await?;
                webhooks
                    .mark_due(c, app, &channel, &webhooks.all_outboxes(app))
                    .await;
            }
            within(
                COMMAND_TIMEOUT,
                "SREM",
                redis::cmd("SREM")
                    .arg(&index)
                    .arg(&field)
                    .query_async::<()>(&mut *c),
            )
            .await?;
        }
        Ok(())
    }
}
