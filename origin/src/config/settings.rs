//! [`ServeSettings`]: every `pushwire serve` setting, defined once for the
//! command line, the environment and the config file.
//!
//! Each field is a flag (`#[arg]`, which also names its environment variable)
//! and a config file key (its serde name); its doc comment is the `--help` text.
//! `None` means "not given here", so the same struct holds what the command line
//! gave and what the file gave, and [`ServeConfig::merge`](super::ServeConfig::merge)
//! takes the first one given, then the default. Adding a setting: a field here,
//! its line in the README's configuration table, and its resolution in `merge`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use pushwire_shared::AppList;
use pushwire_shared::webhook::WebhookEndpoint;

use super::{AllowedOrigins, ConfigError};
use crate::telemetry::LogFormat;

/// The settings of `pushwire serve`, as given in one place (flags and
/// environment, or the config file); `None` = not given there.
///
/// The config file is JSON; every key is optional:
///
/// ```json
/// {
///   "host": "0.0.0.0",
///   "port": 3000,
///   "allow_dev_app": false,
///   "redis_url": "redis://127.0.0.1:6379",
///   "max_request_bytes": 262144,
///   "header_read_timeout_ms": 10000,
///   "body_read_timeout_ms": 10000,
///   "max_connections_per_ip": 1000,
///   "metrics_addr": "127.0.0.1:9464",
///   "workers": 4,
///   "demo": false,
///   "log_format": "json",
///   "history": {"max_events": 100, "max_age_secs": 300},
///   "allowed_origins": ["https://app.example.com"],
///   "apps": [{"id": "1000001", "key": "app-key", "secret": "app-secret",
///             "limits": {"max_data_bytes": 10240}}]
/// }
/// ```
#[derive(Debug, Clone, Default, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServeSettings {
    /// Address to listen on [default: 127.0.0.1 with the development app, else 0.0.0.0].
    #[arg(long, env = "PUSHWIRE_HOST")]
    pub host: Option<IpAddr>,
    /// Port to listen on; 0 picks a free one [default: 3000].
    #[arg(long, env = "PUSHWIRE_PORT")]
    pub port: Option<u16>,
    /// Apps as `id:key:secret[,id:key:secret…]` (in the config file, a list of apps
    /// with their limits) [default: the dev app 1000001:app-key:app-secret].
    #[arg(long, env = "PUSHWIRE_APPS", hide_env_values = true, value_parser = AppsParser)]
    pub apps: Option<AppList>,
    /// Serve the development app (whose secret is public) on a --host other than
    /// loopback, where anyone who can reach it can trigger [default: false].
    #[arg(
        long,
        env = "PUSHWIRE_ALLOW_DEV_APP",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub allow_dev_app: Option<bool>,
    /// Redis URL, redis+sentinel://host:port[,host:port…]/master_name, or
    /// redis+cluster://host:port[,host:port…]; without it an embedded broker
    /// is used.
    #[arg(long = "redis", env = "PUSHWIRE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Worker processes [default: one per CPU].
    #[arg(long, env = "PUSHWIRE_WORKERS")]
    pub workers: Option<usize>,
    /// Serve the live demo page at `/` [default: true].
    #[arg(long, env = "PUSHWIRE_DEMO")]
    pub demo: Option<bool>,
    /// Heartbeat interval in ms, at most 3600000 [default: 25000].
    #[arg(long, env = "PUSHWIRE_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    /// Heartbeat timeout in ms, at most 3600000; a client whose send buffer is full at
    /// a ping, or that does not answer in time, is disconnected [default: 20000].
    #[arg(long, env = "PUSHWIRE_PING_TIMEOUT_MS")]
    pub ping_timeout_ms: Option<u64>,
    /// Trigger API request body cap in bytes, at least 1024 [default: 262144].
    #[arg(long, env = "PUSHWIRE_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<u64>,
    /// How long a client may take to send a request's head, and how long a
    /// kept-alive connection may sit idle, in ms [default: 10000].
    #[arg(long, env = "PUSHWIRE_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// How long a request body (trigger, query, long-polling POST) may take to
    /// arrive once its head has, in ms; slower ones get 408 [default: 10000].
    #[arg(long, env = "PUSHWIRE_BODY_READ_TIMEOUT_MS")]
    pub body_read_timeout_ms: Option<u64>,
    /// Open connections one client address (an IPv6 /64) may hold on this
    /// origin; 0 = no cap. Behind a proxy all clients share its address: raise
    /// it or set 0 there [default: 1000].
    #[arg(long, env = "PUSHWIRE_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<u64>,
    /// Where the master serves Prometheus metrics (`/metrics`) and readiness
    /// (`/ready`) for the whole origin; port 0 picks a free one [default: 127.0.0.1:9464].
    #[arg(long, env = "PUSHWIRE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Serve metrics at all [default: true].
    #[arg(long, env = "PUSHWIRE_METRICS")]
    pub metrics: Option<bool>,
    /// Channel history retention; in the config file, the `history` object.
    #[command(flatten)]
    #[serde(default)]
    pub history: HistorySettings,
    /// Web origins whose browser pages may connect, comma-separated
    /// (`https://app.example.com,…`; in the config file, a list); pages of other
    /// origins are refused [default: * (any)].
    #[arg(long, env = "PUSHWIRE_ALLOWED_ORIGINS", value_parser = AllowedOrigins::parse)]
    pub allowed_origins: Option<AllowedOrigins>,
    /// Log line format: `text` for people, `json` (one object per line) for a
    /// log aggregator [default: text].
    #[arg(long, env = "PUSHWIRE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// A webhook endpoint (http:// or https:// URL) receiving every event type
    /// of every app, in Pusher's format [default: none]. An https receiver's
    /// certificate must chain to a root in the system's CA store (or in the
    /// bundle SSL_CERT_FILE names). Webhooks per app, with the event
    /// types and a channel prefix, go in the config file: `"webhooks":
    /// {"<app id>": [{"url": …, "events": […], "channel_prefix": …}]}`.
    #[arg(long = "webhook-url", env = "PUSHWIRE_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// How long a channel's `channel_vacated` webhook waits, in ms (at most
    /// 60000): a channel filled again meanwhile is reported as nothing instead
    /// of vacated and occupied [default: 0, both are reported].
    #[arg(long, env = "PUSHWIRE_WEBHOOK_GRACE_MS")]
    pub webhook_grace_ms: Option<u64>,
    /// The most events one webhook request carries (1 to 1000) [default: 50].
    #[arg(long, env = "PUSHWIRE_WEBHOOK_BATCH_EVENTS")]
    pub webhook_batch_events: Option<u64>,
    /// How long a webhook batch that is not full waits for more events, in
    /// ms (0 to 10000) [default: 250].
    #[arg(long, env = "PUSHWIRE_WEBHOOK_BATCH_DELAY_MS")]
    pub webhook_batch_delay_ms: Option<u64>,
    /// Webhook endpoints per app id (config file only).
    #[arg(skip)]
    pub webhooks: Option<BTreeMap<String, Vec<WebhookEndpoint>>>,
    /// JSON config file, read under flags and environment.
    #[arg(long = "config", env = "PUSHWIRE_CONFIG")]
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

