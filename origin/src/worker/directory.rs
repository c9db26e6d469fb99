//! `SocketDirectory`: Pusher socket id → local Socket.IO session id, so a trigger's
//! `socket_id` can be left out of a broadcast. `SocketIdGenerator` hands out the ids.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use pushwire_shared::SocketId;
use socketioxide::socket::Sid;

/// Local sockets by their Pusher socket id.
#[derive(Debug, Default)]
pub struct SocketDirectory(Mutex<HashMap<SocketId, Sid>>);

impl SocketDirectory {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SocketId, Sid>> {
        // Single inserts and removes only: a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a connected socket.
    pub fn insert(&self, id: SocketId, sid: Sid) {
        self.map().insert(id, sid);
    }

    /// Forgets a disconnected socket.
    pub fn remove(&self, id: &SocketId) {
        self.map().remove(id);
    }

    /// The local session of `id`, if it is connected here.
    pub fn get(&self, id: &SocketId) -> Option<Sid> {
        self.map().get(id).copied()
    }
}

/// Generates socket ids `{node}.{n}`: `node` is random per process, so ids from
/// different processes and machines do not collide; `n` counts up.
#[derive(Debug)]
pub struct SocketIdGenerator {
    node: u64,
    next: AtomicU64,
}

impl SocketIdGenerator {
    /// A generator for this process with a random node number.
    pub fn random() -> Self {
        SocketIdGenerator::with_node(rand::random_range(1..=u64::from(u32::MAX)))
    }

    /// A generator with a fixed node number (tests).
    pub fn with_node(node: u64) -> Self {
        SocketIdGenerator {
            node,
            next: AtomicU64::new(1),
        }
    }

    /// The next id.
    pub fn next(&self) -> SocketId {
        SocketId::from_parts(self.node, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_pusher_shaped_and_distinct() {
        let ids = SocketIdGenerator::with_node(42);
        let a = ids.next();
        let b = ids.next();
        assert_eq!(a.as_str(), "42.1");
        assert_ne!(a, b);
        let random = SocketIdGenerator::random().next();
        assert!(random.as_str().parse::<SocketId>().is_ok());
    }
}
