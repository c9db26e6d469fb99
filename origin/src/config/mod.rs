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

use std::net::IpAddr;
use std::path::PathBuf;

use pushwire_shared::history::HistoryPolicy;
use pushwire_shared::settings::{self as shared, Bounds, SettingError};
use pushwire_shared::{AppList, AppsParseError};

pub(crate) use self::allowed_origins::AllowedOrigins;
pub(crate) use self::settings::ServeSettings;

/// The app used when none is configured: for development only.
pub const DEV_APPS: &str = "1000001:app-key:app-secret";
/// The default listening port.
pub(crate) const DEFAULT_PORT: u16 = 3000;
/// Socket.IO's default heartbeat interval.
pub(crate) const DEFAULT_PING_INTERVAL_MS: u64 = 25_000;
/// Socket.IO's default heartbeat timeout.
pub(crate) const DEFAULT_PING_TIMEOUT_MS: u64 = 20_000;
/// The shortest heartbeat interval or timeout; shorter settings are raised to it.
pub(crate) const MIN_PING_MS: u64 = 100;

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
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
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
}

impl ServeConfig {
    /// Resolves flags/env over the config file they name (if any) over defaults.
    pub(crate) fn resolve(given: ServeSettings) -> Result<Self, ConfigError> {
        let file = match &given.config_file {
            Some(path) => ServeSettings::load(path)?,
            None => ServeSettings::default(),
        };
        Self::merge(given, file)
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
        Ok(ServeConfig {
            host,
            port: given.port.or(file.port).unwrap_or(DEFAULT_PORT),
            apps,
            redis_url: given.redis_url.or(file.redis_url).filter(|u| !u.is_empty()),
            max_request_bytes,
            workers,
            demo: given.demo.or(file.demo).unwrap_or(true),
            ping_interval_ms: given
                .ping_interval_ms
                .or(file.ping_interval_ms)
                .unwrap_or(DEFAULT_PING_INTERVAL_MS)
                .max(MIN_PING_MS),
            ping_timeout_ms: given
                .ping_timeout_ms
                .or(file.ping_timeout_ms)
                .unwrap_or(DEFAULT_PING_TIMEOUT_MS)
                .max(MIN_PING_MS),
            history,
            allowed_origins: given
                .allowed_origins
                .or(file.allowed_origins)
                .unwrap_or_default(),
            uses_dev_app,
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
}

/// The first value given (else `default`) through `check`, its error naming
/// the setting as it was given.
fn checked<T, U>(
    setting: Layered<T>,
    default: T,
    check: impl FnOnce(T) -> Result<U, SettingError>,
) -> Result<U, ConfigError> {
    let (value, named) = match (setting.given, setting.file) {
        (Some(value), _) => (value, ServeSettings::flag_of(setting.id)),
        (None, Some(value)) => (value, format!("{} in the config file", setting.file_key)),
        (None, None) => (default, format!("{} (default)", setting.file_key)),
    };
    check(value).map_err(|error| ConfigError::OutOfRange {
        setting: named,
        error,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `pushwire serve`'s flags alone.
    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        settings: ServeSettings,
    }

    fn flags(args: &[&str]) -> Result<ServeSettings, clap::Error> {
        Flags::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .map(|f| f.settings)
    }

    fn file(json: &str) -> ServeSettings {
        serde_json::from_str(json).unwrap()
    }

    fn none() -> ServeSettings {
        ServeSettings::default()
    }

    #[test]
    fn defaults_use_the_dev_app_and_embedded_broker() {
        let c = ServeConfig::merge(none(), none()).unwrap();
        assert!(c.uses_dev_app);
        assert_eq!(c.apps.single().unwrap().id, "1000001");
        assert_eq!(c.port, DEFAULT_PORT);
        assert!(c.redis_url.is_none());
        assert_eq!(c.history, HistoryPolicy::default());
        assert_eq!(c.max_request_bytes, shared::DEFAULT_MAX_REQUEST_BYTES);
    }

    #[test]
    fn the_dev_app_stays_on_loopback_unless_allowed() {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(ServeConfig::merge(none(), none()).unwrap().host, loopback);
        let given = flags(&["--host", "::1"]).unwrap();
        assert!(
            ServeConfig::merge(given, none())
                .unwrap()
                .host
                .is_loopback()
        );
        for (given, f) in [
            (flags(&["--host", "0.0.0.0"]).unwrap(), none()),
            (none(), file(r#"{"host": "10.0.0.5"}"#)),
            (
                flags(&["--host", "0.0.0.0", "--allow-dev-app", "false"]).unwrap(),
                none(),
            ),
        ] {
            let err = ServeConfig::merge(given, f).unwrap_err();
            assert!(matches!(err, ConfigError::DevAppExposed { .. }), "{err:?}");
            let message = err.to_string();
            assert!(
                message.contains("PUSHWIRE_APPS") && message.contains("--allow-dev-app"),
                "{message}"
            );
        }
        let given = flags(&["--host", "0.0.0.0", "--allow-dev-app"]).unwrap();
        let c = ServeConfig::merge(given, none()).unwrap();
        assert!(c.uses_dev_app && c.host.is_unspecified());
        let f = file(r#"{"host": "0.0.0.0", "allow_dev_app": true}"#);
        assert!(ServeConfig::merge(none(), f).unwrap().host.is_unspecified());
        // With real apps, the default is every interface.
        let given = flags(&["--apps", "1:k:s"]).unwrap();
        assert!(
            ServeConfig::merge(given, none())
                .unwrap()
                .host
                .is_unspecified()
        );
    }

    #[test]
    fn config_file_apps_are_validated() {
        for (apps, why) in [
            (
                r#"[{"id": "1", "key": "k", "secret": ""}]"#,
                "secret is empty",
            ),
            (
                r#"[{"id": "a:b", "key": "k", "secret": "s"}]"#,
                "must be letters",
            ),
        ] {
            let err = serde_json::from_str::<ServeSettings>(&format!(r#"{{"apps": {apps}}}"#))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn history_settings_merge_per_field() {
        let f = file(r#"{"history": {"max_age_secs": 60}}"#);
        let given = flags(&["--history-max-events", "9999"]).unwrap();
        let c = ServeConfig::merge(given, f).unwrap();
        assert_eq!(
            (c.history.max_events, c.history.max_age_secs),
            (shared::MAX_HISTORY_EVENTS, 60)
        );
        let f = file(r#"{"history": {"max_events": 7}}"#);
        let given = flags(&["--history-max-age-secs", "5"]).unwrap();
        let c = ServeConfig::merge(given, f).unwrap();
        assert_eq!((c.history.max_events, c.history.max_age_secs), (7, 5));
    }

    #[test]
    fn out_of_range_values_get_the_error_the_edge_gives() {
        let given = flags(&["--history-max-events", "100000"]).unwrap();
        match ServeConfig::merge(given, none()) {
            Err(ConfigError::OutOfRange { setting, error }) => {
                assert_eq!(error, shared::history_max_events(100_000).unwrap_err());
                assert_eq!(
                    setting,
                    "--history-max-events / PUSHWIRE_HISTORY_MAX_EVENTS"
                );
            }
            other => panic!("{other:?}"),
        }
        let f = file(r#"{"history": {"max_events": 0}}"#);
        let err = ServeConfig::merge(none(), f).unwrap_err();
        assert_eq!(
            err.to_string(),
            "history.max_events in the config file: history max_events must be at least 1, not 0"
        );
        let given = flags(&["--max-request-bytes", "10"]).unwrap();
        match ServeConfig::merge(given, none()) {
            Err(ConfigError::OutOfRange { setting, error }) => {
                assert_eq!(error, shared::max_request_bytes(10).unwrap_err());
                assert_eq!(setting, "--max-request-bytes / PUSHWIRE_MAX_REQUEST_BYTES");
            }
            other => panic!("{other:?}"),
        }
        let f = file(r#"{"history": {"max_age_secs": 4294967296}}"#);
        assert!(matches!(
            ServeConfig::merge(none(), f),
            Err(ConfigError::OutOfRange { error, .. })
                if error == shared::history_max_age_secs(4_294_967_296).unwrap_err()
        ));
        let f = file(r#"{"workers": 0}"#);
        assert_eq!(
            ServeConfig::merge(none(), f).unwrap_err().to_string(),
            "workers in the config file: workers must be at least 1, not 0"
        );
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = file(
            r#"{"port": 7000, "redis_url": "redis://file", "apps": [{"id": "9", "key": "k", "secret": "s", "limits": {"max_data_bytes": 5}}]}"#,
        );
        let c = ServeConfig::merge(flags(&["--port", "8000"]).unwrap(), f).unwrap();
        assert_eq!(c.port, 8000);
        assert_eq!(c.redis_url.as_deref(), Some("redis://file"));
        let app = c.apps.single().unwrap();
        assert_eq!((app.id.as_str(), app.limits.max_data_bytes), ("9", 5));
        assert_eq!(app.limits.max_batch_events, 10);
        assert!(!c.uses_dev_app);
        let f = file(
            r#"{"redis_url": "redis://file", "apps": [{"id": "9", "key": "k", "secret": "s"}]}"#,
        );
        let given = flags(&["--redis", "", "--apps", "1:k:s"]).unwrap();
        let c = ServeConfig::merge(given, f).unwrap();
        assert!(
            c.redis_url.is_none(),
            "an empty --redis picks the embedded broker"
        );
        assert_eq!(c.apps.single().unwrap().id, "1");
    }

    #[test]
    fn the_example_deploy_config_is_valid() {
        let example: ServeSettings =
            serde_json::from_str(include_str!("../../../deploy/pushwire.json")).unwrap();
        let c = ServeConfig::merge(none(), example).unwrap();
        assert!(!c.demo && !c.uses_dev_app && c.redis_url.is_some());
    }

    #[test]
    fn bad_settings_are_reported() {
        assert!(serde_json::from_str::<ServeSettings>(r#"{"prot": 1}"#).is_err());
        assert!(serde_json::from_str::<ServeSettings>(r#"{"config": "x.json"}"#).is_err());
        assert!(serde_json::from_str::<ServeSettings>(r#"{"history": {"max": 1}}"#).is_err());
        let err = flags(&["--apps", "1:k:top-secret,2"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid apps (--apps / PUSHWIRE_APPS)") && !err.contains("top-secret"),
            "{err}"
        );
        let err = flags(&["--allowed-origins", "app.example.com"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--allowed-origins") && err.contains("invalid allowed origin"),
            "{err}"
        );
        assert!(flags(&["--workers", "many"]).is_err());
    }

    #[test]
    fn allowed_origins_default_to_any_and_flags_win_over_the_file() {
        let c = ServeConfig::merge(none(), none()).unwrap();
        assert_eq!(c.allowed_origins, AllowedOrigins::Any);
        let f = file(r#"{"allowed_origins": ["https://a.example"]}"#);
        let c = ServeConfig::merge(none(), f).unwrap();
        assert!(c.allowed_origins.allows("https://a.example"));
        assert!(!c.allowed_origins.allows("https://b.example"));
        let f = file(r#"{"allowed_origins": ["https://a.example"]}"#);
        let c = ServeConfig::merge(flags(&["--allowed-origins", "*"]).unwrap(), f).unwrap();
        assert_eq!(c.allowed_origins, AllowedOrigins::Any);
        assert!(serde_json::from_str::<ServeSettings>(r#"{"allowed_origins": ["a/b"]}"#).is_err());
    }
}
