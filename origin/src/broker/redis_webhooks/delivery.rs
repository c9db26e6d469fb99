//! One endpoint's delivery loop in one worker: claim due channels, send
//! their events in one batch, remove what was handled, release the channels.

use std::sync::Arc;
use std::time::Duration;

use pushwire_shared::App;
use pushwire_shared::directory::split_channel_field;
use pushwire_shared::keys::KeySpace;
use pushwire_shared::webhook::{WebhookEndpoint, WebhookEvent};

use super::plan::{Plan, PlanRules, Queued};
use super::scripts::{CLAIM_SCRIPT, RENEW_SCRIPT};
use super::{LEASE, WebhookSettings};
use crate::broker::BrokerError;
use crate::redis_connection::{COMMAND_TIMEOUT, CommandConnection, RedisConn, within};
use crate::webhook::{DeliveryCounters, DispatchSettings, WebhookSender, send_with_retries};

/// How often an idle loop looks for due channels: a queued event waits
/// about half of this on average before it is sent.
const POLL: Duration = Duration::from_millis(100);

/// The shortest pause between two looks of an idle loop.
const MIN_POLL: Duration = Duration::from_millis(10);

/// How long a loop waits after Redis failed it.
const FAILED_PAUSE: Duration = Duration::from_secs(1);

/// One endpoint's sender in this worker.
pub(super) struct Delivery {
    app: App,
    endpoint: WebhookEndpoint,
    id: String,
    due: String,
    grace_ms: u64,
    dispatch: DispatchSettings,
    sender: WebhookSender,
    conn: Arc<CommandConnection>,
    counters: Arc<DeliveryCounters>,
}

/// A claimed channel: its outbox and what to do with its events.
struct Claimed {
    field: String,
    outbox: Option<String>,
    plan: Plan,
}

impl Delivery {
    pub(super) fn new(
        app: App,
        endpoint: WebhookEndpoint,
        id: String,
        sender: WebhookSender,
        settings: &WebhookSettings,
        conn: Arc<CommandConnection>,
        counters: Arc<DeliveryCounters>,
    ) -> Self {
        Delivery {
            app,
            due: KeySpace::DEFAULT.webhook_due(&id),
            endpoint,
            id,
            grace_ms: settings.grace.as_millis() as u64,
            dispatch: settings.dispatch,
            sender,
            conn,
            counters,
        }
    }
}

/// Runs `delivery` for as long as the worker lives.
pub(super) async fn run(delivery: Delivery) {
    // A batch delay of 0 means "send at once", not "ask Redis without pause".
    let poll = POLL.min(delivery.dispatch.max_batch_delay).max(MIN_POLL);
    let mut failing = false;
    loop {
        match delivery.round().await {
            // A full claim: more may be due already.
            Ok(true) => {}
            Ok(false) => tokio::time::sleep(poll).await,
            Err(error) => {
                if !failing {
                    tracing::warn!(url = %delivery.endpoint.url(), %error, "webhook sender cannot reach Redis; its events wait there");
                }
                failing = true;
                tokio::time::sleep(FAILED_PAUSE).await;
                continue;
            }
        }
        failing = false;
    }
}

impl Delivery {
    /// One claim, batch and release; whether the claim was full.
    async fn round(&self) -> Result<bool, BrokerError> {
        let mut conn = self.conn.get().await?;
        let max = self.dispatch.max_batch_events.max(1);
        let mut claim = CLAIM_SCRIPT.prepare_invoke();
        claim.key(&self.due).arg(LEASE.as_millis() as u64).arg(max);
        let (now_ms, fields): (u64, Vec<String>) = within(
            COMMAND_TIMEOUT,
            "webhook claim",
            claim.invoke_async(&mut conn),
        )
        .await?;
        if fields.is_empty() {
            return Ok(false);
        }
        let full = fields.len() >= max;
        let mut budget = max;
        let mut claimed = Vec::with_capacity(fields.len());
        for field in fields {
            let outbox = split_channel_field(&field)
                .map(|(app, channel)| KeySpace::DEFAULT.webhook_outbox(app, &channel, &self.id));
            let plan = match &outbox {
                Some(outbox) if budget > 0 => {
                    let events = read_outbox(&mut conn, outbox, budget).await?;
                    let rules = PlanRules {
                        now_ms,
                        grace_ms: self.grace_ms,
                        max_age_ms: self.dispatch.schedule.window().as_millis() as u64,
                        budget,
                    };
                    Plan::new(&events, rules)
                }
                _ => Plan::default(),
            };
            budget -= plan.send.len();
            claimed.push(Claimed {
                field,
                outbox,
                plan,
            });
        }
        let expired: usize = claimed.iter().map(|c| c.plan.expired.len()).sum();
        if expired > 0 {
            self.counters.given_up(expired as u64);
            tracing::warn!(url = %self.endpoint.url(), expired, "webhook events dropped: queued longer than the retry window");
        }
        let batch: Vec<WebhookEvent> = claimed
            .iter()
            .flat_map(|c| c.plan.send.iter().map(|(_, event)| event.clone()))
            .collect();
        if !batch.is_empty() {
            let fields: Vec<&str> = claimed.iter().map(|c| c.field.as_str()).collect();
            let url = self.endpoint.url();
            send_with_retries(
                &self.sender,
                &self.app,
                url,
                &batch,
                &self.dispatch,
                &self.counters,
                |pause| {
                    let fields = &fields;
                    async move {
                        if let Err(error) = self.renew(fields, pause).await {
                            tracing::debug!(%error, "could not renew a webhook lease");
                        }
                    }
                },
            )
            .await;
            // The batch may have been retried for minutes: a fresh connection.
            conn = self.conn.get().await?;
        }
        for c in &claimed {
            self.finish(&mut conn, c).await?;
        }
        Ok(full)
    }

