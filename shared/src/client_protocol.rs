//! The Socket.IO side of the contract: event names, `subscribe`/`unsubscribe`
//! payloads and acknowledgement shapes. The server's own event names are in
//! [`crate::event`].

use serde_json::{Value, json};

use crate::channel::{ChannelName, ChannelNameError};
use crate::history::Position;

/// Client → server: subscribe to a channel.
pub const SUBSCRIBE: &str = "subscribe";
/// Client → server: leave a channel.
pub const UNSUBSCRIBE: &str = "unsubscribe";
/// Client → server: sign in as a user, `{"auth", "user_data"}` (see
/// [`crate::user_auth`]).
pub const SIGNIN: &str = "signin";

/// Stable ack error codes, documented in `PROTOCOL.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// 4000: the payload is not what the event expects.
    Malformed = 4000,
    /// 4001: the channel name is invalid.
    InvalidChannel = 4001,
    /// 4009: missing or invalid auth for a private/presence channel.
    Unauthorized = 4009,
    /// 4100: over a limit.
    OverLimit = 4100,
    /// 4101: the socket is on as many channels as its app allows.
    TooManyChannels = 4101,
    /// 4102: the socket subscribes faster than its app allows; retry later.
    SubscribeRateLimited = 4102,
    /// 4200: temporarily unavailable; retry.
    Unavailable = 4200,
    /// 4301: the socket sends client events faster than its app allows
    /// (Pusher's code for the same refusal).
    ClientEventRateLimited = 4301,
}

/// A refused request, as sent in the ack: `{"ok": false, "error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {})", *code as u16)]
pub struct AckError {
    /// The stable code.
    pub code: AckCode,
    /// A human-readable explanation.
    pub message: String,
}

impl AckError {
    /// Builds an error ack.
    pub fn new(code: AckCode, message: impl Into<String>) -> Self {
        AckError {
            code,
            message: message.into(),
        }
    }

    /// A 4200 "temporarily unavailable" error saying why.
    pub fn unavailable(why: impl std::fmt::Display) -> Self {
        AckError::new(AckCode::Unavailable, why.to_string())
    }

    /// The ack payload.
    ///
    /// ```
    /// use pushwire_shared::client_protocol::{AckCode, AckError};
    /// let ack = AckError::new(AckCode::InvalidChannel, "bad").to_ack();
    /// assert_eq!(ack.to_string(), r#"{"error":{"code":4001,"message":"bad"},"ok":false}"#);
    /// ```
    pub fn to_ack(&self) -> Value {
        json!({"ok": false, "error": {"code": self.code as u16, "message": self.message}})
    }
}

impl From<ChannelNameError> for AckError {
    fn from(e: ChannelNameError) -> Self {
        AckError::new(AckCode::InvalidChannel, e.to_string())
    }
}

/// The success ack, `{"ok": true}`.
pub fn ok_ack() -> Value {
    json!({"ok": true})
}

/// The ack for an outcome: [`ok_ack`] or [`AckError::to_ack`].
///
/// ```
/// use pushwire_shared::client_protocol::{AckCode, AckError, ack};
/// assert_eq!(ack(&Ok(())).to_string(), r#"{"ok":true}"#);
/// assert_eq!(ack(&Err(AckError::new(AckCode::Malformed, "x")))["error"]["code"], 4000);
/// ```
pub fn ack(result: &Result<(), AckError>) -> Value {
    match result {
        Ok(()) => ok_ack(),
        Err(e) => e.to_ack(),
    }
}

/// The success ack of a `subscribe`: `{"ok": true}`, plus `"recovered"` when
/// the request gave `since` (whether every event after it was replayed).
///
/// ```
/// use pushwire_shared::client_protocol::subscribed_ack;
/// assert_eq!(subscribed_ack(None).to_string(), r#"{"ok":true}"#);
/// assert_eq!(subscribed_ack(Some(false)).to_string(), r#"{"ok":true,"recovered":false}"#);
/// ```
pub fn subscribed_ack(recovered: Option<bool>) -> Value {
    let mut ack = ok_ack();
    if let Some(recovered) = recovered {
        ack["recovered"] = Value::Bool(recovered);
    }
    ack
}

/// A `subscribe` payload: `{"channel", "auth"?, "channel_data"?, "since"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// The channel to join.
    pub channel: ChannelName,
    /// `"{app_key}:{signature}"`, for private and presence channels.
    pub auth: Option<String>,
    /// Presence member data, as the JSON text that was signed.
    pub channel_data: Option<String>,
    /// The last position the client saw on this channel: replay what followed.
    pub since: Option<Position>,
}

fn object(
    payload: Option<&Value>,
    event: &str,
) -> Result<serde_json::Map<String, Value>, AckError> {
    match payload {
        Some(Value::Object(obj)) => Ok(obj.clone()),
        Some(Value::String(s)) if s.trim_start().starts_with('{') => {
            match serde_json::from_str(s) {
                Ok(Value::Object(obj)) => Ok(obj),
                _ => Err(malformed(event)),
            }
        }
        _ => Err(malformed(event)),
    }
}

fn malformed(event: &str) -> AckError {
    AckError::new(
        AckCode::Malformed,
        format!("{event} expects an object {{\"channel\": \"<name>\"}}"),
    )
}