/// History retention settings: flags `--history-…`, the config file's `history` object.
#[derive(Debug, Clone, Default, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistorySettings {
    /// History kept per channel for recovery (`subscribe` with `since`), 1 to 9999 [default: 100].
    #[arg(
        long = "history-max-events",
        env = "PUSHWIRE_HISTORY_MAX_EVENTS",
        value_name = "HISTORY_MAX_EVENTS"
    )]
    pub max_events: Option<u64>,
    /// Age in seconds after which history is trimmed [default: 300].
    #[arg(
        long = "history-max-age-secs",
        env = "PUSHWIRE_HISTORY_MAX_AGE_SECS",
        value_name = "HISTORY_MAX_AGE_SECS"
    )]
    pub max_age_secs: Option<u64>,
}

/// A config file holding app secrets that other users can read: found while
/// the configuration is read, logged once logging has started (in the format
/// the configuration chose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadableSecrets {
    /// The file.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

impl ReadableSecrets {
    /// Logs the warning.
    pub(crate) fn warn(&self) {
        tracing::warn!(
            file = %self.path.display(),
            mode = %format!("{:03o}", self.mode),
            "the config file holds app secrets and other users can read it: run chmod 600 on it"
        );
    }
}

impl ServeSettings {
    /// Reads and parses a config file; also says whether it holds app
    /// secrets that other users can read.
    pub(crate) fn load(path: &Path) -> Result<(Self, Option<ReadableSecrets>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        let settings: Self =
            serde_json::from_str(&text).map_err(|source| ConfigError::ParseFile {
                path: path.to_owned(),
                source,
            })?;
        let readable = settings
            .apps
            .as_ref()
            .and_then(|_| readable_by_others(path))
            .map(|mode| ReadableSecrets {
                path: path.to_owned(),
                mode,
            });
        Ok((settings, readable))
    }

    /// How the command line names the setting whose field is `id`:
    /// `--flag / VARIABLE`.
    pub(crate) fn flag_of(id: &str) -> String {
        flag_of::<Self>(id)
    }
}

/// How the command line names the setting whose field of `A` is `id`:
/// `--flag / VARIABLE` (`id` itself if `A` has no such setting).
pub(crate) fn flag_of<A: clap::Args>(id: &str) -> String {
    let command = A::augment_args(clap::Command::new("settings"));
    command
        .get_arguments()
        .find(|arg| arg.get_id() == id)
        .map_or_else(
            || id.to_owned(),
            |arg| {
                let long = arg.get_long().unwrap_or(id);
                match arg.get_env() {
                    Some(env) => format!("--{long} / {}", env.to_string_lossy()),
                    None => format!("--{long}"),
                }
            },
        )
}

/// The file's permission bits when its group or other users may read or
/// write it; `None` when only its owner may (or they cannot be read).
fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Parses `--apps` without echoing the value in its error: it holds secrets.
#[derive(Debug, Clone, Copy)]
struct AppsParser;

impl clap::builder::TypedValueParser for AppsParser {
    type Value = AppList;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<AppList, clap::Error> {
        let name = arg.map_or_else(
            || "--apps".to_owned(),
            |a| ServeSettings::flag_of(a.get_id().as_str()),
        );
        let invalid = |why: String| {
            command.clone().error(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid apps ({name}): {why}"),
            )
        };
        let text = value
            .to_str()
            .ok_or_else(|| invalid("not valid UTF-8".to_owned()))?;
        AppList::parse(text).map_err(|e| invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_config_file_others_can_read_is_noticed() {
        let path = std::env::temp_dir().join(format!("pushwire-mode-{}.json", std::process::id()));
        std::fs::write(&path, "{}").unwrap();
        let mode = |bits| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).unwrap();
            readable_by_others(&path)
        };
        assert_eq!(mode(0o644), Some(0o644));
        assert_eq!(mode(0o640), Some(0o640));
        assert_eq!(mode(0o600), None);
        assert_eq!(mode(0o400), None);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(readable_by_others(&path), None);
    }
}
