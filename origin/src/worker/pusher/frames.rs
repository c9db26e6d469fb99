//! The JSON text of Pusher protocol 7 messages, both ways.
//!
//! Every message is `{"event", "channel"?, "data"?}`. Server-sent `data` is a
//! JSON *string* (the SDKs parse it a second time), except in `pusher:error`,
//! whose `data` is an object as Pusher sends it.

use pushwire_shared::event::{MEMBER_ADDED, MEMBER_REMOVED};
use pushwire_shared::{ChannelName, Envelope, SocketId};
use serde_json::{Value, json};

/// Client → server: join a channel.
pub(crate) const SUBSCRIBE: &str = "pusher:subscribe";
/// Client → server: leave a channel.
pub(crate) const UNSUBSCRIBE: &str = "pusher:unsubscribe";
/// Client → server: sign in as a user, `{auth, user_data}`.
pub(crate) const SIGNIN: &str = "pusher:signin";
/// Both ways: are you there?
pub(crate) const PING: &str = "pusher:ping";
/// Both ways: the answer to a ping.
pub(crate) const PONG: &str = "pusher:pong";

/// Pusher's error codes that this endpoint sends. All but 4301 end the
/// connection, with the same code in the close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    /// 4001: the app key names no app; do not reconnect unchanged.
    UnknownApp = 4001,
    /// 4005: the upgrade's path is not `/app/{key}`.
    PathNotFound = 4005,
    /// 4006: the `protocol` parameter is not a number.
    InvalidVersion = 4006,
    /// 4007: the protocol version is not one this server speaks.
    UnsupportedProtocol = 4007,
    /// 4008: no `protocol` parameter.
    NoProtocol = 4008,
    /// 4100: the app holds the most connections allowed; retry after a pause.
    OverCapacity = 4100,
    /// 4009: the connection is unauthorized (a refused sign-in, or the app's
    /// backend terminated the user's connections); do not reconnect unchanged.
    Unauthorized = 4009,
    /// 4200: reconnect now (the server is closing, or the client fell behind).
    Reconnect = 4200,
    /// 4201: the client answered no ping in time; reconnect.
    PongTimeout = 4201,
    /// 4301: a client event over the app's rate; dropped, the connection stays.
    ClientEventRateLimited = 4301,
}

/// `pusher:connection_established` with the socket id and the activity timeout
/// (seconds) after which the server pings a silent client.
pub(crate) fn connection_established(socket_id: &SocketId, activity_timeout_secs: u64) -> String {
    let data =
        json!({ "socket_id": socket_id.as_str(), "activity_timeout": activity_timeout_secs });
    message("pusher:connection_established", None, &data.to_string())
}

/// A `pusher:error`; `code` is `None` for errors Pusher gives no code.
pub(crate) fn error(code: Option<ErrorCode>, text: &str) -> String {
    json!({
        "event": "pusher:error",
        "data": { "code": code.map(|c| c as u16), "message": text },
    })
    .to_string()
}

/// A message without data fields beyond the JSON text `data`.
pub(crate) fn message(event: &str, channel: Option<&ChannelName>, data: &str) -> String {
    let mut frame = json!({ "event": event, "data": data });
    if let Some(channel) = channel {
        frame["channel"] = Value::from(channel.as_str());
    }
    frame.to_string()
}

/// `pusher:signin_success` with the `user_data` text that was signed (pusher-js
/// parses it and reads the user's id from it).
pub(crate) fn signin_success(user_data: &str) -> String {
    let data = json!({ "user_data": user_data });
    message("pusher:signin_success", None, &data.to_string())
}

/// `pusher_internal:subscription_succeeded`, with the members of a presence
/// channel and, when the subscribe asked to recover from `since`, whether
/// every event after it was still retained (`recovered`, pushwire's addition).
pub(crate) fn subscription_succeeded(
    channel: &ChannelName,
    presence: Option<&Value>,
    recovered: Option<bool>,
) -> String {
    let mut data = json!({});
    if let Some(summary) = presence {
        data["presence"] = summary.clone();
    }
    if let Some(recovered) = recovered {
        data["recovered"] = Value::Bool(recovered);
    }
    let data = data.to_string();
    message(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &data,
    )
}

