//! `EdgeConfig`: the worker's settings, from its vars and secrets.
//!
//! | name | kind | meaning |
//! | --- | --- | --- |
//! | `PUSHWIRE_APPS` | secret | `id:key:secret[,…]`, as on the origin |
//! | `PUSHWIRE_BRIDGE_URL` | var | base URL of the bridge (or an Upstash database's REST URL) |
//! | `PUSHWIRE_BRIDGE_TOKEN` | secret | its bearer token |
//! | `PUSHWIRE_MAX_REQUEST_BYTES` | var, optional | request body cap (default 262144, at least 1024) |
//! | `PUSHWIRE_BRIDGE_TIMEOUT_MS` | var, optional | how long to wait for the bridge (default 12000, at most 60000) |
//! | `PUSHWIRE_HISTORY_MAX_EVENTS` | var, optional | history kept per channel (default 100, 1 to 9999; as on the origin) |
//! | `PUSHWIRE_HISTORY_MAX_AGE_SECS` | var, optional | history age limit (default 300; as on the origin) |
//!
//! The settings the origin also takes are checked by the same validators
//! ([`pushwire_shared::settings`]), so a value one side refuses the other refuses too.

use pushwire_shared::history::HistoryPolicy;
use pushwire_shared::settings::{self, SettingError};
use pushwire_shared::{AppList, AppsParseError};

/// The default bound on one bridge round trip.
///
/// Longer than the bridge's own 10 s bound on a Redis reply, so that a slow
/// Redis is answered by the bridge (with the outcome, or its own error) rather
/// than cut off here: a `503` for a publish that then happens would make the
/// caller publish the event twice.
pub const DEFAULT_BRIDGE_TIMEOUT_MS: u32 = 12_000;

/// The longest bridge round-trip bound; a larger setting is lowered to it.
pub const MAX_BRIDGE_TIMEOUT_MS: u32 = 60_000;

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Hosted apps.
    pub apps: AppList,
    /// Bridge base URL, without a trailing slash.
    pub bridge_url: String,
    /// Bridge bearer token.
    pub bridge_token: String,
    /// Request body cap.
    pub max_request_bytes: usize,
    /// Bridge round-trip bound, in milliseconds.
    pub bridge_timeout_ms: u32,
    /// Channel history retention, applied when publishing.
    pub history: HistoryPolicy,
}

/// Why the worker's settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeConfigError {
    /// A required setting is absent.
    #[error("the edge worker is not configured: {0} is not set")]
    Missing(&'static str),
    /// `PUSHWIRE_APPS` is invalid.
    #[error("the edge worker is misconfigured: PUSHWIRE_APPS: {0}")]
    Apps(AppsParseError),
    /// A number is not a number.
    #[error("the edge worker is misconfigured: {0} is not a number")]
    Invalid(&'static str),
    /// A number is out of the setting's bounds.
    #[error("the edge worker is misconfigured: {name}: {error}")]
    OutOfRange {
        /// The variable.
        name: &'static str,
        /// The bound it breaks, as the origin reports it.
        error: SettingError,
    },
}

impl EdgeConfig {
    /// Reads the settings through `get` (the Workers `env`, or a map in tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, EdgeConfigError> {
        let required = |name: &'static str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or(EdgeConfigError::Missing(name))
        };
        let apps = AppList::parse(&required("PUSHWIRE_APPS")?).map_err(EdgeConfigError::Apps)?;
        let bridge_url = required("PUSHWIRE_BRIDGE_URL")?
            .trim_end_matches('/')
            .to_owned();
        let bridge_token = required("PUSHWIRE_BRIDGE_TOKEN")?;
        Ok(EdgeConfig {
            apps,
            bridge_url,
            bridge_token,
            max_request_bytes: number(
                &get,
                "PUSHWIRE_MAX_REQUEST_BYTES",
                settings::DEFAULT_MAX_REQUEST_BYTES as u64,
                settings::max_request_bytes,
            )?,
            bridge_timeout_ms: number(
                &get,
                "PUSHWIRE_BRIDGE_TIMEOUT_MS",
                u64::from(DEFAULT_BRIDGE_TIMEOUT_MS),
                |ms| Ok(ms.min(u64::from(MAX_BRIDGE_TIMEOUT_MS)) as u32),
            )?,
            history: HistoryPolicy {
                max_events: number(
                    &get,
                    "PUSHWIRE_HISTORY_MAX_EVENTS",
                    u64::from(settings::DEFAULT_HISTORY_MAX_EVENTS),
                    settings::history_max_events,
                )?,
                max_age_secs: number(
                    &get,
                    "PUSHWIRE_HISTORY_MAX_AGE_SECS",
                    u64::from(settings::DEFAULT_HISTORY_MAX_AGE_SECS),
                    settings::history_max_age_secs,
                )?,
            },
        })
    }
}

