//! The embedded broker's server, run by the cluster master: the subscriptions,
//! the channel histories and the cluster-wide directory, answering the
//! workers' requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pushwire_shared::event_id::{IdIssuer, event_id};
use pushwire_shared::history::{HistoryPolicy, with_position};
use pushwire_shared::keys::KeySpace;
use pushwire_shared::presence::Member;
use pushwire_shared::{ChannelName, Envelope};

use pushwire_shared::webhook::WebhookEvent;

use super::WorkerId;
use super::directory::{Directory, Occupancy};
use super::history::History;
use super::hub::Hub;
use super::protocol::{DirectoryReply, DirectoryRequest, Reply, Request};
use crate::broker::epoch_candidate;
use crate::clock::now_ms;
use crate::webhook::{DispatchStats, WebhookQueue};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section leaves its map consistent: a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How the server reaches the workers it serves (the cluster's links to them).
pub(crate) trait Deliver {
    /// Queues `payload`, published on a channel they subscribed to, to each of
    /// `workers`, without waiting: one slow worker must not hold up the others.
    fn deliver(&self, workers: &[WorkerId], payload: String);
}

/// Subscriptions, histories and directory.
#[derive(Debug)]
pub(crate) struct EmbeddedBrokerServer {
    hub: Mutex<Hub>,
    history: Mutex<History>,
    directory: Mutex<Directory>,
    next_event: AtomicU64,
    /// Where the directory's transitions go as webhooks, when any is configured.
    webhooks: Option<Webhooks>,
    /// `channel_vacated` webhooks waiting out the grace period, by channel,
    /// with the number that tells a later vacancy's from this one's.
    held_vacated: Arc<Mutex<HashMap<(String, String), u64>>>,
}

/// The webhook queue the server reports transitions to, and how it does.
#[derive(Debug, Clone)]
pub(crate) struct Webhooks {
    /// The queue.
    pub queue: WebhookQueue,
    /// How long a `channel_vacated` waits for the channel to fill again (then
    /// neither it nor the `channel_occupied` is reported); zero reports both.
    pub vacated_grace: Duration,
}

impl EmbeddedBrokerServer {
    /// An empty server keeping history by `policy`, with a fresh epoch,
    /// reporting channel and member transitions to `webhooks`.
    pub(crate) fn new(policy: HistoryPolicy, webhooks: Option<Webhooks>) -> Self {
        EmbeddedBrokerServer {
            hub: Mutex::new(Hub::default()),
            history: Mutex::new(History::new(policy, epoch_candidate())),
            directory: Mutex::new(Directory::default()),
            next_event: AtomicU64::new(0),
            webhooks,
            held_vacated: Arc::default(),
        }
    }

    /// The webhook queue's counts, when webhooks are configured.
    pub(crate) fn webhook_stats(&self) -> Option<DispatchStats> {
        self.webhooks.as_ref().map(|w| w.queue.stats())
    }

    /// Queues a webhook of `app`. Called while the directory is locked, so
    /// the transitions of a channel are queued in the order they happened.
    fn webhook(&self, app: &str, channel: &str, event: fn(ChannelName) -> WebhookEvent) {
        if let (Some(webhooks), Ok(channel)) = (&self.webhooks, ChannelName::new(channel)) {
            webhooks.queue.push(app, event(channel));
        }
    }

    /// Queues `user_id`'s member webhook of `app`'s `channel`.
    fn member_webhook(&self, app: &str, channel: &str, user_id: &str, added: bool) {
        let (Some(webhooks), Ok(channel)) = (&self.webhooks, ChannelName::new(channel)) else {
            return;
        };
        let user_id = user_id.to_owned();
        webhooks.queue.push(
            app,
            match added {
                true => WebhookEvent::MemberAdded { channel, user_id },
                false => WebhookEvent::MemberRemoved { channel, user_id },
            },
        );
    }

    /// Queues a channel's occupancy webhook. With a grace period, a vacancy
    /// waits it out, and filling the channel again meanwhile cancels both.
    fn occupancy_webhook(&self, app: &str, channel: &str, occupancy: Occupancy) {
        let Some(webhooks) = &self.webhooks else {
            return;
        };
        let key = (app.to_owned(), channel.to_owned());
        match occupancy {
            Occupancy::Occupied if lock(&self.held_vacated).remove(&key).is_some() => {}
            Occupancy::Occupied => {
                self.webhook(app, channel, |channel| WebhookEvent::ChannelOccupied {
                    channel,
                });
            }
            Occupancy::Vacated if webhooks.vacated_grace.is_zero() => {
                self.webhook(app, channel, |channel| WebhookEvent::ChannelVacated {
                    channel,
                });
            }
            Occupancy::Vacated => {
                let Ok(name) = ChannelName::new(channel) else {
                    return;
                };
                let ticket = self.next_event.fetch_add(1, Ordering::Relaxed);
                lock(&self.held_vacated).insert(key.clone(), ticket);
                let (held, queue) = (self.held_vacated.clone(), webhooks.queue.clone());
                let grace = webhooks.vacated_grace;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    let mut held = lock(&held);
                    // Still this vacancy's: not filled again (nor vacated again) since.
                    if held.get(&key) == Some(&ticket) {
                        held.remove(&key);
                        queue.push(&key.0, WebhookEvent::ChannelVacated { channel: name });
                    }
                });
            }
        }
    }

    /// Answers `worker`'s `request`; what it publishes goes out through `deliver`.
    pub(crate) fn handle(
        &self,
        worker: WorkerId,
        request: Request,
        deliver: &dyn Deliver,
    ) -> Reply {
        match request {
            Request::Subscribe(channel) => {
                lock(&self.hub).subscribe(channel, worker);
                Reply::Done
            }
            Request::Unsubscribe(channel) => {
                lock(&self.hub).unsubscribe(&channel, worker);
                Reply::Done
            }
            Request::Publish(messages) => {
                self.publish(messages, deliver);
                Reply::Done
            }
            // Deliveries are sent in order on each worker's link, before this reply.
            Request::Barrier => Reply::Done,
            Request::Webhook { app, event } => {
                if let Some(webhooks) = &self.webhooks {
                    webhooks.queue.push(&app, event);
                }
                Reply::Done
            }
            Request::History { channel, from } => self.history(&channel, &from),
            Request::Directory(request) => {
                Reply::Directory(self.directory(worker, request, deliver))
            }
        }
    }

    /// Appends each `(channel, envelope)` to its history and delivers it, with
    /// its position, to the workers subscribed to the channel.
    fn publish(&self, messages: Vec<(String, String)>, deliver: &dyn Deliver) {
        let now = now_ms();
        // Held while delivering: positions reach every worker in increasing order.
        let mut history = lock(&self.history);
        for (channel, envelope) in messages {
            let payload =
                with_position(&envelope, &history.append(&channel, envelope.clone(), now));
            let subscribers = lock(&self.hub).subscribers(&channel);
            if subscribers.is_empty() {
                continue;
            }
            deliver.deliver(&subscribers, payload);
        }
    }

    /// `channel`'s history from the stream id `from`.
    fn history(&self, channel: &str, from: &str) -> Reply {
        let history = lock(&self.history);
        // A malformed `from` (never sent by our workers) reads everything.
        let entries = history
            .read(channel, from.parse().unwrap_or_default())
            .into_iter()
            .map(|(id, envelope)| (id.to_string(), envelope))
            .collect();
        Reply::History {
            epoch: history.epoch().to_owned(),
            entries,
        }
    }

    /// Applies a directory request of `worker`, publishing member events.
    fn directory(
        &self,
        worker: WorkerId,
        request: DirectoryRequest,
        deliver: &dyn Deliver,
    ) -> DirectoryReply {
        let mut directory = lock(&self.directory);
        match request {
            DirectoryRequest::Count {
                app,
                channel,
                count,
            } => {
                if let Some(occupancy) =
                    directory.count(worker, (app.clone(), channel.clone()), count)
                {
                    self.occupancy_webhook(&app, &channel, occupancy);
                }
                DirectoryReply::Done
            }
            DirectoryRequest::Join {
                app,
                channel,
                user_id,
                user_info,
                max_members,
                event_channel,
                envelope,
            } => {
                let joined = directory.join(
                    worker,
                    (app.clone(), channel.clone()),
                    &user_id,
                    &user_info,
                    max_members,
                );
                if let Some((true, _)) = &joined {
                    self.member_webhook(&app, &channel, &user_id, true);
                }
                drop(directory);
                match joined {
                    None => DirectoryReply::Joined(None),
                    Some((added, members)) => {
                        if added {
                            self.publish(vec![(event_channel, envelope)], deliver);
                        }
                        DirectoryReply::Joined(Some(members))
                    }
                }
            }
            DirectoryRequest::Leave {
                app,
                channel,
                user_id,
                event_channel,
                envelope,
            } => {
                let removed = directory.leave(worker, &(app.clone(), channel.clone()), &user_id);
                if removed {
                    self.member_webhook(&app, &channel, &user_id, false);
                }
                drop(directory);
                if removed {
                    self.publish(vec![(event_channel, envelope)], deliver);
                }
                DirectoryReply::Done
            }
            DirectoryRequest::Stats { app, channels } => DirectoryReply::Stats(
                channels
                    .into_iter()
                    .map(|channel| directory.stats(&(app.clone(), channel)))
                    .collect(),
            ),
            DirectoryRequest::Occupied { app, prefix } => {
                DirectoryReply::Occupied(directory.occupied(&app, &prefix))
            }
            DirectoryRequest::Members { app, channel } => {
                DirectoryReply::Members(directory.members(&(app, channel)))
            }
        }
    }

    /// Forgets a dead `worker`: its subscriptions, counts and presence sockets,
    /// publishing `member_removed` for each user it was the last socket of.
    pub(crate) fn remove_worker(&self, worker: WorkerId, deliver: &dyn Deliver) {
        lock(&self.hub).remove_worker(worker);
        let gone = {
            let mut directory = lock(&self.directory);
            let (gone, vacated) = directory.remove_worker(worker);
            // Members first: a channel is vacated after its members left it.
            for (app, channel, user_id) in &gone {
                self.member_webhook(app, channel, user_id, false);
            }
            for (app, channel) in &vacated {
                self.occupancy_webhook(app, channel, Occupancy::Vacated);
            }
            gone
        };
        let now = now_ms();
        let messages: Vec<(String, String)> = gone
            .into_iter()
            .filter_map(|(app, channel, user_id)| {
                let channel = ChannelName::new(&channel).ok()?;
                let n = self.next_event.fetch_add(1, Ordering::Relaxed);
                let member = Member {
                    user_id,
                    user_info: "null".into(),
                };
                let (event, data) = member.removed_event();
                let envelope = Envelope::new(
                    event_id(IdIssuer::EmbeddedBroker, now, worker as u64, n),
                    app.clone(),
                    channel.clone(),
                    event,
                    data,
                    now,
                );
                Some((KeySpace::DEFAULT.channel(&app, &channel), envelope.encode()))
            })
            .collect();
        if !messages.is_empty() {
            tracing::info!(
                worker,
                removed = messages.len(),
                "removed a dead worker's presence members"
            );
            self.publish(messages, deliver);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the server delivers.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<(Vec<WorkerId>, String)>>);

    impl Deliver for Recorded {
        fn deliver(&self, workers: &[WorkerId], payload: String) {
            lock(&self.0).push((workers.to_vec(), payload));
        }
    }

    #[test]
    fn publishes_reach_subscribers_with_their_position_and_stay_in_history() {
        let server = EmbeddedBrokerServer::new(HistoryPolicy::default(), None);
        let sent = Recorded::default();
        for worker in [1, 0] {
            let reply = server.handle(worker, Request::Subscribe("c".into()), &sent);
            assert_eq!(reply, Reply::Done);
        }
        let publish = Request::Publish(vec![
            ("c".into(), r#"{"v":1}"#.into()),
            ("nobody".into(), r#"{"v":2}"#.into()),
        ]);
        assert_eq!(server.handle(2, publish, &sent), Reply::Done);
        let history = Request::History {
            channel: "c".into(),
            from: "0-0".into(),
        };
        let Reply::History { epoch, entries } = server.handle(0, history, &sent) else {
            panic!("a history request is answered with the history");
        };
        assert_eq!(entries.len(), 1);
        let (id, envelope) = &entries[0];
        assert_eq!(envelope, r#"{"v":1}"#);
        let delivered = lock(&sent.0).clone();
        let expected = format!(r#"{{"v":1,"pos":"{epoch}:{id}"}}"#);
        assert_eq!(delivered, [(vec![0, 1], expected)]);

        server.handle(1, Request::Unsubscribe("c".into()), &sent);
        server.remove_worker(0, &sent);
        server.handle(2, Request::Publish(vec![("c".into(), "{}".into())]), &sent);
        assert_eq!(lock(&sent.0).len(), 1, "no subscriber left");
    }
}
