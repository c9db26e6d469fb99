//! Channel history: positions, retention, and the one atomic publish.
//!
//! Every published event is appended to its channel's history and gets a
//! [`Position`]: the history's epoch and a [`StreamId`] that only grows within a
//! channel. A client that remembers the last position it saw can ask for
//! everything after it on reconnect (`subscribe` with `since`).
//!
//! On Redis the history of a channel is a stream ([`KeySpace::history`]), appended and
//! published in one Lua script ([`PUBLISH_SCRIPT`](crate::publishing::PUBLISH_SCRIPT)), so an event is either in the
//! history *and* published, or neither. Each channel's epoch ([`KeySpace::epoch`]) is
//! set by its first publish and expires with its history: when Redis restarts
//! empty, or a promoted replica never got the channel's first events, the
//! epoch changes and every older position is known to be unrecoverable.

use std::fmt;
use std::str::FromStr;

use crate::envelope::Envelope;
use crate::keys::KeySpace;

/// How long an idle channel's history key lives after its last publish.
///
/// Long compared to [`HistoryPolicy::max_age_secs`] on purpose: the last event
/// of a quiet channel stays, so a client whose position is that event is told
/// `recovered: true` (nothing missed) rather than "unknown".
pub const IDLE_KEY_TTL_SECS: u64 = 24 * 60 * 60;

/// How much history each channel keeps (defaults and bounds:
/// [`settings`](crate::settings)). Trimming happens when a channel is
/// published to: the newest `max_events` events younger than `max_age_secs`
/// are kept, and the newest event is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryPolicy {
    /// Events kept per channel (default 100).
    pub max_events: u32,
    /// Age after which events are trimmed, in seconds (default 300).
    pub max_age_secs: u32,
}

impl Default for HistoryPolicy {
    fn default() -> Self {
        HistoryPolicy {
            max_events: crate::settings::DEFAULT_HISTORY_MAX_EVENTS,
            max_age_secs: crate::settings::DEFAULT_HISTORY_MAX_AGE_SECS,
        }
    }
}

/// A position within one channel's history: `{ms}-{seq}`, the Redis stream id
/// format. Ordered; strictly increasing along a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds since the Unix epoch when the event was appended.
    pub ms: u64,
    /// Sequence within that millisecond.
    pub seq: u64,
}

