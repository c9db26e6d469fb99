//! `EdgeConfig`: the worker's settings, from its vars and secrets.
//!
//! | name | kind | meaning |
//! | --- | --- | --- |
//! | `PUSHWIRE_APPS` | secret | `id:key:secret[,…]`, as on the origin |
//! | `PUSHWIRE_BRIDGE_URL` | var | base URL of the bridge (or an Upstash database's REST URL) |
//! | `PUSHWIRE_BRIDGE_TOKEN` | secret | its bearer token |
//! | `PUSHWIRE_MAX_REQUEST_BYTES` | var, optional | request body cap (default 262144) |
//! | `PUSHWIRE_BRIDGE_TIMEOUT_MS` | var, optional | how long to wait for the bridge (default 12000) |
//! | `PUSHWIRE_HISTORY_MAX_EVENTS` | var, optional | history kept per channel (default 100; as on the origin) |
//! | `PUSHWIRE_HISTORY_MAX_AGE_SECS` | var, optional | history age limit (default 300; as on the origin) |

use pushwire_shared::history::HistoryPolicy;
use pushwire_shared::{AppList, AppsParseError};

/// The default request body cap, as on the origin.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 256 * 1024;
/// The default bound on one bridge round trip.
///
/// Longer than the bridge's own 10 s bound on a Redis reply, so that a slow
/// Redis is answered by the bridge (with the outcome, or its own error) rather
/// than cut off here: a `503` for a publish that then happens would make the
/// caller publish the event twice.
pub const DEFAULT_BRIDGE_TIMEOUT_MS: u32 = 12_000;

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
        let number = |name: &'static str, default: u64| match get(name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| EdgeConfigError::Invalid(name)),
        };
        Ok(EdgeConfig {
            apps,
            bridge_url,
            bridge_token,
            max_request_bytes: number(
                "PUSHWIRE_MAX_REQUEST_BYTES",
                DEFAULT_MAX_REQUEST_BYTES as u64,
            )? as usize,
            bridge_timeout_ms: number(
                "PUSHWIRE_BRIDGE_TIMEOUT_MS",
                u64::from(DEFAULT_BRIDGE_TIMEOUT_MS),
            )?
            .min(60_000) as u32,
            history: HistoryPolicy {
                max_events: number(
                    "PUSHWIRE_HISTORY_MAX_EVENTS",
                    u64::from(HistoryPolicy::default().max_events),
                )?
                .clamp(1, 100_000) as u32,
                max_age_secs: number(
                    "PUSHWIRE_HISTORY_MAX_AGE_SECS",
                    u64::from(HistoryPolicy::default().max_age_secs),
                )?
                .min(u64::from(u32::MAX)) as u32,
            },
        })
    }
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
            (DEFAULT_MAX_REQUEST_BYTES, 500)
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
}