/// The number in variable `name` (else `default`) through `check`, its errors
/// naming the variable.
fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    check: fn(u64) -> Result<T, SettingError>,
) -> Result<T, EdgeConfigError> {
    let value = match get(name).filter(|v| !v.is_empty()) {
        None => default,
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map_err(|_| EdgeConfigError::Invalid(name))?,
    };
    check(value).map_err(|error| EdgeConfigError::OutOfRange { name, error })
}

/// The settings the unit tests use: the dev app and a bridge at `http://bridge`.
#[cfg(test)]
pub(crate) fn test_config() -> EdgeConfig {
    EdgeConfig::from_vars(|k| match k {
        "PUSHWIRE_APPS" => Some("1000001:app-key:app-secret".into()),
        "PUSHWIRE_BRIDGE_URL" => Some("http://bridge".into()),
        "PUSHWIRE_BRIDGE_TOKEN" => Some("tok".into()),
        _ => None,
    })
    .expect("the test settings are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reads_required_and_optional_settings() {
        let config = EdgeConfig::from_vars(vars(&[
            ("PUSHWIRE_APPS", "1:k:s"),
            ("PUSHWIRE_BRIDGE_URL", "http://127.0.0.1:8079/"),
            ("PUSHWIRE_BRIDGE_TOKEN", "t"),
            ("PUSHWIRE_BRIDGE_TIMEOUT_MS", "500"),
            ("PUSHWIRE_HISTORY_MAX_EVENTS", "20"),
        ]))
        .unwrap();
        assert_eq!(
            (config.history.max_events, config.history.max_age_secs),
            (20, 300)
        );
        assert_eq!(config.bridge_url, "http://127.0.0.1:8079");
        assert_eq!(
            (config.max_request_bytes, config.bridge_timeout_ms),
            (settings::DEFAULT_MAX_REQUEST_BYTES, 500)
        );
    }

    #[test]
    fn says_what_is_missing() {
        let err = EdgeConfig::from_vars(vars(&[("PUSHWIRE_APPS", "1:k:s")])).unwrap_err();
        assert_eq!(err, EdgeConfigError::Missing("PUSHWIRE_BRIDGE_URL"));
        assert!(err.to_string().contains("PUSHWIRE_BRIDGE_URL is not set"));
        assert!(matches!(
            EdgeConfig::from_vars(vars(&[("PUSHWIRE_APPS", "bad")])),
            Err(EdgeConfigError::Apps(_))
        ));
    }

    #[test]
    fn out_of_range_numbers_are_refused_as_on_the_origin() {
        let with = |name: &str, value: &str| {
            EdgeConfig::from_vars(vars(&[
                ("PUSHWIRE_APPS", "1:k:s"),
                ("PUSHWIRE_BRIDGE_URL", "http://bridge"),
                ("PUSHWIRE_BRIDGE_TOKEN", "t"),
                (name, value),
            ]))
        };
        let err = with("PUSHWIRE_HISTORY_MAX_EVENTS", "100000").unwrap_err();
        assert_eq!(
            err,
            EdgeConfigError::OutOfRange {
                name: "PUSHWIRE_HISTORY_MAX_EVENTS",
                error: settings::history_max_events(100_000).unwrap_err(),
            }
        );
        assert!(
            err.to_string().ends_with(
                "PUSHWIRE_HISTORY_MAX_EVENTS: history max_events must be at most 9999, not 100000"
            ),
            "{err}"
        );
        assert!(matches!(
            with("PUSHWIRE_HISTORY_MAX_EVENTS", "0"),
            Err(EdgeConfigError::OutOfRange { .. })
        ));
        assert_eq!(
            with("PUSHWIRE_MAX_REQUEST_BYTES", "10").unwrap_err(),
            EdgeConfigError::OutOfRange {
                name: "PUSHWIRE_MAX_REQUEST_BYTES",
                error: settings::max_request_bytes(10).unwrap_err(),
            }
        );
        assert!(matches!(
            with("PUSHWIRE_HISTORY_MAX_AGE_SECS", "4294967296"),
            Err(EdgeConfigError::OutOfRange { .. })
        ));
        let slow = with("PUSHWIRE_BRIDGE_TIMEOUT_MS", "600000").unwrap();
        assert_eq!(slow.bridge_timeout_ms, MAX_BRIDGE_TIMEOUT_MS);
    }
}
