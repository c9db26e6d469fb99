//! `LogThrottle`: at most one log line per interval for an event that an
//! attacker can repeat at will, with how many were left unlogged.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a throttled event is logged at most.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

/// Decides whether an occurrence of one event is logged.
#[derive(Debug)]
pub(crate) struct LogThrottle {
    /// When the last line was logged (`None`: never) and how many occurrences
    /// went unlogged since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    /// A throttle that has logged nothing yet.
    pub(crate) const fn new() -> Self {
        LogThrottle {
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one occurrence at `now`; `Some(n)` when it is to be logged, `n`
    /// being how many occurrences went unlogged before it.
    pub(crate) fn hit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.0 {
            Some(last) if now.saturating_duration_since(last) < LOG_EVERY => {
                state.1 += 1;
                None
            }
            _ => {
                let skipped = state.1;
                *state = (Some(now), 0);
                Some(skipped)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_the_rest() {
        let throttle = LogThrottle::new();
        let t0 = Instant::now();
        assert_eq!(throttle.hit(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(throttle.hit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(throttle.hit(t0 + LOG_EVERY), Some(5));
        assert_eq!(throttle.hit(t0 + LOG_EVERY), None);
        assert_eq!(throttle.hit(t0 + LOG_EVERY * 3), Some(1));
    }
}
