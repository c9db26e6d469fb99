//! `ChannelRegistry`: which broker channels this process needs, reference-counted.
//!
//! A worker is subscribed on the broker to exactly the channels that have at
//! least one local subscriber: the first local subscriber triggers SUBSCRIBE
//! (and waits for its confirmation), the last one leaving triggers UNSUBSCRIBE.
//! Every change is also reported to the broker's directory (cluster-wide
//! `subscription_count`).

use std::collections::HashMap;
use std::sync::Arc;

use pushwire_shared::ChannelName;
use pushwire_shared::keys::KeySpace;

use crate::broker::{Broker, BrokerError};

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
    /// the first one. On error nothing was counted.
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
                1
            }
        };
        self.broker.report_count(app, channel, n);
        Ok(())
    }

    /// Removes a local subscriber of `app`'s `channel`; unsubscribes on the broker
    /// after the last one.
    pub(crate) async fn leave(&self, app: &str, channel: &ChannelName) {
        let room = KeySpace::DEFAULT.channel(app, channel);
        let mut counts = self.counts.lock().await;
        let Some(n) = counts.get_mut(&room) else {
            return;
        };
        *n -= 1;
        let left = *n;
        self.broker.report_count(app, channel, left);
        if left == 0 {
            counts.remove(&room);
            shrink_if_sparse(&mut counts);
            if let Err(e) = self.broker.unsubscribe(&room).await {
                tracing::warn!(%room, error = %e, "broker unsubscribe failed");
            }
        }
    }

    /// Channels with local subscribers and their counts.
    #[cfg(test)]
    pub(crate) async fn snapshot(&self) -> HashMap<String, usize> {
        self.counts.lock().await.clone()
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

    /// Records broker calls; fails subscribes to channels named "down".
    #[derive(Debug, Default)]
    struct RecordingBroker(Mutex<Vec<String>>);

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
        fn report_count(&self, _: &str, channel: &ChannelName, count: usize) {
            self.0.lock().unwrap().push(format!("{channel}={count}"));
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
            self.0.lock().unwrap().push(format!("+{channel}"));
            Box::pin(async move {
                if channel.ends_with(":down") {
                    Err(BrokerError::Unavailable("test".into()))
                } else {
                    Ok(())
                }
            })
        }
        fn unsubscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
            self.0.lock().unwrap().push(format!("-{channel}"));
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
            *broker.0.lock().unwrap(),
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
        assert_eq!(
            broker.0.lock().unwrap()[6..],
            ["a=0", &format!("-{}", room(&a))]
        );
        assert_eq!(registry.snapshot().await, HashMap::from([(room(&b), 1)]));
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
        assert_eq!(*broker.0.lock().unwrap(), [format!("+{room}")]);
    }
}
