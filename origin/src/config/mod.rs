//! `ServeConfig`: everything `pushwire serve` needs, resolved in one place.
//!
//! Precedence: command-line flags, then environment variables, then the JSON
//! config file, then defaults. Flags and variables are merged by the CLI parser
//! (each flag names its variable) into a [`ServeSettings`]; the file is read into
//! another; [`ServeConfig::merge`] takes each setting from the first that has it,
//! falls back to its default and checks it. The bounds the edge shares (request
//! body cap, history retention) are checked by [`pushwire_shared::settings`].

mod allowed_origins;
mod settings;
mod webhooks;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use pushwire_shared::history::HistoryPolicy;
use pushwire_shared::settings::{self as shared, Bounds, SettingError};
use pushwire_shared::{AppList, AppsParseError};

use crate::http_server::{self, ConnectionLimits};
use crate::redis_connection::InvalidRedisUrl;
use crate::redis_connection::RedisTarget;
use crate::telemetry::LogFormat;
pub(crate) use webhooks::Webhooks;

pub(crate) use self::allowed_origins::AllowedOrigins;
pub(crate) use self::settings::{ReadableSecrets, ServeSettings, flag_of};

/// The app used when none is configured: for development only.
pub const DEV_APPS: &str = "1000001:app-key:app-secret";
/// Where metrics are served by default: this machine only.
pub(crate) const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);
/// The default listening port.
pub(crate) const DEFAULT_PORT: u16 = 3000;
/// Socket.IO's default heartbeat interval.
pub(crate) const DEFAULT_PING_INTERVAL_MS: u64 = 25_000;
/// Socket.IO's default heartbeat timeout.
pub(crate) const DEFAULT_PING_TIMEOUT_MS: u64 = 20_000;
/// The shortest heartbeat interval or timeout; shorter settings are raised to it.
pub(crate) const MIN_PING_MS: u64 = 100;
/// The longest heartbeat interval or timeout, in ms (an hour). A peer silent for
/// longer is long gone; beyond it a heartbeat does nothing but overflow timers.
pub(crate) const MAX_PING_MS: u64 = 3_600_000;

/// The bounds of the heartbeat interval and timeout (below the minimum, a value
/// is raised to [`MIN_PING_MS`] rather than refused).
/// The bounds of the webhook grace period, in ms.
const WEBHOOK_GRACE_BOUNDS: Bounds = Bounds {
    setting: "webhook_grace_ms",
    min: 0,
    max: 60_000,
};

/// The bounds of a webhook batch, in events.
const WEBHOOK_BATCH_EVENTS_BOUNDS: Bounds = Bounds {
    setting: "webhook_batch_events",
    min: 1,
    max: 1000,
};

/// The bounds of how long a webhook batch waits to fill, in ms.
const WEBHOOK_BATCH_DELAY_BOUNDS: Bounds = Bounds {
    setting: "webhook_batch_delay_ms",
    min: 0,
    max: 10_000,
};

const PING_BOUNDS: [Bounds; 2] = [
    Bounds {
        setting: "ping_interval_ms",
        min: 0,
        max: MAX_PING_MS,
    },
    Bounds {
        setting: "ping_timeout_ms",
        min: 0,
        max: MAX_PING_MS,
    },
];

/// The most worker processes `pushwire serve` starts.
pub(crate) const MAX_WORKERS: usize = 256;

/// The bounds of the worker count.
const WORKERS_BOUNDS: Bounds = Bounds {
    setting: "workers",
    min: 1,
    max: MAX_WORKERS as u64,
};

// A channel's whole history must fit in one recovery read (see `MAX_HISTORY_EVENTS`).
const _: () = assert!((shared::MAX_HISTORY_EVENTS as usize) < crate::broker::MAX_HISTORY_READ);

/// One worker per CPU.
pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The resolved configuration of one origin (the master sends it to each worker).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ServeConfig {
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
    /// Deadlines and the per-address cap of every connection (the whole
    /// origin's; each worker enforces its share of the cap).
    pub connections: ConnectionLimits,
    /// Where the master serves `/metrics` and `/ready`; `None`: nowhere.
    pub metrics_addr: Option<SocketAddr>,
    /// How the master and every worker write their log lines.
    pub log_format: LogFormat,
    /// Webhook endpoints by app id (the embedded broker's master sends them;
    /// with Redis, every worker of every origin does).
    pub webhooks: Webhooks,
    /// How long a `channel_vacated` webhook waits for the channel to fill
    /// again (then neither is reported), in ms; 0 reports both.
    pub webhook_grace_ms: u64,
    /// The most events one webhook request carries.
    pub webhook_batch_events: usize,
    /// How long a webhook batch that is not full waits for more events, in ms.
    pub webhook_batch_delay_ms: u64,
}

