//! The embedded broker: the pub/sub backend of a single machine with no Redis
//! configured. The cluster master runs its server side; each worker process
//! runs a client side, which talks to the server over the cluster's control
//! socket.
//!
//! - [`EmbeddedBroker`] (in each worker): a [`Broker`](super::Broker) whose
//!   requests travel through a [`Transport`];
//! - [`EmbeddedBrokerServer`] (in the master): the subscriptions (`hub`), the
//!   channel histories (`history`) and the cluster-wide directory
//!   (`directory`), answering the workers' [`protocol::Request`]s and sending
//!   deliveries through a [`Deliver`];
//! - [`protocol`]: the messages between the two sides.
//!
//! The broker knows nothing of the cluster: the cluster implements
//! [`Transport`] on its control client and [`Deliver`] on its links to workers.

mod client;
mod directory;
mod history;
mod hub;
pub(crate) mod protocol;
mod server;

pub(crate) use self::client::{EmbeddedBroker, Transport};
pub(crate) use self::server::{Deliver, EmbeddedBrokerServer, Webhooks};

/// A worker's index in the cluster, `0..workers`: how the server tells the
/// workers it serves apart (the master routes connections by the same index).
pub(crate) type WorkerId = usize;
