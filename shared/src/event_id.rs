//! Event ids: unique strings, roughly time-ordered, the same on every channel
//! of one event. Readers treat them as opaque; this module is the only place
//! that spells them, whoever issues them.
//!
//! Each issuer picks its own `node` number (random, or a worker index) and
//! counts; its [`IdIssuer`] tag keeps issuers apart, so ids are unique without
//! coordination.

/// Who issues an event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdIssuer {
    /// An origin's trigger API and its sockets' events (no tag).
    Origin,
    /// The edge worker (tag `e`).
    Edge,
    /// The embedded broker, for a dead worker's members (tag `m`).
    EmbeddedBroker,
}

impl IdIssuer {
    /// The letter before the node number.
    fn tag(self) -> &'static str {
        match self {
            IdIssuer::Origin => "",
            IdIssuer::Edge => "e",
            IdIssuer::EmbeddedBroker => "m",
        }
    }
}

/// The `n`th id `issuer`'s `node` issues, for an event accepted at `ms`:
/// `{ms:x}-{tag}{node:x}-{n:x}`.
///
/// ```
/// use pushwire_shared::event_id::{event_id, IdIssuer};
/// assert_eq!(event_id(IdIssuer::Origin, 255, 0xab, 2), "ff-ab-2");
/// assert_eq!(event_id(IdIssuer::Edge, 255, 0xab, 2), "ff-eab-2");
/// assert_eq!(event_id(IdIssuer::EmbeddedBroker, 255, 1, 10), "ff-m1-a");
/// ```
pub fn event_id(issuer: IdIssuer, ms: u64, node: u64, n: u64) -> String {
    format!("{ms:x}-{}{node:x}-{n:x}", issuer.tag())
}

/// The ids of the members the Redis reaper removes for a dead `node` at `ms`,
/// less their last part: `r{node}-{ms}-` (decimal). The reap script appends
/// its count of removals so far (1, 2, …), the only part known while it runs.
///
/// ```
/// use pushwire_shared::event_id::reaped_member_id_prefix;
/// assert_eq!(reaped_member_id_prefix("17", 1000), "r17-1000-");
/// ```
pub fn reaped_member_id_prefix(node: &str, ms: u64) -> String {
    format!("r{node}-{ms}-")
}
