//! Channel names: `^[-a-zA-Z0-9_=@,.;]{1,200}$`, Pusher's rule, and the user
//! channels `#server-to-user-<id>` that only the server joins (see
//! [`crate::user_auth`]).

use std::fmt;

/// The longest channel name accepted, in bytes.
pub const MAX_CHANNEL_NAME_LEN: usize = 200;

/// The prefix of a user's channel: `#server-to-user-<user id>`. No other
/// name may hold `#`, so no client-chosen channel can look like one.
pub const USER_CHANNEL_PREFIX: &str = "#server-to-user-";

/// A channel name, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(String);

/// The prefix of end-to-end encrypted channels, a kind of private channel.
const ENCRYPTED_PREFIX: &str = "private-encrypted-";

/// What kind of channel a name denotes, from its prefix.
///
/// End-to-end encrypted channels (`private-encrypted-*`) are [`ChannelKind::Private`]:
/// they are authorized, counted and queried exactly like private channels, and
/// differ only in refusing client events, which [`ChannelName::is_encrypted`]
/// tells. A kind of their own would make every rule that holds for private
/// channels name them twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// Anyone may subscribe.
    Public,
    /// `private-*` (`private-encrypted-*` included): subscribing needs an
    /// auth signature from the app's backend.
    Private,
    /// `presence-*`: private, plus a member list.
    Presence,
}

/// Why a string is not a channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    /// The name is empty.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than [`MAX_CHANNEL_NAME_LEN`] bytes.
    #[error("channel name is {0} bytes long; the limit is 200")]
    TooLong(usize),
    /// The name contains a character outside `[-a-zA-Z0-9_=@,.;]`.
    #[error("channel name {name:?} contains {bad:?}; allowed are letters, digits and -_=@,.;")]
    InvalidChar {
        /// The offending name.
        name: String,
        /// The first character not allowed.
        bad: char,
    },
}

impl ChannelName {
    /// Validates `name`.
    ///
    /// ```
    /// use pushwire_shared::ChannelName;
    /// assert!(ChannelName::new("ticker-BTC").is_ok());
    /// assert!(ChannelName::new("has space").is_err());
    /// ```
    pub fn new(name: &str) -> Result<Self, ChannelNameError> {
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        // A user channel is the prefix and a name's characters (a user id).
        let rest = match name.strip_prefix(USER_CHANNEL_PREFIX) {
            Some("") => return Err(ChannelNameError::Empty),
            Some(id) => id,
            None => name,
        };
        if let Some(bad) = rest.chars().find(|&c| !is_channel_char(c)) {
            return Err(ChannelNameError::InvalidChar {
                name: truncate(name, 64),
                bad,
            });
        }
        if name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(ChannelNameError::TooLong(name.len()));
        }
        Ok(ChannelName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user id of a user channel (`#server-to-user-<id>`), `None` for
    /// any other channel. Clients cannot subscribe to a user channel: a
    /// connection signed in as that user is on it.
    ///
    /// ```
    /// use pushwire_shared::ChannelName;
    /// assert_eq!(ChannelName::new("#server-to-user-42").unwrap().user_id(), Some("42"));
    /// assert_eq!(ChannelName::new("server-to-user-42").unwrap().user_id(), None);
    /// ```
    pub fn user_id(&self) -> Option<&str> {
        self.0.strip_prefix(USER_CHANNEL_PREFIX)
    }

    /// The channel's kind, from its prefix.
    ///
    /// ```
    /// use pushwire_shared::{ChannelKind, ChannelName};
    /// assert_eq!(ChannelName::new("presence-room").unwrap().kind(), ChannelKind::Presence);
    /// ```
    pub fn kind(&self) -> ChannelKind {
        if self.0.starts_with("presence-") {
            ChannelKind::Presence
        } else if self.0.starts_with("private-") {
            ChannelKind::Private
        } else {
            ChannelKind::Public
        }
    }

    /// Whether this is an end-to-end encrypted channel (`private-encrypted-*`):
    /// the app's backend encrypts every event's `data` for the channel's
    /// subscribers, so the server relays it untouched and refuses client
    /// events, which it could not let anyone check.
    ///
    /// ```
    /// use pushwire_shared::{ChannelKind, ChannelName};
    /// let channel = ChannelName::new("private-encrypted-orders").unwrap();
    /// assert!(channel.is_encrypted());
    /// assert_eq!(channel.kind(), ChannelKind::Private);
    /// assert!(!ChannelName::new("private-orders").unwrap().is_encrypted());
    /// ```
    pub fn is_encrypted(&self) -> bool {
        self.0.starts_with(ENCRYPTED_PREFIX)
    }

    /// Whether this is a cache channel (`cache-*`, `private-cache-*`,
    /// `private-encrypted-cache-*`, `presence-cache-*`): a subscriber gets the
    /// channel's last event, or a cache miss, as soon as it is subscribed.
    ///
    /// ```
    /// use pushwire_shared::ChannelName;
    /// assert!(ChannelName::new("private-cache-prices").unwrap().is_cache());
    /// assert!(ChannelName::new("private-encrypted-cache-prices").unwrap().is_cache());
    /// assert!(!ChannelName::new("private-prices").unwrap().is_cache());
    /// ```
    pub fn is_cache(&self) -> bool {
        let rest = self
            .0
            .strip_prefix(ENCRYPTED_PREFIX)
            .or_else(|| self.0.strip_prefix("presence-"))
            .or_else(|| self.0.strip_prefix("private-"))
            .unwrap_or(&self.0);
        rest.starts_with("cache-")
    }
}

fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_=@,.;".contains(c)
}

