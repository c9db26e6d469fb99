//! Every Redis key and pub/sub channel pushwire uses, built from one prefix.
//!
//! A [`KeySpace`] is a prefix and the builders of every name under it;
//! [`KeySpace::DEFAULT`] is the one pushwire runs with (`pushwire:v2`, the
//! version being [`KEY_LAYOUT_VERSION`]). `PROTOCOL.md` documents each key;
//! this module is the only place that spells them, so a test may build every
//! name under a prefix of its own.
//!
//! Every name of one channel carries the hash tag `{<app>:<channel>}`, so a
//! Redis Cluster keeps a channel's history, epoch, presence and pub/sub traffic
//! on one shard and each script runs on one slot. A node's own keys carry
//! `{<node>}`, which spreads the nodes over the shards.

use std::borrow::Cow;

use crate::channel::ChannelName;

/// The version of the key layout, in [`KeySpace::DEFAULT`]'s prefix. Version 1
/// had one epoch for all channels and keys without hash tags; a version 2
/// origin neither reads nor writes them.
pub const KEY_LAYOUT_VERSION: u32 = 2;

/// A placeholder named `name` (`@name@`), for values a script fills in. `@`
/// appears in no app id, key word or prefix pushwire writes.
///
/// ```
/// assert_eq!(pushwire_shared::keys::slot("user_id"), "@user_id@");
/// ```
pub fn slot(name: &str) -> String {
    format!("@{name}@")
}

/// A prefix and every key and pub/sub channel under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    prefix: Cow<'static, str>,
}

impl Default for KeySpace {
    fn default() -> Self {
        KeySpace::DEFAULT
    }
}

impl KeySpace {
    /// pushwire's keys: prefix `pushwire:v2`.
    pub const DEFAULT: KeySpace = KeySpace {
        prefix: Cow::Borrowed("pushwire:v2"),
    };

    /// The keys under `prefix` (no trailing `:`; no `@`, `{` or `}`).
    ///
    /// ```
    /// use pushwire_shared::keys::KeySpace;
    /// assert_eq!(KeySpace::new("test-7").nodes(), "test-7:nodes");
    /// ```
    pub fn new(prefix: impl Into<Cow<'static, str>>) -> Self {
        KeySpace {
            prefix: prefix.into(),
        }
    }

    /// The prefix, without its trailing `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `key` is one of this space's names (it starts with `{prefix}:`).
    ///
    /// ```
    /// use pushwire_shared::keys::KeySpace;
    /// assert!(KeySpace::DEFAULT.owns("pushwire:v2:nodes"));
    /// assert!(!KeySpace::DEFAULT.owns("pushwire:v2"));
    /// assert!(!KeySpace::DEFAULT.owns("users:passwords"));
    /// ```
    pub fn owns(&self, key: &str) -> bool {
        key.strip_prefix(self.prefix())
            .is_some_and(|rest| rest.starts_with(':'))
    }

    /// `{prefix}:{<app>:<channel>}:{kind}`: the hash tag puts every name of
    /// the channel in one slot. App ids hold no `:` and channel names neither
    /// `:` nor `}`, so the tag is unambiguous.
    fn per_channel(&self, app: &str, channel: &ChannelName, kind: &str) -> String {
        format!("{}:{{{app}:{channel}}}:{kind}", self.prefix)
    }

    fn per_node(&self, node: &str, what: &str) -> String {
        format!("{}:node:{{{node}}}:{what}", self.prefix)
    }

    /// The pub/sub channel carrying `app`'s events for `channel`:
    /// `{prefix}:{<app_id>:<channel>}:ch`.
    ///
    /// ```
    /// use pushwire_shared::{keys::KeySpace, ChannelName};
    /// let ch = ChannelName::new("ticker-BTC").unwrap();
    /// assert_eq!(KeySpace::DEFAULT.channel("1000001", &ch), "pushwire:v2:{1000001:ticker-BTC}:ch");
    /// ```
    pub fn channel(&self, app: &str, channel: &ChannelName) -> String {
        self.per_channel(app, channel, "ch")
    }

    /// The stream holding `app`'s history of `channel`: `{prefix}:{<app_id>:<channel>}:hist`.
    ///
    /// ```
    /// use pushwire_shared::{keys::KeySpace, ChannelName};
    /// let ch = ChannelName::new("ticker-BTC").unwrap();
    /// assert_eq!(KeySpace::DEFAULT.history("1000001", &ch), "pushwire:v2:{1000001:ticker-BTC}:hist");
    /// ```
    pub fn history(&self, app: &str, channel: &ChannelName) -> String {
        self.per_channel(app, channel, "hist")
    }

    /// The string holding the epoch of `app`'s history of `channel`:
    /// `{prefix}:{<app_id>:<channel>}:epoch`. Set by the channel's first
    /// publish, it expires with the history, so positions of a history that
    /// vanished (or never reached a promoted replica) are recognised as lost.
    ///
    /// ```
    /// use pushwire_shared::{keys::KeySpace, ChannelName};
    /// let ch = ChannelName::new("news").unwrap();
    /// assert_eq!(KeySpace::DEFAULT.epoch("1", &ch), "pushwire:v2:{1:news}:epoch");
    /// ```
    pub fn epoch(&self, app: &str, channel: &ChannelName) -> String {
        self.per_channel(app, channel, "epoch")
    }

