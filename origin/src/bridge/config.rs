//! The bridge's settings: [`BridgeSettings`] as `pushwire bridge` takes them,
//! checked into the [`BridgeConfig`] the server runs with.

use std::net::{IpAddr, SocketAddr};

use pushwire_shared::settings::{Bounds, SettingError};

use super::DEFAULT_ALLOWED;
use crate::http_server::{
    ConnectionLimits, DEFAULT_BODY_READ_TIMEOUT_MS, DEFAULT_HEADER_READ_TIMEOUT_MS,
    DEFAULT_MAX_CONNECTIONS_PER_IP,
};
use crate::redis_connection::InvalidRedisUrl;
use crate::redis_connection::RedisTarget;
use crate::telemetry::LogFormat;

/// The bounds of the bridge's request body cap: one publish of an event at
/// the trigger API's own largest cap fits, and no request can make the bridge
/// buffer more than 64 MiB.
const MAX_REQUEST_BYTES_BOUNDS: Bounds = Bounds {
    setting: "max_request_bytes",
    min: 1024,
    max: 64 * 1024 * 1024,
};

/// The shortest bearer token the bridge accepts.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

/// `pushwire bridge` flags; each can also come from its environment variable.
#[derive(clap::Args)]
pub(crate) struct BridgeSettings {
    /// Address to listen on.
    #[arg(long, env = "PUSHWIRE_BRIDGE_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, env = "PUSHWIRE_BRIDGE_PORT", default_value_t = 8079)]
    pub port: u16,
    /// Redis URL, redis+sentinel://host:port[,host:port…]/master_name, or
    /// redis+cluster://host:port[,host:port…].
    #[arg(
        long = "redis",
        env = "PUSHWIRE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Bearer token clients must present (required, at least 16 characters).
    #[arg(long, env = "PUSHWIRE_BRIDGE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Allowed commands, comma-separated [default: PING,PUBLISH,EVAL,EVALSHA,
    /// ZRANGEBYSCORE,HGET,HGETALL,HLEN]; EVAL and EVALSHA run only pushwire's
    /// publish script (EVAL allows EVALSHA too), the reads only on `pushwire:` keys.
    #[arg(long, env = "PUSHWIRE_BRIDGE_ALLOW", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Request body cap in bytes.
    #[arg(long, env = "PUSHWIRE_BRIDGE_MAX_REQUEST_BYTES", default_value_t = 1024 * 1024)]
    pub max_request_bytes: usize,
    /// How long a client may take to send a request's head, and how long a
    /// kept-alive connection may sit idle, in ms.
    #[arg(long, env = "PUSHWIRE_BRIDGE_HEADER_READ_TIMEOUT_MS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT_MS)]
    pub header_read_timeout_ms: u64,
    /// How long a request body may take to arrive once its head has, in ms;
    /// slower ones get 408.
    #[arg(long, env = "PUSHWIRE_BRIDGE_BODY_READ_TIMEOUT_MS", default_value_t = DEFAULT_BODY_READ_TIMEOUT_MS)]
    pub body_read_timeout_ms: u64,
    /// Open connections one client address (an IPv6 /64) may hold; 0 = no cap.
    #[arg(long, env = "PUSHWIRE_BRIDGE_MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: u64,
    /// Log line format: `text` for people, `json` (one object per line) for a
    /// log aggregator.
    #[arg(long, env = "PUSHWIRE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl std::fmt::Debug for BridgeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("redis_url", &self.redis_url)
            .field("token", &"<redacted>")
            .field("allow", &self.allow)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("header_read_timeout_ms", &self.header_read_timeout_ms)
            .field("body_read_timeout_ms", &self.body_read_timeout_ms)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// Why the bridge's settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BridgeConfigError {
    /// The token is too easy to guess.
    #[error("--token / PUSHWIRE_BRIDGE_TOKEN must be at least {MIN_TOKEN_LEN} characters")]
    TokenTooShort,
    /// A connection limit is out of its bounds.
    #[error("{setting}: {error}")]
    OutOfRange {
        /// Its flag and variable.
        setting: String,
        /// The bound it breaks.
        error: SettingError,
    },
    /// The Redis URL does not parse.
    #[error("--redis / PUSHWIRE_REDIS_URL: {0}")]
    RedisUrl(#[from] InvalidRedisUrl),
}

/// The bridge's settings.
#[derive(Clone)]
pub(crate) struct BridgeConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// The Redis server, or the sentinels naming it (its URL checked).
    pub redis: RedisTarget,
    /// The bearer token clients must send.
    pub token: String,
    /// Allowed command names, upper-case.
    pub allowed: Vec<String>,
    /// Request body cap in bytes.
    pub max_request_bytes: usize,
    /// Deadlines and the per-address cap of every connection.
    pub connections: ConnectionLimits,
}

