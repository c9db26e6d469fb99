//! The settings both the edge worker and the origin accept: their defaults,
//! bounds and validation, written once.
//!
//! History retention is applied by whoever publishes, so an edge and an origin
//! given the same value must keep the same history, or refuse the value with the
//! same error. Each side reads the value its own way (Worker vars; flags,
//! environment or a config file) and hands the number to the validator here.
//!
//! ```
//! use pushwire_shared::settings::{self, SettingError};
//! assert_eq!(settings::max_request_bytes(4096), Ok(4096));
//! assert_eq!(
//!     settings::history_max_events(0),
//!     Err(SettingError::TooSmall { setting: "history max_events", value: 0, min: 1 })
//! );
//! ```

use crate::history::HistoryPolicy;

/// The default request body cap of the trigger API, in bytes.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 256 * 1024;

/// The smallest request body cap: below it, a single ordinary trigger is refused.
pub const MIN_MAX_REQUEST_BYTES: usize = 1024;

/// The default number of history events kept per channel.
pub const DEFAULT_HISTORY_MAX_EVENTS: u32 = 100;

/// The most history events a channel may keep.
///
/// One under the origin's recovery read (10,000 entries): a history that fits
/// in one read is recovered whole, so `recovered: true` stays exact.
pub const MAX_HISTORY_EVENTS: u32 = 9_999;

/// The default age after which history is trimmed, in seconds.
pub const DEFAULT_HISTORY_MAX_AGE_SECS: u32 = 300;

/// Why a setting's value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// Below the setting's minimum.
    #[error("{setting} must be at least {min}, not {value}")]
    TooSmall {
        /// The setting, as the config file names it.
        setting: &'static str,
        /// The value given.
        value: u64,
        /// The smallest value accepted.
        min: u64,
    },
    /// Above the setting's maximum.
    #[error("{setting} must be at most {max}, not {value}")]
    TooLarge {
        /// The setting, as the config file names it.
        setting: &'static str,
        /// The value given.
        value: u64,
        /// The largest value accepted.
        max: u64,
    },
}

/// The inclusive range of one numeric setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The setting, as the config file names it (used in errors).
    pub setting: &'static str,
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted.
    pub max: u64,
}

impl Bounds {
    /// `value` if it is within the bounds.
    ///
    /// ```
    /// use pushwire_shared::settings::Bounds;
    /// let workers = Bounds { setting: "workers", min: 1, max: 256 };
    /// assert_eq!(workers.check(4), Ok(4));
    /// assert!(workers.check(257).is_err());
    /// ```
    pub const fn check(&self, value: u64) -> Result<u64, SettingError> {
        if value < self.min {
            Err(SettingError::TooSmall {
                setting: self.setting,
                value,
                min: self.min,
            })
        } else if value > self.max {
            Err(SettingError::TooLarge {
                setting: self.setting,
                value,
                max: self.max,
            })
        } else {
            Ok(value)
        }
    }
}

/// The bounds of the trigger API's request body cap.
pub const MAX_REQUEST_BYTES_BOUNDS: Bounds = Bounds {
    setting: "max_request_bytes",
    min: MIN_MAX_REQUEST_BYTES as u64,
    max: u64::MAX,
};

/// The bounds of [`HistoryPolicy::max_events`].
pub const HISTORY_MAX_EVENTS_BOUNDS: Bounds = Bounds {
    setting: "history max_events",
    min: 1,
    max: MAX_HISTORY_EVENTS as u64,
};

/// The bounds of [`HistoryPolicy::max_age_secs`] (0 keeps only the newest event).
pub const HISTORY_MAX_AGE_SECS_BOUNDS: Bounds = Bounds {
    setting: "history max_age_secs",
    min: 0,
    max: u32::MAX as u64,
};

/// Validates a request body cap.
pub fn max_request_bytes(value: u64) -> Result<usize, SettingError> {
    let value = MAX_REQUEST_BYTES_BOUNDS.check(value)?;
    usize::try_from(value).map_err(|_| SettingError::TooLarge {
        setting: MAX_REQUEST_BYTES_BOUNDS.setting,
        value,
        max: usize::MAX as u64,
    })
}

/// Validates a number of history events kept per channel.
pub fn history_max_events(value: u64) -> Result<u32, SettingError> {
    HISTORY_MAX_EVENTS_BOUNDS.check(value).map(|v| v as u32)
}

/// Validates a history age limit, in seconds.
pub fn history_max_age_secs(value: u64) -> Result<u32, SettingError> {
    HISTORY_MAX_AGE_SECS_BOUNDS.check(value).map(|v| v as u32)
}

/// Validates both history settings into a policy.
///
/// ```
/// use pushwire_shared::settings;
/// let policy = settings::history_policy(20, 60).unwrap();
/// assert_eq!((policy.max_events, policy.max_age_secs), (20, 60));
/// assert!(settings::history_policy(100_000, 60).is_err());
/// ```
pub fn history_policy(max_events: u64, max_age_secs: u64) -> Result<HistoryPolicy, SettingError> {
    Ok(HistoryPolicy {
        max_events: history_max_events(max_events)?,
        max_age_secs: history_max_age_secs(max_age_secs)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_within_their_bounds() {
        assert_eq!(
            max_request_bytes(DEFAULT_MAX_REQUEST_BYTES as u64),
            Ok(DEFAULT_MAX_REQUEST_BYTES)
        );
        assert_eq!(
            history_policy(
                u64::from(DEFAULT_HISTORY_MAX_EVENTS),
                u64::from(DEFAULT_HISTORY_MAX_AGE_SECS)
            ),
            Ok(HistoryPolicy::default())
        );
    }

    #[test]
    fn bounds_are_inclusive_and_errors_name_the_setting() {
        assert_eq!(max_request_bytes(1024), Ok(1024));
        assert_eq!(
            max_request_bytes(1023).unwrap_err().to_string(),
            "max_request_bytes must be at least 1024, not 1023"
        );
        assert_eq!(history_max_events(1), Ok(1));
        assert_eq!(history_max_events(9_999), Ok(9_999));
        assert_eq!(
            history_max_events(10_000),
            Err(SettingError::TooLarge {
                setting: "history max_events",
                value: 10_000,
                max: 9_999
            })
        );
        assert_eq!(history_max_age_secs(0), Ok(0));
        assert_eq!(history_max_age_secs(u64::from(u32::MAX)), Ok(u32::MAX));
        assert!(history_max_age_secs(u64::from(u32::MAX) + 1).is_err());
    }
}
