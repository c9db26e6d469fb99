//! `ConnectionLimits`: how long a client may take, and how many connections it
//! may hold, on any of pushwire's HTTP servers.

use std::time::Duration;

use pushwire_shared::settings::{Bounds, SettingError};

/// The default header-read (and idle keep-alive) timeout, in ms.
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// The default body-read timeout, in ms.
pub(crate) const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 10_000;
/// The default cap on open connections per client address.
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_IP: u64 = 1_000;

/// The bounds of both read timeouts, in ms: long enough for a slow mobile
/// link, short enough that a held connection is given back.
pub(crate) const READ_TIMEOUT_BOUNDS: [Bounds; 2] = [
    Bounds {
        setting: "header_read_timeout_ms",
        min: 100,
        max: 600_000,
    },
    Bounds {
        setting: "body_read_timeout_ms",
        min: 100,
        max: 600_000,
    },
];

/// The bounds of the per-address connection cap (`0`: no cap).
pub(crate) const MAX_CONNECTIONS_PER_IP_BOUNDS: Bounds = Bounds {
    setting: "max_connections_per_ip",
    min: 0,
    max: 10_000_000,
};

/// What an HTTP server allows each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ConnectionLimits {
    /// How long a client may take to send a request's head; also how long a
    /// kept-alive connection may sit idle before its next request, in ms.
    pub header_read_timeout_ms: u64,
    /// How long a request's body may take to arrive once its head has, in ms.
    pub body_read_timeout_ms: u64,
    /// The most connections one client address (an IPv6 /64) may hold open;
    /// `0` for no cap.
    pub max_connections_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: DEFAULT_BODY_READ_TIMEOUT_MS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP as usize,
        }
    }
}

impl ConnectionLimits {
    /// The limits, each checked against its bounds.
    pub(crate) fn checked(
        header_read_timeout_ms: u64,
        body_read_timeout_ms: u64,
        max_connections_per_ip: u64,
    ) -> Result<Self, SettingError> {
        let [header, body] = READ_TIMEOUT_BOUNDS;
        Ok(ConnectionLimits {
            header_read_timeout_ms: header.check(header_read_timeout_ms)?,
            body_read_timeout_ms: body.check(body_read_timeout_ms)?,
            max_connections_per_ip: MAX_CONNECTIONS_PER_IP_BOUNDS.check(max_connections_per_ip)?
                as usize,
        })
    }

    /// The header-read timeout.
    pub(crate) fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The body-read timeout.
    pub(crate) fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// The limits for one of `processes` processes sharing one listener in
    /// turn: each holds its share of the per-address cap (rounded up).
    /// Connections are handed out round-robin, so one source's connections
    /// spread evenly and the shares fill together.
    pub(crate) fn share_of(self, processes: usize) -> Self {
        ConnectionLimits {
            max_connections_per_ip: self.max_connections_per_ip.div_ceil(processes.max(1)),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_and_shared() {
        let limits = ConnectionLimits::checked(10_000, 5_000, 1_001).unwrap();
        assert_eq!(limits.share_of(2).max_connections_per_ip, 501);
        assert_eq!(limits.share_of(0).max_connections_per_ip, 1_001);
        assert_eq!(
            ConnectionLimits::checked(10_000, 5_000, 0)
                .unwrap()
                .share_of(4)
                .max_connections_per_ip,
            0
        );
        let err = ConnectionLimits::checked(10, 5_000, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "header_read_timeout_ms must be at least 100, not 10"
        );
        assert!(ConnectionLimits::checked(1_000, 600_001, 1).is_err());
    }
}
