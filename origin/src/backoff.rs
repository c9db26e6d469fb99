//! `Backoff`: pauses between retries that double from a minimum up to a maximum.

use std::time::Duration;

/// Doubling pauses: `min`, `2·min`, `4·min`, …, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// Pauses from `min` doubling up to `max`.
    pub(crate) const fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max }
    }

    /// The pause before retry `attempt` (0-based).
    pub(crate) fn pause(&self, attempt: u32) -> Duration {
        self.min
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.pause(0), Duration::from_millis(100));
        assert_eq!(b.pause(2), Duration::from_millis(400));
        assert_eq!(b.pause(10), Duration::from_secs(1));
        assert_eq!(b.pause(u32::MAX), Duration::from_secs(1));
    }
}