    /// The app and channel of a pub/sub channel [`channel`](Self::channel) built,
    /// or `None` for any other name (another prefix or kind, an empty app id, an
    /// invalid channel name).
    ///
    /// ```
    /// use pushwire_shared::{keys::KeySpace, ChannelName};
    /// let ch = ChannelName::new("news").unwrap();
    /// let name = KeySpace::DEFAULT.channel("1000001", &ch);
    /// assert_eq!(KeySpace::DEFAULT.parse_channel(&name), Some(("1000001", ch)));
    /// assert_eq!(KeySpace::DEFAULT.parse_channel("victim:orders"), None);
    /// assert_eq!(KeySpace::DEFAULT.parse_channel("pushwire:v2:{1:news}:hist"), None);
    /// ```
    pub fn parse_channel<'k>(&self, name: &'k str) -> Option<(&'k str, ChannelName)> {
        self.parse_per_channel(name, "ch")
    }

    /// The app and channel of a history stream [`history`](Self::history) built,
    /// or `None` for any other key.
    ///
    /// ```
    /// use pushwire_shared::{keys::KeySpace, ChannelName};
    /// let ch = ChannelName::new("news").unwrap();
    /// let key = KeySpace::DEFAULT.history("1000001", &ch);
    /// assert_eq!(KeySpace::DEFAULT.parse_history(&key), Some(("1000001", ch)));
    /// assert_eq!(KeySpace::DEFAULT.parse_history("pushwire:v2:{1:a b}:hist"), None);
    /// ```
    pub fn parse_history<'k>(&self, key: &'k str) -> Option<(&'k str, ChannelName)> {
        self.parse_per_channel(key, "hist")
    }

    /// The app and channel of an epoch key [`epoch`](Self::epoch) built, or
    /// `None` for any other key.
    pub fn parse_epoch<'k>(&self, key: &'k str) -> Option<(&'k str, ChannelName)> {
        self.parse_per_channel(key, "epoch")
    }

    fn parse_per_channel<'k>(&self, key: &'k str, kind: &str) -> Option<(&'k str, ChannelName)> {
        let rest = key.strip_prefix(self.prefix())?.strip_prefix(":{")?;
        let (tag, rest_kind) = rest.split_once("}:")?;
        let (app, channel) = tag.split_once(':')?;
        let valid_app = |a: &str| {
            !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if rest_kind != kind || !valid_app(app) {
            return None;
        }
        Some((app, ChannelName::new(channel).ok()?))
    }

    /// The sorted set of nodes and their last heartbeat (ms): `{prefix}:nodes`.
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// A node's socket counts, `{app}:{channel}` → count:
    /// `{prefix}:node:{<node>}:subs`.
    pub fn node_subs(&self, node: &str) -> String {
        self.per_node(node, "subs")
    }

    /// The presence channels a node holds members in, `{app}:{channel}` → the
    /// node's member sockets there (an upper bound: raised before a join,
    /// lowered after a leave), which is what the reaper walks when the node
    /// dies: `{prefix}:node:{<node>}:presence`.
    pub fn node_presence(&self, node: &str) -> String {
        self.per_node(node, "presence")
    }

    /// A presence channel's members, user id → user_info JSON:
    /// `{prefix}:{<app>:<channel>}:presence`.
    pub fn members(&self, app: &str, channel: &ChannelName) -> String {
        self.per_channel(app, channel, "presence")
    }

    /// A presence channel's members' sockets cluster-wide, user id → count:
    /// `{prefix}:{<app>:<channel>}:presence:sockets`.
    pub fn member_sockets(&self, app: &str, channel: &ChannelName) -> String {
        self.per_channel(app, channel, "presence:sockets")
    }

    /// Which nodes hold sockets on a channel, node → 1:
    /// `{prefix}:{<app>:<channel>}:occupancy`. Kept for webhooks only: the
    /// node that adds the first field reports `channel_occupied`, the one that
    /// removes the last `channel_vacated`, each inside one script on the
    /// channel's slot, so the transition is reported exactly once.
    pub fn occupancy(&self, app: &str, channel: &ChannelName) -> String {
        self.per_channel(app, channel, "occupancy")
    }

    /// The channels a node holds sockets on, as [`occupancy`](Self::occupancy)
    /// knows them (a set of `{app}:{channel}`; added before the node's field,
    /// removed after it): what the reaper vacates when the node dies.
    /// `{prefix}:node:{<node>}:occupied`.
    pub fn node_occupied(&self, node: &str) -> String {
        self.per_node(node, "occupied")
    }

    /// A channel's webhook events waiting for one endpoint (a stream, oldest
    /// first): `{prefix}:{<app>:<channel>}:webhooks:<endpoint>`, with the
    /// endpoint's `WebhookEndpoint::outbox_id`. In the channel's slot, so the
    /// script that sees a transition queues its event in the same step.
    pub fn webhook_outbox(&self, app: &str, channel: &ChannelName, endpoint: &str) -> String {
        self.per_channel(app, channel, &format!("webhooks:{endpoint}"))
    }

    /// The channels with webhook events waiting for one endpoint, a sorted set
    /// of `{app}:{channel}` scored by when a sender may take them (ms, Redis's
    /// clock; 0: now): `{prefix}:webhooks:{<endpoint>}:due`.
    pub fn webhook_due(&self, endpoint: &str) -> String {
        format!("{}:webhooks:{{{endpoint}}}:due", self.prefix)
    }

    /// One node's sockets of a presence channel's members, user id → count:
    /// `{prefix}:{<app>:<channel>}:presence:node:<node>`. It lives in the
    /// channel's slot, so a dead node's members are removed by one script on
    /// that slot, and removing them twice removes nothing the second time.
    pub fn node_members(&self, app: &str, channel: &ChannelName, node: &str) -> String {
        self.per_channel(app, channel, &format!("presence:node:{node}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_prefix_names_the_layout_version() {
        assert_eq!(
            KeySpace::DEFAULT.prefix(),
            format!("pushwire:v{KEY_LAYOUT_VERSION}")
        );
        assert_eq!(KeySpace::default(), KeySpace::DEFAULT);
    }

    #[test]
    fn every_name_sits_under_the_prefix_given() {
        let keys = KeySpace::new(String::from("t9"));
        let ch = ChannelName::new("presence-a").unwrap();
        let names = [
            keys.channel("1", &ch),
            keys.history("1", &ch),
            keys.epoch("1", &ch),
            keys.nodes(),
            keys.node_subs("4"),
            keys.node_presence("4"),
            keys.members("1", &ch),
            keys.member_sockets("1", &ch),
            keys.node_members("1", &ch, "4"),
            keys.occupancy("1", &ch),
            keys.node_occupied("4"),
            keys.webhook_outbox("1", &ch, "e1"),
            keys.webhook_due("e1"),
        ];
        assert_eq!(
            names,
            [
                "t9:{1:presence-a}:ch",
                "t9:{1:presence-a}:hist",
                "t9:{1:presence-a}:epoch",
                "t9:nodes",
                "t9:node:{4}:subs",
                "t9:node:{4}:presence",
                "t9:{1:presence-a}:presence",
                "t9:{1:presence-a}:presence:sockets",
                "t9:{1:presence-a}:presence:node:4",
                "t9:{1:presence-a}:occupancy",
                "t9:node:{4}:occupied",
                "t9:{1:presence-a}:webhooks:e1",
                "t9:webhooks:{e1}:due",
            ]
        );
        assert!(names.iter().all(|name| keys.owns(name)));
        assert!(!KeySpace::DEFAULT.owns(&names[0]));
    }

    #[test]
    fn a_channels_names_share_one_hash_tag() {
        let keys = KeySpace::DEFAULT;
        let ch = ChannelName::new("presence-room.1").unwrap();
        let tag = |name: &str| {
            let start = name.find('{').unwrap();
            let end = start + name[start..].find('}').unwrap();
            name[start + 1..end].to_owned()
        };
        for name in [
            keys.channel("7", &ch),
            keys.history("7", &ch),
            keys.epoch("7", &ch),
            keys.members("7", &ch),
            keys.member_sockets("7", &ch),
            keys.node_members("7", &ch, "12"),
        ] {
            assert_eq!(tag(&name), "7:presence-room.1", "{name}");
        }
        assert_eq!(tag(&keys.node_subs("12")), "12");
        assert_eq!(tag(&keys.node_presence("12")), "12");
    }

    #[test]
    fn parsing_takes_apart_only_what_the_builders_make() {
        let keys = KeySpace::new("t9");
        let ch = ChannelName::new("private-a").unwrap();
        assert_eq!(
            keys.parse_history(&keys.history("1", &ch)),
            Some(("1", ch.clone()))
        );
        assert_eq!(
            keys.parse_channel(&keys.channel("1", &ch)),
            Some(("1", ch.clone()))
        );
        assert_eq!(
            keys.parse_epoch(&keys.epoch("1", &ch)),
            Some(("1", ch.clone()))
        );
        for not_history in [
            keys.channel("1", &ch),
            keys.epoch("1", &ch),
            keys.members("1", &ch),
            KeySpace::DEFAULT.history("1", &ch),
            "t9:{:a}:hist".into(),
            "t9:{1:}:hist".into(),
            "t9:{1:a:b}:hist".into(),
            "t9:{@app@:a}:hist".into(),
            "t9:{1:a}:histx".into(),
            "t9:{1:a}:hist:x".into(),
            "t9:1:hist:a".into(),
            "victim:orders".into(),
        ] {
            assert_eq!(keys.parse_history(&not_history), None, "{not_history}");
        }
    }
}