impl ServeConfig {
    /// How webhooks are batched, timed and retried.
    pub(crate) fn webhook_dispatch(&self) -> crate::webhook::DispatchSettings {
        crate::webhook::DispatchSettings {
            max_batch_events: self.webhook_batch_events,
            max_batch_delay: std::time::Duration::from_millis(self.webhook_batch_delay_ms),
            ..Default::default()
        }
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path} (--config / PUSHWIRE_CONFIG): {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("invalid config file {path} (--config / PUSHWIRE_CONFIG): {source}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The app list is not valid.
    #[error("invalid apps: {0}")]
    Apps(#[from] AppsParseError),
    /// The development app would be served beyond this machine.
    #[error(
        "the development app (its secret is public) would be served on {host}, where others can reach it: \
         set --apps / PUSHWIRE_APPS (or \"apps\" in the config file) to your own apps, \
         listen on 127.0.0.1, or pass --allow-dev-app to serve it there anyway"
    )]
    DevAppExposed {
        /// The address asked for.
        host: IpAddr,
    },
    /// A setting is out of its bounds.
    #[error("{setting}: {error}")]
    OutOfRange {
        /// The setting and where it was given: its flag and variable, or its
        /// config file key.
        setting: String,
        /// The bound it breaks, as the edge reports it.
        error: SettingError,
    },
    /// A webhook setting cannot be served.
    #[error("{setting}: {why}")]
    Webhooks {
        /// Where it was given.
        setting: String,
        /// Why.
        why: String,
    },
    /// The Redis URL does not parse.
    #[error("{setting}: {error}")]
    RedisUrl {
        /// Where it was given: `--redis / PUSHWIRE_REDIS_URL` or its config file key.
        setting: String,
        /// Why.
        error: InvalidRedisUrl,
    },
}

impl ServeConfig {
    /// Resolves flags/env over the config file they name (if any) over
    /// defaults; also returns what [`ServeSettings::load`] found about the
    /// file's permissions, for the caller to log once logging has started.
    pub(crate) fn resolve(
        given: ServeSettings,
    ) -> Result<(Self, Option<ReadableSecrets>), ConfigError> {
        let (file, readable) = match &given.config_file {
            Some(path) => ServeSettings::load(path)?,
            None => (ServeSettings::default(), None),
        };
        Ok((Self::merge(given, file)?, readable))
    }

