//! Reading the cluster-wide channel state (the "directory") from Redis, as
//! plain command lists: the origin runs them with its Redis client, the edge as
//! Upstash `/pipeline` requests through the bridge. Both read the same keys the
//! same way.
//!
//! Keys (written by the origin's workers, see `PROTOCOL.md`): the live nodes in
//! [`KeySpace::nodes`] (score: last heartbeat, ms), each node's socket counts in
//! [`KeySpace::node_subs`] (`{app}:{channel}` → count), and each presence
//! channel's members in [`KeySpace::members`].
//!
//! A read is a small state machine: [`DirectoryRead::start`] gives the first
//! batch of commands, [`DirectoryRead::advance`] takes their replies and gives
//! the next batch or the result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::channel::{ChannelKind, ChannelName};
use crate::keys::KeySpace;
use crate::trigger::ChannelAttribute;

/// A node silent for longer than this is dead: its counts stop counting.
pub const NODE_TIMEOUT_MS: u64 = 10_000;

/// A channel's cluster-wide state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// Sockets subscribed, on every worker and origin.
    pub subscription_count: u64,
    /// Distinct presence members.
    pub user_count: u64,
}

impl ChannelStats {
    /// The attributes asked for, as a JSON object (`{}` when none).
    ///
    /// ```
    /// use pushwire_shared::directory::ChannelStats;
    /// use pushwire_shared::trigger::ChannelAttribute;
    /// let stats = ChannelStats { subscription_count: 3, user_count: 2 };
    /// assert_eq!(stats.attributes(&[ChannelAttribute::UserCount]).to_string(), r#"{"user_count":2}"#);
    /// ```
    pub fn attributes(&self, info: &[ChannelAttribute]) -> Value {
        let mut obj = Map::new();
        for attribute in info {
            let value = match attribute {
                ChannelAttribute::SubscriptionCount => self.subscription_count,
                ChannelAttribute::UserCount => self.user_count,
            };
            obj.insert(attribute.as_str().to_owned(), value.into());
        }
        Value::Object(obj)
    }
}

/// A channel's field in per-node counts: `{app}:{channel}` (neither contains `:`).
pub fn channel_field(app: &str, channel: &ChannelName) -> String {
    format!("{app}:{channel}")
}

/// Splits [`channel_field`].
pub fn split_channel_field(field: &str) -> Option<(&str, ChannelName)> {
    let (app, channel) = field.split_once(':')?;
    Some((app, ChannelName::new(channel).ok()?))
}

/// One Redis reply, whichever client fetched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Nil.
    Nil,
    /// An integer.
    Int(i64),
    /// A string.
    Text(String),
    /// An array.
    List(Vec<Reply>),
}

impl Reply {
    /// An Upstash `result` (JSON) as a reply.
    ///
    /// ```
    /// use pushwire_shared::directory::Reply;
    /// use serde_json::json;
    /// assert_eq!(Reply::from_json(&json!(["a", 1, null])),
    ///            Reply::List(vec![Reply::Text("a".into()), Reply::Int(1), Reply::Nil]));
    /// ```
    pub fn from_json(value: &Value) -> Reply {
        match value {
            Value::Null => Reply::Nil,
            Value::Number(n) => Reply::Int(n.as_i64().unwrap_or(0)),
            Value::String(s) => Reply::Text(s.clone()),
            Value::Array(items) => Reply::List(items.iter().map(Reply::from_json).collect()),
            Value::Bool(b) => Reply::Int(i64::from(*b)),
            Value::Object(_) => Reply::Nil,
        }
    }

    fn count(&self) -> u64 {
        match self {
            Reply::Int(n) => u64::try_from(*n).unwrap_or(0),
            Reply::Text(s) => s.parse().unwrap_or(0),
            _ => 0,
        }
    }

