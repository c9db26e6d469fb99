//! `ChannelRegistry`: which broker channels this process needs, reference-counted.
//!
//! A worker is subscribed on the broker to exactly the channels that have at
//! least one local subscriber: the first local subscriber triggers SUBSCRIBE
//! (and waits for its confirmation), the last one leaving triggers UNSUBSCRIBE.
//! Every change is also reported to the broker's directory (cluster-wide
//! `subscription_count`), and `join` and `leave` return only once the
//! directory holds the new count: a socket's ack follows them, so a channel
//! query made after the ack counts it (or no longer does).

use std::collections::HashMap;
use std::sync::Arc;

use pushwire_shared::ChannelName;
use pushwire_shared::keys::KeySpace;

use crate::broker::{Broker, BrokerError, BrokerFuture};

/// Local subscriber counts per broker channel.
#[derive(Debug)]
pub(crate) struct ChannelRegistry {
    broker: Arc<dyn Broker>,
    // An async mutex held across the broker round trip: a second subscriber of a
    // channel whose SUBSCRIBE is in flight waits for it instead of racing it.
    counts: tokio::sync::Mutex<HashMap<String, usize>>,
}

impl ChannelRegistry {
    /// A registry subscribing through `broker`.
    pub(crate) fn new(broker: Arc<dyn Broker>) -> Self {
        ChannelRegistry {
            broker,
            counts: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Adds a local subscriber of `app`'s `channel`; subscribes on the broker for
    /// the first one. On error nothing was counted. Returns once the directory
    /// holds the new count.
    pub(crate) async fn join(&self, app: &str, channel: &ChannelName) -> Result<(), BrokerError> {
        let room = KeySpace::DEFAULT.channel(app, channel);
        let mut counts = self.counts.lock().await;
        let n = match counts.get_mut(&room) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                self.broker.subscribe(&room).await?;
                counts.insert(room, 1);
                crate::metrics::worker().occupied_channels.inc();
                1
            }
        };
        crate::metrics::worker().subscriptions.inc();
        // Queued under the lock, so the channel's counts reach the directory in
        // the order they were made; awaited after it, so one subscriber's round
        // trip to the directory does not hold up every other of this worker.
        let reported = self.report(app, channel, n);
        drop(counts);
        confirm(reported, app, channel).await;
        Ok(())
    }

    /// Removes a local subscriber of `app`'s `channel`; unsubscribes on the broker
    /// after the last one. Returns once the directory holds the new count.
    pub(crate) async fn leave(&self, app: &str, channel: &ChannelName) {
        let room = KeySpace::DEFAULT.channel(app, channel);
        let mut counts = self.counts.lock().await;
        let Some(n) = counts.get_mut(&room) else {
            return;
        };
        *n -= 1;
        let left = *n;
        crate::metrics::worker().subscriptions.dec();
        let reported = self.report(app, channel, left);
        if left == 0 {
            counts.remove(&room);
            crate::metrics::worker().occupied_channels.dec();
            shrink_if_sparse(&mut counts);
            if let Err(e) = self.broker.unsubscribe(&room).await {
                tracing::warn!(app, %channel, error = %e, "broker unsubscribe failed");
            }
        }
        drop(counts);
        confirm(reported, app, channel).await;
    }

    /// Reports `channel`'s local count to the directory, except a user
    /// channel's: who is signed in is no channel for queries or webhooks.
    fn report(
        &self,
        app: &str,
        channel: &ChannelName,
        count: usize,
    ) -> Option<BrokerFuture<'_, ()>> {
        channel
            .user_id()
            .is_none()
            .then(|| self.broker.report_count(app, channel, count))
    }

    /// Channels with local subscribers and their counts.
    #[cfg(test)]
    pub(crate) async fn snapshot(&self) -> HashMap<String, usize> {
        self.counts.lock().await.clone()
    }
}

/// Waits for a count report. A report the directory could not take does not
/// undo the subscription change it follows, which the broker already made:
/// the change stands (and its ack says so) once the write was tried, and the
/// failure is only logged. Redis's directory rewrites every count at the next
/// heartbeat (2 s); the embedded broker's fails only when the master is gone.
async fn confirm(reported: Option<BrokerFuture<'_, ()>>, app: &str, channel: &ChannelName) {
    let Some(reported) = reported else {
        return;
    };
    if let Err(e) = reported.await {
        tracing::debug!(app, %channel, error = %e, "count report not written");
    }
}

