//! `AppConnections`: each app's open connections on this worker (both
//! protocols), held to the worker's share of the app's `max_connections`.
//!
//! The cap is split over the origin's workers like the per-address cap, so no
//! worker needs to ask another before admitting a connection: an origin holds
//! at most about `max_connections` of the app, each worker at most its share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pushwire_shared::App;

/// The app holds as many connections on this worker as its share allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "over capacity: app {app} holds the most connections allowed (limits.max_connections = {max}); retry later"
)]
pub(crate) struct OverCapacity {
    /// The app's id.
    pub app: String,
    /// Its `max_connections`.
    pub max: usize,
}

/// Open connections per app id, on this worker.
#[derive(Debug)]
pub(crate) struct AppConnections {
    open: Mutex<HashMap<String, usize>>,
    workers: usize,
}

impl AppConnections {
    /// Counts for one worker of `workers`.
    pub(crate) fn new(workers: usize) -> Arc<Self> {
        Arc::new(AppConnections {
            open: Mutex::new(HashMap::new()),
            workers: workers.max(1),
        })
    }

    /// Counts a new connection of `app`, or refuses it when the app already
    /// holds this worker's share of its `max_connections` (0: no cap). The
    /// count drops when the returned slot does.
    pub(crate) fn open(self: &Arc<Self>, app: &App) -> Result<ConnectionSlot, OverCapacity> {
        let max = app.limits.max_connections;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(app.id.clone()).or_default();
        if max > 0 && *count >= max.div_ceil(self.workers) {
            return Err(OverCapacity {
                app: app.id.clone(),
                max,
            });
        }
        *count += 1;
        Ok(ConnectionSlot {
            owner: self.clone(),
            app: app.id.clone(),
        })
    }

    fn close(&self, app: &str) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(app) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(app);
            }
        }
    }
}

/// One counted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    owner: Arc<AppConnections>,
    app: String,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.owner.close(&self.app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(max_connections: usize) -> App {
        let mut app = pushwire_shared::AppList::parse("1:k:s")
            .unwrap()
            .single()
            .unwrap()
            .clone();
        app.limits.max_connections = max_connections;
        app
    }

    #[test]
    fn each_worker_admits_its_share_and_frees_it_on_drop() {
        // 5 over 2 workers: 3 each.
        let counts = AppConnections::new(2);
        let capped = app(5);
        let held: Vec<_> = (0..3).map(|_| counts.open(&capped).unwrap()).collect();
        assert_eq!(
            counts.open(&capped).unwrap_err(),
            OverCapacity {
                app: "1".into(),
                max: 5
            }
        );
        drop(held);
        assert!(counts.open(&capped).is_ok());
        assert!(counts.open.lock().unwrap().is_empty(), "freed on drop");
        // 0: no cap.
        let free = app(0);
        let many: Vec<_> = (0..100).map(|_| counts.open(&free).unwrap()).collect();
        assert_eq!(many.len(), 100);
    }
}
