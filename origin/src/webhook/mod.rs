//! Webhooks out of the origin: [`WebhookQueue`] takes events as they happen
//! and delivers them in batches, one task per endpoint; [`WebhookSender`]
//! makes one signed attempt to deliver a batch to one endpoint and says
//! whether a retry may help; [`RetrySchedule`] says when to try again and
//! when to give up; [`send_with_retries`] follows it for one batch; `tls`
//! says which certificates https receivers are verified against. With
//! Redis, the broker queues the events and its senders use the same parts.

mod counters;
mod dispatcher;
#[cfg(test)]
mod dispatcher_tests;
#[cfg(test)]
mod https_tests;
mod retry;
mod retrying;
mod sender;
#[cfg(test)]
mod tests;
mod tls;

pub(crate) use counters::{DeliveryCounters, DispatchStats};
pub(crate) use dispatcher::{DispatchSettings, WebhookQueue};
pub(crate) use retry::RetrySchedule;
pub(crate) use retrying::send_with_retries;
pub(crate) use sender::WebhookSender;
#[cfg(test)]
pub(crate) use sender::{Delivered, SendError};
#[cfg(test)]
pub(crate) use tls::HttpsUnavailable;
