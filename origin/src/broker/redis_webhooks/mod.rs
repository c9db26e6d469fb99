//! Webhooks with Redis: every origin sharing a Redis reports each transition
//! once, and any worker of any origin sends what is queued.
//!
//! - A transition is found inside the script that makes it, on the channel's
//!   slot (presence joins and leaves, and a node's share of the channel's
//!   occupancy, [`scripts::OCCUPANCY_SCRIPT`]), and that script queues its
//!   event in the channel's outbox of each endpoint wanting it
//!   (`KeySpace::webhook_outbox`, a stream): a node's crash cannot split
//!   "it happened" from "it is queued".
//! - The channel is then marked due in the endpoint's due set
//!   (`KeySpace::webhook_due`). A node that dies between the two is covered by
//!   the reaper, which marks every channel of the dead node due again.
//! - Each worker runs one [`delivery`] loop per endpoint: it claims due
//!   channels with a lease, sends their events in one signed batch, removes
//!   them, and releases the channels. A worker killed mid-send leaves its
//!   lease to expire and another worker sends the same events again: delivery
//!   is at least once, in order per channel.
//!
//! Every origin must be given the same webhook configuration: endpoints are
//! named by [`WebhookEndpoint::outbox_id`], and the node that sees a
//! transition decides which endpoints get it.

mod delivery;
mod occupancy;
mod plan;
pub(crate) mod scripts;

pub(crate) use occupancy::{OccupancyReporter, change as change_occupancy};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pushwire_shared::directory::channel_field;
use pushwire_shared::keys::KeySpace;
use pushwire_shared::webhook::{WebhookEndpoint, WebhookEvent, WebhookEventKind};
use pushwire_shared::{AppList, ChannelName};

use super::BrokerError;
use crate::redis_connection::{COMMAND_TIMEOUT, CommandConnection, RedisConn, within};
use crate::webhook::{DeliveryCounters, DispatchSettings, DispatchStats, WebhookSender};

/// The most events one channel's outbox holds for one endpoint; a transition
/// finding it full is dropped (and counted) rather than grow Redis without
/// bound while a receiver is down.
pub(crate) const OUTBOX_CAP: usize = 1000;

/// How long a claimed channel stays with its sender before another may take
/// it: longer than an attempt (5 s), renewed before each retry.
pub(crate) const LEASE: Duration = Duration::from_secs(15);

/// What the webhooks of a Redis-backed origin need: which endpoints each app
/// has, the apps' secrets to sign with, and the sending rules.
#[derive(Debug, Clone)]
pub(crate) struct WebhookSettings {
    /// Endpoints by app id.
    pub webhooks: BTreeMap<String, Vec<WebhookEndpoint>>,
    /// The apps (their keys and secrets sign the requests).
    pub apps: AppList,
    /// How long a `channel_vacated` waits for the channel to fill again.
    pub grace: Duration,
    /// Batch size, timeouts and retries.
    pub dispatch: DispatchSettings,
}

/// One endpoint of one app, with its name in Redis.
#[derive(Debug, Clone)]
struct Route {
    endpoint: WebhookEndpoint,
    id: String,
}

/// The queueing side of webhooks on Redis: which outboxes an event goes to,
/// and marking channels due.
#[derive(Debug)]
pub(crate) struct RedisWebhooks {
    routes: HashMap<String, Vec<Route>>,
    counters: Arc<DeliveryCounters>,
    /// Channels whose events were queued but not marked due (Redis failed
    /// in between): marked again at the node's next heartbeat.
    unmarked: Mutex<HashSet<(String, ChannelName)>>,
}

impl RedisWebhooks {
    /// The webhooks of `settings`, and one delivery loop per endpoint sending
    /// over `conn`; `None` when no app has an endpoint.
    pub(crate) fn start(
        settings: WebhookSettings,
        conn: Arc<CommandConnection>,
    ) -> Option<Arc<Self>> {
        if settings.webhooks.is_empty() {
            return None;
        }
        let counters = Arc::new(DeliveryCounters::default());
        let urls = settings
            .webhooks
            .values()
            .flatten()
            .map(WebhookEndpoint::url);
        let sender = WebhookSender::for_urls(settings.dispatch.timeout, urls);
        let mut routes: HashMap<String, Vec<Route>> = HashMap::new();
        for (app_id, endpoints) in &settings.webhooks {
            let Some(app) = settings.apps.by_id(app_id) else {
                continue;
            };
            for endpoint in endpoints {
                let route = Route {
                    id: endpoint.outbox_id(app_id),
                    endpoint: endpoint.clone(),
                };
                tokio::spawn(delivery::run(delivery::Delivery::new(
                    app.clone(),
                    route.endpoint.clone(),
                    route.id.clone(),
                    sender.clone(),
                    &settings,
                    conn.clone(),
                    counters.clone(),
                )));
                routes.entry(app_id.clone()).or_default().push(route);
            }
        }
        Some(Arc::new(RedisWebhooks {
            routes,
            counters,
            unmarked: Mutex::default(),
        }))
    }