impl StreamId {
    /// The id appended after `self` at time `now_ms`: Redis's `XADD *` rule
    /// (a clock going backwards never makes ids go backwards).
    ///
    /// ```
    /// use pushwire_shared::history::StreamId;
    /// let last = StreamId { ms: 10, seq: 0 };
    /// assert_eq!(last.next(12), StreamId { ms: 12, seq: 0 });
    /// assert_eq!(last.next(10), StreamId { ms: 10, seq: 1 });
    /// assert_eq!(last.next(5), StreamId { ms: 10, seq: 1 });
    /// ```
    pub fn next(self, now_ms: u64) -> StreamId {
        if now_ms > self.ms {
            StreamId { ms: now_ms, seq: 0 }
        } else {
            StreamId {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Why a string is not a stream id or a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid position {0:?}: expected \"<epoch>:<ms>-<seq>\" as delivered in the event metadata"
)]
pub struct PositionError(pub String);

impl FromStr for StreamId {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PositionError(s.to_owned());
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        let number = |n: &str| {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            n.parse::<u64>().map_err(|_| bad())
        };
        Ok(StreamId {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

/// Where an event sits in its channel's history: `"{epoch}:{ms}-{seq}"`, as
/// delivered in the event metadata's `pos` and accepted back as `since`.
///
/// ```
/// use pushwire_shared::history::Position;
/// let pos: Position = "5f3a:1732540000000-2".parse().unwrap();
/// assert_eq!(pos.epoch, "5f3a");
/// assert_eq!(pos.id.seq, 2);
/// assert_eq!(pos.to_string(), "5f3a:1732540000000-2");
/// assert!("1732540000000-2".parse::<Position>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The history epoch the id belongs to.
    pub epoch: String,
    /// The id within the channel's history.
    pub id: StreamId,
}

/// The longest epoch accepted in a position.
const MAX_EPOCH_LEN: usize = 64;

impl FromStr for Position {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (epoch, id) = s
            .split_once(':')
            .ok_or_else(|| PositionError(s.to_owned()))?;
        let epoch_ok = !epoch.is_empty()
            && epoch.len() <= MAX_EPOCH_LEN
            && epoch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !epoch_ok {
            return Err(PositionError(s.to_owned()));
        }
        Ok(Position {
            epoch: epoch.to_owned(),
            id: id.parse().map_err(|_| PositionError(s.to_owned()))?,
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.id)
    }
}

impl serde::Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One envelope to publish: the pub/sub channel, the history stream and its
/// epoch, and the envelope JSON (without `pos`: the publisher adds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishMessage {
    /// The Redis pub/sub channel ([`KeySpace::channel`]).
    pub channel: String,
    /// The history stream ([`KeySpace::history`]).
    pub history_key: String,
    /// The history's epoch ([`KeySpace::epoch`]).
    pub epoch_key: String,
    /// The envelope JSON, ending with `}` and without a `pos` field.
    pub envelope: String,
}

impl PublishMessage {
    /// The message publishing `envelope` on its app's channel and history
    /// ([`KeySpace::DEFAULT`]).
    ///
    /// ```
    /// use pushwire_shared::history::PublishMessage;
    /// use pushwire_shared::Envelope;
    /// let raw = r#"{"v":1,"id":"e","app":"7","channel":"c","event":"x","data":"","ts":1}"#;
    /// let m = PublishMessage::of(&Envelope::decode(raw.as_bytes()).unwrap());
    /// assert_eq!(
    ///     [m.channel.as_str(), m.history_key.as_str(), m.epoch_key.as_str()],
    ///     ["pushwire:v2:{7:c}:ch", "pushwire:v2:{7:c}:hist", "pushwire:v2:{7:c}:epoch"]
    /// );
    /// assert_eq!(m.envelope, raw);
    /// ```
    pub fn of(envelope: &Envelope) -> Self {
        let keys = KeySpace::DEFAULT;
        PublishMessage {
            channel: keys.channel(&envelope.app, &envelope.channel),
            history_key: keys.history(&envelope.app, &envelope.channel),
            epoch_key: keys.epoch(&envelope.app, &envelope.channel),
            envelope: envelope.encode(),
        }
    }
}

/// Adds `pos` to an envelope's JSON: the byte-level rule the publish script
/// applies (drop the final `}`, append `,"pos":"…"}`), so an embedded broker
/// produces exactly what Redis produces.
///
/// ```
/// use pushwire_shared::history::{with_position, Position};
/// let pos: Position = "e1:7-0".parse().unwrap();
/// assert_eq!(with_position(r#"{"v":1,"ts":7}"#, &pos), r#"{"v":1,"ts":7,"pos":"e1:7-0"}"#);
/// ```
pub fn with_position(envelope: &str, pos: &Position) -> String {
    let body = envelope.strip_suffix('}').unwrap_or(envelope);
    format!("{body},\"pos\":\"{pos}\"}}")
}

/// Where a subscriber stands against a channel's retained history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery<T> {
    /// `since` is still in the history: these entries follow it, in order, and
    /// nothing between `since` and them was lost.
    Recovered(Vec<T>),
    /// The history no longer reaches back to `since` (trimmed, expired, or
    /// another epoch): events may have been missed.
    Lost,
}

/// Decides recovery from `since` given the history read at one instant: its
/// epoch and its entries with ids `>= since.id`, in order.
///
/// ```
/// use pushwire_shared::history::{recover, Position, Recovery, StreamId};
/// let since: Position = "e:5-0".parse().unwrap();
/// let id = |ms| StreamId { ms, seq: 0 };
/// assert_eq!(recover(&since, Some("e"), vec![(id(5), 'a'), (id(6), 'b')]), Recovery::Recovered(vec![(id(6), 'b')]));
/// assert_eq!(recover(&since, Some("e"), vec![(id(6), 'b')]), Recovery::Lost);
/// assert_eq!(recover(&since, Some("other"), vec![(id(5), 'a')]), Recovery::Lost);
/// ```
pub fn recover<T>(
    since: &Position,
    epoch: Option<&str>,
    entries: Vec<(StreamId, T)>,
) -> Recovery<(StreamId, T)> {
    // Trimming removes the oldest entries first, so `since` itself still being
    // there proves nothing after it was removed.
    if epoch != Some(since.epoch.as_str()) || entries.first().map(|(id, _)| *id) != Some(since.id) {
        return Recovery::Lost;
    }
    Recovery::Recovered(entries.into_iter().skip(1).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse_strictly() {
        assert_eq!(
            "1732540000000-3".parse::<StreamId>(),
            Ok(StreamId {
                ms: 1_732_540_000_000,
                seq: 3
            })
        );
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "1-2-3",
            "a-1",
            "+1-1",
            "1-99999999999999999999",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
        assert!(StreamId { ms: 1, seq: 9 } < StreamId { ms: 2, seq: 0 });
    }

    #[test]
    fn positions_parse_strictly() {
        for bad in [
            "",
            ":1-0",
            "e:",
            "e:1",
            "e f:1-0",
            "e:1-0:2",
            &format!("{}:1-0", "e".repeat(65)),
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
        let pos: Position = serde_json::from_str(r#""ab_1-x:1-0""#).unwrap();
        assert_eq!(serde_json::to_string(&pos).unwrap(), r#""ab_1-x:1-0""#);
    }

    #[test]
    fn recovery_needs_since_itself() {
        let since: Position = "e:5-1".parse().unwrap();
        let id = |ms, seq| StreamId { ms, seq };
        assert_eq!(recover::<()>(&since, Some("e"), vec![]), Recovery::Lost);
        assert_eq!(recover::<()>(&since, None, vec![]), Recovery::Lost);
        assert_eq!(
            recover(&since, Some("e"), vec![(id(5, 1), 1)]),
            Recovery::Recovered(vec![])
        );
    }
}
