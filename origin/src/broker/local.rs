//! In-process broker: publishing hands payloads straight to this process's
//! subscriptions. Used when no Redis is configured and there is one process.

use std::collections::HashSet;
use std::sync::Mutex;

use super::{Broker, BrokerError, BrokerFuture, BrokerHealth, InboundSender, Outbound};

/// A broker that never leaves the process.
#[derive(Debug)]
pub struct LocalBroker {
    subscribed: Mutex<HashSet<String>>,
    inbound: InboundSender,
}

impl LocalBroker {
    /// Builds a broker delivering into `inbound`.
    pub fn new(inbound: InboundSender) -> Self {
        LocalBroker {
            subscribed: Mutex::new(HashSet::new()),
            inbound,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.subscribed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Broker for LocalBroker {
    fn publish<'a>(&'a self, messages: &'a [Outbound]) -> BrokerFuture<'a, ()> {
        Box::pin(async move {
            for (channel, payload) in messages {
                let wanted = self.lock().contains(channel);
                if wanted {
                    self.inbound
                        .send(payload.clone().into_bytes())
                        .await
                        .map_err(|_| BrokerError::Closed)?;
                }
            }
            Ok(())
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        self.lock().insert(channel.to_owned());
        Box::pin(async { Ok(()) })
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        self.lock().remove(channel);
        Box::pin(async { Ok(()) })
    }

    fn health(&self) -> BrokerHealth {
        BrokerHealth {
            kind: "local",
            connected: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_only_subscribed_channels_in_order() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let broker = LocalBroker::new(tx);
        broker.subscribe("a").await.unwrap();
        let msgs = [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "x".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        broker.publish(&msgs).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), b"1");
        assert_eq!(rx.recv().await.unwrap(), b"2");
        broker.unsubscribe("a").await.unwrap();
        broker.publish(&msgs).await.unwrap();
        assert!(rx.try_recv().is_err());
    }
}
