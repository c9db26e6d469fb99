//! The embedded broker's subscriptions: a publish from any worker is delivered
//! to every worker subscribed to its channel.

use std::collections::{HashMap, HashSet};

use super::WorkerId;

/// Channel → subscribed workers.
#[derive(Debug, Default)]
pub(super) struct Hub {
    channels: HashMap<String, HashSet<WorkerId>>,
}

impl Hub {
    /// Delivers `channel` to `worker`.
    pub(super) fn subscribe(&mut self, channel: String, worker: WorkerId) {
        self.channels.entry(channel).or_default().insert(worker);
    }

    /// Stops delivering `channel` to `worker`.
    pub(super) fn unsubscribe(&mut self, channel: &str, worker: WorkerId) {
        if let Some(workers) = self.channels.get_mut(channel) {
            workers.remove(&worker);
            if workers.is_empty() {
                self.channels.remove(channel);
            }
        }
    }

    /// Forgets every subscription of `worker`.
    pub(super) fn remove_worker(&mut self, worker: WorkerId) {
        self.channels.retain(|_, workers| {
            workers.remove(&worker);
            !workers.is_empty()
        });
    }

    /// The workers subscribed to `channel`, in a stable order.
    pub(super) fn subscribers(&self, channel: &str) -> Vec<WorkerId> {
        let mut workers: Vec<WorkerId> = self
            .channels
            .get(channel)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        workers.sort_unstable();
        workers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_to_subscribed_workers_only() {
        let mut hub = Hub::default();
        hub.subscribe("a".into(), 1);
        hub.subscribe("a".into(), 0);
        hub.subscribe("b".into(), 1);
        assert_eq!(hub.subscribers("a"), [0, 1]);
        hub.unsubscribe("a", 0);
        assert_eq!(hub.subscribers("a"), [1]);
        hub.remove_worker(1);
        assert!(hub.subscribers("a").is_empty() && hub.subscribers("b").is_empty());
        assert!(hub.channels.is_empty());
    }
}
