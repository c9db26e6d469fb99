//! The embedded broker's cluster-wide channel state, kept by the server: each
//! worker's socket counts and each presence channel's members.
//! The same rules as the Redis directory; a worker that dies is forgotten at
//! once (the master sees its control socket close).

use std::collections::{BTreeMap, HashMap};

use pushwire_shared::directory::ChannelStats;

use super::WorkerId;

/// `(app, channel)`.
type ChannelKey = (String, String);

/// One presence channel.
#[derive(Debug, Default)]
struct Presence {
    /// user id → user_info JSON.
    members: BTreeMap<String, String>,
    /// user id → sockets per worker.
    sockets: HashMap<String, HashMap<WorkerId, usize>>,
}

/// A channel going from no subscriber anywhere to one, or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Occupancy {
    /// Its first subscriber.
    Occupied,
    /// Its last subscriber left.
    Vacated,
}

/// Counts and members, cluster-wide (for one server).
#[derive(Debug, Default)]
pub(super) struct Directory {
    counts: HashMap<ChannelKey, HashMap<WorkerId, usize>>,
    presence: HashMap<ChannelKey, Presence>,
}

impl Directory {
    /// Records `worker`'s socket count on a channel; returns the channel's
    /// transition, if this made one.
    pub(super) fn count(
        &mut self,
        worker: WorkerId,
        key: ChannelKey,
        count: usize,
    ) -> Option<Occupancy> {
        let was_occupied = self.counts.contains_key(&key);
        let workers = self.counts.entry(key.clone()).or_default();
        if count == 0 {
            workers.remove(&worker);
            if workers.is_empty() {
                self.counts.remove(&key);
            }
        } else {
            workers.insert(worker, count);
        }
        match (was_occupied, self.counts.contains_key(&key)) {
            (false, true) => Some(Occupancy::Occupied),
            (true, false) => Some(Occupancy::Vacated),
            _ => None,
        }
    }

    /// Adds a socket of `user_id` on `worker`; `None` when the channel is full.
    /// Returns whether the user is new, and the members after the join.
    pub(super) fn join(
        &mut self,
        worker: WorkerId,
        key: ChannelKey,
        user_id: &str,
        user_info: &str,
        max_members: usize,
    ) -> Option<(bool, Vec<(String, String)>)> {
        let presence = self.presence.entry(key).or_default();
        if !presence.members.contains_key(user_id) && presence.members.len() >= max_members {
            return None;
        }
        let added = !presence.members.contains_key(user_id);
        if added {
            presence
                .members
                .insert(user_id.to_owned(), user_info.to_owned());
        }
        *presence
            .sockets
            .entry(user_id.to_owned())
            .or_default()
            .entry(worker)
            .or_default() += 1;
        let members = presence
            .members
            .iter()
            .map(|(id, info)| (id.clone(), info.clone()))
            .collect();
        Some((added, members))
    }

