//! Every Redis key and pub/sub channel pushwire uses, built from one prefix.
//!
//! A [`KeySpace`] is a prefix and the builders of every name under it;
//! [`KeySpace::DEFAULT`] is the one pushwire runs with (`pushwire:v1`, the
//! version being [`ENVELOPE_VERSION`](crate::envelope::ENVELOPE_VERSION)).
//! `PROTOCOL.md` documents each key; this module is the only place that spells
//! them, so a test may build every name under a prefix of its own.
//!
//! Scripts that learn an app and a channel only while they run (the reaper
//! walking a dead node's members) get a template instead of a key: the same
//! builder called with the [`APP_SLOT`] and [`channel_slot`] placeholders
//! ([`template`]), filled in by the script.

use std::borrow::Cow;

use crate::channel::ChannelName;

/// A placeholder a script replaces by an app id in a [`template`]. Slots are
/// `@name@`: `@` may appear in a channel name, so a channel slot is a valid
/// [`ChannelName`], but in no app id, key word or prefix pushwire writes.
pub const APP_SLOT: &str = "@app@";

/// The text of [`channel_slot`].
pub const CHANNEL_SLOT: &str = "@channel@";

/// The placeholder a script replaces by a channel name in a [`template`].
pub fn channel_slot() -> ChannelName {
    ChannelName::new(CHANNEL_SLOT).expect("the channel slot is a valid channel name")
}

/// A placeholder named `name` (`@name@`), for values a script fills in.
///
/// ```
/// assert_eq!(pushwire_shared::keys::slot("app"), pushwire_shared::keys::APP_SLOT);
/// ```
pub fn slot(name: &str) -> String {
    format!("@{name}@")
}

