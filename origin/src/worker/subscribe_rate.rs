//! `SubscribeRate`: a token bucket limiting how fast one socket subscribes.
//!
//! Each subscribe takes a token; tokens come back at a steady rate up to the
//! bucket's size. The size is the app's channel cap, so a client subscribing its
//! whole set at once (a reconnect) is never refused, while a socket churning
//! subscriptions settles at the refill rate. The caller passes the time, so tests
//! need no clock.

use std::time::{Duration, Instant};

/// One socket's subscribe budget.
#[derive(Debug)]
pub(crate) struct SubscribeRate {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl SubscribeRate {
    /// A full bucket of `burst` tokens, refilled at `per_sec` tokens a second.
    pub(crate) fn new(burst: usize, per_sec: u32, now: Instant) -> Self {
        SubscribeRate {
            capacity: burst as f64,
            per_sec: f64::from(per_sec),
            tokens: burst as f64,
            refilled_at: now,
        }
    }

    /// Takes a token; false (and takes nothing) when the bucket is empty.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_sec).min(self.capacity);
        self.refilled_at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// How long until the next token, for the refusal's message.
    pub(crate) fn retry_after(&self) -> Duration {
        if self.per_sec <= 0.0 {
            return Duration::MAX;
        }
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / self.per_sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_burst_passes_then_the_refill_rate_rules() {
        let start = Instant::now();
        let mut rate = SubscribeRate::new(100, 10, start);
        assert_eq!((0..150).filter(|_| rate.allow(start)).count(), 100);
        assert!(!rate.allow(start));
        assert_eq!(rate.retry_after(), Duration::from_millis(100));
        let later = start + Duration::from_millis(250);
        assert_eq!((0..10).filter(|_| rate.allow(later)).count(), 2);
    }

    #[test]
    fn idle_time_refills_no_more_than_the_burst() {
        let start = Instant::now();
        let mut rate = SubscribeRate::new(3, 10, start);
        let much_later = start + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| rate.allow(much_later)).count(), 3);
    }

    #[test]
    fn no_refill_leaves_only_the_burst() {
        let start = Instant::now();
        let mut rate = SubscribeRate::new(2, 0, start);
        assert!(rate.allow(start) && rate.allow(start));
        assert!(!rate.allow(start + Duration::from_secs(60)));
        assert_eq!(rate.retry_after(), Duration::MAX);
    }
}