    /// The counts so far of this process's senders.
    pub(crate) fn stats(&self) -> DispatchStats {
        self.counters.stats()
    }

    /// The outbox ids of `app`'s endpoints wanting events of `kind` on `channel`.
    pub(crate) fn outboxes(
        &self,
        app: &str,
        kind: WebhookEventKind,
        channel: &ChannelName,
    ) -> Vec<&str> {
        self.routes
            .get(app)
            .into_iter()
            .flatten()
            .filter(|route| route.endpoint.wants(kind, channel.as_str()))
            .map(|route| route.id.as_str())
            .collect()
    }

    /// The outbox ids of every endpoint of `app`.
    pub(crate) fn all_outboxes(&self, app: &str) -> Vec<&str> {
        self.routes
            .get(app)
            .into_iter()
            .flatten()
            .map(|route| route.id.as_str())
            .collect()
    }

    /// Whether any endpoint of `app` wants occupancy events (then a node's
    /// share of each channel is kept in Redis).
    pub(crate) fn wants_occupancy(&self, app: &str) -> bool {
        self.routes.get(app).is_some_and(|routes| {
            routes.iter().any(|r| {
                r.endpoint.events().any(|kind| {
                    matches!(
                        kind,
                        WebhookEventKind::ChannelOccupied | WebhookEventKind::ChannelVacated
                    )
                })
            })
        })
    }

    /// Counts events a full outbox refused.
    pub(crate) fn count_dropped(&self, dropped: u64) {
        if dropped > 0 {
            self.counters.dropped_full(dropped);
            tracing::warn!(dropped, "webhook outbox full: events dropped");
        }
    }

    /// Queues `event` of `app` for every endpoint wanting it and marks its
    /// channel due: for events no script decides on (client events).
    pub(crate) async fn queue(
        &self,
        conn: &mut RedisConn,
        app: &str,
        event: &WebhookEvent,
    ) -> Result<(), BrokerError> {
        let channel = event.channel();
        let ids = self.outboxes(app, event.kind(), channel);
        if ids.is_empty() {
            return Ok(());
        }
        let keys = KeySpace::DEFAULT;
        let mut append = scripts::APPEND_SCRIPT.prepare_invoke();
        for id in &ids {
            append.key(keys.webhook_outbox(app, channel, id));
        }
        append.arg(OUTBOX_CAP).arg(event_json(event));
        let (_, dropped): (u64, u64) = within(
            COMMAND_TIMEOUT,
            "webhook queue",
            append.invoke_async(&mut *conn),
        )
        .await?;
        self.count_dropped(dropped);
        self.mark_due(conn, app, channel, &ids).await;
        Ok(())
    }

    /// Marks `app`'s `channel` due for the endpoints `ids` (unless a sender
    /// holds it: its lease stays, and it looks again when it releases the
    /// channel). A failure is remembered and retried by [`Self::retry_unmarked`].
    pub(crate) async fn mark_due(
        &self,
        conn: &mut RedisConn,
        app: &str,
        channel: &ChannelName,
        ids: &[&str],
    ) {
        if let Err(error) = mark_due(conn, app, channel, ids).await {
            tracing::debug!(%error, %channel, "webhook events queued but not marked due; retried at the next heartbeat");
            lock(&self.unmarked).insert((app.to_owned(), channel.clone()));
        }
    }

    /// Marks due, for every endpoint of their app, the channels a failure
    /// left unmarked.
    pub(crate) async fn retry_unmarked(&self, conn: &mut RedisConn) {
        let unmarked: Vec<_> = lock(&self.unmarked).drain().collect();
        for (app, channel) in unmarked {
            let ids = self.all_outboxes(&app);
            self.mark_due(conn, &app, &channel, &ids).await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An event as its outbox holds it.
pub(crate) fn event_json(event: &WebhookEvent) -> String {
    serde_json::to_string(event).expect("a webhook event always serializes")
}

/// Marks `app`'s `channel` due for the endpoints `ids`.
async fn mark_due(
    conn: &mut RedisConn,
    app: &str,
    channel: &ChannelName,
    ids: &[&str],
) -> Result<(), BrokerError> {
    let keys = KeySpace::DEFAULT;
    let field = channel_field(app, channel);
    for id in ids {
        within(
            COMMAND_TIMEOUT,
            "webhook due",
            redis::cmd("ZADD")
                .arg(keys.webhook_due(id))
                .arg("NX")
                .arg(0)
                .arg(&field)
                .query_async::<()>(&mut *conn),
        )
        .await?;
    }
    Ok(())
}
