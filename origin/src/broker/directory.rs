//! Cluster-wide channel state kept by the broker: how many sockets are on each
//! channel (every worker of every origin reports its own), and who is on each
//! presence channel.
//!
//! Each worker is a *node* (its socket-id node number). A node that stops
//! reporting for [`NODE_TIMEOUT`] is dead: its subscriptions stop counting and
//! its presence members are removed, with `pushwire:member_removed` sent for
//! each user that had no socket left.

use std::time::Duration;

use pushwire_shared::ChannelName;
use pushwire_shared::history::PublishMessage;
use pushwire_shared::presence::Member;

/// How often a node reports itself alive (and its subscription counts).
pub(crate) const NODE_HEARTBEAT: Duration = Duration::from_secs(2);

/// How long a node may stay silent before it is considered dead.
pub(crate) const NODE_TIMEOUT: Duration =
    Duration::from_millis(pushwire_shared::directory::NODE_TIMEOUT_MS);

/// One socket joining or leaving a presence channel.
#[derive(Debug, Clone)]
pub(crate) struct PresenceChange {
    /// The app id.
    pub app: String,
    /// The presence channel.
    pub channel: ChannelName,
    /// Who.
    pub member: Member,
    /// At most this many distinct members (joins only).
    pub max_members: usize,
    /// The `pushwire:member_added` (join) or `pushwire:member_removed` (leave)
    /// event, published if and only if the user's membership changes.
    pub event: PublishMessage,
}

/// What a presence join did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JoinOutcome {
    /// Joined; the channel's members (`(user_id, user_info JSON)`) right after.
    Joined(Vec<(String, String)>),
    /// The channel already has the maximum number of members.
    Full,
}