/// Shortens user input quoted back in an error message.
pub(crate) fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for ChannelName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ChannelName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ChannelName::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_channels_keep_their_kind() {
        let cases = [
            ("cache-x", true, ChannelKind::Public),
            ("private-cache-x", true, ChannelKind::Private),
            ("presence-cache-x", true, ChannelKind::Presence),
            ("cachex", false, ChannelKind::Public),
            ("x-cache-y", false, ChannelKind::Public),
            ("private-encrypted-cache-x", true, ChannelKind::Private),
            ("private-encrypted-x", false, ChannelKind::Private),
            ("private-encryptedcache-x", false, ChannelKind::Private),
        ];
        for (name, cache, kind) in cases {
            let channel = ChannelName::new(name).unwrap();
            assert_eq!(
                (channel.is_cache(), channel.kind()),
                (cache, kind),
                "{name}"
            );
        }
    }

    #[test]
    fn encrypted_channels_are_private_ones() {
        let cases = [
            ("private-encrypted-x", true, ChannelKind::Private),
            ("private-encrypted-cache-x", true, ChannelKind::Private),
            // pusher-js decides by the prefix alone, and so must the server.
            ("private-encrypted-", true, ChannelKind::Private),
            ("private-encryptedx", false, ChannelKind::Private),
            ("private-x", false, ChannelKind::Private),
            ("presence-encrypted-x", false, ChannelKind::Presence),
            ("encrypted-x", false, ChannelKind::Public),
        ];
        for (name, encrypted, kind) in cases {
            let channel = ChannelName::new(name).unwrap();
            assert_eq!(
                (channel.is_encrypted(), channel.kind()),
                (encrypted, kind),
                "{name}"
            );
        }
    }

    #[test]
    fn accepts_every_allowed_character() {
        assert!(ChannelName::new("aZ09-_=@,.;").is_ok());
        assert!(ChannelName::new(&"x".repeat(200)).is_ok());
    }

    #[test]
    fn rejects_with_a_reason() {
        assert_eq!(ChannelName::new(""), Err(ChannelNameError::Empty));
        assert_eq!(
            ChannelName::new(&"x".repeat(201)),
            Err(ChannelNameError::TooLong(201))
        );
        for bad in [
            "a b",
            "a:b",
            "a/b",
            "é",
            "a\nb",
            "a#b",
            "a*",
            "#server-to-user-a#b",
            "#server-to-usera",
            "#x",
        ] {
            assert!(
                matches!(
                    ChannelName::new(bad),
                    Err(ChannelNameError::InvalidChar { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn user_channels() {
        let channel = ChannelName::new("#server-to-user-alice@x.y").unwrap();
        assert_eq!(channel.user_id(), Some("alice@x.y"));
        assert_eq!(
            ChannelName::new("#server-to-user-"),
            Err(ChannelNameError::Empty)
        );
        assert_eq!(ChannelName::new("private-a").unwrap().user_id(), None);
    }

    #[test]
    fn kind_follows_prefix() {
        let kind = |n: &str| ChannelName::new(n).unwrap().kind();
        assert_eq!(kind("private-a"), ChannelKind::Private);
        assert_eq!(kind("private-encrypted-a"), ChannelKind::Private);
        assert_eq!(kind("presence-a"), ChannelKind::Presence);
        assert_eq!(kind("privatea"), ChannelKind::Public);
    }
}
