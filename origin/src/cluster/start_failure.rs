//! Why workers cannot start, kept by the master from a failed start until a
//! worker is ready: logged once, and what every connection it cannot hand over
//! is answered with.

use std::sync::{Mutex, MutexGuard};

use super::sticky::WorkerId;

/// The failed starts since a worker was last ready.
#[derive(Debug, Default)]
pub(super) struct StartFailures(Mutex<Failures>);

#[derive(Debug, Default)]
struct Failures {
    /// The latest reason.
    reason: Option<String>,
    /// How many starts failed.
    count: u32,
}

impl StartFailures {
    fn lock(&self) -> MutexGuard<'_, Failures> {
        // Plain assignments only: a poisoned lock still holds a whole value.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Worker `worker` could not be spawned, or exited before it was ready,
    /// because of `reason`. A new reason is logged at error level; the same one
    /// again only at debug, so a cause that persists is one line however
    /// often the supervisors retry.
    pub(super) fn record(&self, worker: WorkerId, reason: String) {
        let mut failures = self.lock();
        failures.count = failures.count.saturating_add(1);
        if failures.reason.as_deref() == Some(reason.as_str()) {
            tracing::debug!(
                worker,
                failed_starts = failures.count,
                "a worker still cannot start: {reason}"
            );
            return;
        }
        tracing::error!(
            worker,
            "a worker cannot start: {reason}; retrying with back-off, and answering 503 with this reason while no worker is ready"
        );
        failures.reason = Some(reason);
    }

    /// Worker `worker` is ready: whatever kept workers from starting is over.
    pub(super) fn ready(&self, worker: WorkerId) {
        let mut failures = self.lock();
        if failures.count > 0 {
            tracing::info!(
                worker,
                failed_starts = failures.count,
                "a worker started after failed starts"
            );
        }
        *failures = Failures::default();
    }

    /// Why workers cannot start, from the latest failed start until a worker
    /// is ready.
    pub(super) fn reason(&self) -> Option<String> {
        self.lock().reason.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_lasts_until_a_worker_is_ready() {
        let failures = StartFailures::default();
        assert_eq!(failures.reason(), None);
        failures.record(0, "no binary".into());
        failures.record(1, "no binary".into());
        assert_eq!(failures.reason().as_deref(), Some("no binary"));
        assert_eq!(failures.lock().count, 2);
        failures.record(0, "no memory".into());
        assert_eq!(failures.reason().as_deref(), Some("no memory"));
        failures.ready(1);
        assert_eq!(failures.reason(), None);
        assert_eq!(failures.lock().count, 0);
    }
}
