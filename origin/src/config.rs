//! `ServeConfig`: everything `pushwire serve` needs, resolved in one place.
//!
//! Precedence: command-line flags, then environment variables, then the JSON
//! config file, then defaults. Flags and variables are merged by the CLI parser
//! (each flag names its variable); this module adds the file and the defaults.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use pushwire_shared::history::HistoryPolicy;
use pushwire_shared::{AppList, AppsParseError};

use crate::worker::{AllowedOrigins, AllowedOriginsError};

/// The app used when none is configured: for development only.
pub const DEV_APPS: &str = "1000001:app-key:app-secret";
/// The default listening port.
pub const DEFAULT_PORT: u16 = 3000;
/// Socket.IO's default heartbeat interval.
pub const DEFAULT_PING_INTERVAL_MS: u64 = 25_000;
/// Socket.IO's default heartbeat timeout.
pub const DEFAULT_PING_TIMEOUT_MS: u64 = 20_000;
/// The default request body cap of the trigger API.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 256 * 1024;

/// The most history events a channel may keep (one recovery read returns at most this many).
pub const MAX_HISTORY_EVENTS: u32 = crate::broker::MAX_HISTORY_READ as u32 - 1;

/// The most worker processes `pushwire serve` starts.
pub const MAX_WORKERS: usize = 256;

/// One worker per CPU.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The resolved configuration of one origin (the master sends it to each worker).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServeConfig {
    /// Address to listen on.
    pub host: IpAddr,
    /// Port to listen on (0: any free port, logged at start).
    pub port: u16,
    /// Hosted apps.
    pub apps: AppList,
    /// Redis URL; `None` runs the embedded broker.
    pub redis_url: Option<String>,
    /// Trigger API request body cap, in bytes.
    pub max_request_bytes: usize,
    /// Worker processes to run.
    pub workers: usize,
    /// Whether `/` serves the live demo page.
    pub demo: bool,
    /// Engine.IO heartbeat: how often the server pings each client, in ms.
    pub ping_interval_ms: u64,
    /// How long a client may take to answer a ping before it is disconnected, in ms.
    /// A client whose bounded send buffer is still full when a ping is due is
    /// disconnected at once: this is the slow-consumer policy.
    pub ping_timeout_ms: u64,
    /// Channel history retention (what `subscribe` with `since` can recover).
    /// Publishers apply it, so the edge must be given the same values.
    pub history: HistoryPolicy,
    /// Web origins whose browser pages may connect (CORS); default any.
    pub allowed_origins: AllowedOrigins,
    /// Whether the development app was filled in because none was configured.
    pub uses_dev_app: bool,
}

/// Settings given on the command line or in the environment; `None` = not given.
#[derive(Debug, Clone, Default)]
pub struct ServeOverrides {
    /// `--host` / `PUSHWIRE_HOST`.
    pub host: Option<IpAddr>,
    /// `--port` / `PUSHWIRE_PORT`.
    pub port: Option<u16>,
    /// `--apps` / `PUSHWIRE_APPS`, as `id:key:secret[,…]`.
    pub apps: Option<String>,
    /// `--redis` / `PUSHWIRE_REDIS_URL`.
    pub redis_url: Option<String>,
    /// `--max-request-bytes` / `PUSHWIRE_MAX_REQUEST_BYTES`.
    pub max_request_bytes: Option<usize>,
    /// `--workers` / `PUSHWIRE_WORKERS`.
    pub workers: Option<usize>,
    /// `--demo` / `PUSHWIRE_DEMO`.
    pub demo: Option<bool>,
    /// `--ping-interval-ms` / `PUSHWIRE_PING_INTERVAL_MS`.
    pub ping_interval_ms: Option<u64>,
    /// `--ping-timeout-ms` / `PUSHWIRE_PING_TIMEOUT_MS`.
    pub ping_timeout_ms: Option<u64>,
    /// `--history-max-events` / `PUSHWIRE_HISTORY_MAX_EVENTS`.
    pub history_max_events: Option<u32>,
    /// `--history-max-age-secs` / `PUSHWIRE_HISTORY_MAX_AGE_SECS`.
    pub history_max_age_secs: Option<u32>,
    /// `--allowed-origins` / `PUSHWIRE_ALLOWED_ORIGINS`, comma-separated.
    pub allowed_origins: Option<String>,
    /// `--config` / `PUSHWIRE_CONFIG`: the JSON config file.
    pub config_file: Option<PathBuf>,
}

