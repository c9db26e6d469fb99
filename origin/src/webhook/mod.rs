//! Webhooks out of the origin: [`WebhookSender`] makes one signed attempt to
//! deliver a batch to one endpoint and says whether a retry may help;
//! [`RetrySchedule`] says when to try again and when to give up. What goes in
//! a batch, and where it waits between attempts, is the caller's.

mod retry;
mod sender;
#[cfg(test)]
mod tests;

pub(crate) use retry::RetrySchedule;
pub(crate) use sender::{Delivered, SendError, WebhookSender};
