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
use pushwire_shared::channel_query::ChannelStats;
use pushwire_shared::history::PublishMessage;
use pushwire_shared::presence::Member;

/// How often a node reports itself alive (and its subscription counts).
pub const NODE_HEARTBEAT: Duration = Duration::from_secs(2);

/// How long a node may stay silent before it is considered dead.
pub const NODE_TIMEOUT: Duration =
    Duration::from_millis(pushwire_shared::directory::NODE_TIMEOUT_MS);

/// One socket joining or leaving a presence channel.
#[derive(Debug, Clone)]
pub struct PresenceChange {
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
pub enum JoinOutcome {
    /// Joined; the channel's members (`(user_id, user_info JSON)`) right after.
    Joined(Vec<(String, String)>),
    /// The channel already has the maximum number of members.
    Full,
}

/// A directory operation the embedded broker's worker side asks the master for
/// (JSON on the control socket: both ends are the same binary).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DirectoryRequest {
    /// This worker's local socket count on a channel.
    Count {
        /// App id.
        app: String,
        /// Channel.
        channel: String,
        /// Local sockets (0: none).
        count: usize,
    },
    /// A presence join (see [`PresenceChange`]).
    Join {
        /// App id.
        app: String,
        /// Channel.
        channel: String,
        /// User id.
        user_id: String,
        /// user_info JSON.
        user_info: String,
        /// Member limit.
        max_members: usize,
        /// The member_added envelope's pub/sub channel.
        event_channel: String,
        /// The member_added envelope.
        envelope: String,
    },
    /// A presence leave.
    Leave {
        /// App id.
        app: String,
        /// Channel.
        channel: String,
        /// User id.
        user_id: String,
        /// The member_removed envelope's pub/sub channel.
        event_channel: String,
        /// The member_removed envelope.
        envelope: String,
    },
    /// Channel stats.
    Stats {
        /// App id.
        app: String,
        /// Channels.
        channels: Vec<String>,
    },
    /// Occupied channels with a prefix.
    Occupied {
        /// App id.
        app: String,
        /// Name prefix.
        prefix: String,
    },
    /// A presence channel's members.
    Members {
        /// App id.
        app: String,
        /// Channel.
        channel: String,
    },
}

/// The master's answer to a [`DirectoryRequest`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DirectoryReply {
    /// Done (counts, leaves).
    Done,
    /// A join: the members after it, or `None` when the channel is full.
    Joined(Option<Vec<(String, String)>>),
    /// Per channel, in order.
    Stats(Vec<ChannelStats>),
    /// `(channel, stats)`, sorted by channel.
    Occupied(Vec<(String, ChannelStats)>),
    /// `(user_id, user_info JSON)`.
    Members(Vec<(String, String)>),
}
