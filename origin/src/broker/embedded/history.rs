//! The embedded broker's channel histories, kept by the server.
//!
//! The same rules as the Redis publish script: each channel's events get
//! increasing [`StreamId`]s, the newest `max_events` younger than `max_age_secs`
//! are kept (the newest always), and the epoch is fixed for the master's life,
//! so a restarted master (which lost the history) is a new epoch.

use std::collections::{HashMap, VecDeque};

use pushwire_shared::history::{HistoryPolicy, IDLE_KEY_TTL_SECS, Position, StreamId};

/// Channel → retained `(id, envelope)` entries, oldest first.
#[derive(Debug)]
pub(super) struct History {
    policy: HistoryPolicy,
    epoch: String,
    channels: HashMap<String, VecDeque<(StreamId, String)>>,
    last_sweep_ms: u64,
}

impl History {
    /// An empty store with its own `epoch`.
    pub(super) fn new(policy: HistoryPolicy, epoch: String) -> Self {
        History {
            policy,
            epoch,
            channels: HashMap::new(),
            last_sweep_ms: 0,
        }
    }

    /// The epoch of every position this store hands out.
    pub(super) fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Appends `envelope` to `channel`'s history at `now_ms`; returns its position.
    pub(super) fn append(&mut self, channel: &str, envelope: String, now_ms: u64) -> Position {
        self.sweep(now_ms);
        let entries = self.channels.entry(channel.to_owned()).or_default();
        let last = entries.back().map(|(id, _)| *id).unwrap_or_default();
        let id = last.next(now_ms);
        entries.push_back((id, envelope));
        let max_events = self.policy.max_events.max(1) as usize;
        let min_ms = now_ms.saturating_sub(u64::from(self.policy.max_age_secs) * 1000);
        while entries.len() > max_events || entries.front().is_some_and(|(id, _)| id.ms < min_ms) {
            entries.pop_front();
        }
        Position {
            epoch: self.epoch.clone(),
            id,
        }
    }

    /// `channel`'s entries with ids `>= from`, oldest first.
    pub(super) fn read(&self, channel: &str, from: StreamId) -> Vec<(StreamId, String)> {
        self.channels
            .get(channel)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|(id, _)| *id >= from)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets channels idle for longer than the idle key lifetime (as Redis
    /// expires their streams), at most once a minute.
    fn sweep(&mut self, now_ms: u64) {
        if now_ms < self.last_sweep_ms + 60_000 {
            return;
        }
        self.last_sweep_ms = now_ms;
        let oldest = now_ms.saturating_sub(IDLE_KEY_TTL_SECS * 1000);
        self.channels
            .retain(|_, entries| entries.back().is_some_and(|(id, _)| id.ms >= oldest));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_events: u32, max_age_secs: u32) -> History {
        History::new(
            HistoryPolicy {
                max_events,
                max_age_secs,
            },
            "ep".into(),
        )
    }

    #[test]
    fn ids_increase_per_channel_and_carry_the_epoch() {
        let mut s = store(10, 60);
        let a = s.append("c", "1".into(), 1000);
        let b = s.append("c", "2".into(), 1000);
        let c = s.append("c", "3".into(), 999); // clock went back
        assert_eq!(a.to_string(), "ep:1000-0");
        assert!(a.id < b.id && b.id < c.id);
        assert_eq!(
            s.append("other", "x".into(), 5).id,
            StreamId { ms: 5, seq: 0 }
        );
        let from_b: Vec<String> = s.read("c", b.id).into_iter().map(|(_, e)| e).collect();
        assert_eq!(from_b, ["2", "3"]);
        assert!(s.read("none", StreamId::default()).is_empty());
    }

    #[test]
    fn trims_by_count_and_age_but_keeps_the_newest() {
        let mut s = store(2, 1);
        for (i, now) in [1000, 1001, 1002].into_iter().enumerate() {
            s.append("c", i.to_string(), now);
        }
        assert_eq!(s.read("c", StreamId::default()).len(), 2);
        s.append("c", "late".into(), 60_000);
        let left = s.read("c", StreamId::default());
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1, "late");
    }

    #[test]
    fn idle_channels_are_forgotten() {
        let mut s = store(10, 1);
        s.append("idle", "x".into(), 1);
        s.append("busy", "y".into(), IDLE_KEY_TTL_SECS * 1000 + 120_000);
        assert!(s.read("idle", StreamId::default()).is_empty());
        assert_eq!(s.read("busy", StreamId::default()).len(), 1);
    }
}
