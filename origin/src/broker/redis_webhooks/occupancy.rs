//! `OccupancyReporter`: a node's share of each channel's occupancy, kept in
//! Redis so that the node that fills a channel first reports
//! `channel_occupied` and the one that empties it last `channel_vacated`.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use pushwire_shared::ChannelName;
use pushwire_shared::directory::split_channel_field;
use pushwire_shared::keys::KeySpace;
use pushwire_shared::webhook::{WebhookEvent, WebhookEventKind};

use super::scripts::OCCUPANCY_SCRIPT;
use super::{OUTBOX_CAP, RedisWebhooks, event_json};
use crate::broker::BrokerError;
use crate::redis_connection::{COMMAND_TIMEOUT, CommandConnection, RedisConn, within};

/// Writes one node's occupancy changes, and retries those that failed.
#[derive(Debug)]
pub(crate) struct OccupancyReporter {
    node: String,
    webhooks: Arc<RedisWebhooks>,
    /// Changes not written yet: field → whether the node holds sockets there.
    pending: HashMap<String, bool>,
}

impl OccupancyReporter {
    /// A reporter for `node`.
    pub(crate) fn new(node: String, webhooks: Arc<RedisWebhooks>) -> Self {
        OccupancyReporter {
            node,
            webhooks,
            pending: HashMap::new(),
        }
    }

    /// Records that the node now holds sockets (`true`) or none (`false`) on
    /// `field` (`{app}:{channel}`), for apps with occupancy webhooks.
    pub(crate) fn changed(&mut self, field: &str, occupied: bool) {
        let wanted =
            split_channel_field(field).is_some_and(|(app, _)| self.webhooks.wants_occupancy(app));
        if wanted {
            self.pending.insert(field.to_owned(), occupied);
        }
    }

    /// Writes every pending change, each channel on its own (they are on
    /// many slots); what fails stays pending for the next call.
    pub(crate) async fn flush(&mut self, conn: &CommandConnection) {
        if self.pending.is_empty() {
            return;
        }
        let c = match conn.get().await {
            Ok(c) => c,
            Err(error) => {
                tracing::debug!(%error, "occupancy changes wait for Redis");
                return;
            }
        };
        let changes: Vec<(String, bool)> = self.pending.drain().collect();
        let (webhooks, node) = (&*self.webhooks, self.node.as_str());
        let written = join_all(changes.iter().map(|(field, occupied)| {
            let mut c = c.clone();
            async move { write(&mut c, webhooks, node, field, *occupied).await }
        }))
        .await;
        for ((field, occupied), result) in changes.into_iter().zip(written) {
            if let Err(error) = result {
                tracing::debug!(%error, %field, "occupancy change not written; retried at the next heartbeat");
                // A newer change of the same channel made meanwhile wins.
                self.pending.entry(field).or_insert(occupied);
            }
        }
    }
}

/// Writes `node`'s share of `field`: indexed before the node's field is set
/// (a node dying in between is still found by the reaper), unindexed after
/// it is removed.
async fn write(
    c: &mut RedisConn,
    webhooks: &RedisWebhooks,
    node: &str,
    field: &str,
    occupied: bool,
) -> Result<(), BrokerError> {
    let Some((app, channel)) = split_channel_field(field) else {
        return Ok(());
    };
    let index = KeySpace::DEFAULT.node_occupied(node);
    if occupied {
        within(
            COMMAND_TIMEOUT,
            "occupancy index",
            redis::cmd("SADD")
                .arg(&index)
                .arg(field)
                .query_async::<()>(&mut *c),
        )
        .await?;
    }
    change(c, webhooks, node, app, &channel, occupied).await?;
    if !occupied {
        within(
            COMMAND_TIMEOUT,
            "occupancy index",
            redis::cmd("SREM")
                .arg(&index)
                .arg(field)
                .query_async::<()>(&mut *c),
        )
        .await?;
    }
    Ok(())
}

/// Sets or removes `node`'s field in the occupancy of `app`'s `channel`,
/// queueing the webhook if the channel changed, and marks it due. The
/// reaper calls it for a dead node's channels.
pub(crate) async fn change(
    c: &mut RedisConn,
    webhooks: &RedisWebhooks,
    node: &str,
    app: &str,
    channel: &ChannelName,
    occupied: bool,
) -> Result<(), BrokerError> {
    let (kind, event) = match occupied {
        true => (
            WebhookEventKind::ChannelOccupied,
            WebhookEvent::ChannelOccupied {
                channel: channel.clone(),
            },
        ),
        false => (
            WebhookEventKind::ChannelVacated,
            WebhookEvent::ChannelVacated {
                channel: channel.clone(),
            },
        ),
    };
    let keys = KeySpace::DEFAULT;
    let ids = webhooks.outboxes(app, kind, channel);
    let mut script = OCCUPANCY_SCRIPT.prepare_invoke();
    script.key(keys.occupancy(app, channel));
    for id in &ids {
        script.key(keys.webhook_outbox(app, channel, id));
    }
    script
        .arg(node)
        .arg(if occupied { 1 } else { 0 })
        .arg(OUTBOX_CAP)
        .arg(event_json(&event));
    let (_, queued, dropped): (u8, u64, u64) =
        within(COMMAND_TIMEOUT, "occupancy", script.invoke_async(&mut *c)).await?;
    webhooks.count_dropped(dropped);
    if queued > 0 {
        webhooks.mark_due(c, app, channel, &ids).await;
    }
    Ok(())
}
