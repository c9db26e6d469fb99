//! What the embedded broker's two sides say to each other. The cluster's
//! control socket carries these messages (its framing wraps each in one of its
//! own frames); both ends are the same binary, so the shape may change freely.
//!
//! A worker sends a [`Request`] and gets one [`Reply`] for it; the server also
//! pushes deliveries (the payloads published on the channels the worker
//! subscribed to) on the same socket, in order with the replies: a
//! [`Request::Barrier`]'s reply arrives after every delivery sent before it.

use pushwire_shared::directory::ChannelStats;

/// A worker's request to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Deliver `channel` to this worker. Answered [`Reply::Done`].
    Subscribe(String),
    /// Stop delivering `channel`. Answered [`Reply::Done`].
    Unsubscribe(String),
    /// Append each `(channel, envelope)` to its history and deliver it to the
    /// channel's subscribers. Answered [`Reply::Done`] once all were queued to them.
    Publish(Vec<(String, String)>),
    /// `channel`'s history from the stream id `from` (inclusive). Answered
    /// [`Reply::History`].
    History {
        /// The pub/sub channel.
        channel: String,
        /// The first stream id wanted.
        from: String,
    },
    /// Answered [`Reply::Done`] after every delivery sent to this worker before it.
    Barrier,
    /// A directory operation, answered [`Reply::Directory`].
    Directory(DirectoryRequest),
    /// A webhook event of `app` the worker saw (a client event), for the
    /// server's webhook queue. Answered [`Reply::Done`].
    Webhook {
        /// The app id.
        app: String,
        /// The event.
        event: pushwire_shared::webhook::WebhookEvent,
    },
}

/// The server's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Done.
    Done,
    /// A channel's history: the epoch and `(stream id, envelope)` entries,
    /// oldest first.
    History {
        /// The history epoch.
        epoch: String,
        /// The entries.
        entries: Vec<(String, String)>,
    },
    /// A directory operation's answer.
    Directory(DirectoryReply),
}

impl Reply {
    /// Its variant's name: what an error says of an unexpected reply, whose
    /// history entries are event payloads that have no place in a log.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Reply::Done => "Done",
            Reply::History { .. } => "History",
            Reply::Directory(reply) => reply.kind(),
        }
    }
}

/// A directory operation a worker asks the server for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum DirectoryRequest {
    /// This worker's local socket count on a channel. Answered
    /// [`DirectoryReply::Done`] once the directory holds it.
    Count {
        /// App id.
        app: String,
        /// Channel.
        channel: String,
        /// Local sockets (0: none).
        count: usize,
    },
    /// A presence join (see [`PresenceChange`](crate::broker::directory::PresenceChange)).
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

/// The server's answer to a [`DirectoryRequest`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum DirectoryReply {
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

impl DirectoryReply {
    /// Its variant's name (see [`Reply::kind`]).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            DirectoryReply::Done => "Directory(Done)",
            DirectoryReply::Joined(_) => "Directory(Joined)",
            DirectoryReply::Stats(_) => "Directory(Stats)",
            DirectoryReply::Occupied(_) => "Directory(Occupied)",
            DirectoryReply::Members(_) => "Directory(Members)",
        }
    }
}
