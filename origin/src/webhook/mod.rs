//! Webhooks out of the origin: [`WebhookQueue`] takes events as they happen
//! and delivers them in batches, one task per endpoint; [`WebhookSender`]
//! makes one signed attempt to deliver a batch to one endpoint and says
//! whether a retry may help; [`RetrySchedule`] says when to try again and
//! when to give up.

mod dispatcher;
#[cfg(test)]
mod dispatcher_tests;
mod retry;
mod sender;
#[cfg(test)]
mod tests;

pub(crate) use dispatcher::{DispatchSettings, DispatchStats, WebhookQueue};
pub(crate) use retry::RetrySchedule;
pub(crate) use sender::WebhookSender;
#[cfg(test)]
pub(crate) use sender::{Delivered, SendError};