fn channel_of(obj: &serde_json::Map<String, Value>) -> Result<ChannelName, AckError> {
    match obj.get("channel") {
        Some(Value::String(name)) => Ok(ChannelName::new(name)?),
        Some(_) => Err(AckError::new(
            AckCode::Malformed,
            "\"channel\" must be a string",
        )),
        None => Err(AckError::new(AckCode::Malformed, "missing \"channel\"")),
    }
}

fn optional_string(
    obj: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, AckError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AckError::new(
            AckCode::Malformed,
            format!("\"{field}\" must be a string"),
        )),
    }
}

impl SubscribeRequest {
    /// Reads the first argument of a `subscribe` event (an object, or its JSON text).
    ///
    /// ```
    /// use pushwire_shared::client_protocol::{AckCode, SubscribeRequest};
    /// use serde_json::json;
    /// let req = SubscribeRequest::parse(Some(&json!({"channel": "news"}))).unwrap();
    /// assert_eq!(req.channel.as_str(), "news");
    /// let err = SubscribeRequest::parse(Some(&json!(42))).unwrap_err();
    /// assert_eq!(err.code, AckCode::Malformed);
    /// ```
    pub fn parse(payload: Option<&Value>) -> Result<Self, AckError> {
        let obj = object(payload, SUBSCRIBE)?;
        Ok(SubscribeRequest {
            channel: channel_of(&obj)?,
            auth: optional_string(&obj, "auth")?,
            channel_data: optional_string(&obj, "channel_data")?,
            since: optional_string(&obj, "since")?
                .map(|text| text.parse::<Position>())
                .transpose()
                .map_err(|e| AckError::new(AckCode::Malformed, e.to_string()))?,
        })
    }
}

/// The prefix of client events: `client-*` events a subscriber sends to the
/// other subscribers of a private or presence channel.
pub const CLIENT_EVENT_PREFIX: &str = "client-";

/// A client event's payload: `{"channel", "data"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEvent {
    /// The channel to send it on.
    pub channel: ChannelName,
    /// What the others receive as the event's first argument.
    pub data: Value,
}

impl ClientEvent {
    /// Reads a client event's first argument; `data` is optional (`null`).
    ///
    /// ```
    /// use pushwire_shared::client_protocol::ClientEvent;
    /// use serde_json::json;
    /// let e = ClientEvent::parse(Some(&json!({"channel": "private-a", "data": {"x": 1}}))).unwrap();
    /// assert_eq!(e.data, json!({"x": 1}));
    /// assert!(ClientEvent::parse(Some(&json!({"data": 1}))).is_err());
    /// ```
    pub fn parse(payload: Option<&Value>) -> Result<Self, AckError> {
        let obj = match payload {
            Some(Value::Object(obj)) => obj,
            _ => {
                return Err(AckError::new(
                    AckCode::Malformed,
                    "a client event expects an object {\"channel\": \"<name>\", \"data\": …}",
                ));
            }
        };
        Ok(ClientEvent {
            channel: channel_of(obj)?,
            data: obj.get("data").cloned().unwrap_or(Value::Null),
        })
    }
}

/// Reads the first argument of an `unsubscribe` event: `{"channel"}`.
pub fn parse_unsubscribe(payload: Option<&Value>) -> Result<ChannelName, AckError> {
    channel_of(&object(payload, UNSUBSCRIBE)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_payloads() {
        let ok =
            SubscribeRequest::parse(Some(&json!({"channel": "private-a", "auth": "k:s"}))).unwrap();
        assert_eq!(ok.auth.as_deref(), Some("k:s"));
        let text = SubscribeRequest::parse(Some(&json!("{\"channel\":\"b\"}"))).unwrap();
        assert_eq!(text.channel.as_str(), "b");
        let code = |v: Option<Value>| SubscribeRequest::parse(v.as_ref()).unwrap_err().code;
        assert_eq!(code(None), AckCode::Malformed);
        assert_eq!(code(Some(json!("news"))), AckCode::Malformed);
        assert_eq!(code(Some(json!({}))), AckCode::Malformed);
        assert_eq!(code(Some(json!({"channel": 1}))), AckCode::Malformed);
        assert_eq!(
            code(Some(json!({"channel": "x", "auth": 1}))),
            AckCode::Malformed
        );
        assert_eq!(
            code(Some(json!({"channel": "a b"}))),
            AckCode::InvalidChannel
        );
        assert_eq!(code(Some(json!({"channel": ""}))), AckCode::InvalidChannel);
        assert_eq!(
            code(Some(json!({"channel": "x", "since": "12-0"}))),
            AckCode::Malformed
        );
        let since = SubscribeRequest::parse(Some(&json!({"channel": "x", "since": "e:12-0"})));
        assert_eq!(since.unwrap().since.unwrap().id.ms, 12);
    }

    #[test]
    fn unsubscribe_payloads() {
        assert_eq!(
            parse_unsubscribe(Some(&json!({"channel": "c"})))
                .unwrap()
                .as_str(),
            "c"
        );
        assert_eq!(
            parse_unsubscribe(Some(&json!([]))).unwrap_err().code,
            AckCode::Malformed
        );
    }
}
