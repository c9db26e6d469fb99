//! `EmbeddedBroker`: the master's side of the embedded broker (no Redis): the
//! relay hub, the channel histories and the cluster-wide directory, answering
//! the workers' broker requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use pushwire_shared::envelope::{ENVELOPE_VERSION, redis_channel};
use pushwire_shared::history::{HistoryPolicy, with_position};
use pushwire_shared::presence::Member;
use pushwire_shared::{ChannelName, Envelope};

use super::history_store::HistoryStore;
use super::hub::RelayHub;
use super::ipc::ToWorker;
use super::memory_directory::MemoryDirectory;
use super::sticky::WorkerId;
use crate::broker::directory::{DirectoryReply, DirectoryRequest};
use crate::broker::epoch_candidate;
use crate::clock::now_ms;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section leaves its map consistent: a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the embedded broker's frames go: `send(worker, frame)`.
pub type Send<'a> = &'a dyn Fn(WorkerId, &[u8]);

/// Hub, histories and directory.
#[derive(Debug)]
pub struct EmbeddedBroker {
    hub: Mutex<RelayHub>,
    history: Mutex<HistoryStore>,
    directory: Mutex<MemoryDirectory>,
    next_event: AtomicU64,
}

impl EmbeddedBroker {
    /// An empty broker keeping history by `policy`, with a fresh epoch.
    pub fn new(policy: HistoryPolicy) -> Self {
        EmbeddedBroker {
            hub: Mutex::new(RelayHub::default()),
            history: Mutex::new(HistoryStore::new(policy, epoch_candidate())),
            directory: Mutex::new(MemoryDirectory::default()),
            next_event: AtomicU64::new(0),
        }
    }

    /// Relays `channel` to `worker`.
    pub fn subscribe(&self, channel: String, worker: WorkerId) {
        lock(&self.hub).subscribe(channel, worker);
    }

    /// Stops relaying `channel` to `worker`.
    pub fn unsubscribe(&self, channel: &str, worker: WorkerId) {
        lock(&self.hub).unsubscribe(channel, worker);
    }

    /// Appends each `(channel, envelope)` to its history and relays it, with its
    /// position, to the workers subscribed to the channel.
    pub fn publish(&self, messages: Vec<(String, String)>, send: Send<'_>) {
        let now = now_ms();
        // Held while relaying: positions reach every worker in increasing order.
        let mut history = lock(&self.history);
        for (channel, envelope) in messages {
            let payload =
                with_position(&envelope, &history.append(&channel, envelope.clone(), now));
            let subscribers = lock(&self.hub).subscribers(&channel);
            if subscribers.is_empty() {
                continue;
            }
            let frame = ToWorker::Deliver(payload).encode();
            for worker in subscribers {
                send(worker, &frame);
            }
        }
    }

    /// `channel`'s history from the stream id `from`, as the answer to request `req`.
    pub fn history(&self, req: u64, channel: &str, from: &str) -> ToWorker {
        let history = lock(&self.history);
        // A malformed `from` (never sent by our workers) reads everything.
        let entries = history
            .read(channel, from.parse().unwrap_or_default())
            .into_iter()
            .map(|(id, envelope)| (id.to_string(), envelope))
            .collect();
        ToWorker::History(req, history.epoch().to_owned(), entries)
    }

    /// Applies a directory request of `worker`, publishing member events.
    pub fn directory(
        &self,
        worker: WorkerId,
        request: DirectoryRequest,
        send: Send<'_>,
    ) -> DirectoryReply {
        let mut directory = lock(&self.directory);
        match request {
            DirectoryRequest::Count {
                app,
                channel,
                count,
            } => {
                directory.count(worker, (app, channel), count);
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
                let joined =
                    directory.join(worker, (app, channel), &user_id, &user_info, max_members);
                drop(directory);
                match joined {
                    None => DirectoryReply::Joined(None),
                    Some((added, members)) => {
                        if added {
                            self.publish(vec![(event_channel, envelope)], send);
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
                let removed = directory.leave(worker, &(app, channel), &user_id);
                drop(directory);
                if removed {
                    self.publish(vec![(event_channel, envelope)], send);
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
    pub fn remove_worker(&self, worker: WorkerId, send: Send<'_>) {
        lock(&self.hub).remove_worker(worker);
        let gone = lock(&self.directory).remove_worker(worker);
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
                let envelope = Envelope {
                    v: ENVELOPE_VERSION,
                    id: format!("{now:x}-m{worker:x}-{n:x}"),
                    app: app.clone(),
                    channel: channel.clone(),
                    event,
                    data,
                    exclude: None,
                    ts: now,
                    pos: None,
                };
                Some((redis_channel(&app, &channel), envelope.encode()))
            })
            .collect();
        if !messages.is_empty() {
            tracing::info!(
                worker,
                removed = messages.len(),
                "removed a dead worker's presence members"
            );
            self.publish(messages, send);
        }
    }
}