    fn texts(self) -> Vec<String> {
        match self {
            Reply::List(items) => items
                .into_iter()
                .filter_map(|item| match item {
                    Reply::Text(s) => Some(s),
                    Reply::Int(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A flat `[field, value, …]` HGETALL reply as pairs.
    fn pairs(self) -> Vec<(String, String)> {
        let texts = self.texts();
        texts
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect()
    }
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// Each channel's stats, in order.
    Stats(Vec<ChannelName>),
    /// The occupied channels whose name starts with the prefix, with stats.
    Occupied(String),
    /// A presence channel's members.
    Members(ChannelName),
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// [`Read::Stats`].
    Stats(Vec<ChannelStats>),
    /// [`Read::Occupied`], sorted by name.
    Occupied(Vec<(ChannelName, ChannelStats)>),
    /// [`Read::Members`]: `(user_id, user_info JSON)`.
    Members(Vec<(String, String)>),
}

/// The replies did not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected directory replies: {0}")]
pub struct DirectoryReadError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Nodes,
    Counts(Vec<String>),
    UserCounts(Vec<(ChannelName, u64)>),
    Members,
}

/// A read in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryRead {
    app: String,
    read: Read,
    stage: Stage,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Run these commands (one pipeline) and pass their replies to `advance`.
    More(DirectoryRead, Vec<Vec<String>>),
    /// Done.
    Done(Found),
}

fn command(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

impl DirectoryRead {
    /// The next step: `stage` of this read, after running `commands`.
    fn step(app: String, read: Read, stage: Stage, commands: Vec<Vec<String>>) -> Progress {
        Progress::More(DirectoryRead { app, read, stage }, commands)
    }

    /// Starts reading `app`'s `read` at `now_ms`; returns the first commands.
    pub fn start(app: &str, read: Read, now_ms: u64) -> Progress {
        let app = app.to_owned();
        if let Read::Members(channel) = &read {
            let members = KeySpace::DEFAULT.members(&app, channel);
            let commands = vec![command(&["HGETALL", &members])];
            return Self::step(app, read, Stage::Members, commands);
        }
        let since = now_ms.saturating_sub(NODE_TIMEOUT_MS).to_string();
        let nodes = KeySpace::DEFAULT.nodes();
        let commands = vec![command(&["ZRANGEBYSCORE", &nodes, &since, "+inf"])];
        Self::step(app, read, Stage::Nodes, commands)
    }

    /// Takes the replies to the last commands, in order.
    pub fn advance(self, replies: Vec<Reply>) -> Result<Progress, DirectoryReadError> {
        let DirectoryRead { app, read, stage } = self;
        let keys = KeySpace::DEFAULT;
        let mut replies = replies.into_iter();
        let mut next = || {
            replies
                .next()
                .ok_or_else(|| DirectoryReadError("fewer replies than commands".into()))
        };
        match (stage, &read) {
            (Stage::Members, _) => Ok(Progress::Done(Found::Members(next()?.pairs()))),
            (Stage::Nodes, Read::Stats(channels)) => {
                let nodes = next()?.texts();
                if channels.is_empty() {
                    return Ok(Progress::Done(Found::Stats(Vec::new())));
                }
                let mut commands = Vec::new();
                for channel in channels {
                    let field = channel_field(&app, channel);
                    for node in &nodes {
                        commands.push(command(&["HGET", &keys.node_subs(node), &field]));
                    }
                    commands.push(command(&["HLEN", &keys.members(&app, channel)]));
                }
                let read = read.clone();
                Ok(Self::step(app, read, Stage::Counts(nodes), commands))
            }
            (Stage::Counts(nodes), Read::Stats(channels)) => {
                let mut stats = Vec::with_capacity(channels.len());
                for _ in channels {
                    let mut subscription_count = 0;
                    for _ in &nodes {
                        subscription_count += next()?.count();
                    }
                    let user_count = next()?.count();
                    stats.push(ChannelStats {
                        subscription_count,
                        user_count,
                    });
                }
                Ok(Progress::Done(Found::Stats(stats)))
            }
            (Stage::Nodes, Read::Occupied(_)) => {
                let nodes = next()?.texts();
                let commands = nodes
                    .iter()
                    .map(|node| command(&["HGETALL", &keys.node_subs(node)]))
                    .collect();
                let read = read.clone();
                Ok(Self::step(app, read, Stage::Counts(nodes), commands))
            }
            (Stage::Counts(nodes), Read::Occupied(prefix)) => {
                let mut totals: BTreeMap<String, u64> = BTreeMap::new();
                for _ in &nodes {
                    for (field, count) in next()?.pairs() {
                        *totals.entry(field).or_default() += count.parse::<u64>().unwrap_or(0);
                    }
                }
                let channels: Vec<(ChannelName, u64)> = totals
                    .into_iter()
                    .filter(|(_, count)| *count > 0)
                    .filter_map(|(field, count)| {
                        let (a, channel) = split_channel_field(&field)?;
                        (a == app && channel.as_str().starts_with(prefix.as_str()))
                            .then_some((channel, count))
                    })
                    .collect();
                // Only presence channels have members to count.
                let commands: Vec<Vec<String>> = channels
                    .iter()
                    .filter(|(channel, _)| channel.kind() == ChannelKind::Presence)
                    .map(|(channel, _)| command(&["HLEN", &keys.members(&app, channel)]))
                    .collect();
                let user_counts = DirectoryRead {
                    app,
                    read: read.clone(),
                    stage: Stage::UserCounts(channels),
                };
                if commands.is_empty() {
                    // Nothing to ask: finish at once, with no replies.
                    return user_counts.advance(Vec::new());
                }
                Ok(Progress::More(user_counts, commands))
            }
            (Stage::UserCounts(channels), Read::Occupied(_)) => {
                let mut found = Vec::with_capacity(channels.len());
                for (channel, subscription_count) in channels {
                    let user_count = if channel.kind() == ChannelKind::Presence {
                        next()?.count()
                    } else {
                        0
                    };
                    let stats = ChannelStats {
                        subscription_count,
                        user_count,
                    };
                    found.push((channel, stats));
                }
                Ok(Progress::Done(Found::Occupied(found)))
            }
            (stage, read) => Err(DirectoryReadError(format!("{stage:?} for {read:?}"))),
        }
    }
}

/// Runs a read to the end with `run`, which executes one pipeline of commands
/// and returns their replies in order (the origin's Redis client, or the edge's
/// bridge requests). Pure: the caller's future does the I/O.
///
/// The outer error is `run`'s; the inner one says the replies made no sense.
pub async fn run<E, F, Fut>(
    app: &str,
    read: Read,
    now_ms: u64,
    mut run: F,
) -> Result<Result<Found, DirectoryReadError>, E>
where
    F: FnMut(Vec<Vec<String>>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Reply>, E>>,
{
    let mut progress = DirectoryRead::start(app, read, now_ms);
    loop {
        match progress {
            Progress::Done(found) => return Ok(Ok(found)),
            Progress::More(reading, commands) => {
                let replies = run(commands).await?;
                progress = match reading.advance(replies) {
                    Ok(next) => next,
                    Err(e) => return Ok(Err(e)),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn text(s: &str) -> Reply {
        Reply::Text(s.into())
    }

    /// Runs a read against [`fake`]: its futures are always ready.
    fn run_sync(app: &str, read: Read, now_ms: u64) -> Result<Found, DirectoryReadError> {
        let future = std::pin::pin!(run(app, read, now_ms, |c| std::future::ready(fake(c))));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.poll(&mut cx) {
            std::task::Poll::Ready(result) => result.expect("the fake never fails"),
            std::task::Poll::Pending => panic!("the fake is always ready"),
        }
    }

    /// A fake Redis holding two live nodes' counts and one presence channel.
    fn fake(commands: Vec<Vec<String>>) -> Result<Vec<Reply>, ()> {
        let n1 = KeySpace::DEFAULT.node_subs("n1");
        let n2 = KeySpace::DEFAULT.node_subs("n2");
        Ok(commands
            .iter()
            .map(|c| match (c[0].as_str(), c[1].as_str()) {
                ("ZRANGEBYSCORE", _) => Reply::List(vec![text("n1"), text("n2")]),
                ("HGET", key) if key == n1 => text("2"),
                ("HGET", _) => Reply::Nil,
                ("HLEN", _) => Reply::Int(1),
                ("HGETALL", key) if key == n1 => Reply::List(vec![
                    text("1:presence-a"),
                    text("2"),
                    text("1:news"),
                    text("0"),
                ]),
                ("HGETALL", key) if key == n2 => Reply::List(vec![
                    text("1:presence-a"),
                    text("1"),
                    text("2:other"),
                    text("5"),
                ]),
                ("HGETALL", _) => Reply::List(vec![text("u"), text("null")]),
                _ => Reply::Nil,
            })
            .collect())
    }

    #[test]
    fn reads_sum_live_nodes_and_filter_by_app_and_prefix() {
        let a = ChannelName::new("presence-a").unwrap();
        let stats = run_sync("1", Read::Stats(vec![a.clone()]), 20_000);
        assert_eq!(
            stats,
            Ok(Found::Stats(vec![ChannelStats {
                subscription_count: 2,
                user_count: 1
            }]))
        );
        let occupied = run_sync("1", Read::Occupied(String::new()), 20_000);
        assert_eq!(
            occupied,
            Ok(Found::Occupied(vec![(
                a.clone(),
                ChannelStats {
                    subscription_count: 3,
                    user_count: 1
                }
            )]))
        );
        // Only public channels: no member counts to ask for.
        let public = run_sync("2", Read::Occupied(String::new()), 20_000);
        assert_eq!(
            public,
            Ok(Found::Occupied(vec![(
                ChannelName::new("other").unwrap(),
                ChannelStats {
                    subscription_count: 5,
                    user_count: 0
                }
            )]))
        );
        let members = run_sync("1", Read::Members(a), 0);
        assert_eq!(
            members,
            Ok(Found::Members(vec![("u".into(), "null".into())]))
        );
    }

    #[test]
    fn short_replies_are_errors_not_panics() {
        let read = DirectoryRead::start("1", Read::Stats(vec![ChannelName::new("a").unwrap()]), 0);
        let Progress::More(reading, _) = read else {
            panic!("expected commands");
        };
        let Ok(Progress::More(counting, _)) = reading.advance(vec![Reply::List(vec![text("n")])])
        else {
            panic!("expected the count commands");
        };
        assert!(counting.advance(vec![]).is_err());
    }
}