impl std::fmt::Debug for BridgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeConfig")
            .field("addr", &self.addr)
            .field("redis", &"<client>")
            .field("token", &"<redacted>")
            .field("allowed", &self.allowed)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("connections", &self.connections)
            .finish()
    }
}

impl BridgeSettings {
    /// Checks the settings; an empty allow-list means [`DEFAULT_ALLOWED`].
    pub(crate) fn validate(self) -> Result<BridgeConfig, BridgeConfigError> {
        if self.token.len() < MIN_TOKEN_LEN {
            return Err(BridgeConfigError::TokenTooShort);
        }
        let redis = RedisTarget::parse(&self.redis_url)?;
        let allowed = if self.allow.is_empty() {
            DEFAULT_ALLOWED.iter().map(|c| c.to_string()).collect()
        } else {
            self.allow
                .iter()
                .map(|c| c.trim().to_ascii_uppercase())
                .filter(|c| !c.is_empty())
                .collect()
        };
        let connections = ConnectionLimits::checked(
            self.header_read_timeout_ms,
            self.body_read_timeout_ms,
            self.max_connections_per_ip,
        )
        .map_err(|error| {
            // Each bound names the setting by its field.
            let (SettingError::TooSmall { setting, .. } | SettingError::TooLarge { setting, .. }) =
                error;
            BridgeConfigError::OutOfRange {
                setting: crate::config::flag_of::<Self>(setting),
                error,
            }
        })?;
        let max_request_bytes = MAX_REQUEST_BYTES_BOUNDS
            .check(self.max_request_bytes as u64)
            .map_err(|error| BridgeConfigError::OutOfRange {
                setting: crate::config::flag_of::<Self>("max_request_bytes"),
                error,
            })? as usize;
        Ok(BridgeConfig {
            connections,
            addr: SocketAddr::new(self.host, self.port),
            redis,
            token: self.token,
            allowed,
            max_request_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(token: &str, allow: &[&str]) -> BridgeSettings {
        BridgeSettings {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8079,
            redis_url: "redis://127.0.0.1:6379".into(),
            token: token.into(),
            allow: allow.iter().map(|c| c.to_string()).collect(),
            max_request_bytes: 4096,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: DEFAULT_BODY_READ_TIMEOUT_MS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            log_format: LogFormat::Text,
        }
    }

    #[test]
    fn the_body_cap_is_bounded_and_named() {
        let mut tiny = settings("0123456789abcdef", &[]);
        tiny.max_request_bytes = 10;
        let err = tiny.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "--max-request-bytes / PUSHWIRE_BRIDGE_MAX_REQUEST_BYTES: max_request_bytes must be at least 1024, not 10"
        );
        let mut huge = settings("0123456789abcdef", &[]);
        huge.max_request_bytes = 1 << 40;
        assert!(huge.validate().is_err());
    }

    #[test]
    fn short_tokens_are_refused_by_name() {
        let err = settings("short", &[]).validate().unwrap_err();
        assert_eq!(err, BridgeConfigError::TokenTooShort);
        assert!(err.to_string().contains("PUSHWIRE_BRIDGE_TOKEN"));
        assert!(!format!("{:?}", settings("a-secret-token-value", &[])).contains("a-secret"));
    }

    #[test]
    fn the_allow_list_defaults_and_is_normalised() {
        let config = settings("0123456789abcdef", &[]).validate().unwrap();
        assert_eq!(config.allowed, DEFAULT_ALLOWED);
        assert_eq!(config.addr.to_string(), "127.0.0.1:8079");
        let config = settings("0123456789abcdef", &[" publish", "", "ping "])
            .validate()
            .unwrap();
        assert_eq!(config.allowed, ["PUBLISH", "PING"]);
    }

    #[test]
    fn a_connection_limit_out_of_bounds_is_refused_by_name() {
        let mut bad = settings("0123456789abcdef", &[]);
        bad.body_read_timeout_ms = 1;
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "--body-read-timeout-ms / PUSHWIRE_BRIDGE_BODY_READ_TIMEOUT_MS: body_read_timeout_ms must be at least 100, not 1"
        );
    }

    #[test]
    fn a_redis_url_that_does_not_parse_is_refused_by_name() {
        let mut bad = settings("0123456789abcdef", &[]);
        bad.redis_url = "redis://127.0.0.1:notaport".into();
        let err = bad.validate().unwrap_err();
        assert!(matches!(err, BridgeConfigError::RedisUrl(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("--redis / PUSHWIRE_REDIS_URL: not a Redis URL"),
            "{err}"
        );
    }
}