/// `pusher:subscription_error`, shaped like pusher-js's own auth failures.
pub(crate) fn subscription_error(channel: &ChannelName, status: u16, text: &str) -> String {
    let data = json!({ "type": "AuthError", "error": text, "status": status });
    message(
        "pusher:subscription_error",
        Some(channel),
        &data.to_string(),
    )
}

/// An event delivered on a channel: `data` is the trigger's string as given
/// (other JSON as its text), and presence changes get Pusher's internal
/// names. `id` (and `pos`, when the event has one) are pushwire's additions,
/// ignored by stock SDKs: the same id a Socket.IO subscriber sees.
pub(crate) fn event(envelope: &Envelope) -> String {
    let name = match envelope.event.as_str() {
        MEMBER_ADDED => "pusher_internal:member_added",
        MEMBER_REMOVED => "pusher_internal:member_removed",
        other => other,
    };
    let data = match &envelope.data {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let mut frame = json!({
        "event": name,
        "channel": envelope.channel.as_str(),
        "data": data,
        "id": envelope.id,
    });
    if let Some(pos) = &envelope.pos {
        frame["pos"] = Value::from(pos.to_string());
    }
    frame.to_string()
}

/// `pusher:cache_miss`: a cache channel had no event to send on subscribe.
pub(crate) fn cache_miss(channel: &ChannelName) -> String {
    json!({ "event": crate::worker::cache::CACHE_MISS, "channel": channel.as_str() }).to_string()
}

/// The channel and event id of `frame` when it is one of [`event`]'s.
pub(crate) fn event_key(frame: &str) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        channel: Option<&'a str>,
        #[serde(borrow)]
        id: Option<&'a str>,
    }
    let head = serde_json::from_str::<Head>(frame).ok()?;
    Some((head.channel?.to_owned(), head.id?.to_owned()))
}

/// Whether `frame` (one of [`event`]'s) is the event `id` on `channel`.
pub(crate) fn is_event(frame: &str, channel: &ChannelName, id: &str) -> bool {
    event_key(frame).is_some_and(|(on, ev)| on == channel.as_str() && ev == id)
}

/// A client message: its event name and its `data`, parsed when it was sent
/// as JSON text (pusher-js sends objects; other SDKs send strings).
#[derive(Debug, PartialEq)]
pub(crate) struct Incoming {
    /// `event`.
    pub event: String,
    /// `channel`, when given (client events name it here).
    pub channel: Option<String>,
    /// `data`, `Null` when absent.
    pub data: Value,
}

/// Why a client message could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IncomingError {
    /// Not JSON at all.
    #[error("the message is not JSON: send {{\"event\": \"…\", \"data\": …}}")]
    NotJson,
    /// JSON, but no string `event`.
    #[error("the message has no \"event\" string")]
    NoEvent,
}

/// Reads one text frame from a client.
pub(crate) fn parse(text: &str) -> Result<Incoming, IncomingError> {
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(text) else {
        return Err(match serde_json::from_str::<Value>(text) {
            Ok(_) => IncomingError::NoEvent,
            Err(_) => IncomingError::NotJson,
        });
    };
    let Some(Value::String(event)) = obj.remove("event") else {
        return Err(IncomingError::NoEvent);
    };
    let channel = match obj.remove("channel") {
        Some(Value::String(channel)) => Some(channel),
        _ => None,
    };
    let data = match obj.remove("data") {
        Some(Value::String(text)) if text.trim_start().starts_with('{') => {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        }
        Some(other) => other,
        None => Value::Null,
    };
    Ok(Incoming {
        event,
        channel,
        data,
    })
}

/// Fixtures for the tests of the modules that sequence frames.
#[cfg(test)]
pub(super) mod fixtures {
    use pushwire_shared::{ChannelName, Envelope};
    use serde_json::{Value, json};
    use tokio_tungstenite::tungstenite::Utf8Bytes;

    /// An event `id` on `channel`.
    pub(in super::super) fn envelope(id: &str, channel: &ChannelName) -> Envelope {
        let name = pushwire_shared::EventName::new("x").unwrap();
        Envelope::new(id.into(), "1".into(), channel.clone(), name, json!(1), 5)
    }