/// Gives back a map's room once most of it is empty: a crowd of subscribers
/// that left (or one socket that subscribed to thousands of channels) would
/// otherwise keep its peak size for the worker's life. Shrinking only below a
/// quarter of the capacity keeps the cost amortised.
fn shrink_if_sparse<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    const SMALL: usize = 1024;
    if map.capacity() > SMALL && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::directory::{JoinOutcome, PresenceChange};
    use crate::broker::{BrokerFuture, BrokerHealth, Outbound};
    use pushwire_shared::directory::ChannelStats;
    use std::sync::Mutex;

    #[test]
    fn emptied_maps_give_their_room_back() {
        let mut map: HashMap<usize, usize> = (0..100_000).map(|i| (i, i)).collect();
        for i in 1..100_000 {
            map.remove(&i);
            shrink_if_sparse(&mut map);
        }
        assert!(map.capacity() <= 2048, "capacity {}", map.capacity());
    }

    /// Records broker calls; fails subscribes to channels named "down"; holds
    /// the count reports of channels named "slow" until `release` has a permit.
    #[derive(Debug)]
    struct RecordingBroker {
        calls: Mutex<Vec<String>>,
        release: tokio::sync::Semaphore,
    }

    impl Default for RecordingBroker {
        fn default() -> Self {
            RecordingBroker {
                calls: Mutex::new(Vec::new()),
                release: tokio::sync::Semaphore::new(0),
            }
        }
    }

    impl RecordingBroker {
        fn calls(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
            self.calls.lock().unwrap()
        }
    }

    impl Broker for RecordingBroker {
        fn publish<'a>(&'a self, _: &'a [Outbound]) -> BrokerFuture<'a, ()> {
            Box::pin(async { Ok(()) })
        }
        fn history<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: pushwire_shared::history::StreamId,
        ) -> BrokerFuture<'a, crate::broker::HistorySnapshot> {
            Box::pin(async { Ok(Default::default()) })
        }
        fn barrier(&self) -> BrokerFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }
        fn webhook<'a>(
            &'a self,
            _: &'a str,
            _: pushwire_shared::webhook::WebhookEvent,
        ) -> BrokerFuture<'a, ()> {
            Box::pin(async { Ok(()) })
        }

        fn report_count(
            &self,
            _: &str,
            channel: &ChannelName,
            count: usize,
        ) -> BrokerFuture<'_, ()> {
            // Recorded at the call, as a real broker queues the report.
            self.calls().push(format!("{channel}={count}"));
            let slow = channel.as_str() == "slow";
            Box::pin(async move {
                if slow {
                    self.release.acquire().await.unwrap().forget();
                }
                Ok(())
            })
        }
        fn presence_join<'a>(&'a self, _: &'a PresenceChange) -> BrokerFuture<'a, JoinOutcome> {
            Box::pin(async { Ok(JoinOutcome::Full) })
        }
        fn presence_leave<'a>(&'a self, _: &'a PresenceChange) -> BrokerFuture<'a, ()> {
            Box::pin(async { Ok(()) })
        }
        fn channel_stats<'a>(
            &'a self,
            _: &'a str,
            _: &'a [ChannelName],
        ) -> BrokerFuture<'a, Vec<ChannelStats>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn occupied_channels<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BrokerFuture<'a, Vec<(ChannelName, ChannelStats)>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn presence_members<'a>(
            &'a self,
            _: &'a str,
            _: &'a ChannelName,
        ) -> BrokerFuture<'a, Vec<(String, String)>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn subscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
            self.calls().push(format!("+{channel}"));
            Box::pin(async move {
                if channel.ends_with(":down}:ch") {
                    Err(BrokerError::Unavailable("test".into()))
                } else {
                    Ok(())
                }
            })
        }
        fn unsubscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
            self.calls().push(format!("-{channel}"));
            Box::pin(async { Ok(()) })
        }
        fn health(&self) -> BrokerHealth {
            BrokerHealth {
                kind: "test",
                connected: true,
            }
        }
    }

    #[tokio::test]
    async fn subscribes_once_per_channel_and_unsubscribes_after_the_last() {
        let broker = Arc::new(RecordingBroker::default());
        let registry = ChannelRegistry::new(broker.clone());
        let (a, b) = (
            ChannelName::new("a").unwrap(),
            ChannelName::new("b").unwrap(),
        );
        registry.join("1", &a).await.unwrap();
        registry.join("1", &a).await.unwrap();
        registry.join("1", &b).await.unwrap();
        registry.leave("1", &a).await;
        let room = |channel| KeySpace::DEFAULT.channel("1", channel);
        assert_eq!(
            *broker.calls(),
            [
                &format!("+{}", room(&a)),
                "a=1",
                "a=2",
                &format!("+{}", room(&b)),
                "b=1",
                "a=1"
            ]
        );
        registry.leave("1", &a).await;
        registry.leave("1", &a).await; // extra leave is harmless
        assert_eq!(broker.calls()[6..], ["a=0", &format!("-{}", room(&a))]);
        assert_eq!(registry.snapshot().await, HashMap::from([(room(&b), 1)]));
    }

    #[tokio::test]
    async fn joins_and_leaves_wait_for_their_count_but_not_under_the_lock() {
        let broker = Arc::new(RecordingBroker::default());
        let registry = Arc::new(ChannelRegistry::new(broker.clone()));
        let slow = ChannelName::new("slow").unwrap();
        let other = ChannelName::new("other").unwrap();
        let joining = tokio::spawn({
            let (registry, slow) = (registry.clone(), slow.clone());
            async move { registry.join("1", &slow).await }
        });
        while !broker.calls().contains(&"slow=1".to_owned()) {
            tokio::task::yield_now().await;
        }
        let free = std::time::Duration::from_secs(5);
        tokio::time::timeout(free, registry.join("1", &other))
            .await
            .expect("another channel's join is not held up")
            .unwrap();
        assert!(!joining.is_finished(), "the join waits for its count");
        broker.release.add_permits(1);
        joining.await.unwrap().unwrap();

        let leaving = tokio::spawn({
            let registry = registry.clone();
            async move { registry.leave("1", &slow).await }
        });
        while !broker.calls().contains(&"slow=0".to_owned()) {
            tokio::task::yield_now().await;
        }
        tokio::time::timeout(free, registry.leave("1", &other))
            .await
            .expect("another channel's leave is not held up");
        assert!(!leaving.is_finished(), "the leave waits for its count");
        broker.release.add_permits(1);
        leaving.await.unwrap();
        assert!(registry.snapshot().await.is_empty());
    }

    #[tokio::test]
    async fn a_failed_subscribe_counts_nothing() {
        let broker = Arc::new(RecordingBroker::default());
        let registry = ChannelRegistry::new(broker.clone());
        let down = ChannelName::new("down").unwrap();
        assert!(registry.join("1", &down).await.is_err());
        assert!(registry.snapshot().await.is_empty());
        registry.leave("1", &down).await;
        let room = KeySpace::DEFAULT.channel("1", &down);
        assert_eq!(*broker.calls(), [format!("+{room}")]);
    }
}