    /// Removes a socket of `user_id` on `worker`; true when it was the user's last.
    pub(super) fn leave(&mut self, worker: WorkerId, key: &ChannelKey, user_id: &str) -> bool {
        let Some(presence) = self.presence.get_mut(key) else {
            return false;
        };
        let Some(per_worker) = presence.sockets.get_mut(user_id) else {
            return false;
        };
        match per_worker.get_mut(&worker) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                per_worker.remove(&worker);
            }
            None => return false,
        }
        if !per_worker.is_empty() {
            return false;
        }
        presence.sockets.remove(user_id);
        presence.members.remove(user_id);
        if presence.members.is_empty() {
            self.presence.remove(key);
        }
        true
    }

    /// Forgets everything of a dead `worker`; returns the users it was the last
    /// socket of, as `(app, channel, user_id)`, and the channels it was the
    /// last subscriber of.
    pub(super) fn remove_worker(
        &mut self,
        worker: WorkerId,
    ) -> (Vec<(String, String, String)>, Vec<ChannelKey>) {
        let mut vacated = Vec::new();
        self.counts.retain(|key, workers| {
            workers.remove(&worker);
            if workers.is_empty() {
                vacated.push(key.clone());
            }
            !workers.is_empty()
        });
        let mut gone = Vec::new();
        for ((app, channel), presence) in &mut self.presence {
            presence.sockets.retain(|user, per_worker| {
                per_worker.remove(&worker);
                if per_worker.is_empty() {
                    gone.push((app.clone(), channel.clone(), user.clone()));
                }
                !per_worker.is_empty()
            });
            presence
                .members
                .retain(|user, _| presence.sockets.contains_key(user));
        }
        self.presence.retain(|_, p| !p.members.is_empty());
        (gone, vacated)
    }

    /// A channel's subscription and member counts.
    pub(super) fn stats(&self, key: &ChannelKey) -> ChannelStats {
        let subscriptions = self
            .counts
            .get(key)
            .map_or(0, |w| w.values().sum::<usize>());
        let users = self.presence.get(key).map_or(0, |p| p.members.len());
        ChannelStats {
            subscription_count: subscriptions as u64,
            user_count: users as u64,
        }
    }

    /// Occupied channels of `app` starting with `prefix`, sorted by name, with stats.
    pub(super) fn occupied(&self, app: &str, prefix: &str) -> Vec<(String, ChannelStats)> {
        let mut list: Vec<(String, ChannelStats)> = self
            .counts
            .keys()
            .filter(|(a, channel)| a == app && channel.starts_with(prefix))
            .map(|key| (key.1.clone(), self.stats(key)))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// A presence channel's members.
    pub(super) fn members(&self, key: &ChannelKey) -> Vec<(String, String)> {
        self.presence.get(key).map_or_else(Vec::new, |p| {
            p.members
                .iter()
                .map(|(id, info)| (id.clone(), info.clone()))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ChannelKey {
        ("1".into(), "presence-r".into())
    }

    #[test]
    fn a_user_is_one_member_across_sockets_and_workers() {
        let mut d = Directory::default();
        assert!(d.join(0, key(), "u", "null", 10).unwrap().0);
        assert!(!d.join(1, key(), "u", "null", 10).unwrap().0);
        assert_eq!(d.stats(&key()).user_count, 1);
        assert!(!d.leave(0, &key(), "u"));
        assert!(
            d.leave(1, &key(), "u"),
            "the last socket removes the member"
        );
        assert!(!d.leave(1, &key(), "u"), "once");
        assert!(d.members(&key()).is_empty());
    }

    #[test]
    fn limits_and_dead_workers() {
        let mut d = Directory::default();
        d.join(0, key(), "a", "null", 1).unwrap();
        assert!(d.join(1, key(), "b", "null", 1).is_none(), "full");
        assert!(
            d.join(1, key(), "a", "null", 1).is_some(),
            "an existing member may add a socket"
        );
        d.join(0, key(), "c", "null", 5).unwrap();
        assert_eq!(d.count(0, key(), 3), Some(Occupancy::Occupied));
        assert_eq!(d.count(1, key(), 2), None);
        assert_eq!(d.stats(&key()).subscription_count, 5);
        let (mut gone, vacated) = d.remove_worker(0);
        gone.sort();
        assert_eq!(gone, [("1".into(), "presence-r".into(), "c".into())]);
        assert!(vacated.is_empty(), "worker 1 still holds it");
        let stats = ChannelStats {
            subscription_count: 2,
            user_count: 1,
        };
        assert_eq!(d.stats(&key()), stats);
        assert_eq!(d.occupied("1", "presence-"), [("presence-r".into(), stats)]);
        assert!(d.occupied("1", "private-").is_empty());
        assert_eq!(d.remove_worker(1).1, [key()], "its last subscriber died");
    }

    #[test]
    fn a_channel_is_occupied_and_vacated_once_across_workers() {
        let mut d = Directory::default();
        assert_eq!(d.count(0, key(), 1), Some(Occupancy::Occupied));
        assert_eq!(d.count(1, key(), 1), None);
        assert_eq!(d.count(0, key(), 2), None);
        assert_eq!(d.count(0, key(), 0), None);
        assert_eq!(d.count(1, key(), 0), Some(Occupancy::Vacated));
        assert_eq!(d.count(1, key(), 0), None, "once");
    }
}
