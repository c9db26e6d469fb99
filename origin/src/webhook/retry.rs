//! `RetrySchedule`: when to try a failed webhook again, and when to give up.

use std::time::Duration;

use crate::backoff::Backoff;

/// The pause after the first failure, before jitter.
pub(crate) const FIRST_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The longest pause between two attempts, before jitter: a receiver back
/// from an outage waits at most this long for what it missed.
pub(crate) const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);

/// How long after its first attempt a batch is still retried: Pusher's five
/// minutes, which receivers written for Pusher expect to ride out.
pub(crate) const RETRY_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Exponential back-off with jitter over a fixed window.
///
/// Pauses double from `first` up to `max`; each is then drawn from its upper
/// half (equal jitter), so that origins retrying the same receiver after the
/// same outage spread their attempts while none retries sooner than half the
/// pause. Attempts go on until one ends after the window has passed; the
/// pause before that one is shortened to land on the window's end, so a
/// batch is dropped no sooner than the window after its first attempt, and
/// not long after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetrySchedule {
    backoff: Backoff,
    window: Duration,
}

impl Default for RetrySchedule {
    /// [`FIRST_RETRY_PAUSE`] doubling to [`MAX_RETRY_PAUSE`] for [`RETRY_WINDOW`].
    fn default() -> Self {
        RetrySchedule::new(FIRST_RETRY_PAUSE, MAX_RETRY_PAUSE, RETRY_WINDOW)
    }
}

impl RetrySchedule {
    /// Pauses from `first` doubling up to `max`, retried for `window`.
    pub(crate) const fn new(first: Duration, max: Duration, window: Duration) -> Self {
        RetrySchedule {
            backoff: Backoff::new(first, max),
            window,
        }
    }

    /// How long after its first attempt a batch is still retried.
    pub(crate) const fn window(&self) -> Duration {
        self.window
    }

    /// The pause before the next attempt, after `failures` failed attempts
    /// (1 after the first) of a batch whose first attempt started `elapsed`
    /// ago; `None` once the window has passed: the batch is dropped.
    ///
    /// `jitter` is a random number in `[0, 1]` (out of range is clamped):
    /// the caller draws it, so the schedule itself is a pure function.
    pub(crate) fn next_pause(
        &self,
        failures: u32,
        elapsed: Duration,
        jitter: f64,
    ) -> Option<Duration> {
        let left = self.window.checked_sub(elapsed).filter(|d| !d.is_zero())?;
        let full = self.backoff.pause(failures.saturating_sub(1));
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        let pause = full / 2 + (full / 2).mul_f64(jitter);
        Some(pause.min(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a batch that always fails, each attempt taking `attempt_takes`;
    /// returns when each attempt started, from the first.
    fn attempts(schedule: RetrySchedule, attempt_takes: Duration, jitter: f64) -> Vec<Duration> {
        let mut now = Duration::ZERO;
        let mut starts = Vec::new();
        for failures in 1.. {
            starts.push(now);
            now += attempt_takes;
            match schedule.next_pause(failures, now, jitter) {
                Some(pause) => now += pause,
                None => break,
            }
            assert!(starts.len() < 1000, "never gave up: {starts:?}");
        }
        starts
    }

    #[test]
    fn pauses_double_up_to_the_cap() {
        let schedule = RetrySchedule::default();
        let at = |failures| schedule.next_pause(failures, Duration::from_secs(1), 1.0);
        assert_eq!(at(1), Some(Duration::from_secs(1)));
        assert_eq!(at(2), Some(Duration::from_secs(2)));
        assert_eq!(at(5), Some(Duration::from_secs(16)));
        assert_eq!(at(7), Some(Duration::from_secs(60)));
        assert_eq!(at(u32::MAX), Some(Duration::from_secs(60)));
        // `0` failures reads as the first.
        assert_eq!(
            schedule.next_pause(0, Duration::ZERO, 1.0),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn jitter_draws_from_the_upper_half_of_each_pause() {
        let schedule = RetrySchedule::default();
        let pause = |jitter| schedule.next_pause(4, Duration::ZERO, jitter).unwrap();
        assert_eq!(pause(0.0), Duration::from_secs(4));
        assert_eq!(pause(0.5), Duration::from_secs(6));
        assert_eq!(pause(1.0), Duration::from_secs(8));
        assert_eq!(pause(-3.0), pause(0.0));
        assert_eq!(pause(7.0), pause(1.0));
        assert_eq!(pause(f64::NAN), pause(0.0));
    }

    #[test]
    fn a_failing_batch_is_retried_for_at_least_five_minutes_then_dropped() {
        for jitter in [0.0, 0.37, 1.0] {
            for takes in [
                Duration::ZERO,
                Duration::from_millis(300),
                Duration::from_secs(5),
            ] {
                let starts = attempts(RetrySchedule::default(), takes, jitter);
                let dropped = *starts.last().unwrap() + takes;
                assert!(
                    dropped >= RETRY_WINDOW,
                    "jitter {jitter}, attempts taking {takes:?}: dropped at {dropped:?}"
                );
                assert!(
                    dropped <= RETRY_WINDOW + takes,
                    "jitter {jitter}, attempts taking {takes:?}: dropped late, at {dropped:?}"
                );
                // Back-off keeps the count small: about 11 to 15 attempts.
                assert!(
                    (8..=20).contains(&starts.len()),
                    "{} attempts",
                    starts.len()
                );
                assert!(
                    starts.windows(2).all(|w| w[1] > w[0]),
                    "attempts out of order: {starts:?}"
                );
            }
        }
    }

    #[test]
    fn a_slow_final_attempt_past_the_window_ends_it() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.next_pause(3, RETRY_WINDOW, 0.5), None);
        assert_eq!(
            schedule.next_pause(3, RETRY_WINDOW + Duration::from_secs(4), 0.5),
            None
        );
        // Just before the window's end, the pause lands on it.
        assert_eq!(
            schedule.next_pause(9, RETRY_WINDOW - Duration::from_secs(2), 1.0),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn other_windows_and_pauses() {
        let quick = RetrySchedule::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
            Duration::from_millis(100),
        );
        let starts = attempts(quick, Duration::ZERO, 1.0);
        let ms: Vec<u128> = starts.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 10, 30, 70, 100]);
    }
}