/// The key `build` makes for an app and a channel, with [`APP_SLOT`] and
/// [`CHANNEL_SLOT`] where they go.
///
/// ```
/// use pushwire_shared::keys::{template, KeySpace};
/// let members = template(|app, channel| KeySpace::DEFAULT.members(app, channel));
/// assert_eq!(members, "pushwire:v1:@app@:presence:@channel@");
/// ```
pub fn template(build: impl FnOnce(&str, &ChannelName) -> String) -> String {
    build(APP_SLOT, &channel_slot())
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
    /// pushwire's keys: prefix `pushwire:v1`.
    pub const DEFAULT: KeySpace = KeySpace {
        prefix: Cow::Borrowed("pushwire:v1"),
    };

    /// The keys under `prefix` (no trailing `:`; no `@`, which marks slots).
    ///
    /// ```
    /// use pushwire_shared::keys::KeySpace;
    /// assert_eq!(KeySpace::new("test-7").epoch(), "test-7:epoch");
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
    /// assert!(KeySpace::DEFAULT.owns("pushwire:v1:nodes"));
    /// assert!(!KeySpace::DEFAULT.owns("pushwire:v1"));
    /// assert!(!KeySpace::DEFAULT.owns("users:passwords"));
    /// ```
    pub fn owns(&self, key: &str) -> bool {
        key.strip_prefix(self.prefix())
            .is_some_and(|rest| rest.starts_with(':'))
    }

    fn per_channel(&self, app: &str, kind: &str, channel: &ChannelName) -> String {
        format!("{}:{app}:{kind}:{channel}", self.prefix)
    }

    fn per_node(&self, node: &str, what: &str) -> String {
        format!("{}:node:{node}:{what}", self.prefix)
    }

    /// The pub/sub channel carrying `app`'s events for `channel`:
    /// `{prefix}:{app_id}:ch:{channel}`. App ids contain no `:` and channel
    /// names cannot, so the name is unambiguous.
    ///
    /// ```
    /// use pushwire_shared::{keys::KeySpace, ChannelName};
    /// let ch = ChannelName::new("ticker-BTC").unwrap();
    /// assert_eq!(KeySpace::DEFAULT.channel("1000001", &ch), "pushwire:v1:1000001:ch:ticker-BTC");
    /// ```
    pub fn channel(&self, app: &str, channel: &ChannelName) -> String {
        self.per_channel(app, "ch", channel)
    }

    /// The stream holding `app`'s history of `channel`: `{prefix}:{app_id}:hist:{channel}`.
    ///
    /// ```
    /// use pushwire_shared::{keys::KeySpace, ChannelName};
    /// let ch = ChannelName::new("ticker-BTC").unwrap();
    /// assert_eq!(KeySpace::DEFAULT.history("1000001", &ch), "pushwire:v1:1000001:hist:ticker-BTC");
    /// ```
    pub fn history(&self, app: &str, channel: &ChannelName) -> String {
        self.per_channel(app, "hist", channel)
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
    /// assert_eq!(KeySpace::DEFAULT.parse_channel("pushwire:v1:1:hist:news"), None);
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
    /// assert_eq!(KeySpace::DEFAULT.parse_history("pushwire:v1:1:hist:a b"), None);
    /// ```
    pub fn parse_history<'k>(&self, key: &'k str) -> Option<(&'k str, ChannelName)> {
        self.parse_per_channel(key, "hist")
    }

    fn parse_per_channel<'k>(&self, key: &'k str, kind: &str) -> Option<(&'k str, ChannelName)> {
        let rest = key.strip_prefix(self.prefix())?.strip_prefix(':')?;
        let (app, rest) = rest.split_once(':')?;
        let channel = rest.strip_prefix(kind)?.strip_prefix(':')?;
        // Slots mark templates, never a real app; a channel name holds no `:`,
        // so the split above is the only one.
        if app.is_empty() || app.contains('@') {
            return None;
        }
        Some((app, ChannelName::new(channel).ok()?))
    }

    /// The string holding the current history epoch: `{prefix}:epoch`.
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// The sorted set of nodes and their last heartbeat (ms): `{prefix}:nodes`.
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// A node's socket counts, `{app}:{channel}` → count: `{prefix}:node:{node}:subs`.
    pub fn node_subs(&self, node: &str) -> String {
        self.per_node(node, "subs")
    }

    /// A node's presence sockets, `{app}:{channel}:{user_id}` → count:
    /// `{prefix}:node:{node}:presence`.
    pub fn node_presence(&self, node: &str) -> String {
        self.per_node(node, "presence")
    }

    /// A presence channel's members, user id → user_info JSON:
    /// `{prefix}:{app}:presence:{channel}`.
    pub fn members(&self, app: &str, channel: &ChannelName) -> String {
        self.per_channel(app, "presence", channel)
    }

    /// A presence channel's members' sockets cluster-wide, user id → count:
    /// `{prefix}:{app}:presence:{channel}:sockets`.
    pub fn member_sockets(&self, app: &str, channel: &ChannelName) -> String {
        format!("{}:sockets", self.members(app, channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::ENVELOPE_VERSION;

    #[test]
    fn the_default_prefix_names_the_envelope_version() {
        assert_eq!(
            KeySpace::DEFAULT.prefix(),
            format!("pushwire:v{ENVELOPE_VERSION}")
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
            keys.epoch(),
            keys.nodes(),
            keys.node_subs("4"),
            keys.node_presence("4"),
            keys.members("1", &ch),
            keys.member_sockets("1", &ch),
        ];
        assert_eq!(
            names,
            [
                "t9:1:ch:presence-a",
                "t9:1:hist:presence-a",
                "t9:epoch",
                "t9:nodes",
                "t9:node:4:subs",
                "t9:node:4:presence",
                "t9:1:presence:presence-a",
                "t9:1:presence:presence-a:sockets",
            ]
        );
        assert!(names.iter().all(|name| keys.owns(name)));
        assert!(!KeySpace::DEFAULT.owns(&names[0]));
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
        for not_history in [
            keys.channel("1", &ch),
            keys.members("1", &ch),
            KeySpace::DEFAULT.history("1", &ch),
            "t9::hist:a".into(),
            "t9:1:hist:".into(),
            "t9:1:hist:a:b".into(),
            "t9:@app@:hist:a".into(),
            "t9:1:histx:a".into(),
            "victim:orders".into(),
        ] {
            assert_eq!(keys.parse_history(&not_history), None, "{not_history}");
        }
    }

    #[test]
    fn templates_hold_the_slots_where_values_go() {
        let history = template(|app, channel| KeySpace::DEFAULT.history(app, channel));
        assert_eq!(history, "pushwire:v1:@app@:hist:@channel@");
        assert_eq!(slot("channel"), CHANNEL_SLOT);
    }
}
