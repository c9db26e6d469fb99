//! Pusher-style socket ids: `^\d+\.\d+$`.
//!
//! Pusher server SDKs validate this shape before they sign a private-channel
//! subscription or exclude a sender, so pushwire hands out ids of exactly this form.

use std::fmt;
use std::str::FromStr;

/// A socket id such as `123.456`, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(String);

/// Why a string is not a socket id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid socket_id {0:?}: expected digits, a dot, digits (e.g. \"123.456\")")]
pub struct SocketIdError(pub String);

impl SocketId {
    /// Builds a socket id from its two numeric halves.
    ///
    /// ```
    /// use pushwire_shared::SocketId;
    /// assert_eq!(SocketId::from_parts(12, 345).as_str(), "12.345");
    /// ```
    pub fn from_parts(node: u64, counter: u64) -> Self {
        SocketId(format!("{node}.{counter}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SocketId {
    type Err = SocketIdError;

    /// ```
    /// use pushwire_shared::SocketId;
    /// assert!("123.456".parse::<SocketId>().is_ok());
    /// assert!("123".parse::<SocketId>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() <= 64
            && s.split_once('.').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            });
        if valid {
            Ok(SocketId(s.to_owned()))
        } else {
            Err(SocketIdError(s.to_owned()))
        }
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for SocketId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SocketId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_ids() {
        for bad in ["", ".", "1.", ".1", "1.2.3", "a.1", "1.-2", " 1.2", "1,2"] {
            assert!(bad.parse::<SocketId>().is_err(), "{bad:?} accepted");
        }
        assert!(format!("{}.1", "9".repeat(70)).parse::<SocketId>().is_err());
    }
}