    /// `envelope`'s event frame.
    pub(in super::super) fn frame(envelope: &Envelope) -> Utf8Bytes {
        Utf8Bytes::from(super::event(envelope))
    }

    /// The (channel, id) of each frame, to compare sequences.
    pub(in super::super) fn ids(frames: &[Utf8Bytes]) -> Vec<(String, String)> {
        frames
            .iter()
            .map(|f| {
                let v: Value = serde_json::from_str(f).unwrap();
                (v["channel"].to_string(), v["id"].to_string())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_established_carries_its_data_as_a_string() {
        let frame: Value =
            serde_json::from_str(&connection_established(&"1.2".parse().unwrap(), 120)).unwrap();
        assert_eq!(frame["event"], "pusher:connection_established");
        let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        assert_eq!(data, json!({"socket_id": "1.2", "activity_timeout": 120}));
    }

    #[test]
    fn events_keep_string_data_and_rename_member_events() {
        let channel = ChannelName::new("presence-a").unwrap();
        let ev = |name: &str, data: Value| {
            let envelope = Envelope::new(
                "e1".into(),
                "1".into(),
                channel.clone(),
                pushwire_shared::EventName::server(name)
                    .or_else(|| pushwire_shared::EventName::new(name).ok())
                    .unwrap(),
                data,
                5,
            );
            serde_json::from_str::<Value>(&event(&envelope)).unwrap()
        };
        let plain = ev("greet", json!("{\"a\":1}"));
        assert_eq!(plain["data"], "{\"a\":1}");
        assert_eq!(plain["id"], "e1");
        assert_eq!(plain["channel"], "presence-a");
        let object = ev("greet", json!({"b": 2}));
        assert_eq!(object["data"], "{\"b\":2}");
        let added = ev(MEMBER_ADDED, json!({"user_id": "u"}));
        assert_eq!(added["event"], "pusher_internal:member_added");
    }

    #[test]
    fn signin_success_carries_the_user_data_text() {
        let frame: Value = serde_json::from_str(&signin_success(r#"{"id":"a"}"#)).unwrap();
        assert_eq!(frame["event"], "pusher:signin_success");
        let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        assert_eq!(data, json!({"user_data": "{\"id\":\"a\"}"}));
    }

    #[test]
    fn cache_frames() {
        let channel = ChannelName::new("cache-a").unwrap();
        let miss: Value = serde_json::from_str(&cache_miss(&channel)).unwrap();
        assert_eq!(
            miss,
            json!({"event": "pusher:cache_miss", "channel": "cache-a"})
        );
        let envelope = Envelope::new(
            "e1".into(),
            "1".into(),
            channel.clone(),
            pushwire_shared::EventName::new("x").unwrap(),
            json!("d"),
            5,
        );
        let frame = event(&envelope);
        assert!(is_event(&frame, &channel, "e1"));
        assert!(!is_event(&frame, &channel, "e2"));
        assert!(!is_event(
            &frame,
            &ChannelName::new("cache-b").unwrap(),
            "e1"
        ));
        assert!(!is_event("not json", &channel, "e1"));
    }

    #[test]
    fn parsing_client_messages() {
        let sub = parse(r#"{"event":"pusher:subscribe","data":{"channel":"a"}}"#).unwrap();
        assert_eq!(
            (sub.event.as_str(), &sub.data),
            (SUBSCRIBE, &json!({"channel": "a"}))
        );
        let text = parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"a\"}"}"#).unwrap();
        assert_eq!(text.data, json!({"channel": "a"}));
        let client = parse(r#"{"event":"client-x","channel":"private-a","data":"hi"}"#).unwrap();
        assert_eq!(client.channel.as_deref(), Some("private-a"));
        assert_eq!(client.data, json!("hi"));
        assert_eq!(parse("{nope"), Err(IncomingError::NotJson));
        assert_eq!(parse("[1]"), Err(IncomingError::NoEvent));
        assert_eq!(parse(r#"{"event":3}"#), Err(IncomingError::NoEvent));
    }
}