/// The JSON config file. Every field is optional.
///
/// ```json
/// {
///   "host": "0.0.0.0",
///   "port": 3000,
///   "redis_url": "redis://127.0.0.1:6379",
///   "max_request_bytes": 262144,
///   "workers": 4,
///   "demo": false,
///   "history": {"max_events": 100, "max_age_secs": 300},
///   "allowed_origins": ["https://app.example.com"],
///   "apps": [{"id": "1000001", "key": "app-key", "secret": "app-secret",
///             "limits": {"max_data_bytes": 10240}}]
/// }
/// ```
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    host: Option<IpAddr>,
    port: Option<u16>,
    redis_url: Option<String>,
    max_request_bytes: Option<usize>,
    workers: Option<usize>,
    demo: Option<bool>,
    ping_interval_ms: Option<u64>,
    ping_timeout_ms: Option<u64>,
    history: Option<HistoryPolicy>,
    allowed_origins: Option<AllowedOrigins>,
    apps: Option<AppList>,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("invalid config file {path}: {source}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The app list is not valid.
    #[error("invalid apps: {0}")]
    Apps(#[from] AppsParseError),
    /// The allowed origins are not valid.
    #[error(transparent)]
    AllowedOrigins(#[from] AllowedOriginsError),
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

impl ConfigFile {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ConfigError::ParseFile {
            path: path.to_owned(),
            source,
        })
    }
}

impl ServeConfig {
    /// Resolves flags/env over the config file (if any) over defaults.
    pub fn resolve(overrides: ServeOverrides) -> Result<Self, ConfigError> {
        let file = match &overrides.config_file {
            Some(path) => ConfigFile::load(path)?,
            None => ConfigFile::default(),
        };
        Self::merge(overrides, file)
    }

    /// The pure part of [`ServeConfig::resolve`].
    pub fn merge(overrides: ServeOverrides, file: ConfigFile) -> Result<Self, ConfigError> {
        let (apps, uses_dev_app) = match (overrides.apps, file.apps) {
            (Some(list), _) => (AppList::parse(&list)?, false),
            (None, Some(apps)) => (apps, false),
            (None, None) => (AppList::parse(DEV_APPS)?, true),
        };
        let max_request_bytes = overrides
            .max_request_bytes
            .or(file.max_request_bytes)
            .unwrap_or(DEFAULT_MAX_REQUEST_BYTES);
        if max_request_bytes < 1024 {
            return Err(ConfigError::Invalid(format!(
                "max_request_bytes {max_request_bytes} is too small (minimum 1024)"
            )));
        }
        let workers = overrides
            .workers
            .or(file.workers)
            .unwrap_or_else(default_workers);
        if !(1..=MAX_WORKERS).contains(&workers) {
            return Err(ConfigError::Invalid(format!(
                "workers must be between 1 and {MAX_WORKERS}, not {workers}"
            )));
        }
        let allowed_origins = match overrides.allowed_origins {
            Some(list) => AllowedOrigins::parse(&list)?,
            None => file.allowed_origins.unwrap_or_default(),
        };
        Ok(ServeConfig {
            host: overrides
                .host
                .or(file.host)
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port: overrides.port.or(file.port).unwrap_or(DEFAULT_PORT),
            apps,
            redis_url: overrides
                .redis_url
                .or(file.redis_url)
                .filter(|u| !u.is_empty()),
            max_request_bytes,
            workers,
            demo: overrides.demo.or(file.demo).unwrap_or(true),
            ping_interval_ms: overrides
                .ping_interval_ms
                .or(file.ping_interval_ms)
                .unwrap_or(DEFAULT_PING_INTERVAL_MS)
                .max(100),
            ping_timeout_ms: overrides
                .ping_timeout_ms
                .or(file.ping_timeout_ms)
                .unwrap_or(DEFAULT_PING_TIMEOUT_MS)
                .max(100),
            history: {
                let file = file.history.unwrap_or_default();
                HistoryPolicy {
                    max_events: overrides
                        .history_max_events
                        .unwrap_or(file.max_events)
                        .clamp(1, MAX_HISTORY_EVENTS),
                    max_age_secs: overrides.history_max_age_secs.unwrap_or(file.max_age_secs),
                }
            },
            allowed_origins,
            uses_dev_app,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str) -> ConfigFile {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_use_the_dev_app_and_embedded_broker() {
        let c = ServeConfig::merge(ServeOverrides::default(), ConfigFile::default()).unwrap();
        assert!(c.uses_dev_app);
        assert_eq!(c.apps.single().unwrap().id, "1000001");
        assert_eq!(c.port, DEFAULT_PORT);
        assert!(c.redis_url.is_none());
        assert_eq!(c.history, HistoryPolicy::default());
    }

    #[test]
    fn history_settings_merge_per_field() {
        let f = file(r#"{"history": {"max_age_secs": 60}}"#);
        let o = ServeOverrides {
            history_max_events: Some(1_000_000),
            ..Default::default()
        };
        let c = ServeConfig::merge(o, f).unwrap();
        assert_eq!(
            (c.history.max_events, c.history.max_age_secs),
            (MAX_HISTORY_EVENTS, 60)
        );
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = file(
            r#"{"port": 7000, "redis_url": "redis://file", "apps": [{"id": "9", "key": "k", "secret": "s", "limits": {"max_data_bytes": 5}}]}"#,
        );
        let c = ServeConfig::merge(
            ServeOverrides {
                port: Some(8000),
                ..Default::default()
            },
            f,
        )
        .unwrap();
        assert_eq!(c.port, 8000);
        assert_eq!(c.redis_url.as_deref(), Some("redis://file"));
        let app = c.apps.single().unwrap();
        assert_eq!((app.id.as_str(), app.limits.max_data_bytes), ("9", 5));
        assert_eq!(app.limits.max_batch_events, 10);
        assert!(!c.uses_dev_app);
    }

    #[test]
    fn the_example_deploy_config_is_valid() {
        let example: ConfigFile =
            serde_json::from_str(include_str!("../../deploy/pushwire.json")).unwrap();
        let c = ServeConfig::merge(ServeOverrides::default(), example).unwrap();
        assert!(!c.demo && !c.uses_dev_app && c.redis_url.is_some());
    }

    #[test]
    fn bad_settings_are_reported() {
        assert!(serde_json::from_str::<ConfigFile>(r#"{"prot": 1}"#).is_err());
        let o = ServeOverrides {
            apps: Some("1:k".into()),
            ..Default::default()
        };
        assert!(matches!(
            ServeConfig::merge(o, ConfigFile::default()),
            Err(ConfigError::Apps(_))
        ));
        let o = ServeOverrides {
            max_request_bytes: Some(10),
            ..Default::default()
        };
        assert!(matches!(
            ServeConfig::merge(o, ConfigFile::default()),
            Err(ConfigError::Invalid(_))
        ));
        let o = ServeOverrides {
            allowed_origins: Some("app.example.com".into()),
            ..Default::default()
        };
        assert!(matches!(
            ServeConfig::merge(o, ConfigFile::default()),
            Err(ConfigError::AllowedOrigins(_))
        ));
    }

    #[test]
    fn allowed_origins_default_to_any_and_flags_win_over_the_file() {
        let c = ServeConfig::merge(ServeOverrides::default(), ConfigFile::default()).unwrap();
        assert_eq!(c.allowed_origins, AllowedOrigins::Any);
        let f = file(r#"{"allowed_origins": ["https://a.example"]}"#);
        let c = ServeConfig::merge(ServeOverrides::default(), f).unwrap();
        assert!(c.allowed_origins.allows("https://a.example"));
        assert!(!c.allowed_origins.allows("https://b.example"));
        let f = file(r#"{"allowed_origins": ["https://a.example"]}"#);
        let o = ServeOverrides {
            allowed_origins: Some("*".into()),
            ..Default::default()
        };
        let c = ServeConfig::merge(o, f).unwrap();
        assert_eq!(c.allowed_origins, AllowedOrigins::Any);
        assert!(serde_json::from_str::<ConfigFile>(r#"{"allowed_origins": ["a/b"]}"#).is_err());
    }
}