    /// Extends the lease of `fields` while their batch is being retried: over
    /// the `pause` before the next attempt (up to a minute, longer than a
    /// lease) and [`LEASE`] after it, so no other sender takes them meanwhile.
    async fn renew(&self, fields: &[&str], pause: Duration) -> Result<(), BrokerError> {
        let mut conn = self.conn.get().await?;
        let lease = (pause + LEASE).as_millis() as u64;
        let mut renew = RENEW_SCRIPT.prepare_invoke();
        renew.key(&self.due).arg(lease).arg(fields);
        within(
            COMMAND_TIMEOUT,
            "webhook lease",
            renew.invoke_async::<u64>(&mut conn),
        )
        .await?;
        Ok(())
    }

    /// Removes a channel's handled events and releases it: held until its
    /// grace period ends, or due again at once if events are left.
    ///
    /// The release removes the channel from the due set before it looks at
    /// the outbox: an event queued after the look finds the channel absent
    /// and marks it due itself, one queued before it is seen here.
    async fn finish(&self, conn: &mut RedisConn, claimed: &Claimed) -> Result<(), BrokerError> {
        let handled: Vec<&str> = claimed.plan.handled().collect();
        if let (Some(outbox), false) = (&claimed.outbox, handled.is_empty()) {
            within(
                COMMAND_TIMEOUT,
                "webhook done",
                redis::cmd("XDEL")
                    .arg(outbox)
                    .arg(&handled)
                    .query_async::<()>(&mut *conn),
            )
            .await?;
        }
        if let Some(until) = claimed.plan.hold_until {
            return within(
                COMMAND_TIMEOUT,
                "webhook hold",
                redis::cmd("ZADD")
                    .arg(&self.due)
                    .arg("XX")
                    .arg(until)
                    .arg(&claimed.field)
                    .query_async::<()>(&mut *conn),
            )
            .await
            .map_err(BrokerError::from);
        }
        within(
            COMMAND_TIMEOUT,
            "webhook release",
            redis::cmd("ZREM")
                .arg(&self.due)
                .arg(&claimed.field)
                .query_async::<()>(&mut *conn),
        )
        .await?;
        let Some(outbox) = &claimed.outbox else {
            return Ok(());
        };
        let left: u64 = within(
            COMMAND_TIMEOUT,
            "webhook release",
            redis::cmd("XLEN").arg(outbox).query_async(&mut *conn),
        )
        .await?;
        if left > 0 {
            within(
                COMMAND_TIMEOUT,
                "webhook release",
                redis::cmd("ZADD")
                    .arg(&self.due)
                    .arg("NX")
                    .arg(0)
                    .arg(&claimed.field)
                    .query_async::<()>(&mut *conn),
            )
            .await?;
        }
        Ok(())
    }
}

/// The oldest events of `outbox`: enough to fill `budget`, and a few more so
/// that a vacancy near the end can see whether its refill follows.
async fn read_outbox(
    conn: &mut RedisConn,
    outbox: &str,
    budget: usize,
) -> Result<Vec<Queued>, BrokerError> {
    let entries: Vec<(String, Vec<String>)> = within(
        COMMAND_TIMEOUT,
        "webhook read",
        redis::cmd("XRANGE")
            .arg(outbox)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(budget.saturating_mul(2).max(8))
            .query_async(conn),
    )
    .await?;
    Ok(entries
        .into_iter()
        .map(|(id, fields)| {
            let json = fields
                .chunks_exact(2)
                .find(|pair| pair[0] == "e")
                .map(|pair| pair[1].as_str());
            Queued::parse(id.clone(), json)
        })
        .collect())
}
