//! `ChannelRegistry`: which broker channels this process needs, reference-counted.
//!
//! A worker is subscribed on the broker to exactly the channels that have at
//! least one local subscriber: the first local subscriber triggers SUBSCRIBE
//! (and waits for its confirmation), the last one leaving triggers UNSUBSCRIBE.

use std::collections::HashMap;
use std::sync::Arc;

use crate::broker::{Broker, BrokerError};

/// Local subscriber counts per broker channel.
#[derive(Debug)]
pub struct ChannelRegistry {
    broker: Arc<dyn Broker>,
    // An async mutex held across the broker round trip: a second subscriber of a
    // channel whose SUBSCRIBE is in flight waits for it instead of racing it.
    counts: tokio::sync::Mutex<HashMap<String, usize>>,
}

impl ChannelRegistry {
    /// A registry subscribing through `broker`.
    pub fn new(broker: Arc<dyn Broker>) -> Self {
        ChannelRegistry {
            broker,
            counts: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Adds a local subscriber of `channel`; subscribes on the broker for the first one.
    /// On error nothing was counted.
    pub async fn join(&self, channel: &str) -> Result<(), BrokerError> {
        let mut counts = self.counts.lock().await;
        match counts.get_mut(channel) {
            Some(n) => *n += 1,
            None => {
                self.broker.subscribe(channel).await?;
                counts.insert(channel.to_owned(), 1);
            }
        }
        Ok(())
    }

    /// Removes a local subscriber of `channel`; unsubscribes on the broker after the last one.
    pub async fn leave(&self, channel: &str) {
        let mut counts = self.counts.lock().await;
        let Some(n) = counts.get_mut(channel) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            counts.remove(channel);
            if let Err(e) = self.broker.unsubscribe(channel).await {
                tracing::warn!(channel, error = %e, "broker unsubscribe failed");
            }
        }
    }

    /// Channels with local subscribers and their counts (for `/health` and tests).
    pub async fn snapshot(&self) -> HashMap<String, usize> {
        self.counts.lock().await.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{BrokerFuture, BrokerHealth, Outbound};
    use std::sync::Mutex;

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
        fn subscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
            self.0.lock().unwrap().push(format!("+{channel}"));
            Box::pin(async move {
                if channel == "down" {
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
        registry.join("a").await.unwrap();
        registry.join("a").await.unwrap();
        registry.join("b").await.unwrap();
        registry.leave("a").await;
        assert_eq!(*broker.0.lock().unwrap(), ["+a", "+b"]);
        registry.leave("a").await;
        registry.leave("a").await; // extra leave is harmless
        assert_eq!(*broker.0.lock().unwrap(), ["+a", "+b", "-a"]);
        assert_eq!(
            registry.snapshot().await,
            HashMap::from([("b".to_owned(), 1)])
        );
    }

    #[tokio::test]
    async fn a_failed_subscribe_counts_nothing() {
        let broker = Arc::new(RecordingBroker::default());
        let registry = ChannelRegistry::new(broker.clone());
        assert!(registry.join("down").await.is_err());
        assert!(registry.snapshot().await.is_empty());
        registry.leave("down").await;
        assert_eq!(*broker.0.lock().unwrap(), ["+down"]);
    }
}
