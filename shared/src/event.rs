//! Event names: 1–200 bytes of UTF-8 without control characters, none of the
//! reserved names; and the names of pushwire's own events, spelled here once.

use std::fmt;

/// The longest event name accepted, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 200;

/// Prefixes no triggered event may use: pushwire's own events and Pusher's.
pub const RESERVED_PREFIXES: [&str; 3] = ["pushwire:", "pusher:", "pusher_internal:"];

/// Socket.IO's reserved event names: a client could not listen for them.
pub const SOCKET_IO_RESERVED: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Sent to a presence channel's subscribers when a user joins: `{"user_id", "user_info"}`.
pub const MEMBER_ADDED: &str = "pushwire:member_added";
/// Sent to a presence channel's subscribers when a user's last socket left: `{"user_id"}`.
pub const MEMBER_REMOVED: &str = "pushwire:member_removed";
/// Emitted by the server right after a connection is accepted: `{"socket_id": "123.456"}`.
pub const CONNECTION_ESTABLISHED: &str = "pushwire:connection_established";
/// Server → client: `{"channel"}`: the server lost the channel's history while
/// its own subscription was interrupted (Redis restarted empty), so the socket
/// may have missed events. It stays subscribed; live events continue.
pub const HISTORY_LOST: &str = "pushwire:history_lost";

/// Published on a user's channel by `POST /apps/{id}/users/{user_id}/terminate_connections`:
/// every worker closes its connections signed in as that user. Delivery acts
/// on it and never forwards it to a client as an event.
pub const TERMINATE_CONNECTIONS: &str = "pushwire:terminate_connections";
/// Server → Socket.IO client, `{"code": 4009, "message"}`: the backend
/// terminated the user's connections; the server disconnects the socket next.
pub const TERMINATED: &str = "pushwire:terminated";

/// pushwire's own events that travel in envelopes like triggered ones (a
/// trigger may not use them; [`EventName::server`] makes them). The others
/// ([`CONNECTION_ESTABLISHED`], [`HISTORY_LOST`], [`TERMINATED`]) go from a
/// server to one socket.
pub const SERVER_EVENTS: [&str; 3] = [MEMBER_ADDED, MEMBER_REMOVED, TERMINATE_CONNECTIONS];

/// Whether an envelope carrying event `name` is sent to clients: false for
/// orders to the servers ([`TERMINATE_CONNECTIONS`]), which live delivery
/// carries out and every replay of a history (recovery, catch-up) skips.
///
/// ```
/// use pushwire_shared::event::{reaches_clients, MEMBER_ADDED, TERMINATE_CONNECTIONS};
/// assert!(reaches_clients("price"));
/// assert!(reaches_clients(MEMBER_ADDED));
/// assert!(!reaches_clients(TERMINATE_CONNECTIONS));
/// ```
pub fn reaches_clients(name: &str) -> bool {
    name != TERMINATE_CONNECTIONS
}

/// A triggerable event name, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventName(String);

/// Why a string is not a triggerable event name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventNameError {
    /// The name is empty.
    #[error("event name is empty")]
    Empty,
    /// The name is longer than [`MAX_EVENT_NAME_LEN`] bytes.
    #[error("event name is {0} bytes long; the limit is 200")]
    TooLong(usize),
    /// The name holds a control character (NUL, newline, …), which no client
    /// could match and which would reach logs as is.
    #[error("event name contains the control character {0:?}")]
    ControlCharacter(char),
    /// The name is reserved by pushwire, Pusher or Socket.IO.
    #[error("event name {0:?} is reserved")]
    Reserved(String),
}

impl EventName {
    /// Validates `name`.
    ///
    /// ```
    /// use pushwire_shared::EventName;
    /// assert!(EventName::new("price").is_ok());
    /// assert!(EventName::new("pushwire:hack").is_err());
    /// assert!(EventName::new("disconnect").is_err());
    /// assert!(EventName::new("price\0").is_err());
    /// ```
    pub fn new(name: &str) -> Result<Self, EventNameError> {
        if name.is_empty() {
            return Err(EventNameError::Empty);
        }
        if name.len() > MAX_EVENT_NAME_LEN {
            return Err(EventNameError::TooLong(name.len()));
        }
        if let Some(bad) = name.chars().find(|c| c.is_control()) {
            return Err(EventNameError::ControlCharacter(bad));
        }
        if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
            || SOCKET_IO_RESERVED.contains(&name)
        {
            return Err(EventNameError::Reserved(name.to_owned()));
        }
        Ok(EventName(name.to_owned()))
    }

    /// One of pushwire's own [`SERVER_EVENTS`]; `None` for any other name.
    ///
    /// ```
    /// use pushwire_shared::EventName;
    /// assert!(EventName::server("pushwire:member_added").is_some());
    /// assert!(EventName::server("pushwire:other").is_none());
    /// ```
    pub fn server(name: &str) -> Option<Self> {
        SERVER_EVENTS
            .contains(&name)
            .then(|| EventName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for EventName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for EventName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // Envelopes carry pushwire's own events too.
        match EventName::server(&s) {
            Some(name) => Ok(name),
            None => EventName::new(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_in_bytes() {
        assert!(EventName::new(&"é".repeat(100)).is_ok());
        assert_eq!(
            EventName::new(&"é".repeat(101)),
            Err(EventNameError::TooLong(202))
        );
    }

    #[test]
    fn reserved_names_are_refused() {
        for name in SOCKET_IO_RESERVED {
            assert!(matches!(
                EventName::new(name),
                Err(EventNameError::Reserved(_))
            ));
        }
        for name in [
            "pusher:x",
            "pusher_internal:y",
            CONNECTION_ESTABLISHED,
            HISTORY_LOST,
        ] {
            assert!(matches!(
                EventName::new(name),
                Err(EventNameError::Reserved(_))
            ));
        }
        assert!(EventName::new("connected").is_ok());
        assert!(EventName::new("client-x").is_ok());
        assert_eq!(EventName::new(""), Err(EventNameError::Empty));
    }

    #[test]
    fn control_characters_are_refused() {
        for (name, bad) in [
            ("a\0b", '\0'),
            ("line\n", '\n'),
            ("\tx", '\t'),
            ("del\u{7f}", '\u{7f}'),
            ("c1\u{85}", '\u{85}'),
        ] {
            assert_eq!(
                EventName::new(name),
                Err(EventNameError::ControlCharacter(bad))
            );
        }
        assert!(EventName::new("price update é✓").is_ok());
        // Envelopes are checked the same way when read back.
        assert!(serde_json::from_str::<EventName>(r#""a\u0000b""#).is_err());
    }
}
