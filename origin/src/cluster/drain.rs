//! How long a stopping cluster waits for its workers to drain.

use std::time::Duration;

/// How long workers may drain after SIGTERM before the master kills them.
pub(super) const DRAIN_GRACE: Duration = Duration::from_secs(8);

/// How long a draining worker may take; less than the master's grace so the
/// worker, not the master's SIGKILL, ends it.
pub(super) const WORKER_DRAIN: Duration =
    Duration::from_millis(DRAIN_GRACE.as_millis() as u64 - 1000);
