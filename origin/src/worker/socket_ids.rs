//! `SocketIdGenerator`: hands out Pusher-style socket ids.

use std::sync::atomic::{AtomicU64, Ordering};

use pushwire_shared::SocketId;

/// Generates socket ids `{node}.{n}`: `node` is random per process, so ids from
/// different processes and machines do not collide; `n` counts up.
#[derive(Debug)]
pub(crate) struct SocketIdGenerator {
    node: u64,
    next: AtomicU64,
}

impl SocketIdGenerator {
    /// A generator for this process with a random node number.
    pub(crate) fn random() -> Self {
        SocketIdGenerator::with_node(rand::random_range(1..=u64::from(u32::MAX)))
    }

    /// A generator with a fixed node number (tests).
    pub(crate) fn with_node(node: u64) -> Self {
        SocketIdGenerator {
            node,
            next: AtomicU64::new(1),
        }
    }

    /// The node number: the part before the dot of every id this generator makes.
    pub(crate) fn node(&self) -> u64 {
        self.node
    }

    /// The next id.
    pub(crate) fn next(&self) -> SocketId {
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
