//! The event envelope published on Redis.
//!
//! One envelope is published per (event, channel): on the Redis channel
//! [`KeySpace::channel`](crate::keys::KeySpace::channel)`(app, channel)`, as compact JSON. `PROTOCOL.md`
//! documents the format byte for byte; bump [`ENVELOPE_VERSION`] on any
//! incompatible change.

use serde_json::Value;

use crate::channel::ChannelName;
use crate::event::EventName;
use crate::history::Position;
use crate::socket_id::SocketId;

/// The envelope format this crate writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// One event on one channel, as it travels through Redis.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    /// Format version, [`ENVELOPE_VERSION`].
    pub v: u32,
    /// The event id: the same on every channel of one trigger.
    pub id: String,
    /// The app id.
    pub app: String,
    /// The channel this copy is for.
    pub channel: ChannelName,
    /// The Socket.IO event name subscribers receive.
    pub event: EventName,
    /// The trigger's `data`, exactly as accepted (a string or any JSON value).
    pub data: Value,
    /// A socket that must not receive the event (the trigger's `socket_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<SocketId>,
    /// When the event was accepted, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// Where the event sits in its channel's history. Added by the publisher as
    /// the last field ([`crate::history::with_position`]); absent before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<Position>,
}

/// Why bytes read from Redis are not an envelope this version understands.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON, or a field is missing or invalid.
    #[error("malformed envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Written by another format version.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u32),
}

impl Envelope {
    /// The envelope of event `id` (the same on every channel of one event) for
    /// `channel` of `app`, accepted at `ts` ms: this version, no excluded
    /// socket ([`Envelope::excluding`]), no position yet (the publisher adds it).
    ///
    /// ```
    /// use pushwire_shared::{ChannelName, Envelope, EventName};
    /// let channel = ChannelName::new("c").unwrap();
    /// let event = EventName::new("x").unwrap();
    /// let env = Envelope::new("e1".into(), "7".into(), channel, event, "hi".into(), 5);
    /// assert_eq!(env.encode(), r#"{"v":1,"id":"e1","app":"7","channel":"c","event":"x","data":"hi","ts":5}"#);
    /// ```
    pub fn new(
        id: String,
        app: String,
        channel: ChannelName,
        event: EventName,
        data: Value,
        ts: u64,
    ) -> Self {
        Envelope {
            v: ENVELOPE_VERSION,
            id,
            app,
            channel,
            event,
            data,
            exclude: None,
            ts,
            pos: None,
        }
    }

    /// The same envelope, not to be delivered to `socket` (when there is one).
    pub fn excluding(self, socket: Option<SocketId>) -> Self {
        Envelope {
            exclude: socket,
            ..self
        }
    }

    /// Serialises to the compact JSON published on Redis.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serialises")
    }

    /// Parses a published envelope, refusing other versions.
    ///
    /// ```
    /// use pushwire_shared::Envelope;
    /// let raw = r#"{"v":1,"id":"e1","app":"1000001","channel":"c","event":"price","data":"{\"p\":1}","ts":1}"#;
    /// let env = Envelope::decode(raw.as_bytes()).unwrap();
    /// assert_eq!(env.encode(), raw);
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        #[derive(serde::Deserialize)]
        struct Version {
            v: u32,
        }
        let Version { v } = serde_json::from_slice(bytes)?;
        if v != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(v));
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Envelope {
        Envelope::new(
            "01JD-7".into(),
            "1000001".into(),
            ChannelName::new("news").unwrap(),
            EventName::new("flash").unwrap(),
            json!({"x": [1, 2]}),
            1_732_000_000_000,
        )
        .excluding(Some("1.2".parse().unwrap()))
    }

    #[test]
    fn round_trips_byte_for_byte() {
        let text = sample().encode();
        assert_eq!(
            text,
            r#"{"v":1,"id":"01JD-7","app":"1000001","channel":"news","event":"flash","data":{"x":[1,2]},"exclude":"1.2","ts":1732000000000}"#
        );
        assert_eq!(Envelope::decode(text.as_bytes()).unwrap(), sample());
    }

    #[test]
    fn the_publishers_position_splice_decodes() {
        let pos: Position = "e1:1732000000000-0".parse().unwrap();
        let published = crate::history::with_position(&sample().encode(), &pos);
        let decoded = Envelope::decode(published.as_bytes()).unwrap();
        assert_eq!(decoded.pos, Some(pos.clone()));
        // Serialising it again gives the same bytes: `pos` is the last field.
        assert_eq!(decoded.encode(), published);
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let v2 = sample().encode().replace(r#""v":1"#, r#""v":2"#);
        assert!(matches!(
            Envelope::decode(v2.as_bytes()),
            Err(EnvelopeError::UnsupportedVersion(2))
        ));
        assert!(Envelope::decode(b"nope").is_err());
        let bad_channel = sample().encode().replace("news", "bad channel");
        assert!(Envelope::decode(bad_channel.as_bytes()).is_err());
    }
}