    /// The pure part of [`ServeConfig::resolve`]: each setting from `given`
    /// (flags and environment), else from `file`, else its default; then checked.
    pub(crate) fn merge(given: ServeSettings, file: ServeSettings) -> Result<Self, ConfigError> {
        let (apps, uses_dev_app) = match given.apps.or(file.apps) {
            Some(apps) => (apps, false),
            None => (AppList::parse(DEV_APPS)?, true),
        };
        let workers = checked(
            Layered::of("workers", given.workers, file.workers),
            default_workers(),
            |n| WORKERS_BOUNDS.check(n as u64).map(|n| n as usize),
        )?;
        let max_request_bytes = checked(
            Layered::of(
                "max_request_bytes",
                given.max_request_bytes,
                file.max_request_bytes,
            ),
            shared::DEFAULT_MAX_REQUEST_BYTES as u64,
            shared::max_request_bytes,
        )?;
        let redis_url = match Layered::of("redis_url", given.redis_url, file.redis_url).first() {
            // An empty URL (e.g. `--redis ""` over a file's URL) picks the embedded broker.
            Some((url, _)) if url.is_empty() => None,
            Some((url, setting)) => {
                RedisTarget::parse(&url)
                    .map_err(|error| ConfigError::RedisUrl { setting, error })?;
                Some(url)
            }
            None => None,
        };
        let [interval_bounds, timeout_bounds] = PING_BOUNDS;
        let ping_interval_ms = checked(
            Layered::of(
                "ping_interval_ms",
                given.ping_interval_ms,
                file.ping_interval_ms,
            ),
            DEFAULT_PING_INTERVAL_MS,
            |ms| interval_bounds.check(ms),
        )?
        .max(MIN_PING_MS);
        let ping_timeout_ms = checked(
            Layered::of(
                "ping_timeout_ms",
                given.ping_timeout_ms,
                file.ping_timeout_ms,
            ),
            DEFAULT_PING_TIMEOUT_MS,
            |ms| timeout_bounds.check(ms),
        )?
        .max(MIN_PING_MS);
        let history = HistoryPolicy {
            max_events: checked(
                Layered::of(
                    "max_events",
                    given.history.max_events,
                    file.history.max_events,
                )
                .in_file("history.max_events"),
                u64::from(shared::DEFAULT_HISTORY_MAX_EVENTS),
                shared::history_max_events,
            )?,
            max_age_secs: checked(
                Layered::of(
                    "max_age_secs",
                    given.history.max_age_secs,
                    file.history.max_age_secs,
                )
                .in_file("history.max_age_secs"),
                u64::from(shared::DEFAULT_HISTORY_MAX_AGE_SECS),
                shared::history_max_age_secs,
            )?,
        };
        let [header_bounds, body_bounds] = http_server::READ_TIMEOUT_BOUNDS;
        let connections = ConnectionLimits {
            header_read_timeout_ms: checked(
                Layered::of(
                    "header_read_timeout_ms",
                    given.header_read_timeout_ms,
                    file.header_read_timeout_ms,
                ),
                http_server::DEFAULT_HEADER_READ_TIMEOUT_MS,
                |ms| header_bounds.check(ms),
            )?,
            body_read_timeout_ms: checked(
                Layered::of(
                    "body_read_timeout_ms",
                    given.body_read_timeout_ms,
                    file.body_read_timeout_ms,
                ),
                http_server::DEFAULT_BODY_READ_TIMEOUT_MS,
                |ms| body_bounds.check(ms),
            )?,
            max_connections_per_ip: checked(
                Layered::of(
                    "max_connections_per_ip",
                    given.max_connections_per_ip,
                    file.max_connections_per_ip,
                ),
                http_server::DEFAULT_MAX_CONNECTIONS_PER_IP,
                |n| http_server::MAX_CONNECTIONS_PER_IP_BOUNDS.check(n),
            )? as usize,
        };
        let host = match given.host.or(file.host) {
            // Anyone who reaches the development app can sign with its public
            // secret, so by default it stays on this machine.
            None if uses_dev_app => IpAddr::from([127, 0, 0, 1]),
            None => IpAddr::from([0, 0, 0, 0]),
            Some(host)
                if uses_dev_app
                    && !host.is_loopback()
                    && !given.allow_dev_app.or(file.allow_dev_app).unwrap_or(false) =>
            {
                return Err(ConfigError::DevAppExposed { host });
            }
            Some(host) => host,
        };
        let webhook_grace_ms = checked(
            Layered::of(
                "webhook_grace_ms",
                given.webhook_grace_ms,
                file.webhook_grace_ms,
            ),
            0,
            |ms| WEBHOOK_GRACE_BOUNDS.check(ms),
        )?;
        let webhook_batch_events = checked(
            Layered::of(
                "webhook_batch_events",
                given.webhook_batch_events,
                file.webhook_batch_events,
            ),
            50,
            |n| WEBHOOK_BATCH_EVENTS_BOUNDS.check(n),
        )? as usize;
        let webhook_batch_delay_ms = checked(
            Layered::of(
                "webhook_batch_delay_ms",
                given.webhook_batch_delay_ms,
                file.webhook_batch_delay_ms,
            ),
            250,
            |ms| WEBHOOK_BATCH_DELAY_BOUNDS.check(ms),
        )?;
        let webhooks = webhooks::resolve(
            &apps,
            Layered::of("webhook_url", given.webhook_url, file.webhook_url).first(),
            file.webhooks.or(given.webhooks),
        )?;
        Ok(ServeConfig {
            webhooks,
            webhook_grace_ms,
            webhook_batch_events,
            webhook_batch_delay_ms,
            host,
            port: given.port.or(file.port).unwrap_or(DEFAULT_PORT),
            apps,
            redis_url,
            max_request_bytes,
            workers,
            demo: given.demo.or(file.demo).unwrap_or(true),
            ping_interval_ms,
            ping_timeout_ms,
            history,
            allowed_origins: given
                .allowed_origins
                .or(file.allowed_origins)
                .unwrap_or_default(),
            uses_dev_app,
            connections,
            metrics_addr: given.metrics.or(file.metrics).unwrap_or(true).then(|| {
                given
                    .metrics_addr
                    .or(file.metrics_addr)
                    .unwrap_or(DEFAULT_METRICS_ADDR)
            }),
            log_format: given.log_format.or(file.log_format).unwrap_or_default(),
        })
    }
}

/// One setting as the command line and the file gave it, with what names it in each.
struct Layered<T> {
    id: &'static str,
    file_key: &'static str,
    given: Option<T>,
    file: Option<T>,
}

impl<T> Layered<T> {
    /// The setting whose [`ServeSettings`] field (and config file key) is `id`.
    fn of(id: &'static str, given: Option<T>, file: Option<T>) -> Self {
        Layered {
            id,
            file_key: id,
            given,
            file,
        }
    }

    /// The config file spells it `key`.
    fn in_file(self, key: &'static str) -> Self {
        Layered {
            file_key: key,
            ..self
        }
    }

    /// The first value given, with what names it where it was given: its
    /// flag and variable, or its config file key.
    fn first(self) -> Option<(T, String)> {
        match (self.given, self.file) {
            (Some(value), _) => Some((value, ServeSettings::flag_of(self.id))),
            (None, Some(value)) => Some((value, format!("{} in the config file", self.file_key))),
            (None, None) => None,
        }
    }
}

/// The first value given (else `default`) through `check`, its error naming
/// the setting as it was given.
fn checked<T, U>(
    setting: Layered<T>,
    default: T,
    check: impl FnOnce(T) -> Result<U, SettingError>,
) -> Result<U, ConfigError> {
    let file_key = setting.file_key;
    let (value, named) = setting
        .first()
        .unwrap_or_else(|| (default, format!("{file_key} (default)")));
    check(value).map_err(|error| ConfigError::OutOfRange {
        setting: named,
        error,
    })
}

#[cfg(test)]
mod tests;
